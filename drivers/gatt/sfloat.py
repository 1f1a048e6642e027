"""IEEE 11073-20601 SFLOAT (16-bit) and FLOAT (32-bit) as used by the Bluetooth health profiles.

IEEE 11073-20601 §F.8 (FLOAT-Type, SFLOAT-Type): value = mantissa * 10**exponent, two's complement
mantissa (12 / 24 bits) and exponent (4 / 8 bits). The special values are defined WITH exponent 0 only
(e.g. NaN = exponent 0, mantissa 2**11 - 1 = 0x07FF); the same mantissa with another exponent is an
ordinary number (0xF7FF = 204.7), which is what we decode.

Decision: decoding never raises for a special value, it returns a `SpecialValue` member, so a parsed
frame stays faithful to the wire. The `to_reading` mappers turn a measured value that is special into a
`Measurement` without a number (`Measurement.absent`, via `measurement`), which the FHIR layer writes as
`dataAbsentReason` (HL7 PHD IG PhdNumericObservation): the device said "no number", and that is kept and
sent, not dropped. `require` (raising `SpecialValueError`) stays for fields that are not measurements.
"""

from __future__ import annotations

from enum import Enum
from typing import TypeAlias

from drivers.gatt.errors import SpecialValueError
from gateway.reading import Absent, Measurement, Metric, Unit

__all__ = ["SFloat", "SpecialValue", "decode_float", "decode_sfloat", "measurement", "require"]


class SpecialValue(Enum):
    """The reserved IEEE 11073 values (§F.8): the device measured no number."""

    NAN = "nan"  # not a number: e.g. no measurement
    NRES = "nres"  # not at this resolution
    POSITIVE_INFINITY = "+inf"
    NEGATIVE_INFINITY = "-inf"
    RESERVED = "reserved"  # reserved for future use


SFloat: TypeAlias = float | SpecialValue

_SFLOAT_SPECIAL: dict[int, SpecialValue] = {
    0x07FF: SpecialValue.NAN,
    0x0800: SpecialValue.NRES,
    0x07FE: SpecialValue.POSITIVE_INFINITY,
    0x0802: SpecialValue.NEGATIVE_INFINITY,
    0x0801: SpecialValue.RESERVED,
}

_FLOAT_SPECIAL: dict[int, SpecialValue] = {
    0x007FFFFF: SpecialValue.NAN,
    0x00800000: SpecialValue.NRES,
    0x007FFFFE: SpecialValue.POSITIVE_INFINITY,
    0x00800002: SpecialValue.NEGATIVE_INFINITY,
    0x00800001: SpecialValue.RESERVED,
}


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value & (1 << (bits - 1)) else value


def _scaled(mantissa: int, exponent: int) -> float:
    """mantissa * 10**exponent, correctly rounded: int / int true division rounds once (1205e-1 -> 120.5)."""
    if exponent >= 0:
        return float(mantissa * 10**exponent)
    divisor: int = 10**-exponent
    return mantissa / divisor


def decode_sfloat(raw: int, scale: int = 0) -> SFloat:
    """Decode a 16-bit SFLOAT (as a uint16); `scale` adds a power of ten (exact unit conversion)."""
    if not 0 <= raw <= 0xFFFF:
        raise ValueError("SFLOAT is 16 bits")
    special = _SFLOAT_SPECIAL.get(raw)
    if special is not None:
        return special
    return _scaled(_signed(raw & 0x0FFF, 12), _signed(raw >> 12, 4) + scale)


def decode_float(raw: int, scale: int = 0) -> SFloat:
    """Decode a 32-bit FLOAT (as a uint32), same rules as `decode_sfloat`."""
    if not 0 <= raw <= 0xFFFFFFFF:
        raise ValueError("FLOAT is 32 bits")
    special = _FLOAT_SPECIAL.get(raw)
    if special is not None:
        return special
    return _scaled(_signed(raw & 0xFFFFFF, 24), _signed(raw >> 24, 8) + scale)


def require(value: SFloat, field: str, raw: bytes = b"") -> float:
    """The number, or `SpecialValueError` naming the field (never the value: no PHI in errors)."""
    if isinstance(value, SpecialValue):
        raise SpecialValueError(field, value, raw)
    return value


_ABSENT: dict[SpecialValue, Absent] = {
    SpecialValue.NAN: Absent.NOT_A_NUMBER,
    SpecialValue.NRES: Absent.NOT_AT_RESOLUTION,
    SpecialValue.POSITIVE_INFINITY: Absent.POSITIVE_INFINITY,
    SpecialValue.NEGATIVE_INFINITY: Absent.NEGATIVE_INFINITY,
    SpecialValue.RESERVED: Absent.RESERVED,
}


def measurement(metric: Metric, value: SFloat, unit: Unit) -> Measurement:
    """A Measurement of a decoded value; a special value becomes one without a number (`absent`)."""
    if isinstance(value, SpecialValue):
        return Measurement.missing(metric, unit, _ABSENT[value])
    return Measurement(metric, value, unit)
