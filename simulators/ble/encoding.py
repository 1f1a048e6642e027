"""The simulators' own encoders for the Bluetooth SIG health characteristics.

Written independently of `drivers/gatt/` on purpose: if the simulator reused the parser's encoder, a
misread of the specification would be mirrored on both sides and every test would still pass.
References: GATT Specification Supplement (GSS) v8 sections 3.31 (Blood Pressure Measurement), 3.252
(Weight Measurement), 3.107/3.109 (Glucose Measurement / Context), 3.182 (RACP), 3.62 (Current Time),
3.215 (System ID); IEEE 11073-20601 SFLOAT.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import datetime

__all__ = [
    "BpRecord",
    "GlucoseRecord",
    "WeightRecord",
    "current_time",
    "date_time",
    "encode_bp",
    "encode_glucose",
    "encode_glucose_context",
    "encode_weight",
    "racp_count",
    "racp_response",
    "sfloat",
    "system_id",
]

_U16 = struct.Struct("<H")
_S16 = struct.Struct("<h")
_DATE_TIME = struct.Struct("<HBBBBB")


def sfloat(value: float, exponent: int = 0) -> bytes:
    """IEEE 11073 16-bit SFLOAT: 4-bit signed exponent (high nibble), 12-bit signed mantissa."""
    mantissa = round(value / (10.0**exponent))
    if not -2046 <= mantissa <= 2045:
        raise ValueError("mantissa out of range")
    return _U16.pack(((exponent & 0xF) << 12) | (mantissa & 0x0FFF))


SFLOAT_NAN = _U16.pack(0x07FF)


def sfloat_raw(mantissa: int, exponent: int) -> bytes:
    """SFLOAT from an integer mantissa, so no float rounding stands between a test and its bytes."""
    return _U16.pack(((exponent & 0xF) << 12) | (mantissa & 0x0FFF))


def date_time(t: datetime) -> bytes:
    return _DATE_TIME.pack(t.year, t.month, t.day, t.hour, t.minute, t.second)


def current_time(t: datetime, adjust_reason: int = 0) -> bytes:
    """Current Time 0x2A2B: Exact Time 256 (date time, day of week 1=Monday, fractions256) + reason."""
    return date_time(t) + bytes([t.isoweekday(), t.microsecond * 256 // 1_000_000, adjust_reason])


def system_id(manufacturer_id: int, oui: int) -> bytes:
    """System ID 0x2A23: 40-bit manufacturer-defined identifier then 24-bit OUI, both little-endian."""
    return manufacturer_id.to_bytes(5, "little") + oui.to_bytes(3, "little")


@dataclass(frozen=True)
class BpRecord:
    systolic: float
    diastolic: float
    mean: float
    pulse: float | None = None
    time: datetime | None = None
    user: int | None = None
    status: int | None = None  # Measurement Status bits
    kpa: bool = False


def encode_bp(r: BpRecord) -> bytes:
    """Blood Pressure Measurement 0x2A35 (GSS 3.31): flags, 3 SFLOAT, [time], [pulse], [user], [status]."""
    exp = -1 if r.kpa else 0
    flags = (0x01 if r.kpa else 0) | (0x02 if r.time else 0) | (0x04 if r.pulse is not None else 0)
    flags |= (0x08 if r.user is not None else 0) | (0x10 if r.status is not None else 0)
    out = bytes([flags]) + sfloat(r.systolic, exp) + sfloat(r.diastolic, exp) + sfloat(r.mean, exp)
    if r.time:
        out += date_time(r.time)
    if r.pulse is not None:
        out += sfloat(r.pulse)
    if r.user is not None:
        out += bytes([r.user])
    if r.status is not None:
        out += _U16.pack(r.status)
    return out


@dataclass(frozen=True)
class WeightRecord:
    weight: float  # kg, or lb when imperial
    time: datetime | None = None
    user: int | None = None
    bmi: float | None = None
    height: float | None = None  # m, or inches when imperial
    imperial: bool = False


def encode_weight(r: WeightRecord) -> bytes:
    """Weight Measurement 0x2A9D (GSS 3.252): resolution 0.005 kg / 0.01 lb; BMI 0.1; height 1 mm / 0.1 in."""
    flags = (0x01 if r.imperial else 0) | (0x02 if r.time else 0) | (0x04 if r.user is not None else 0)
    flags |= 0x08 if r.bmi is not None else 0
    out = bytes([flags]) + _U16.pack(round(r.weight / (0.01 if r.imperial else 0.005)))
    if r.time:
        out += date_time(r.time)
    if r.user is not None:
        out += bytes([r.user])
    if r.bmi is not None:
        height = r.height or 0.0
        out += _U16.pack(round(r.bmi * 10)) + _U16.pack(round(height / (0.1 if r.imperial else 0.001)))
    return out


@dataclass(frozen=True)
class GlucoseRecord:
    sequence: int
    time: datetime
    mg_dl: float
    time_offset_min: int | None = None
    sample_type: int = 1  # capillary whole blood
    location: int = 1  # finger
    sensor_status: int | None = None
    meal: int | None = None  # context: 1 preprandial, 2 postprandial, ...
    extra: dict[str, int] = field(default_factory=dict)


def encode_glucose(r: GlucoseRecord) -> bytes:
    """Glucose Measurement 0x2A18 (GSS 3.107). Concentration in kg/L: N mg/dL = N * 10**-5 kg/L."""
    flags = 0x02 | (0x01 if r.time_offset_min is not None else 0)
    flags |= (0x08 if r.sensor_status is not None else 0) | (0x10 if r.meal is not None else 0)
    out = bytes([flags]) + _U16.pack(r.sequence) + date_time(r.time)
    if r.time_offset_min is not None:
        out += _S16.pack(r.time_offset_min)
    out += sfloat_raw(round(r.mg_dl), -5) + bytes([(r.location << 4) | r.sample_type])
    if r.sensor_status is not None:
        out += _U16.pack(r.sensor_status)
    return out


def encode_glucose_context(r: GlucoseRecord) -> bytes:
    """Glucose Measurement Context 0x2A34 (GSS 3.109) carrying only the Meal field (flag bit 1)."""
    assert r.meal is not None
    return bytes([0x02]) + _U16.pack(r.sequence) + bytes([r.meal])


def racp_response(request_opcode: int, code: int) -> bytes:
    """RACP Response Code (opcode 6, operator Null): request opcode, response code value."""
    return bytes([0x06, 0x00, request_opcode, code])


def racp_count(count: int) -> bytes:
    """RACP Number of Stored Records Response (opcode 5, operator Null), uint16 count."""
    return bytes([0x05, 0x00]) + _U16.pack(count)
