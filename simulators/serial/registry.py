"""Simulator names (the same as the driver names) -> a factory taking a record count."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from simulators.serial.base import Fault, PtyDevice
from simulators.serial.records import glucose_records, weigh_ins
from simulators.serial.tanita import TanitaSimulator
from simulators.serial.ultra2 import Ultra2Simulator
from simulators.serial.ultraeasy import UltraEasySimulator

__all__ = ["SIMULATORS", "create"]


def _ultra2(records: int, link: Path | None, **kw: Any) -> PtyDevice:
    return Ultra2Simulator(glucose_records(records), link=link, **kw)


def _ultraeasy(records: int, link: Path | None, **kw: Any) -> PtyDevice:
    return UltraEasySimulator(glucose_records(records, seed=2), link=link, **kw)


def _tanita(records: int, link: Path | None, **kw: Any) -> PtyDevice:
    return TanitaSimulator(weigh_ins(records), link=link, **kw)


SIMULATORS: dict[str, Callable[..., PtyDevice]] = {
    "onetouch-ultra2": _ultra2,
    "onetouch-ultraeasy": _ultraeasy,
    "tanita-bc": _tanita,
}


def create(
    name: str,
    records: int,
    *,
    link: Path | None = None,
    clock_offset_s: float = 0.0,
    faults: Mapping[int, Fault] | None = None,
) -> PtyDevice:
    """A configured (not yet started) simulator; `faults` maps a record index to a fault injected once."""
    factory = SIMULATORS[name]
    kw: dict[str, Any] = {"faults": dict(faults or {})}
    if name != "tanita-bc":
        kw["clock_offset"] = timedelta(seconds=clock_offset_s)
    return factory(records, link, **kw)
