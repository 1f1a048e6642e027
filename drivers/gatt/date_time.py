"""Date Time (GSS v8 §3.70, org.bluetooth.characteristic.date_time, 0x2A08), the 7-byte time stamp inside
the health measurements and Current Time.

year uint16 LE (1582..9999, 0 = not known), month uint8 (1..12, 0 = not known), day uint8 (1..31,
0 = not known), hours 0..23, minutes 0..59, seconds 0..59. The device clock has no zone: we return a naive
datetime. Decision: a date with an unknown (0) year, month or day is valid per spec; `parse_date_time`
gives None for it (the reading falls back to receive time), while `parse_date_time_fields` keeps what is
known (a year-0 stamp still has its month, day and time of day) and flags the date incomplete. Any value
outside the ranges, or an impossible date (30 February), is a `MalformedFrameError`.
"""

from __future__ import annotations

import calendar
import struct
from dataclasses import dataclass
from datetime import datetime

from drivers.errors import MalformedFrameError

__all__ = ["DATE_TIME_SIZE", "DateTimeFields", "encode_date_time", "parse_date_time", "parse_date_time_fields"]

DATE_TIME_SIZE = 7
_DATE_TIME = struct.Struct("<HBBBBB")


@dataclass(frozen=True, slots=True)
class DateTimeFields:
    """A Date Time as sent, with None for each date part the device reported as not known (0)."""

    year: int | None
    month: int | None
    day: int | None
    hours: int
    minutes: int
    seconds: int

    @property
    def date_incomplete(self) -> bool:
        return self.year is None or self.month is None or self.day is None

    def to_datetime(self) -> datetime | None:
        if self.year is None or self.month is None or self.day is None:
            return None
        return datetime(self.year, self.month, self.day, self.hours, self.minutes, self.seconds)


def parse_date_time_fields(data: bytes, raw: bytes | None = None) -> DateTimeFields:
    """Parse exactly 7 bytes, keeping every known part; `raw` is the whole frame to keep in an error."""
    frame = bytes(data) if raw is None else raw
    if len(data) != DATE_TIME_SIZE:
        raise MalformedFrameError(f"date time: {len(data)} bytes, expected {DATE_TIME_SIZE}", frame)
    year, month, day, hours, minutes, seconds = _DATE_TIME.unpack(data)
    if not (year == 0 or 1582 <= year <= 9999) or month > 12 or day > 31 or hours > 23 or minutes > 59 or seconds > 59:
        raise MalformedFrameError("date time: field out of range", frame)
    # With year and month known, the day must exist in that month; with the year unknown, 29 February
    # may be real, so only days no month of any year has (31 April) are refused.
    if month and day:
        longest = calendar.monthrange(year, month)[1] if year else (29 if month == 2 else 30 if month in _SHORT else 31)
        if day > longest:
            raise MalformedFrameError("date time: no such date", frame)
    return DateTimeFields(year or None, month or None, day or None, hours, minutes, seconds)


_SHORT = frozenset({4, 6, 9, 11})


def parse_date_time(data: bytes, raw: bytes | None = None) -> datetime | None:
    """Parse exactly 7 bytes to a naive datetime; None when any date part is not known (0)."""
    return parse_date_time_fields(data, raw).to_datetime()


def encode_date_time(value: datetime) -> bytes:
    """The 7 bytes for a (naive, device-local) datetime; sub-second precision is dropped."""
    if not 1582 <= value.year <= 9999:
        raise ValueError("Date Time year must be 1582..9999")
    return _DATE_TIME.pack(value.year, value.month, value.day, value.hour, value.minute, value.second)
