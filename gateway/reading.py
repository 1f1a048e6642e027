"""The one neutral type between drivers and the rest of the gateway.

Drivers know wire formats; the queue, FHIR mapping and forwarders know only `Reading`. Values are
held twice: in one canonical unit per quantity (so the core can compare and reason) and as the device
reported them (so FHIR output keeps the device's own unit where the profiles want it).
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum

__all__ = [
    "CANONICAL_UNIT",
    "WITHHELD_STATUS",
    "Absent",
    "DeviceIdentity",
    "Kind",
    "Measurement",
    "Metric",
    "Reading",
    "Status",
    "Unit",
]


class Kind(StrEnum):
    """What a reading is about. New kinds are added here and in `gateway.fhir.codes`."""

    BLOOD_PRESSURE = "blood-pressure"
    PULSE_RATE = "pulse-rate"
    BODY_WEIGHT = "body-weight"
    BLOOD_GLUCOSE = "blood-glucose"
    BODY_TEMPERATURE = "body-temperature"
    OXYGEN_SATURATION = "oxygen-saturation"
    BODY_COMPOSITION = "body-composition"


class Metric(StrEnum):
    """One measured quantity inside a reading (a BP reading carries several)."""

    SYSTOLIC = "systolic"
    DIASTOLIC = "diastolic"
    MEAN_ARTERIAL = "mean-arterial"
    PULSE_RATE = "pulse-rate"
    BODY_WEIGHT = "body-weight"
    BODY_HEIGHT = "body-height"
    BMI = "bmi"
    GLUCOSE = "glucose"
    # Body temperature, one metric per measurement site (Health Thermometer Temperature Type, HTS 1.0 §3.2),
    # so the site travels with the value without widening Reading.
    BODY_TEMPERATURE = "body-temperature"
    TEMPERATURE_AXILLA = "body-temperature-axilla"
    TEMPERATURE_EAR = "body-temperature-ear"
    TEMPERATURE_FINGER = "body-temperature-finger"
    TEMPERATURE_GIT = "body-temperature-gastrointestinal"
    TEMPERATURE_ORAL = "body-temperature-oral"
    TEMPERATURE_RECTAL = "body-temperature-rectal"
    TEMPERATURE_TOE = "body-temperature-toe"
    TEMPERATURE_TYMPANUM = "body-temperature-tympanum"
    SPO2 = "spo2"
    PULSE_RATE_OXIMETRY = "pulse-rate-oximetry"  # pulse rate as a pulse oximeter derives it
    PULSE_AMPLITUDE_INDEX = "pulse-amplitude-index"
    BODY_FAT = "body-fat"
    MUSCLE_PERCENT = "muscle-percent"
    MUSCLE_MASS = "muscle-mass"
    FAT_FREE_MASS = "fat-free-mass"
    SOFT_LEAN_MASS = "soft-lean-mass"
    BODY_WATER_MASS = "body-water-mass"
    IMPEDANCE = "impedance"
    BASAL_METABOLISM = "basal-metabolism"


class Unit(StrEnum):
    """UCUM codes, so the FHIR layer can use the value as it is."""

    MMHG = "mm[Hg]"
    KPA = "kPa"
    PER_MIN = "/min"
    KG = "kg"
    LB = "[lb_av]"
    M = "m"
    IN = "[in_i]"
    KG_PER_M2 = "kg/m2"
    MG_DL = "mg/dL"
    MMOL_L = "mmol/L"
    CEL = "Cel"
    DEG_F = "[degF]"
    PERCENT = "%"
    OHM = "Ohm"
    KJ = "kJ"


CANONICAL_UNIT: dict[Metric, Unit] = {
    Metric.SYSTOLIC: Unit.MMHG,
    Metric.DIASTOLIC: Unit.MMHG,
    Metric.MEAN_ARTERIAL: Unit.MMHG,
    Metric.PULSE_RATE: Unit.PER_MIN,
    Metric.BODY_WEIGHT: Unit.KG,
    Metric.BODY_HEIGHT: Unit.M,
    Metric.BMI: Unit.KG_PER_M2,
    Metric.GLUCOSE: Unit.MG_DL,
    **{m: Unit.CEL for m in Metric if m.value.startswith("body-temperature")},
    Metric.SPO2: Unit.PERCENT,
    Metric.PULSE_RATE_OXIMETRY: Unit.PER_MIN,
    Metric.PULSE_AMPLITUDE_INDEX: Unit.PERCENT,
    Metric.BODY_FAT: Unit.PERCENT,
    Metric.MUSCLE_PERCENT: Unit.PERCENT,
    Metric.MUSCLE_MASS: Unit.KG,
    Metric.FAT_FREE_MASS: Unit.KG,
    Metric.SOFT_LEAN_MASS: Unit.KG,
    Metric.BODY_WATER_MASS: Unit.KG,
    Metric.IMPEDANCE: Unit.OHM,
    Metric.BASAL_METABOLISM: Unit.KJ,
}

# Factors into the canonical unit. Glucose mmol/L -> mg/dL uses the molar mass of glucose (180.156 g/mol).
_TO_CANONICAL: dict[tuple[Unit, Unit], float] = {
    (Unit.MMHG, Unit.MMHG): 1.0,
    (Unit.KPA, Unit.MMHG): 1000.0 / 133.322387415,
    (Unit.PER_MIN, Unit.PER_MIN): 1.0,
    (Unit.KG, Unit.KG): 1.0,
    (Unit.LB, Unit.KG): 0.45359237,
    (Unit.M, Unit.M): 1.0,
    (Unit.IN, Unit.M): 0.0254,
    (Unit.KG_PER_M2, Unit.KG_PER_M2): 1.0,
    (Unit.MG_DL, Unit.MG_DL): 1.0,
    (Unit.MMOL_L, Unit.MG_DL): 18.0156,
    (Unit.CEL, Unit.CEL): 1.0,
    (Unit.DEG_F, Unit.CEL): 5.0 / 9.0,
    (Unit.PERCENT, Unit.PERCENT): 1.0,
    (Unit.OHM, Unit.OHM): 1.0,
    (Unit.KJ, Unit.KJ): 1.0,
}
# Units whose zero differs from the canonical one: value = (reported + offset) * factor.
_OFFSET: dict[tuple[Unit, Unit], float] = {(Unit.DEG_F, Unit.CEL): -32.0}


class Status(StrEnum):
    """Measurement status a device reports; carried to FHIR, never silently dropped."""

    BODY_MOVEMENT = "body-movement"
    CUFF_LOOSE = "cuff-loose"
    IRREGULAR_PULSE = "irregular-pulse"
    PULSE_RATE_OUT_OF_RANGE = "pulse-rate-out-of-range"  # direction unknown (readings queued by 0.1)
    PULSE_RATE_ABOVE_RANGE = "pulse-rate-above-range"
    PULSE_RATE_BELOW_RANGE = "pulse-rate-below-range"
    IMPROPER_POSITION = "improper-position"
    CONTROL_SOLUTION = "control-solution"
    SENSOR_FAULT = "sensor-fault"
    DEVICE_ANNUNCIATION = "device-annunciation"  # one of the three below (readings queued by 0.1)
    BATTERY_LOW = "battery-low"
    DEVICE_FAULT = "device-fault"
    TIME_FAULT = "time-fault"
    TEST_DATA = "test-data"  # the device says the value is for demonstration or testing (PLX status)
    QUESTIONABLE_MEASUREMENT = "questionable-measurement"  # a measurement status (FHIR `interpretation`)
    CALIBRATION_ONGOING = "calibration-ongoing"  # likewise (PLX measurement status bit 12)
    EARLY_ESTIMATE = "early-estimate"  # likewise, and the value is preliminary (PLX measurement status bit 6)
    SIGNAL_QUALITY = "signal-quality"  # several PLX signal bits folded (readings queued before the bits were kept)
    # PLX Device and Sensor Status (PLXS 1.0 §3.1.1.4), one member per bit; the FHIR layer codes each as a bit
    # of MDC_PULS_OXIM_DEV_STATUS (gateway.fhir.codes.STATUS_BITS).
    LOW_PERFUSION = "low-perfusion"
    PLX_SENSOR_DISCONNECTED = "plx-sensor-disconnected"
    PLX_SENSOR_MALFUNCTION = "plx-sensor-malfunction"
    PLX_SENSOR_DISPLACED = "plx-sensor-displaced"
    PLX_SENSOR_UNSUPPORTED = "plx-sensor-unsupported"  # "unknown sensor connected"
    PLX_SENSOR_OFF = "plx-sensor-off"  # "sensor unconnected to user"
    PLX_SENSOR_INTERFERENCE = "plx-sensor-interference"
    PLX_SIGNAL_SEARCHING = "plx-signal-searching"  # "signal analysis ongoing"
    PLX_PULSE_QUESTIONABLE = "plx-pulse-questionable"
    PLX_SIGNAL_NON_PULSATILE = "plx-signal-non-pulsatile"
    PLX_SIGNAL_ERRATIC = "plx-signal-erratic"
    PLX_SIGNAL_POOR = "plx-signal-poor"
    PLX_SIGNAL_INADEQUATE = "plx-signal-inadequate"
    PLX_SIGNAL_PROCESSING_IRREGULARITY = "plx-signal-processing-irregularity"
    PLX_EQUIPMENT_MALFUNCTION = "plx-equipment-malfunction"
    PLX_EXTENDED_DISPLAY_UPDATE = "plx-extended-display-update"
    VALUE_ABOVE_RANGE = "value-above-range"
    VALUE_BELOW_RANGE = "value-below-range"


# Not sent as patient data: kept encrypted for review (queue state WITHHELD). A control-solution test or a
# device's own demonstration/test value is not the patient's; a value measured through a faulty, displaced or
# disconnected sensor is not trusted.
WITHHELD_STATUS: frozenset[Status] = frozenset(
    {
        Status.CONTROL_SOLUTION,
        Status.TEST_DATA,
        Status.SENSOR_FAULT,
        Status.PLX_SENSOR_DISCONNECTED,
        Status.PLX_SENSOR_MALFUNCTION,
        Status.PLX_SENSOR_DISPLACED,
        Status.PLX_SENSOR_UNSUPPORTED,
        Status.PLX_SENSOR_OFF,
        Status.PLX_EQUIPMENT_MALFUNCTION,
    }
)

_NAN = float("nan")


class Absent(StrEnum):
    """Why a measurement has no number: an IEEE 11073-20601 special value (§F.8) or a failed measurement.

    Kept, not dropped: the FHIR layer writes it as `dataAbsentReason` (PHD IG PhdNumericObservation).
    """

    NOT_A_NUMBER = "nan"
    NOT_AT_RESOLUTION = "nres"
    POSITIVE_INFINITY = "+inf"
    NEGATIVE_INFINITY = "-inf"
    RESERVED = "reserved"
    UNSUCCESSFUL = "unsuccessful"  # the device says the measurement failed (e.g. Weight 0xFFFF)
    NOT_PERFORMED = "not-performed"  # the device says no measurement is available (PLX "measurement unavailable")


@dataclass(frozen=True, slots=True)
class Measurement:
    """A value as the device reported it; `value` / `unit` give it in the canonical unit.

    `absent` set: the device sent no number (`reported_value` is then NaN and means nothing).
    """

    metric: Metric
    reported_value: float
    reported_unit: Unit
    absent: Absent | None = None

    @classmethod
    def missing(cls, metric: Metric, unit: Unit, why: Absent) -> Measurement:
        """No number: one shared NaN object, so equal measurements compare equal (NaN != NaN otherwise)."""
        return cls(metric, _NAN, unit, why)

    @property
    def unit(self) -> Unit:
        return CANONICAL_UNIT[self.metric]

    @property
    def value(self) -> float:
        try:
            factor = _TO_CANONICAL[(self.reported_unit, self.unit)]
        except KeyError:
            raise ValueError(f"{self.reported_unit} is not a unit of {self.metric}") from None
        return (self.reported_value + _OFFSET.get((self.reported_unit, self.unit), 0.0)) * factor


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """Who measured. `key` is stable across transports so bindings survive re-pairing a cable."""

    driver: str
    address: str | None = None  # Bluetooth address or serial port path
    serial_number: str | None = None
    system_id: str | None = None  # Bluetooth System ID (EUI-64) as 16 hex digits
    manufacturer: str | None = None
    model: str | None = None
    firmware: str | None = None

    @property
    def key(self) -> str:
        """The strongest identity known: System ID, then serial number, then transport address."""
        if self.system_id:
            return f"eui64:{self.system_id.lower()}"
        if self.serial_number:
            return f"serial:{self.manufacturer or self.driver}:{self.serial_number}"
        if self.address:
            return f"addr:{self.address.upper()}"
        raise ValueError("device identity has neither System ID, serial number nor address")


@dataclass(frozen=True, slots=True)
class Reading:
    """One measurement event from one device, as received, before any patient is known.

    `device_time` is the device's own (usually zone-less) clock; `clock_offset` is how far that clock
    was ahead of the gateway's when last checked, so consumers can correct it. `received_at` is the
    gateway's UTC receive time. `sequence` is the device's record number where it has one.
    """

    kind: Kind
    measurements: tuple[Measurement, ...]
    device: DeviceIdentity
    received_at: datetime
    device_time: datetime | None = None
    clock_offset: timedelta | None = None
    user_slot: int | None = None
    sequence: int | None = None
    status: frozenset[Status] = field(default_factory=frozenset)
    raw: bytes = b""
    simulated: bool = False

    def __post_init__(self) -> None:
        if self.received_at.tzinfo is None:
            raise ValueError("received_at must be timezone-aware")
        if not self.measurements:
            raise ValueError("a reading needs at least one measurement")

    def measurement(self, metric: Metric) -> Measurement | None:
        return next((m for m in self.measurements if m.metric == metric), None)

    @property
    def idempotency_key(self) -> str:
        """Same device event -> same key, however often it is read, so redelivery makes no duplicates.

        Built from the device identity, user slot, kind, the device's own time or record number and the
        reported values. Receive time only counts when the device gives neither time nor record number,
        because then nothing else tells two equal readings apart.
        """
        parts = [self.device.key, str(self.user_slot), self.kind.value]
        if self.sequence is not None:
            parts.append(f"seq={self.sequence}")
        if self.device_time is not None:
            parts.append(f"t={self.device_time.isoformat()}")
        if self.sequence is None and self.device_time is None:
            parts.append(f"rx={self.received_at.astimezone(UTC).isoformat()}")
        # float(): 104 and 104.0 are one value; the queue's codec stores floats, and the key must be the same
        # before and after a round trip through it (duplicate look-up, `keys rotate --retire` re-tagging).
        parts.extend(
            f"{m.metric.value}={float(m.reported_value)!r}{m.reported_unit.value}"
            if m.absent is None
            else f"{m.metric.value}=absent:{m.absent.value}{m.reported_unit.value}"
            for m in self.measurements
        )
        return hashlib.sha256("|".join(parts).encode()).hexdigest()

    def effective_time(self, local_tz: tzinfo | None = None) -> datetime:
        """When it was measured, on the gateway's clock: device time corrected by the known offset.

        A zone-less device time is taken in `local_tz` (a tzinfo; the gateway's zone when None).
        """
        if self.device_time is None:
            return self.received_at
        t = self.device_time
        if t.tzinfo is None:
            t = t.replace(tzinfo=local_tz) if local_tz is not None else t.astimezone()
        if self.clock_offset is not None:
            # A stamp at the calendar's edge (9999-12-31) stays as given; gateway.clockcheck flags it.
            with contextlib.suppress(OverflowError):
                t = t - self.clock_offset
        return t
