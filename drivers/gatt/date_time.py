"""Date Time (GSS v8 §3.70, org.bluetooth.characteristic.date_time, 0x2A08), the 7-byte time stamp inside
the health measurements and Current Time.

year uint16 LE (1582..9999, 0 = not known), month uint8 (1..12, 0 = not known), day uint8 (1..31,
0 = not known), hours 0..23, minutes 0..59, seconds 0..59. The device clock has no zone: we return a naive
datetime. Decision: a date with an unknown (0) year, month or day is valid per spec and means "the clock
is not set", so it parses to None (the reading falls back to receive time); any value outside the ranges,
or an impossible date (30 February), is a `MalformedFrameError`.
"""

from __future__ import annotations

import struct
from datetime import datetime

from drivers.errors import MalformedFrameError

__all__ = ["DATE_TIME_SIZE", "encode_date_time", "parse_date_time"]

DATE_TIME_SIZE = 7
_DATE_TIME = struct.Struct("<HBBBBB")


def parse_date_time(data: bytes, raw: bytes | None = None) -> datetime | None:
    """Parse exactly 7 bytes; `raw` is the whole frame to keep in the error (defaults to `data`)."""
    frame = bytes(data) if raw is None else raw
    if len(data) != DATE_TIME_SIZE:
        raise MalformedFrameError(f"date time: {len(data)} bytes, expected {DATE_TIME_SIZE}", frame)
    year, month, day, hours, minutes, seconds = _DATE_TIME.unpack(data)
    if not (year == 0 or 1582 <= year <= 9999) or month > 12 or day > 31 or hours > 23 or minutes > 59 or seconds > 59:
        raise MalformedFrameError("date time: field out of range", frame)
    if year == 0 or month == 0 or day == 0:
        return None
    try:
        return datetime(year, month, day, hours, minutes, seconds)
    except ValueError:
        raise MalformedFrameError("date time: no such date", frame) from None


def encode_date_time(value: datetime) -> bytes:
    """The 7 bytes for a (naive, device-local) datetime; sub-second precision is dropped."""
    if not 1582 <= value.year <= 9999:
        raise ValueError("Date Time year must be 1582..9999")
    return _DATE_TIME.pack(value.year, value.month, value.day, value.hour, value.minute, value.second)
