"""Glucose Measurement 0x2A18 (GLS 1.0 §3.1), Context 0x2A34 (§3.2), Feature 0x2A51 (§3.3), joiner."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from drivers.errors import MalformedFrameError
from drivers.gatt.errors import NoValueError, OrphanContextError
from drivers.gatt.glucose import (
    CarbohydrateId,
    GlucoseContext,
    GlucoseFeature,
    GlucoseMeasurement,
    GlucoseRecord,
    GlucoseRecordJoiner,
    Health,
    Meal,
    MedicationId,
    MedicationUnit,
    SampleLocation,
    SampleType,
    SensorStatus,
    parse_glucose_context,
    parse_glucose_feature,
    parse_glucose_measurement,
    to_reading,
)
from drivers.gatt.glucose import (
    Tester as GlucoseTester,  # aliased: pytest would try to collect a class named Test*
)
from drivers.gatt.sfloat import SpecialValue
from gateway.reading import Absent, DeviceIdentity, Kind, Measurement, Metric, Reading, Status, Unit

DEVICE = DeviceIdentity(driver="ble-glucose", address="C0:FF:EE:00:00:03", serial_number="GM-1")
RECEIVED = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)

MG_DL = bytes.fromhex(
    "13"  # flags: time offset (bit 0), concentration+type/location (1), kg/L (bit 2 = 0), context follows (4)
    "0700"  # sequence number 7
    "EA070B14072D00"  # base time 2026-11-20 07:45:00
    "0500"  # time offset +5 minutes
    "6EB0"  # concentration SFLOAT 0xB06E: exponent -5, mantissa 110 -> 110e-5 kg/L = 110 mg/dL
    "11"  # type 1 capillary whole blood (low nibble), sample location 1 finger (high nibble)
)

MMOL_CONTROL = bytes.fromhex(
    "0E"  # flags: concentration (1), mol/L (2), sensor status annunciation (3)
    "0800"  # sequence number 8
    "EA070B14072D00"  # base time 2026-11-20 07:45:00
    "3DC0"  # concentration 0xC03D: exponent -4, mantissa 61 -> 61e-4 mol/L = 6.1 mmol/L
    "4A"  # type 10 control solution, location 4 control solution
    "2100"  # annunciation 0x0021: bit 0 battery low, bit 5 result higher than the device can process
)

CONTEXT_ALL = bytes.fromhex(
    "FF"  # flags: carbohydrate (0), meal (1), tester-health (2), exercise (3), medication (4),
    #       medication in litres (5), HbA1c (6), extended flags (7)
    "0700"  # sequence number 7
    "00"  # extended flags (all reserved)
    "01"  # carbohydrate id 1 breakfast
    "2DD0"  # carbohydrate 0xD02D: exponent -3, mantissa 45 -> 0.045 kg = 45 g
    "01"  # meal 1 preprandial
    "51"  # tester 1 self (low nibble), health 5 no health issues (high nibble)
    "0807"  # exercise duration 0x0708 = 1800 s
    "32"  # exercise intensity 50 %
    "01"  # medication id 1 rapid acting insulin
    "05D0"  # medication 0xD005: exponent -3, mantissa 5 -> 0.005 L
    "41F0"  # HbA1c 0xF041: exponent -1, mantissa 65 -> 6.5 %
)


def test_measurement_mg_dl() -> None:
    m = parse_glucose_measurement(MG_DL)
    assert m == GlucoseMeasurement(
        sequence=7,
        base_time=datetime(2026, 11, 20, 7, 45),
        time_offset_minutes=5,
        concentration=110.0,
        unit=Unit.MG_DL,
        sample_type=SampleType.CAPILLARY_WHOLE_BLOOD,
        sample_location=SampleLocation.FINGER,
        context_follows=True,
    )
    assert m.time == datetime(2026, 11, 20, 7, 50)


def test_measurement_mmol_control_solution_with_annunciation() -> None:
    m = parse_glucose_measurement(MMOL_CONTROL)
    assert m == GlucoseMeasurement(
        sequence=8,
        base_time=datetime(2026, 11, 20, 7, 45),
        concentration=6.1,
        unit=Unit.MMOL_L,
        sample_type=SampleType.CONTROL_SOLUTION,
        sample_location=SampleLocation.CONTROL_SOLUTION,
        sensor_status=frozenset({SensorStatus.BATTERY_LOW, SensorStatus.RESULT_TOO_HIGH}),
    )
    assert to_reading(GlucoseRecord(m, raw_measurement=MMOL_CONTROL), DEVICE, RECEIVED) == Reading(
        kind=Kind.BLOOD_GLUCOSE,
        measurements=(Measurement(Metric.GLUCOSE, 6.1, Unit.MMOL_L),),
        device=DEVICE,
        received_at=RECEIVED,
        device_time=datetime(2026, 11, 20, 7, 45),
        sequence=8,
        status=frozenset({Status.CONTROL_SOLUTION, Status.BATTERY_LOW, Status.VALUE_ABOVE_RANGE}),
        raw=MMOL_CONTROL,
    )


def test_every_annunciation_bit_and_reserved_bits() -> None:
    # flags 0x08: annunciation only; 0xFFFF: bits 0-11 defined, 12-15 reserved (ignored)
    m = parse_glucose_measurement(bytes.fromhex("080100EA070B14072D00FFFF"))
    assert m.sensor_status == set(SensorStatus)
    assert m.concentration is None


def test_context_all_fields() -> None:
    assert parse_glucose_context(CONTEXT_ALL) == GlucoseContext(
        sequence=7,
        extended_flags=0,
        carbohydrate_id=CarbohydrateId.BREAKFAST,
        carbohydrate_grams=45.0,
        meal=Meal.PREPRANDIAL,
        tester=GlucoseTester.SELF,
        health=Health.NO_HEALTH_ISSUES,
        exercise_duration_s=1800,
        exercise_intensity_percent=50,
        medication_id=MedicationId.RAPID_ACTING_INSULIN,
        medication=0.005,
        medication_unit=MedicationUnit.LITERS,
        hba1c_percent=6.5,
    )


def test_context_meal_only_and_medication_in_kg() -> None:
    assert parse_glucose_context(bytes.fromhex("02070003")) == GlucoseContext(7, meal=Meal.FASTING)
    # flags 0x10: medication (kg, bit 5 clear); id 2 short acting; 0xA002: exponent -6, mantissa 2 -> 2e-6 kg
    assert parse_glucose_context(bytes.fromhex("1008000202A0")) == GlucoseContext(
        8,
        medication_id=MedicationId.SHORT_ACTING_INSULIN,
        medication=2e-6,
        medication_unit=MedicationUnit.KILOGRAMS,
    )


def test_context_reserved_enumerations_are_none() -> None:
    # flags 0x07: carbohydrate, meal, tester-health; carbohydrate id 0 (reserved), 0 g; meal 9 (reserved);
    # tester 0 / health 0 (reserved)
    assert parse_glucose_context(bytes.fromhex("0707000000000900")) == GlucoseContext(7, carbohydrate_grams=0.0)


def test_context_special_hba1c_kept() -> None:
    assert parse_glucose_context(bytes.fromhex("400700FF07")).hba1c_percent is SpecialValue.NAN


def test_reserved_type_and_location_nibbles() -> None:
    # type 0 (reserved), location 5 (reserved) -> None; location 15 = not available
    assert parse_glucose_measurement(bytes.fromhex("020100EA070B14072D006EB050")).sample_type is None
    m = parse_glucose_measurement(bytes.fromhex("020100EA070B14072D006EB0F9"))
    assert (m.sample_type, m.sample_location) == (SampleType.INTERSTITIAL_FLUID, SampleLocation.NOT_AVAILABLE)


def test_reserved_flag_bits_ignored() -> None:
    # flags 0xE0: bits 5-7 reserved; only sequence number and base time follow
    assert parse_glucose_measurement(bytes.fromhex("E00100EA070B14072D00")) == GlucoseMeasurement(
        1, datetime(2026, 11, 20, 7, 45)
    )


def test_unknown_base_time_and_negative_offset() -> None:
    m = parse_glucose_measurement(bytes.fromhex("01010000000B14072D00F6FF"))  # year 0; offset -10
    assert (m.base_time, m.time_offset_minutes, m.time) == (None, -10, None)


# Glucose Service 1.0 §3.1.1 (flags 0x02: concentration + type/location in kg/L): the concentration SFLOAT
# as an IEEE 11073-20601 §F.8 special value.
@pytest.mark.parametrize(
    ("frame", "special", "absent"),
    [
        ("020100EA070B14072D00FE0711", SpecialValue.POSITIVE_INFINITY, Absent.POSITIVE_INFINITY),
        ("020100EA070B14072D00020811", SpecialValue.NEGATIVE_INFINITY, Absent.NEGATIVE_INFINITY),
        ("020100EA070B14072D00FF0711", SpecialValue.NAN, Absent.NOT_A_NUMBER),
        ("020100EA070B14072D00000811", SpecialValue.NRES, Absent.NOT_AT_RESOLUTION),
        ("020100EA070B14072D00010811", SpecialValue.RESERVED, Absent.RESERVED),
    ],
)
def test_special_concentration_is_kept_without_a_number(frame: str, special: SpecialValue, absent: Absent) -> None:
    raw = bytes.fromhex(frame)
    m = parse_glucose_measurement(raw)
    assert m.concentration is special
    reading = to_reading(GlucoseRecord(m, raw_measurement=raw), DEVICE, RECEIVED)
    assert reading.measurements == (Measurement.missing(Metric.GLUCOSE, Unit.MG_DL, absent),)
    assert reading.sequence == 1 and reading.raw == raw


def test_no_concentration_raises_no_value() -> None:
    raw = bytes.fromhex("000100EA070B14072D00")
    with pytest.raises(NoValueError) as info:
        to_reading(GlucoseRecord(parse_glucose_measurement(raw), raw_measurement=raw), DEVICE, RECEIVED)
    assert type(info.value) is NoValueError


@pytest.mark.parametrize("cut", range(len(MG_DL)))
def test_short_measurement(cut: int) -> None:
    with pytest.raises(MalformedFrameError):
        parse_glucose_measurement(MG_DL[:cut])


@pytest.mark.parametrize("cut", range(len(CONTEXT_ALL)))
def test_short_context(cut: int) -> None:
    with pytest.raises(MalformedFrameError):
        parse_glucose_context(CONTEXT_ALL[:cut])


def test_trailing_bytes() -> None:
    with pytest.raises(MalformedFrameError):
        parse_glucose_measurement(MG_DL + b"\x00")
    with pytest.raises(MalformedFrameError):
        parse_glucose_context(CONTEXT_ALL + b"\x00")


def test_feature() -> None:
    assert parse_glucose_feature(bytes.fromhex("FF07")) == set(GlucoseFeature)  # bits 0-10
    assert parse_glucose_feature(bytes.fromhex("00F8")) == frozenset()  # bits 11-15 reserved
    # 0x0402: sensor malfunction detection (bit 1), multiple bond (bit 10)
    assert parse_glucose_feature(bytes.fromhex("0204")) == {
        GlucoseFeature.SENSOR_MALFUNCTION_DETECTION,
        GlucoseFeature.MULTIPLE_BOND,
    }
    with pytest.raises(MalformedFrameError):
        parse_glucose_feature(b"\x01")


def test_joiner_measurement_with_context() -> None:
    joiner = GlucoseRecordJoiner()
    m, c = parse_glucose_measurement(MG_DL), parse_glucose_context(CONTEXT_ALL)
    assert joiner.add_measurement(m, MG_DL) == []
    assert joiner.pending == m
    record = GlucoseRecord(m, c, MG_DL, CONTEXT_ALL)
    assert joiner.add_context(c, CONTEXT_ALL) == [record]
    assert joiner.pending is None
    assert record.raw == MG_DL + CONTEXT_ALL
    assert to_reading(record, DEVICE, RECEIVED) == Reading(
        kind=Kind.BLOOD_GLUCOSE,
        measurements=(Measurement(Metric.GLUCOSE, 110.0, Unit.MG_DL),),
        device=DEVICE,
        received_at=RECEIVED,
        device_time=datetime(2026, 11, 20, 7, 50),  # base time + 5 min offset
        sequence=7,
        raw=MG_DL + CONTEXT_ALL,
    )


def test_joiner_releases_a_measurement_whose_context_never_came() -> None:
    joiner = GlucoseRecordJoiner()
    m7, m8 = parse_glucose_measurement(MG_DL), parse_glucose_measurement(MMOL_CONTROL)
    joiner.add_measurement(m7, MG_DL)
    assert joiner.add_measurement(m8, MMOL_CONTROL) == [
        GlucoseRecord(m7, None, MG_DL),
        GlucoseRecord(m8, None, MMOL_CONTROL),
    ]
    joiner.add_measurement(m7, MG_DL)
    assert joiner.flush() == [GlucoseRecord(m7, None, MG_DL)]
    assert joiner.flush() == []


def test_joiner_orphan_context() -> None:
    joiner = GlucoseRecordJoiner()
    with pytest.raises(OrphanContextError):
        joiner.add_context(parse_glucose_context(CONTEXT_ALL), CONTEXT_ALL)
    joiner.add_measurement(parse_glucose_measurement(MG_DL), MG_DL)  # sequence 7 waits
    with pytest.raises(OrphanContextError) as info:
        raw = bytes.fromhex("02090003")  # context for sequence 9
        joiner.add_context(parse_glucose_context(raw), raw)
    assert info.value.raw == raw
