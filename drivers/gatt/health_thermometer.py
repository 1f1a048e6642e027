"""Health Thermometer Service 1.0: Temperature Measurement (0x2A1C, indicate), Temperature Type (0x2A1D).

HTS 1.0 §3.1 / GSS "Temperature Measurement":

    flags uint8 | temperature FLOAT (IEEE 11073 32-bit) | time stamp Date Time (bit 1)
    | temperature type uint8 (bit 2)

flags bit 0: 0 = Celsius, 1 = Fahrenheit; bits 3-7 reserved (ignored; trailing bytes still rejected, see
blood_pressure.py). HTS 1.0 §3.2 / GSS "Temperature Type": uint8 1 armpit, 2 body (general), 3 ear (usually
earlobe), 4 finger, 5 gastro-intestinal tract, 6 mouth, 7 rectum, 8 toe, 9 tympanum (ear drum); 0 and
10-255 reserved. The type is either in each measurement or, for a thermometer measuring one site only, in
the static Temperature Type characteristic (HTS 1.0 §3.2: never both). Intermediate Temperature (0x2A1E)
carries the same layout while a measurement is in progress; the gateway does not subscribe to it.

A temperature that is an IEEE 11073 special value (NaN, NRes, INF) becomes a measurement without a number
(`Measurement.absent`), sent as FHIR dataAbsentReason like every other special value (drivers/gatt/sfloat.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum

from drivers.gatt._wire import Reader
from drivers.gatt.sfloat import SFloat, decode_float, measurement
from gateway.reading import DeviceIdentity, Kind, Metric, Reading, Unit

__all__ = [
    "SITE_METRIC",
    "TemperatureMeasurement",
    "TemperatureType",
    "parse_temperature_measurement",
    "parse_temperature_type",
    "to_reading",
]

_FAHRENHEIT = 0x01
_TIME_STAMP = 0x02
_TYPE = 0x04


class TemperatureType(IntEnum):
    """Temperature Type values (HTS 1.0 §3.2, GSS "Temperature Type")."""

    ARMPIT = 1
    BODY = 2
    EAR = 3
    FINGER = 4
    GASTROINTESTINAL = 5
    MOUTH = 6
    RECTUM = 7
    TOE = 8
    TYMPANUM = 9


#: Where a reading says it was taken: one Metric per site (None / reserved -> unspecified body site).
SITE_METRIC: dict[TemperatureType | None, Metric] = {
    None: Metric.BODY_TEMPERATURE,
    TemperatureType.BODY: Metric.BODY_TEMPERATURE,
    TemperatureType.ARMPIT: Metric.TEMPERATURE_AXILLA,
    TemperatureType.EAR: Metric.TEMPERATURE_EAR,
    TemperatureType.FINGER: Metric.TEMPERATURE_FINGER,
    TemperatureType.GASTROINTESTINAL: Metric.TEMPERATURE_GIT,
    TemperatureType.MOUTH: Metric.TEMPERATURE_ORAL,
    TemperatureType.RECTUM: Metric.TEMPERATURE_RECTAL,
    TemperatureType.TOE: Metric.TEMPERATURE_TOE,
    TemperatureType.TYMPANUM: Metric.TEMPERATURE_TYMPANUM,
}


def _type(value: int) -> TemperatureType | None:
    try:
        return TemperatureType(value)
    except ValueError:
        return None  # reserved: read as "site not specified", never guessed


@dataclass(frozen=True, slots=True)
class TemperatureMeasurement:
    """One 0x2A1C value as sent; `temperature_type` None when absent or reserved."""

    unit: Unit  # Unit.CEL or Unit.DEG_F
    temperature: SFloat
    time_stamp: datetime | None = None
    temperature_type: TemperatureType | None = None


def parse_temperature_measurement(data: bytes) -> TemperatureMeasurement:
    r = Reader(data, "temperature measurement")
    flags = r.u8()
    unit = Unit.DEG_F if flags & _FAHRENHEIT else Unit.CEL
    temperature = decode_float(r.u32())
    time_stamp = r.date_time() if flags & _TIME_STAMP else None
    kind = _type(r.u8()) if flags & _TYPE else None
    r.end()
    return TemperatureMeasurement(unit, temperature, time_stamp, kind)


def parse_temperature_type(data: bytes) -> TemperatureType | None:
    """The static Temperature Type characteristic (0x2A1D); None for a reserved value."""
    r = Reader(data, "temperature type")
    value = r.u8()
    r.end()
    return _type(value)


def to_reading(
    m: TemperatureMeasurement,
    device: DeviceIdentity,
    received_at: datetime,
    clock_offset: timedelta | None = None,
    raw: bytes = b"",
    *,
    site: TemperatureType | None = None,
    simulated: bool = False,
) -> Reading:
    """A BODY_TEMPERATURE Reading in the device's unit; the measurement's own type wins over `site` (the
    static Temperature Type read at connect)."""
    metric = SITE_METRIC[m.temperature_type if m.temperature_type is not None else site]
    return Reading(
        kind=Kind.BODY_TEMPERATURE,
        measurements=(measurement(metric, m.temperature, m.unit),),
        device=device,
        received_at=received_at,
        device_time=m.time_stamp,
        clock_offset=clock_offset,
        raw=raw,
        simulated=simulated,
    )
