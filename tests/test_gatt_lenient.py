"""Issue 12: frames real devices send that the specification allows, parsed instead of refused.

Each frame is written here byte by byte from the specification (section cited), and the whole result is
compared, as in the other GATT parser tests.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from drivers.errors import MalformedFrameError, UnsupportedError
from drivers.gatt.current_time import CurrentTime, parse_current_time
from drivers.gatt.date_time import DateTimeFields, parse_date_time, parse_date_time_fields
from drivers.gatt.glucose import GlucoseContext, Meal, parse_glucose_context
from drivers.gatt.racp import parse_racp


# CTS 1.1 §3.1 (Current Time = Exact Time 256 + Adjust Reason) and GSS "Day of Week": 0 = unknown,
# 1..7 = Monday..Sunday, 8..255 = reserved for future use.
@pytest.mark.parametrize("day_of_week", ["08", "80", "FF"])
def test_current_time_with_a_reserved_day_of_week_is_kept_day_unknown(day_of_week: str) -> None:
    frame = bytes.fromhex(
        "EA07"  # year 2026
        "0B"  # November
        "18"  # 24th
        "0E1E00"  # 14:30:00
        + day_of_week  # reserved
        + "40"  # fractions256 64 = 0.25 s
        "02"  # adjust reason bit 1: external reference time update
    )
    assert parse_current_time(frame) == CurrentTime(
        time=datetime(2026, 11, 24, 14, 30, 0, 250000),
        day_of_week=None,
        fractions256=64,
        adjust_reason=parse_current_time(bytes.fromhex("EA070B180E1E00024002")).adjust_reason,
    )


# GSS v8 §3.70 Date Time: year 0 = "year is not known", month 0 / day 0 likewise; the time of day is
# always given.
@pytest.mark.parametrize(
    ("frame", "fields"),
    [
        ("00000B18081E0F", DateTimeFields(None, 11, 24, 8, 30, 15)),  # year not known
        ("0000021D081E0F", DateTimeFields(None, 2, 29, 8, 30, 15)),  # 29 February: some year has it
        ("EA070018081E0F", DateTimeFields(2026, None, 24, 8, 30, 15)),  # month not known
        ("EA070B00081E0F", DateTimeFields(2026, 11, None, 8, 30, 15)),  # day not known
        ("000000000C0000", DateTimeFields(None, None, None, 12, 0, 0)),  # only the time of day
    ],
)
def test_date_time_with_unknown_parts_keeps_the_rest_and_flags_the_date(frame: str, fields: DateTimeFields) -> None:
    parsed = parse_date_time_fields(bytes.fromhex(frame))
    assert parsed == fields
    assert parsed.date_incomplete
    assert parse_date_time(bytes.fromhex(frame)) is None  # no full timestamp: readings use receive time


def test_date_time_fields_complete_and_impossible() -> None:
    full = parse_date_time_fields(bytes.fromhex("EA070B18081E0F"))  # 2026-11-24 08:30:15
    assert full == DateTimeFields(2026, 11, 24, 8, 30, 15)
    assert not full.date_incomplete and full.to_datetime() == datetime(2026, 11, 24, 8, 30, 15)
    for frame in ("0000041F000000", "EA07021D000000", "0000020A180000"):  # 31 April; 29 Feb 2026; hour 24
        with pytest.raises(MalformedFrameError):
            parse_date_time_fields(bytes.fromhex(frame))


# GLS 1.0 §3.2 Glucose Measurement Context: flags uint8, sequence uint16, then the fields the flags
# announce; flag bit 7 is "reserved for future use", so a later version may append fields.
def test_glucose_context_with_trailing_bytes_ignores_them() -> None:
    frame = bytes.fromhex(
        "02"  # flags: meal present (bit 1)
        "0700"  # sequence 7
        "03"  # meal 3 = fasting
        "AABBCC"  # bytes after the announced fields
    )
    assert parse_glucose_context(frame) == GlucoseContext(7, meal=Meal.FASTING)
    with pytest.raises(MalformedFrameError):
        parse_glucose_context(bytes.fromhex("020700"))  # a field the flags announce is still required


# GLS 1.0 §3.4 / GSS Record Access Control Point: op code 6 = response code, operator 0 = null, operand =
# request op code + response code value; request op codes 0 and 7..255 are reserved for future use.
@pytest.mark.parametrize("request_op", ["00", "07", "FF"])
def test_racp_response_to_a_reserved_op_code_is_unsupported_not_malformed(request_op: str) -> None:
    frame = bytes.fromhex("0600" + request_op + "02")  # response code 2: op code not supported
    with pytest.raises(UnsupportedError) as info:
        parse_racp(frame)
    assert type(info.value) is UnsupportedError
    assert (str(info.value), info.value.raw) == ("racp: response to an unsupported op code", frame)
