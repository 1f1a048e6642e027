"""The line format, sans-I/O: bytes in, a typed value or a typed error out (no files, no asyncio).

One weigh-in per line: `<ISO time without zone>,<scale serial>,<weight>,<unit>` with unit `kg` or `lb`,
e.g. `2026-11-24T08:00:00,SC-1234,72.4,kg`. Anything else is a `MalformedFrameError` carrying the line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from drivers.errors import MalformedFrameError

__all__ = ["WeighIn", "parse_line"]

_UNITS = {"kg", "lb"}


@dataclass(frozen=True, slots=True)
class WeighIn:
    time: datetime  # the scale's own clock, no zone
    serial_number: str
    weight: float
    unit: str  # "kg" or "lb"


def parse_line(line: bytes) -> WeighIn:
    try:
        text = line.decode("ascii").strip()
    except UnicodeDecodeError:
        raise MalformedFrameError("csv scale: not ASCII", line) from None
    fields = text.split(",")
    if len(fields) != 4:
        raise MalformedFrameError("csv scale: expected 4 fields", line)
    stamp, serial, weight, unit = fields
    try:
        time = datetime.fromisoformat(stamp)
        value = float(weight)
    except ValueError:
        raise MalformedFrameError("csv scale: bad time or weight", line) from None
    if time.tzinfo is not None or not serial or unit not in _UNITS or not 0 < value < 700:
        raise MalformedFrameError("csv scale: field out of range", line)
    return WeighIn(time, serial, value, unit)
