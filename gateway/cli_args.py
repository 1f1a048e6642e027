"""Argument types for the command line: every number finite and in range, every name non-empty.

argparse turns an `ArgumentTypeError` into one usage line and exit code 2, so a value like `--user 10**25`
or `--seconds nan` is refused at the prompt instead of as a traceback from SQLite or asyncio. The numeric
rule is the config file's (`gateway.config.check_number`): one rule for both.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from gateway.config import check_number

__all__ = [
    "AUDIT_LIMIT",
    "ROW_ID",
    "USER_SLOT",
    "folder",
    "integer",
    "name",
    "seconds",
    "signed_seconds",
]


def integer(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip(), 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text[:40]!r}") from None
        try:
            check_number(value, low, high, integer=True)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value

    parse.__name__ = "integer"  # argparse names the type in its messages
    return parse


def seconds(low: float, high: float, *, exclusive_low: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text[:40]!r}") from None
        try:
            check_number(value, low, high)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if exclusive_low and value == low:
            raise argparse.ArgumentTypeError(f"must be more than {low:g}")
        return value

    parse.__name__ = "seconds"
    return parse


def signed_seconds(limit: float) -> Callable[[str], float]:
    return seconds(-limit, limit)


def name(max_len: int = 200) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip()
        if not value:
            raise argparse.ArgumentTypeError("must not be empty")
        if len(value) > max_len or not value.isprintable():
            raise argparse.ArgumentTypeError(f"must be printable text of at most {max_len} characters")
        return value

    parse.__name__ = "name"
    return parse


def folder(text: str) -> str:
    """A folder to use or create: refused when it names an existing file."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a folder")
    return text


# Bluetooth SIG user indexes are one octet, 0xFF meaning "unknown user": a slot is 0..254.
USER_SLOT = integer(0, 254)
ROW_ID = integer(1, 2**63 - 1)  # SQLite's INTEGER PRIMARY KEY range
AUDIT_LIMIT = integer(1, 1_000_000)
