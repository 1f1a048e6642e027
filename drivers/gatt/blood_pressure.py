"""Blood Pressure Service 1.0/1.1: Blood Pressure Measurement (0x2A35, indicate) and Feature (0x2A49).

Layout from BLS 1.0 §3.1 / GSS "Blood Pressure Measurement" and BLS 1.0 §3.3 / GSS "Blood Pressure Feature":

    flags uint8 | systolic SFLOAT | diastolic SFLOAT | mean arterial pressure SFLOAT
    | time stamp Date Time (flags bit 1) | pulse rate SFLOAT (bit 2) | user id uint8 (bit 3)
    | measurement status uint16 (bit 4)

flags bit 0: 0 = mmHg, 1 = kPa. Decision on reserved bits: GSS says RFU bits are ignored by the receiver,
so reserved flag bits (5-7), status bits (6-15) and feature bits are ignored; but every byte must be
accounted for by the flags that are set, so trailing bytes (which a future field behind a now-reserved
flag would add) raise `MalformedFrameError` rather than being guessed at: the session keeps the raw frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum, IntEnum

from drivers.gatt._common import bits_set, user_slot
from drivers.gatt._wire import Reader
from drivers.gatt.sfloat import SFloat, measurement
from gateway.reading import DeviceIdentity, Kind, Metric, Reading, Status, Unit

__all__ = [
    "BloodPressureFeature",
    "BloodPressureMeasurement",
    "MeasurementStatus",
    "PulseRateRange",
    "parse_bp_feature",
    "parse_bp_measurement",
    "to_reading",
]

_UNIT_KPA = 0x01
_TIME_STAMP = 0x02
_PULSE_RATE = 0x04
_USER_ID = 0x08
_STATUS = 0x10


class PulseRateRange(IntEnum):
    """Measurement Status bits 3-4 (BLS 1.0 §3.1, Measurement Status field)."""

    WITHIN_RANGE = 0
    EXCEEDS_UPPER_LIMIT = 1
    BELOW_LOWER_LIMIT = 2
    RESERVED = 3


@dataclass(frozen=True, slots=True)
class MeasurementStatus:
    """Measurement Status field (BLS 1.0 §3.1): bit 0 body movement, 1 cuff too loose, 2 irregular
    pulse, 3-4 pulse rate range, 5 improper measurement position; 6-15 reserved (ignored)."""

    body_movement: bool = False
    cuff_too_loose: bool = False
    irregular_pulse: bool = False
    pulse_rate_range: PulseRateRange = PulseRateRange.WITHIN_RANGE
    improper_position: bool = False

    @classmethod
    def from_bits(cls, bits: int) -> MeasurementStatus:
        return cls(
            body_movement=bool(bits & 0x0001),
            cuff_too_loose=bool(bits & 0x0002),
            irregular_pulse=bool(bits & 0x0004),
            pulse_rate_range=PulseRateRange(bits >> 3 & 0x03),
            improper_position=bool(bits & 0x0020),
        )

    @property
    def flags(self) -> frozenset[Status]:
        """As Reading status flags (a reserved pulse-rate-range value sets nothing)."""
        out = {
            status
            for status, on in (
                (Status.BODY_MOVEMENT, self.body_movement),
                (Status.CUFF_LOOSE, self.cuff_too_loose),
                (Status.IRREGULAR_PULSE, self.irregular_pulse),
                (Status.IMPROPER_POSITION, self.improper_position),
            )
            if on
        }
        if self.pulse_rate_range is PulseRateRange.EXCEEDS_UPPER_LIMIT:
            out.add(Status.PULSE_RATE_ABOVE_RANGE)
        elif self.pulse_rate_range is PulseRateRange.BELOW_LOWER_LIMIT:
            out.add(Status.PULSE_RATE_BELOW_RANGE)
        return frozenset(out)


@dataclass(frozen=True, slots=True)
class BloodPressureMeasurement:
    """One 0x2A35 value as sent. `time_stamp` is None when absent or when the device's date is unknown;
    `user_id` is the raw value (0xFF = unknown user)."""

    unit: Unit  # Unit.MMHG or Unit.KPA
    systolic: SFloat
    diastolic: SFloat
    mean_arterial: SFloat
    time_stamp: datetime | None = None
    pulse_rate: SFloat | None = None
    user_id: int | None = None
    status: MeasurementStatus | None = None


class BloodPressureFeature(Enum):
    """Blood Pressure Feature bits (BLS 1.0 §3.3, BPS 1.1); value = bit number; 9-15 reserved (ignored)."""

    BODY_MOVEMENT_DETECTION = 0
    CUFF_FIT_DETECTION = 1
    IRREGULAR_PULSE_DETECTION = 2
    PULSE_RATE_RANGE_DETECTION = 3
    MEASUREMENT_POSITION_DETECTION = 4
    MULTIPLE_BONDS = 5
    E2E_CRC = 6
    USER_DATA_SERVICE = 7
    USER_FACING_TIME = 8


def parse_bp_measurement(data: bytes) -> BloodPressureMeasurement:
    """Parse a Blood Pressure Measurement value; `MalformedFrameError` when short, long or out of range."""
    r = Reader(data, "blood pressure measurement")
    flags = r.u8()
    unit = Unit.KPA if flags & _UNIT_KPA else Unit.MMHG
    systolic, diastolic, mean_arterial = r.sfloat(), r.sfloat(), r.sfloat()
    time_stamp = r.date_time() if flags & _TIME_STAMP else None
    pulse_rate = r.sfloat() if flags & _PULSE_RATE else None
    user_id = r.u8() if flags & _USER_ID else None
    status = MeasurementStatus.from_bits(r.u16()) if flags & _STATUS else None
    r.end()
    return BloodPressureMeasurement(unit, systolic, diastolic, mean_arterial, time_stamp, pulse_rate, user_id, status)


def parse_bp_feature(data: bytes) -> frozenset[BloodPressureFeature]:
    """Parse the 16-bit Blood Pressure Feature value."""
    r = Reader(data, "blood pressure feature")
    bits = r.u16()
    r.end()
    return bits_set(bits, BloodPressureFeature)


def to_reading(
    m: BloodPressureMeasurement,
    device: DeviceIdentity,
    received_at: datetime,
    clock_offset: timedelta | None = None,
    raw: bytes = b"",
    *,
    simulated: bool = False,
) -> Reading:
    """One BLOOD_PRESSURE Reading: systolic, diastolic, mean arterial and pulse rate (when present). A special
    SFLOAT value (NaN, NRes, +/-INF, reserved) becomes a measurement without a number (`Measurement.absent`)."""
    measurements = [
        measurement(Metric.SYSTOLIC, m.systolic, m.unit),
        measurement(Metric.DIASTOLIC, m.diastolic, m.unit),
        measurement(Metric.MEAN_ARTERIAL, m.mean_arterial, m.unit),
    ]
    if m.pulse_rate is not None:
        measurements.append(measurement(Metric.PULSE_RATE, m.pulse_rate, Unit.PER_MIN))
    return Reading(
        kind=Kind.BLOOD_PRESSURE,
        measurements=tuple(measurements),
        device=device,
        received_at=received_at,
        device_time=m.time_stamp,
        clock_offset=clock_offset,
        user_slot=user_slot(m.user_id),
        status=m.status.flags if m.status is not None else frozenset(),
        raw=raw,
        simulated=simulated,
    )
