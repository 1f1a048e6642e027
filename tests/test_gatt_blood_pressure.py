"""Blood Pressure Measurement 0x2A35 (BLS 1.0 §3.1) and Feature 0x2A49 (BLS 1.0 §3.3), literal frames."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from drivers.errors import MalformedFrameError
from drivers.gatt.blood_pressure import (
    BloodPressureFeature,
    BloodPressureMeasurement,
    MeasurementStatus,
    PulseRateRange,
    parse_bp_feature,
    parse_bp_measurement,
    to_reading,
)
from drivers.gatt.sfloat import SpecialValue
from gateway.reading import Absent, DeviceIdentity, Kind, Measurement, Metric, Reading, Status, Unit

DEVICE = DeviceIdentity(driver="ble-blood-pressure", address="C0:FF:EE:00:00:01", system_id="123456FFFE9ABCDE")
RECEIVED = datetime(2026, 11, 24, 7, 31, tzinfo=UTC)

FULL = bytes.fromhex(
    "1E"  # flags: mmHg (bit 0 = 0), time stamp (1), pulse rate (2), user id (3), measurement status (4)
    "7800"  # systolic SFLOAT 0x0078: exponent 0, mantissa 120 -> 120 mmHg
    "5000"  # diastolic 0x0050 -> 80
    "A5F3"  # mean arterial 0xF3A5: exponent -1, mantissa 0x3A5 = 933 -> 93.3
    "EA070B18081E0F"  # time stamp: 2026-11-24 08:30:15
    "4800"  # pulse rate 0x0048 -> 72 /min
    "02"  # user id 2
    "1400"  # status 0x0014: bit 2 irregular pulse; bits 3-4 = 0b10 pulse rate below lower limit
)

MINIMAL_KPA = bytes.fromhex(
    "01"  # flags: kPa, nothing optional
    "A0F0"  # systolic 0xF0A0: exponent -1, mantissa 160 -> 16.0 kPa
    "6BF0"  # diastolic 0xF06B: exponent -1, mantissa 107 -> 10.7 kPa
    "FF07"  # mean arterial NaN (0x07FF): the cuff computed none
)


def test_full_frame() -> None:
    assert parse_bp_measurement(FULL) == BloodPressureMeasurement(
        unit=Unit.MMHG,
        systolic=120.0,
        diastolic=80.0,
        mean_arterial=93.3,
        time_stamp=datetime(2026, 11, 24, 8, 30, 15),
        pulse_rate=72.0,
        user_id=2,
        status=MeasurementStatus(irregular_pulse=True, pulse_rate_range=PulseRateRange.BELOW_LOWER_LIMIT),
    )


def test_full_frame_to_reading() -> None:
    m = parse_bp_measurement(FULL)
    offset = timedelta(minutes=-3)
    assert to_reading(m, DEVICE, RECEIVED, offset, FULL) == Reading(
        kind=Kind.BLOOD_PRESSURE,
        measurements=(
            Measurement(Metric.SYSTOLIC, 120.0, Unit.MMHG),
            Measurement(Metric.DIASTOLIC, 80.0, Unit.MMHG),
            Measurement(Metric.MEAN_ARTERIAL, 93.3, Unit.MMHG),
            Measurement(Metric.PULSE_RATE, 72.0, Unit.PER_MIN),
        ),
        device=DEVICE,
        received_at=RECEIVED,
        device_time=datetime(2026, 11, 24, 8, 30, 15),
        clock_offset=offset,
        user_slot=2,
        status=frozenset({Status.IRREGULAR_PULSE, Status.PULSE_RATE_BELOW_RANGE}),  # bits 3-4 = 0b10
        raw=FULL,
    )


def test_minimal_kpa_frame_with_nan_mean_arterial() -> None:
    m = parse_bp_measurement(MINIMAL_KPA)
    assert m == BloodPressureMeasurement(Unit.KPA, 16.0, 10.7, SpecialValue.NAN)
    # A special value is kept as a measurement without a number; the reading has no time, user or status.
    assert to_reading(m, DEVICE, RECEIVED, raw=MINIMAL_KPA) == Reading(
        kind=Kind.BLOOD_PRESSURE,
        measurements=(
            Measurement(Metric.SYSTOLIC, 16.0, Unit.KPA),
            Measurement(Metric.DIASTOLIC, 10.7, Unit.KPA),
            Measurement.missing(Metric.MEAN_ARTERIAL, Unit.KPA, Absent.NOT_A_NUMBER),
        ),
        device=DEVICE,
        received_at=RECEIVED,
        raw=MINIMAL_KPA,
    )


# IEEE 11073-20601 §F.8 special SFLOAT values (exponent 0): NaN 0x07FF, NRes 0x0800, +INF 0x07FE,
# -INF 0x0802, reserved 0x0801; BLS 1.0 §3.1 frame: flags, systolic, diastolic, MAP (SFLOAT, little-endian).
@pytest.mark.parametrize(
    ("frame", "metric", "absent"),
    [
        ("00000850006000", Metric.SYSTOLIC, Absent.NOT_AT_RESOLUTION),  # systolic 0x0800 NRes
        ("007800FE076000", Metric.DIASTOLIC, Absent.POSITIVE_INFINITY),  # diastolic 0x07FE
        ("00780002086000", Metric.DIASTOLIC, Absent.NEGATIVE_INFINITY),  # diastolic 0x0802
        ("00010850006000", Metric.SYSTOLIC, Absent.RESERVED),  # systolic 0x0801
        ("00FF0750006000", Metric.SYSTOLIC, Absent.NOT_A_NUMBER),  # systolic 0x07FF NaN
    ],
)
def test_special_value_is_kept_without_a_number(frame: str, metric: Metric, absent: Absent) -> None:
    raw = bytes.fromhex(frame)
    reading = to_reading(parse_bp_measurement(raw), DEVICE, RECEIVED, raw=raw)
    assert reading.measurement(metric) == Measurement.missing(metric, Unit.MMHG, absent)
    other = Metric.DIASTOLIC if metric is Metric.SYSTOLIC else Metric.SYSTOLIC
    assert reading.measurement(other) == Measurement(
        other, {Metric.SYSTOLIC: 120.0, Metric.DIASTOLIC: 80.0}[other], Unit.MMHG
    )
    assert reading.measurement(Metric.MEAN_ARTERIAL) == Measurement(Metric.MEAN_ARTERIAL, 96.0, Unit.MMHG)


def test_special_pulse_rate_is_kept_without_a_number() -> None:
    raw = bytes.fromhex("04780050006000FF07")  # flags: pulse rate present; pulse NaN
    reading = to_reading(parse_bp_measurement(raw), DEVICE, RECEIVED, raw=raw)
    assert reading.measurement(Metric.PULSE_RATE) == Measurement.missing(
        Metric.PULSE_RATE, Unit.PER_MIN, Absent.NOT_A_NUMBER
    )
    assert reading.measurement(Metric.MEAN_ARTERIAL) == Measurement(Metric.MEAN_ARTERIAL, 96.0, Unit.MMHG)


def test_reserved_flag_and_status_bits_are_ignored() -> None:
    # flags 0xF0: bits 5-7 reserved (ignored) + bit 4 status; status 0xFFC0: only reserved bits 6-15 set.
    raw = bytes.fromhex("F0780050006000C0FF")
    assert parse_bp_measurement(raw) == BloodPressureMeasurement(
        Unit.MMHG, 120.0, 80.0, 96.0, status=MeasurementStatus()
    )


def test_every_status_bit() -> None:
    raw = bytes.fromhex("107800500060002B00")  # 0x002B: bits 0, 1, 3 (range 01), 5
    m = parse_bp_measurement(raw)
    assert m.status == MeasurementStatus(
        body_movement=True,
        cuff_too_loose=True,
        pulse_rate_range=PulseRateRange.EXCEEDS_UPPER_LIMIT,
        improper_position=True,
    )
    assert to_reading(m, DEVICE, RECEIVED).status == {
        Status.BODY_MOVEMENT,
        Status.CUFF_LOOSE,
        Status.PULSE_RATE_ABOVE_RANGE,  # bits 3-4 = 0b01 (BLS 1.0 §3.1 Pulse Rate Range Detection Flags)
        Status.IMPROPER_POSITION,
    }


def test_reserved_pulse_rate_range_sets_no_flag() -> None:
    raw = bytes.fromhex("107800500060001800")  # bits 3-4 = 0b11: reserved
    m = parse_bp_measurement(raw)
    assert m.status == MeasurementStatus(pulse_rate_range=PulseRateRange.RESERVED)
    assert to_reading(m, DEVICE, RECEIVED).status == frozenset()


def test_unknown_user_and_unset_clock() -> None:
    # flags 0x0A: time stamp + user id; year 0 (clock not set); user 0xFF = unknown user
    raw = bytes.fromhex("0A78005000600000000B18081E0FFF")
    m = parse_bp_measurement(raw)
    assert (m.time_stamp, m.user_id) == (None, 0xFF)
    reading = to_reading(m, DEVICE, RECEIVED)
    assert (reading.device_time, reading.user_slot) == (None, None)


@pytest.mark.parametrize("cut", range(len(FULL)))
def test_every_short_frame_is_malformed(cut: int) -> None:
    with pytest.raises(MalformedFrameError) as info:
        parse_bp_measurement(FULL[:cut])
    assert info.value.raw == FULL[:cut]


def test_trailing_bytes_are_malformed() -> None:
    with pytest.raises(MalformedFrameError):
        parse_bp_measurement(MINIMAL_KPA + b"\x00")


def test_bad_time_stamp_is_malformed() -> None:
    with pytest.raises(MalformedFrameError):
        parse_bp_measurement(bytes.fromhex("02780050006000EA070D18081E0F"))  # month 13


def test_feature() -> None:
    # 0x0003: body movement detection (bit 0), cuff fit detection (bit 1)
    assert parse_bp_feature(b"\x03\x00") == {
        BloodPressureFeature.BODY_MOVEMENT_DETECTION,
        BloodPressureFeature.CUFF_FIT_DETECTION,
    }
    # 0x0120: multiple bonds (bit 5), user facing time (bit 8)
    assert parse_bp_feature(b"\x20\x01") == {
        BloodPressureFeature.MULTIPLE_BONDS,
        BloodPressureFeature.USER_FACING_TIME,
    }
    assert parse_bp_feature(b"\xff\xff") == set(BloodPressureFeature)  # bits 9-15 reserved: ignored
    assert parse_bp_feature(b"\x00\xfe") == frozenset()
    with pytest.raises(MalformedFrameError):
        parse_bp_feature(b"\x03")
    with pytest.raises(MalformedFrameError):
        parse_bp_feature(b"\x03\x00\x00")
