"""Glucose Service 1.0: Glucose Measurement (0x2A18), Measurement Context (0x2A34), Feature (0x2A51).

Glucose Measurement (GLS 1.0 §3.1 / GSS "Glucose Measurement"):

    flags uint8 | sequence number uint16 | base time Date Time | time offset sint16 minutes (bit 0)
    | concentration SFLOAT + type/sample location uint8 (bit 1) | sensor status annunciation uint16 (bit 3)

flags bit 2: concentration unit 0 = kg/L, 1 = mol/L; bit 4: a context characteristic follows; 5-7
reserved. We report concentration as the clinic reads it, without rounding: kg/L * 10^5 = mg/dL and
mol/L * 10^3 = mmol/L (done as a power-of-ten shift of the SFLOAT exponent). Type is the low nibble,
sample location the high nibble of their byte; reserved nibble values parse to None.

Glucose Measurement Context (GLS 1.0 §3.2 / GSS "Glucose Measurement Context"):

    flags uint8 | sequence number uint16 | extended flags uint8 (bit 7)
    | carbohydrate id uint8 + carbohydrate SFLOAT kg (bit 0) | meal uint8 (bit 1)
    | tester/health uint8 (bit 2: tester low nibble, health high nibble)
    | exercise duration uint16 s + intensity uint8 % (bit 3)
    | medication id uint8 + medication SFLOAT (bit 4; unit kg or, when bit 5, litres) | HbA1c SFLOAT % (bit 6)

Reserved bits are ignored; trailing bytes raise `MalformedFrameError` (see blood_pressure.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum, IntEnum
from typing import TypeVar

from drivers.gatt._common import bits_set
from drivers.gatt._wire import Reader
from drivers.gatt.errors import NoValueError, OrphanContextError
from drivers.gatt.sfloat import SFloat, measurement
from gateway.reading import DeviceIdentity, Kind, Metric, Reading, Status, Unit

__all__ = [
    "CarbohydrateId",
    "GlucoseContext",
    "GlucoseFeature",
    "GlucoseMeasurement",
    "GlucoseRecord",
    "GlucoseRecordJoiner",
    "Health",
    "Meal",
    "MedicationId",
    "MedicationUnit",
    "SampleLocation",
    "SampleType",
    "SensorStatus",
    "Tester",
    "parse_glucose_context",
    "parse_glucose_feature",
    "parse_glucose_measurement",
    "to_reading",
]


class SampleType(IntEnum):
    """Type nibble (GLS 1.0 §3.1); 0 and 11-15 reserved."""

    CAPILLARY_WHOLE_BLOOD = 1
    CAPILLARY_PLASMA = 2
    VENOUS_WHOLE_BLOOD = 3
    VENOUS_PLASMA = 4
    ARTERIAL_WHOLE_BLOOD = 5
    ARTERIAL_PLASMA = 6
    UNDETERMINED_WHOLE_BLOOD = 7
    UNDETERMINED_PLASMA = 8
    INTERSTITIAL_FLUID = 9
    CONTROL_SOLUTION = 10


class SampleLocation(IntEnum):
    """Sample Location nibble (GLS 1.0 §3.1); 0 and 5-14 reserved."""

    FINGER = 1
    ALTERNATE_SITE_TEST = 2
    EARLOBE = 3
    CONTROL_SOLUTION = 4
    NOT_AVAILABLE = 15


class SensorStatus(Enum):
    """Sensor Status Annunciation bits (GLS 1.0 §3.1); value = bit number; 12-15 reserved (ignored)."""

    BATTERY_LOW = 0
    SENSOR_MALFUNCTION = 1
    SAMPLE_SIZE_INSUFFICIENT = 2
    STRIP_INSERTION_ERROR = 3
    STRIP_TYPE_INCORRECT = 4
    RESULT_TOO_HIGH = 5
    RESULT_TOO_LOW = 6
    TEMPERATURE_TOO_HIGH = 7
    TEMPERATURE_TOO_LOW = 8
    READ_INTERRUPTED = 9
    GENERAL_DEVICE_FAULT = 10
    TIME_FAULT = 11


# How an annunciation shows on a Reading (so it is flagged, kept, and not sent as plain patient data).
ANNUNCIATION_STATUS: dict[SensorStatus, Status] = {
    SensorStatus.BATTERY_LOW: Status.BATTERY_LOW,
    SensorStatus.SENSOR_MALFUNCTION: Status.SENSOR_FAULT,
    SensorStatus.SAMPLE_SIZE_INSUFFICIENT: Status.SENSOR_FAULT,
    SensorStatus.STRIP_INSERTION_ERROR: Status.SENSOR_FAULT,
    SensorStatus.STRIP_TYPE_INCORRECT: Status.SENSOR_FAULT,
    SensorStatus.RESULT_TOO_HIGH: Status.VALUE_ABOVE_RANGE,
    SensorStatus.RESULT_TOO_LOW: Status.VALUE_BELOW_RANGE,
    SensorStatus.TEMPERATURE_TOO_HIGH: Status.SENSOR_FAULT,
    SensorStatus.TEMPERATURE_TOO_LOW: Status.SENSOR_FAULT,
    SensorStatus.READ_INTERRUPTED: Status.SENSOR_FAULT,
    SensorStatus.GENERAL_DEVICE_FAULT: Status.DEVICE_FAULT,
    SensorStatus.TIME_FAULT: Status.TIME_FAULT,
}


class GlucoseFeature(Enum):
    """Glucose Feature bits (GLS 1.0 §3.3); value = bit number; 11-15 reserved (ignored)."""

    LOW_BATTERY_DETECTION = 0
    SENSOR_MALFUNCTION_DETECTION = 1
    SENSOR_SAMPLE_SIZE = 2
    SENSOR_STRIP_INSERTION_ERROR_DETECTION = 3
    SENSOR_STRIP_TYPE_ERROR_DETECTION = 4
    SENSOR_RESULT_HIGH_LOW_DETECTION = 5
    SENSOR_TEMPERATURE_HIGH_LOW_DETECTION = 6
    SENSOR_READ_INTERRUPT_DETECTION = 7
    GENERAL_DEVICE_FAULT = 8
    TIME_FAULT = 9
    MULTIPLE_BOND = 10


class CarbohydrateId(IntEnum):
    BREAKFAST = 1
    LUNCH = 2
    DINNER = 3
    SNACK = 4
    DRINK = 5
    SUPPER = 6
    BRUNCH = 7


class Meal(IntEnum):
    PREPRANDIAL = 1
    POSTPRANDIAL = 2
    FASTING = 3
    CASUAL = 4
    BEDTIME = 5


class Tester(IntEnum):
    SELF = 1
    HEALTH_CARE_PROFESSIONAL = 2
    LAB_TEST = 3
    NOT_AVAILABLE = 15


class Health(IntEnum):
    MINOR_HEALTH_ISSUES = 1
    MAJOR_HEALTH_ISSUES = 2
    DURING_MENSES = 3
    UNDER_STRESS = 4
    NO_HEALTH_ISSUES = 5
    NOT_AVAILABLE = 15


class MedicationId(IntEnum):
    RAPID_ACTING_INSULIN = 1
    SHORT_ACTING_INSULIN = 2
    INTERMEDIATE_ACTING_INSULIN = 3
    LONG_ACTING_INSULIN = 4
    PRE_MIXED_INSULIN = 5


class MedicationUnit(Enum):
    KILOGRAMS = "kg"
    LITERS = "L"


_E = TypeVar("_E", bound=IntEnum)


def _enum(cls: type[_E], value: int) -> _E | None:
    """The member, or None for a reserved value (kept out of the model rather than invented)."""
    try:
        return cls(value)
    except ValueError:
        return None


_M_TIME_OFFSET = 0x01
_M_CONCENTRATION = 0x02
_M_MOL_PER_L = 0x04
_M_SENSOR_STATUS = 0x08
_M_CONTEXT_FOLLOWS = 0x10


@dataclass(frozen=True, slots=True)
class GlucoseMeasurement:
    """One 0x2A18 value. `concentration` is in `unit` (mg/dL or mmol/L) or None when the meter sent none
    (flags bit 1 clear); `base_time` is None when the meter's date is unknown."""

    sequence: int
    base_time: datetime | None
    time_offset_minutes: int | None = None
    concentration: SFloat | None = None
    unit: Unit | None = None
    sample_type: SampleType | None = None
    sample_location: SampleLocation | None = None
    sensor_status: frozenset[SensorStatus] = frozenset()
    context_follows: bool = False

    @property
    def time(self) -> datetime | None:
        """The measurement time on the meter's clock: base time + time offset (GLS 1.0 §3.1)."""
        if self.base_time is None:
            return None
        return self.base_time + timedelta(minutes=self.time_offset_minutes or 0)

    @property
    def is_control_solution(self) -> bool:
        return (
            self.sample_type is SampleType.CONTROL_SOLUTION or self.sample_location is SampleLocation.CONTROL_SOLUTION
        )


def parse_glucose_measurement(data: bytes) -> GlucoseMeasurement:
    r = Reader(data, "glucose measurement")
    flags = r.u8()
    sequence = r.u16()
    base_time = r.date_time()
    offset = r.s16() if flags & _M_TIME_OFFSET else None
    concentration: SFloat | None = None
    unit = sample_type = sample_location = None
    if flags & _M_CONCENTRATION:
        if flags & _M_MOL_PER_L:
            concentration, unit = r.sfloat(3), Unit.MMOL_L  # mol/L -> mmol/L
        else:
            concentration, unit = r.sfloat(5), Unit.MG_DL  # kg/L -> mg/dL
        type_location = r.u8()
        sample_type = _enum(SampleType, type_location & 0x0F)
        sample_location = _enum(SampleLocation, type_location >> 4)
    status = bits_set(r.u16(), SensorStatus) if flags & _M_SENSOR_STATUS else frozenset()
    r.end()
    return GlucoseMeasurement(
        sequence,
        base_time,
        offset,
        concentration,
        unit,
        sample_type,
        sample_location,
        status,
        bool(flags & _M_CONTEXT_FOLLOWS),
    )


_C_CARBOHYDRATE = 0x01
_C_MEAL = 0x02
_C_TESTER_HEALTH = 0x04
_C_EXERCISE = 0x08
_C_MEDICATION = 0x10
_C_MEDICATION_LITERS = 0x20
_C_HBA1C = 0x40
_C_EXTENDED_FLAGS = 0x80


@dataclass(frozen=True, slots=True)
class GlucoseContext:
    """One 0x2A34 value. Carbohydrate in grams (the wire's kg shifted by 10^3), medication in the
    reported unit (kg or L), HbA1c in percent. Reserved enumeration values parse to None."""

    sequence: int
    extended_flags: int | None = None
    carbohydrate_id: CarbohydrateId | None = None
    carbohydrate_grams: SFloat | None = None
    meal: Meal | None = None
    tester: Tester | None = None
    health: Health | None = None
    exercise_duration_s: int | None = None  # 65535 = overrun (GLS 1.0 §3.2)
    exercise_intensity_percent: int | None = None
    medication_id: MedicationId | None = None
    medication: SFloat | None = None
    medication_unit: MedicationUnit | None = None
    hba1c_percent: SFloat | None = None


def parse_glucose_context(data: bytes) -> GlucoseContext:
    r = Reader(data, "glucose measurement context")
    flags = r.u8()
    sequence = r.u16()
    extended = r.u8() if flags & _C_EXTENDED_FLAGS else None
    carb_id = carb = meal = tester = health = duration = intensity = med_id = med = med_unit = hba1c = None
    if flags & _C_CARBOHYDRATE:
        carb_id = _enum(CarbohydrateId, r.u8())
        carb = r.sfloat(3)  # kg -> g
    if flags & _C_MEAL:
        meal = _enum(Meal, r.u8())
    if flags & _C_TESTER_HEALTH:
        tester_health = r.u8()
        tester = _enum(Tester, tester_health & 0x0F)
        health = _enum(Health, tester_health >> 4)
    if flags & _C_EXERCISE:
        duration, intensity = r.u16(), r.u8()
    if flags & _C_MEDICATION:
        med_id = _enum(MedicationId, r.u8())
        med = r.sfloat()
        med_unit = MedicationUnit.LITERS if flags & _C_MEDICATION_LITERS else MedicationUnit.KILOGRAMS
    if flags & _C_HBA1C:
        hba1c = r.sfloat()
    r.end()
    return GlucoseContext(
        sequence,
        extended,
        carb_id,
        carb,
        meal,
        tester,
        health,
        duration,
        intensity,
        med_id,
        med,
        med_unit,
        hba1c,
    )


def parse_glucose_feature(data: bytes) -> frozenset[GlucoseFeature]:
    r = Reader(data, "glucose feature")
    bits = r.u16()
    r.end()
    return bits_set(bits, GlucoseFeature)


@dataclass(frozen=True, slots=True)
class GlucoseRecord:
    """A measurement with its context (when the meter sent one) and the raw frames they came from."""

    measurement: GlucoseMeasurement
    context: GlucoseContext | None = None
    raw_measurement: bytes = b""
    raw_context: bytes = b""

    @property
    def sequence(self) -> int:
        return self.measurement.sequence

    @property
    def raw(self) -> bytes:
        """Both frames, measurement first, as kept on the Reading."""
        return self.raw_measurement + self.raw_context


class GlucoseRecordJoiner:
    """Joins measurements and contexts by sequence number, sans-I/O; records come out in arrival order.

    Glucose Service 1.0 §3.1: when flags bit 4 is set the context for the same sequence number follows the
    measurement. A measurement waiting for its context is released when the context arrives, when
    another measurement arrives (the meter broke its promise: we keep the value without context), or on
    `flush()` (end of a transfer). A context with no waiting measurement raises `OrphanContextError`.
    """

    def __init__(self) -> None:
        self._pending: tuple[GlucoseMeasurement, bytes] | None = None

    @property
    def pending(self) -> GlucoseMeasurement | None:
        return self._pending[0] if self._pending else None

    def add_measurement(self, m: GlucoseMeasurement, raw: bytes = b"") -> list[GlucoseRecord]:
        out = self.flush()
        if m.context_follows:
            self._pending = (m, bytes(raw))
        else:
            out.append(GlucoseRecord(m, None, bytes(raw)))
        return out

    def add_context(self, c: GlucoseContext, raw: bytes = b"") -> list[GlucoseRecord]:
        if self._pending is None or self._pending[0].sequence != c.sequence:
            raise OrphanContextError("glucose context without its measurement", bytes(raw))
        m, raw_m = self._pending
        self._pending = None
        return [GlucoseRecord(m, c, raw_m, bytes(raw))]

    def flush(self) -> list[GlucoseRecord]:
        if self._pending is None:
            return []
        m, raw_m = self._pending
        self._pending = None
        return [GlucoseRecord(m, None, raw_m)]


def to_reading(
    record: GlucoseRecord,
    device: DeviceIdentity,
    received_at: datetime,
    clock_offset: timedelta | None = None,
    raw: bytes | None = None,
    *,
    simulated: bool = False,
) -> Reading:
    """A BLOOD_GLUCOSE Reading in the unit the meter reported, with its sequence number.

    Control solution and sensor annunciations become Status flags: kept and visible, so the core can hold
    them back from patient data. No concentration -> `NoValueError`; a special value -> a measurement without
    a number (`Measurement.absent`).
    `raw` defaults to the record's frames.
    """
    m = record.measurement
    frames = record.raw if raw is None else raw
    if m.concentration is None or m.unit is None:
        raise NoValueError("glucose measurement without concentration", frames, field="glucose")
    glucose = measurement(Metric.GLUCOSE, m.concentration, m.unit)
    status = {ANNUNCIATION_STATUS[s] for s in m.sensor_status}
    if m.is_control_solution:
        status.add(Status.CONTROL_SOLUTION)
    return Reading(
        kind=Kind.BLOOD_GLUCOSE,
        measurements=(glucose,),
        device=device,
        received_at=received_at,
        device_time=m.time,
        clock_offset=clock_offset,
        sequence=m.sequence,
        status=frozenset(status),
        raw=frames,
        simulated=simulated,
    )
