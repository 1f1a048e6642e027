"""IEEE 11073-20601 §F.8 SFLOAT-Type / FLOAT-Type, and the Date Time characteristic (GSS v8 §3.70)."""

from __future__ import annotations

from datetime import datetime

import pytest

from drivers.errors import MalformedFrameError
from drivers.gatt.date_time import encode_date_time, parse_date_time
from drivers.gatt.errors import SpecialValueError
from drivers.gatt.sfloat import SpecialValue, decode_float, decode_sfloat, require


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (0x0078, 120.0),  # exponent 0, mantissa 0x078 = 120
        (0xF4B5, 120.5),  # exponent 0xF = -1, mantissa 0x4B5 = 1205
        (0xFFFF, -0.1),  # exponent -1, mantissa 0xFFF = -1 (12-bit two's complement)
        (0x1001, 10.0),  # exponent +1, mantissa 1
        (0x0FFF, -1.0),  # exponent 0, mantissa -1
        (0x77FF, 2047e7),  # largest exponent (+7), largest mantissa (2047)
        (0x8001, 1e-8),  # smallest exponent (-8), mantissa 1
        (0xF7FF, 204.7),  # mantissa 0x7FF with exponent -1: an ordinary number, NaN needs exponent 0
        (0x0000, 0.0),
    ],
)
def test_sfloat_numbers(raw: int, expected: float) -> None:
    assert decode_sfloat(raw) == expected


@pytest.mark.parametrize(
    ("raw", "special"),
    [
        # §F.8: the special values are exponent 0 with these mantissas.
        (0x07FF, SpecialValue.NAN),  # +(2**11 - 1)
        (0x0800, SpecialValue.NRES),  # -(2**11)
        (0x07FE, SpecialValue.POSITIVE_INFINITY),  # +(2**11 - 2)
        (0x0802, SpecialValue.NEGATIVE_INFINITY),  # -(2**11 - 2)
        (0x0801, SpecialValue.RESERVED),  # -(2**11 - 1)
    ],
)
def test_sfloat_special_values(raw: int, special: SpecialValue) -> None:
    assert decode_sfloat(raw) is special
    assert decode_sfloat(raw, scale=5) is special  # a unit shift never turns a special into a number


def test_sfloat_scale_is_exact() -> None:
    # 110 mg/dL sent as 110e-5 kg/L (0xB06E: exponent -5, mantissa 110); shifted by 10**5, not multiplied.
    assert decode_sfloat(0xB06E, scale=5) == 110.0
    assert decode_sfloat(0xC03D, scale=3) == 6.1  # 61e-4 mol/L -> 6.1 mmol/L


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (0xFF0004B5, 120.5),  # exponent 0xFF = -1, 24-bit mantissa 1205
        (0x02000001, 100.0),  # exponent 2, mantissa 1
        (0x00FFFFFF, -1.0),  # exponent 0, mantissa -1
        (0x00000000, 0.0),
    ],
)
def test_float_numbers(raw: int, expected: float) -> None:
    assert decode_float(raw) == expected


@pytest.mark.parametrize(
    ("raw", "special"),
    [
        (0x007FFFFF, SpecialValue.NAN),
        (0x00800000, SpecialValue.NRES),
        (0x007FFFFE, SpecialValue.POSITIVE_INFINITY),
        (0x00800002, SpecialValue.NEGATIVE_INFINITY),
        (0x00800001, SpecialValue.RESERVED),
    ],
)
def test_float_special_values(raw: int, special: SpecialValue) -> None:
    assert decode_float(raw) is special


def test_require_raises_typed_error_naming_the_field() -> None:
    assert require(12.5, "systolic") == 12.5
    with pytest.raises(SpecialValueError) as info:
        require(SpecialValue.NRES, "systolic", b"\x01")
    assert (info.value.field, info.value.special, info.value.raw) == ("systolic", SpecialValue.NRES, b"\x01")


def test_out_of_range_raw_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        decode_sfloat(0x10000)
    with pytest.raises(ValueError):
        decode_float(-1)


# Date Time, GSS v8 §3.70: year uint16 LE, month, day, hours, minutes, seconds.
def test_date_time() -> None:
    # EA 07 = 2026, 0B = November, 18 = 24th, 08:1E:0F = 08:30:15
    assert parse_date_time(bytes.fromhex("EA070B18081E0F")) == datetime(2026, 11, 24, 8, 30, 15)
    assert encode_date_time(datetime(2026, 11, 24, 8, 30, 15, 999)) == bytes.fromhex("EA070B18081E0F")


@pytest.mark.parametrize(
    "frame",
    [
        "00000B18081E0F",  # year 0 = not known
        "EA070018081E0F",  # month 0 = not known
        "EA070B00081E0F",  # day 0 = not known
    ],
)
def test_date_time_unknown_is_none(frame: str) -> None:
    assert parse_date_time(bytes.fromhex(frame)) is None


@pytest.mark.parametrize(
    "frame",
    [
        "EA070D18081E0F",  # month 13
        "EA070B20081E0F",  # day 32
        "EA070B18181E0F",  # hour 24
        "EA070B18083C0F",  # minute 60
        "EA070B18081E3C",  # second 60
        "2D060B18081E0F",  # year 1581 (range is 1582..9999)
        "EA07021E081E0F",  # 30 February
        "EA070B18081E",  # 6 bytes
    ],
)
def test_date_time_invalid(frame: str) -> None:
    with pytest.raises(MalformedFrameError):
        parse_date_time(bytes.fromhex(frame))
