"""Small helpers the measurement mappers share."""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import TypeVar

__all__ = ["UNKNOWN_USER", "bits_set", "user_slot"]

#: User ID 0xFF means "unknown user" (GSS, User Index / the measurement characteristics' User ID field).
UNKNOWN_USER = 0xFF

E = TypeVar("E", bound=Enum)


def bits_set(value: int, members: Iterable[E]) -> frozenset[E]:
    """The members whose `.value` is a bit number set in `value`; bits without a member are ignored."""
    return frozenset(m for m in members if value >> int(m.value) & 1)


def user_slot(user_id: int | None) -> int | None:
    """The device's user slot for a Reading: None when absent or 0xFF (unknown user)."""
    return None if user_id is None or user_id == UNKNOWN_USER else user_id
