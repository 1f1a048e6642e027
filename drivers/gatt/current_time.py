"""Current Time Service: Current Time (0x2A2B), read to learn the device clock and written to set it.

CTS 1.1 §3.1 / GSS "Current Time": Exact Time 256 (Day Date Time = Date Time 7 bytes + Day of Week
uint8, then Fractions256 uint8) + Adjust Reason uint8, 10 bytes.
Day of week 1 = Monday .. 7 = Sunday, 0 = unknown, 8-255 reserved: read as unknown (None), since the date
already says which day it is and refusing the frame would leave the device's clock unknown. Adjust Reason
bits: 0 manual time update, 1 external reference time update, 2 change of time zone, 3 change of DST; 4-7
reserved (ignored). Device time is naive local time.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from drivers.errors import MalformedFrameError
from drivers.gatt._common import bits_set
from drivers.gatt.date_time import DATE_TIME_SIZE, encode_date_time, parse_date_time

__all__ = ["AdjustReason", "CurrentTime", "clock_offset", "encode_current_time", "parse_current_time"]

CURRENT_TIME_SIZE = 10
_TAIL = struct.Struct("<BBB")


class AdjustReason(Enum):
    """value = bit number."""

    MANUAL_TIME_UPDATE = 0
    EXTERNAL_REFERENCE_TIME_UPDATE = 1
    CHANGE_OF_TIME_ZONE = 2
    CHANGE_OF_DST = 3


@dataclass(frozen=True, slots=True)
class CurrentTime:
    """`time` is None when the device's date is unknown; microseconds come from Fractions256."""

    time: datetime | None
    day_of_week: int | None  # 1 = Monday .. 7 = Sunday; None = unknown
    fractions256: int
    adjust_reason: frozenset[AdjustReason] = frozenset()


def parse_current_time(data: bytes) -> CurrentTime:
    raw = bytes(data)
    if len(raw) != CURRENT_TIME_SIZE:
        raise MalformedFrameError(f"current time: {len(raw)} bytes, expected {CURRENT_TIME_SIZE}", raw)
    time = parse_date_time(raw[:DATE_TIME_SIZE], raw=raw)
    day_of_week, fractions, reason = _TAIL.unpack_from(raw, DATE_TIME_SIZE)
    if day_of_week > 7:  # reserved value: unknown, the frame is still good
        day_of_week = 0
    if time is not None:
        time = time.replace(microsecond=fractions * 1_000_000 // 256)
    return CurrentTime(time, day_of_week or None, fractions, bits_set(reason, AdjustReason))


def encode_current_time(
    value: datetime, adjust_reason: frozenset[AdjustReason] = frozenset({AdjustReason.MANUAL_TIME_UPDATE})
) -> bytes:
    """The 10 bytes to write for a naive device-local time (sub-second part as Fractions256)."""
    reason = sum(1 << int(r.value) for r in adjust_reason)
    fractions = value.microsecond * 256 // 1_000_000
    return encode_date_time(value) + _TAIL.pack(value.isoweekday(), fractions, reason)


def clock_offset(device_time: datetime, gateway_local_time: datetime) -> timedelta:
    """Device clock minus gateway clock (both naive local), as `Reading.clock_offset` wants it."""
    if device_time.tzinfo is not None or gateway_local_time.tzinfo is not None:
        raise ValueError("compare naive local times: the device clock has no zone")
    return device_time - gateway_local_time
