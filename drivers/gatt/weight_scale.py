"""Weight Scale Service 1.0: Weight Measurement (0x2A9D, indicate) and Weight Scale Feature (0x2A9E).

WSS 1.0 §3.2 / GSS "Weight Measurement":

    flags uint8 | weight uint16 | time stamp Date Time (bit 1) | user id uint8 (bit 2)
    | BMI uint16 + height uint16 (bit 3)

flags bit 0: 0 = SI (weight 0.005 kg, height 0.001 m), 1 = imperial (weight 0.01 lb, height 0.1 in);
BMI is 0.1 kg/m2 either way. Weight 0xFFFF = "measurement unsuccessful": `weight` None, and the Reading's weight
a measurement without a number (`Absent.UNSUCCESSFUL`), sent as FHIR dataAbsentReason, not dropped.
Reserved flag bits 4-7 are ignored; trailing bytes are a `MalformedFrameError` (see blood_pressure.py).
WSS 1.0 §3.1 / GSS "Weight Scale Feature": uint32, bit 0 time stamp, 1 multiple users, 2 BMI, bits 3-6 weight
resolution index, bits 7-9 height resolution index, 10-31 reserved.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from drivers.gatt._common import user_slot
from drivers.gatt._wire import Reader
from gateway.reading import Absent, DeviceIdentity, Kind, Measurement, Metric, Reading, Unit

__all__ = [
    "UNSUCCESSFUL",
    "WeightMeasurement",
    "WeightScaleFeature",
    "parse_weight_feature",
    "parse_weight_measurement",
    "to_reading",
]

UNSUCCESSFUL = 0xFFFF

_IMPERIAL = 0x01
_TIME_STAMP = 0x02
_USER_ID = 0x04
_BMI_HEIGHT = 0x08


def mass(raw: int, imperial: bool) -> float:
    """A Weight-Scale mass field (0.005 kg or 0.01 lb), exactly rounded."""
    return raw / 100 if imperial else raw * 5 / 1000


def height(raw: int, imperial: bool) -> float:
    """A height field (0.001 m or 0.1 in)."""
    return raw / 10 if imperial else raw / 1000


@dataclass(frozen=True, slots=True)
class WeightMeasurement:
    """One 0x2A9D value. Values are in the reported system: kg and m, or lb and in."""

    imperial: bool
    weight: float | None  # None: the scale reported "measurement unsuccessful" (0xFFFF)
    time_stamp: datetime | None = None
    user_id: int | None = None
    bmi: float | None = None
    height: float | None = None

    @property
    def weight_unit(self) -> Unit:
        return Unit.LB if self.imperial else Unit.KG

    @property
    def height_unit(self) -> Unit:
        return Unit.IN if self.imperial else Unit.M


# Weight Scale Feature resolution indices (WSS 1.0 §3.1): index -> (SI, imperial); other values reserved.
WEIGHT_RESOLUTIONS: dict[int, tuple[float, float]] = {
    1: (0.5, 1.0),
    2: (0.2, 0.5),
    3: (0.1, 0.2),
    4: (0.05, 0.1),
    5: (0.02, 0.05),
    6: (0.01, 0.02),
    7: (0.005, 0.01),
}
HEIGHT_RESOLUTIONS: dict[int, tuple[float, float]] = {1: (0.01, 1.0), 2: (0.005, 0.5), 3: (0.001, 0.1)}


@dataclass(frozen=True, slots=True)
class WeightScaleFeature:
    """Resolutions are (kg, lb) / (m, in); None = "not specified" (0) or a reserved index."""

    time_stamp: bool
    multiple_users: bool
    bmi: bool
    weight_resolution: tuple[float, float] | None
    height_resolution: tuple[float, float] | None


def parse_weight_measurement(data: bytes) -> WeightMeasurement:
    r = Reader(data, "weight measurement")
    flags = r.u8()
    imperial = bool(flags & _IMPERIAL)
    weight_raw = r.u16()
    time_stamp = r.date_time() if flags & _TIME_STAMP else None
    user_id = r.u8() if flags & _USER_ID else None
    bmi = h = None
    if flags & _BMI_HEIGHT:
        bmi, h = r.u16() / 10, height(r.u16(), imperial)
    r.end()
    weight = None if weight_raw == UNSUCCESSFUL else mass(weight_raw, imperial)
    return WeightMeasurement(imperial, weight, time_stamp, user_id, bmi, h)


def parse_weight_feature(data: bytes) -> WeightScaleFeature:
    r = Reader(data, "weight scale feature")
    bits = r.u32()
    r.end()
    return WeightScaleFeature(
        time_stamp=bool(bits & 0x1),
        multiple_users=bool(bits & 0x2),
        bmi=bool(bits & 0x4),
        weight_resolution=WEIGHT_RESOLUTIONS.get(bits >> 3 & 0xF),
        height_resolution=HEIGHT_RESOLUTIONS.get(bits >> 7 & 0x7),
    )


def to_reading(
    m: WeightMeasurement,
    device: DeviceIdentity,
    received_at: datetime,
    clock_offset: timedelta | None = None,
    raw: bytes = b"",
    *,
    simulated: bool = False,
) -> Reading:
    """A BODY_WEIGHT Reading: weight, plus BMI and height when the scale sent them."""
    if m.weight is None:
        weight = Measurement.missing(Metric.BODY_WEIGHT, m.weight_unit, Absent.UNSUCCESSFUL)
    else:
        weight = Measurement(Metric.BODY_WEIGHT, m.weight, m.weight_unit)
    measurements = [weight]
    if m.bmi is not None:
        measurements.append(Measurement(Metric.BMI, m.bmi, Unit.KG_PER_M2))
    if m.height is not None:
        measurements.append(Measurement(Metric.BODY_HEIGHT, m.height, m.height_unit))
    return Reading(
        kind=Kind.BODY_WEIGHT,
        measurements=tuple(measurements),
        device=device,
        received_at=received_at,
        device_time=m.time_stamp,
        clock_offset=clock_offset,
        user_slot=user_slot(m.user_id),
        raw=raw,
        simulated=simulated,
    )
