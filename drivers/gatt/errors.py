"""Typed errors of the GATT parsers, all under `drivers.errors.DriverError`.

Short or over-long frames and out-of-range fields raise `drivers.errors.MalformedFrameError` directly; the
classes here say something more specific a session may want to count apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from drivers.errors import DeviceProtocolError, UnsupportedError

if TYPE_CHECKING:
    from drivers.gatt.sfloat import SpecialValue

__all__ = ["MeasurementUnsuccessfulError", "NoValueError", "OrphanContextError", "SpecialValueError"]


class NoValueError(UnsupportedError):
    """A well-formed frame that carries no usable value for a field a Reading needs."""

    def __init__(self, message: str, raw: bytes = b"", *, field: str) -> None:
        super().__init__(message, raw)
        self.field = field


class SpecialValueError(NoValueError):
    """A required IEEE 11073 value is NaN / NRes / +-INF / reserved (the device measured no number)."""

    def __init__(self, field: str, special: SpecialValue, raw: bytes = b"") -> None:
        super().__init__(f"{field} is the special value {special.name}", raw, field=field)
        self.special = special


class MeasurementUnsuccessfulError(NoValueError):
    """The device says the measurement failed (e.g. Weight 0xFFFF, GSS Weight Measurement)."""

    def __init__(self, field: str, raw: bytes = b"") -> None:
        super().__init__(f"{field}: measurement unsuccessful", raw, field=field)


class OrphanContextError(DeviceProtocolError):
    """A Glucose Measurement Context without the measurement it belongs to (Glucose Service 1.0 §3.1)."""
