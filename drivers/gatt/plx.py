"""Pulse Oximeter Service 1.0 (0x1822): PLX Spot-Check 0x2A5E, PLX Continuous 0x2A5F, PLX Features 0x2A60.

PLXS 1.0 §3.1 / GSS "PLX Spot-Check Measurement" (indicate):

    flags uint8 | SpO2 SFLOAT % | PR SFLOAT bpm | time stamp Date Time (bit 0)
    | measurement status uint16 (bit 1) | device and sensor status uint24 (bit 2)
    | pulse amplitude index SFLOAT % (bit 3)

flags bit 4: "device clock is not set" (the time stamp is then not a time); bits 5-7 reserved.

PLXS 1.0 §3.2 / GSS "PLX Continuous Measurement" (notify):

    flags uint8 | SpO2PR-Normal (SpO2, PR SFLOAT) | SpO2PR-Fast (bit 0) | SpO2PR-Slow (bit 1)
    | measurement status uint16 (bit 2) | device and sensor status uint24 (bit 3) | PAI SFLOAT (bit 4)

PLXS 1.0 §3.3 / GSS "PLX Features" (read): supported features uint16 (bit 0 measurement status support
field present, 1 device and sensor status support field present, 2 spot-check measurement storage, 3
spot-check time stamp, 4 SpO2PR-Fast, 5 SpO2PR-Slow, 6 pulse amplitude index, 7 multiple bonds) | measurement
status support uint16 (bit 0) | device and sensor status support uint24 (bit 1).

Measurement Status bits 0-4 are reserved; 5 measurement ongoing, 6 early estimated data, 7 validated data,
8 fully qualified data, 9 data from measurement storage, 10 data for demonstration, 11 data for testing,
12 calibration ongoing, 13 measurement unavailable, 14 questionable measurement, 15 invalid measurement.
Device and Sensor Status bits 0-15 are listed in `DeviceStatus`; 16-23 reserved. Reserved bits are ignored,
trailing bytes raise `MalformedFrameError` (see blood_pressure.py).

Decisions in `to_reading`: a special value (NaN, NRes, INF) becomes a measurement without a number
(`Measurement.absent`, sent as dataAbsentReason like the other profiles' special values); "measurement
unavailable" makes every value absent as not performed, "invalid measurement" as unsuccessful (PHD IG
Measurement Status table: DAR not-performed / error); demonstration or test data is flagged `Status.TEST_DATA`
(withheld like control solution); each device and sensor status bit its own `Status` (see `_DEVICE_FLAGS`);
with "device clock is not set" the time stamp is dropped (the gateway's receive time stands in).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from drivers.gatt._common import bits_set
from drivers.gatt._wire import Reader
from drivers.gatt.sfloat import SFloat, measurement
from gateway.reading import Absent, DeviceIdentity, Kind, Measurement, Metric, Reading, Status, Unit

__all__ = [
    "DeviceStatus",
    "MeasurementStatus",
    "PlxContinuous",
    "PlxFeature",
    "PlxFeatures",
    "PlxSpotCheck",
    "parse_continuous",
    "parse_features",
    "parse_spot_check",
    "to_reading",
]


class MeasurementStatus(Enum):
    """PLX Measurement Status bits (PLXS 1.0 §3.1.1.3); value = bit number."""

    MEASUREMENT_ONGOING = 5
    EARLY_ESTIMATED_DATA = 6
    VALIDATED_DATA = 7
    FULLY_QUALIFIED_DATA = 8
    FROM_MEASUREMENT_STORAGE = 9
    FOR_DEMONSTRATION = 10
    FOR_TESTING = 11
    CALIBRATION_ONGOING = 12
    MEASUREMENT_UNAVAILABLE = 13
    QUESTIONABLE_MEASUREMENT = 14
    INVALID_MEASUREMENT = 15


class DeviceStatus(Enum):
    """PLX Device and Sensor Status bits (PLXS 1.0 §3.1.1.4); value = bit number."""

    EXTENDED_DISPLAY_UPDATE_ONGOING = 0
    EQUIPMENT_MALFUNCTION = 1
    SIGNAL_PROCESSING_IRREGULARITY = 2
    INADEQUATE_SIGNAL = 3
    POOR_SIGNAL = 4
    LOW_PERFUSION = 5
    ERRATIC_SIGNAL = 6
    NON_PULSATILE_SIGNAL = 7
    QUESTIONABLE_PULSE = 8
    SIGNAL_ANALYSIS_ONGOING = 9
    SENSOR_INTERFERENCE = 10
    SENSOR_UNCONNECTED_TO_USER = 11
    UNKNOWN_SENSOR_CONNECTED = 12
    SENSOR_DISPLACED = 13
    SENSOR_MALFUNCTIONING = 14
    SENSOR_DISCONNECTED = 15


class PlxFeature(Enum):
    """PLX Features, Supported Features bits (PLXS 1.0 §3.3); value = bit number."""

    MEASUREMENT_STATUS_SUPPORT = 0
    DEVICE_STATUS_SUPPORT = 1
    SPOT_CHECK_STORAGE = 2
    SPOT_CHECK_TIME_STAMP = 3
    SPO2PR_FAST = 4
    SPO2PR_SLOW = 5
    PULSE_AMPLITUDE_INDEX = 6
    MULTIPLE_BONDS = 7


# How the measurement status shows on a Reading (PHD IG STU 2, PhdBaseObservation notes, "Measurement Status":
# the 11073 Measurement-Status attribute is not a BITs observation; questionable, calibrating and early estimate
# become `interpretation`, demo / test data is not patient data (withheld), unavailable / invalid become
# dataAbsentReason in `to_reading`). Ongoing, validated, fully qualified and from-storage add nothing.
_MEASUREMENT_FLAGS: dict[MeasurementStatus, Status] = {
    MeasurementStatus.FOR_DEMONSTRATION: Status.TEST_DATA,
    MeasurementStatus.FOR_TESTING: Status.TEST_DATA,
    MeasurementStatus.QUESTIONABLE_MEASUREMENT: Status.QUESTIONABLE_MEASUREMENT,
    MeasurementStatus.CALIBRATION_ONGOING: Status.CALIBRATION_ONGOING,
    MeasurementStatus.EARLY_ESTIMATED_DATA: Status.EARLY_ESTIMATE,
}
# Every Device and Sensor Status bit is its own Status, sent as one bit of MDC_PULS_OXIM_DEV_STATUS (150604).
# The PLX field is the 11073-10404 device-and-sensor-status BITS with its bits numbered from the other end:
# PLX bit n (least significant first) is MDER bit 15 - n (PHD IG CodeSystem ASN1ToHL7: "bit 0 is the HIGH
# order bit"), e.g. PLX bit 15 "sensor disconnected" = 150604.0 sensor-disconnected, PLX bit 0 "extended
# display update ongoing" = 150604.15 device-extended-update. The sensor faults are withheld by the queue
# (gateway.reading.WITHHELD_STATUS).
_DEVICE_FLAGS: dict[DeviceStatus, Status] = {
    DeviceStatus.EXTENDED_DISPLAY_UPDATE_ONGOING: Status.PLX_EXTENDED_DISPLAY_UPDATE,
    DeviceStatus.EQUIPMENT_MALFUNCTION: Status.PLX_EQUIPMENT_MALFUNCTION,
    DeviceStatus.SIGNAL_PROCESSING_IRREGULARITY: Status.PLX_SIGNAL_PROCESSING_IRREGULARITY,
    DeviceStatus.INADEQUATE_SIGNAL: Status.PLX_SIGNAL_INADEQUATE,
    DeviceStatus.POOR_SIGNAL: Status.PLX_SIGNAL_POOR,
    DeviceStatus.LOW_PERFUSION: Status.LOW_PERFUSION,
    DeviceStatus.ERRATIC_SIGNAL: Status.PLX_SIGNAL_ERRATIC,
    DeviceStatus.NON_PULSATILE_SIGNAL: Status.PLX_SIGNAL_NON_PULSATILE,
    DeviceStatus.QUESTIONABLE_PULSE: Status.PLX_PULSE_QUESTIONABLE,
    DeviceStatus.SIGNAL_ANALYSIS_ONGOING: Status.PLX_SIGNAL_SEARCHING,
    DeviceStatus.SENSOR_INTERFERENCE: Status.PLX_SENSOR_INTERFERENCE,
    DeviceStatus.SENSOR_UNCONNECTED_TO_USER: Status.PLX_SENSOR_OFF,
    DeviceStatus.UNKNOWN_SENSOR_CONNECTED: Status.PLX_SENSOR_UNSUPPORTED,
    DeviceStatus.SENSOR_DISPLACED: Status.PLX_SENSOR_DISPLACED,
    DeviceStatus.SENSOR_MALFUNCTIONING: Status.PLX_SENSOR_MALFUNCTION,
    DeviceStatus.SENSOR_DISCONNECTED: Status.PLX_SENSOR_DISCONNECTED,
}


def _u24(r: Reader) -> int:
    return int.from_bytes(r.take(3), "little")


@dataclass(frozen=True, slots=True)
class PlxSpotCheck:
    """One 0x2A5E value as sent; status fields None when absent."""

    spo2: SFloat
    pulse_rate: SFloat
    time_stamp: datetime | None = None
    measurement_status: frozenset[MeasurementStatus] | None = None
    device_status: frozenset[DeviceStatus] | None = None
    pulse_amplitude_index: SFloat | None = None
    clock_not_set: bool = False

    @property
    def stored(self) -> bool:
        """The device says this came from its measurement storage (a RACP transfer)."""
        return MeasurementStatus.FROM_MEASUREMENT_STORAGE in (self.measurement_status or ())


@dataclass(frozen=True, slots=True)
class PlxContinuous:
    """One 0x2A5F value as sent; the fast and slow pairs are (SpO2, PR) when present."""

    spo2: SFloat
    pulse_rate: SFloat
    fast: tuple[SFloat, SFloat] | None = None
    slow: tuple[SFloat, SFloat] | None = None
    measurement_status: frozenset[MeasurementStatus] | None = None
    device_status: frozenset[DeviceStatus] | None = None
    pulse_amplitude_index: SFloat | None = None


@dataclass(frozen=True, slots=True)
class PlxFeatures:
    supported: frozenset[PlxFeature]
    measurement_status_support: frozenset[MeasurementStatus] | None = None
    device_status_support: frozenset[DeviceStatus] | None = None


def parse_spot_check(data: bytes) -> PlxSpotCheck:
    r = Reader(data, "plx spot-check measurement")
    flags = r.u8()
    spo2, pulse = r.sfloat(), r.sfloat()
    time_stamp = r.date_time() if flags & 0x01 else None
    mstatus = bits_set(r.u16(), MeasurementStatus) if flags & 0x02 else None
    dstatus = bits_set(_u24(r), DeviceStatus) if flags & 0x04 else None
    pai = r.sfloat() if flags & 0x08 else None
    r.end()
    return PlxSpotCheck(spo2, pulse, time_stamp, mstatus, dstatus, pai, bool(flags & 0x10))


def parse_continuous(data: bytes) -> PlxContinuous:
    r = Reader(data, "plx continuous measurement")
    flags = r.u8()
    spo2, pulse = r.sfloat(), r.sfloat()
    fast = (r.sfloat(), r.sfloat()) if flags & 0x01 else None
    slow = (r.sfloat(), r.sfloat()) if flags & 0x02 else None
    mstatus = bits_set(r.u16(), MeasurementStatus) if flags & 0x04 else None
    dstatus = bits_set(_u24(r), DeviceStatus) if flags & 0x08 else None
    pai = r.sfloat() if flags & 0x10 else None
    r.end()
    return PlxContinuous(spo2, pulse, fast, slow, mstatus, dstatus, pai)


def parse_features(data: bytes) -> PlxFeatures:
    r = Reader(data, "plx features")
    bits = r.u16()
    mstatus = bits_set(r.u16(), MeasurementStatus) if bits & 0x01 else None
    dstatus = bits_set(_u24(r), DeviceStatus) if bits & 0x02 else None
    r.end()
    return PlxFeatures(bits_set(bits, PlxFeature), mstatus, dstatus)


def to_reading(
    m: PlxSpotCheck | PlxContinuous,
    device: DeviceIdentity,
    received_at: datetime,
    clock_offset: timedelta | None = None,
    raw: bytes = b"",
    *,
    simulated: bool = False,
) -> Reading:
    """An OXYGEN_SATURATION Reading: SpO2, plus pulse rate and PAI when present (absent when special)."""
    mstatus = m.measurement_status or frozenset()
    failed: Absent | None = None
    if MeasurementStatus.INVALID_MEASUREMENT in mstatus:
        failed = Absent.UNSUCCESSFUL
    elif MeasurementStatus.MEASUREMENT_UNAVAILABLE in mstatus:
        failed = Absent.NOT_PERFORMED

    def value(metric: Metric, v: SFloat, unit: Unit) -> Measurement:
        if failed is not None:
            return Measurement.missing(metric, unit, failed)
        return measurement(metric, v, unit)

    measurements = [
        value(Metric.SPO2, m.spo2, Unit.PERCENT),
        value(Metric.PULSE_RATE_OXIMETRY, m.pulse_rate, Unit.PER_MIN),
    ]
    if m.pulse_amplitude_index is not None:
        measurements.append(value(Metric.PULSE_AMPLITUDE_INDEX, m.pulse_amplitude_index, Unit.PERCENT))
    status = {_MEASUREMENT_FLAGS[s] for s in mstatus if s in _MEASUREMENT_FLAGS}
    status.update(_DEVICE_FLAGS[s] for s in (m.device_status or ()) if s in _DEVICE_FLAGS)
    time_stamp = None
    if isinstance(m, PlxSpotCheck) and not m.clock_not_set:
        time_stamp = m.time_stamp
    return Reading(
        kind=Kind.OXYGEN_SATURATION,
        measurements=tuple(measurements),
        device=device,
        received_at=received_at,
        device_time=time_stamp,
        clock_offset=clock_offset if time_stamp is not None else None,
        status=frozenset(status),
        raw=raw,
        simulated=simulated,
    )
