"""Weight Measurement 0x2A9D / Feature 0x2A9E (WSS 1.0 §3.2 / §3.1) and Body Composition Measurement
0x2A9C (BCS 1.0 §3.2, multi-packet §4.2.1), literal frames."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from drivers.errors import DeviceProtocolError, MalformedFrameError
from drivers.gatt.body_composition import (
    BodyCompositionAssembler,
    BodyCompositionMeasurement,
    parse_body_composition,
)
from drivers.gatt.body_composition import to_reading as body_to_reading
from drivers.gatt.errors import NoValueError
from drivers.gatt.weight_scale import (
    WeightMeasurement,
    WeightScaleFeature,
    parse_weight_feature,
    parse_weight_measurement,
    to_reading,
)
from gateway.reading import Absent, DeviceIdentity, Kind, Measurement, Metric, Reading, Unit

DEVICE = DeviceIdentity(driver="ble-weight-scale", address="C0:FF:EE:00:00:02")
RECEIVED = datetime(2026, 1, 5, 6, 1, tzinfo=UTC)

SI_FULL = bytes.fromhex(
    "0E"  # flags: SI (bit 0 = 0), time stamp (1), user id (2), BMI + height (3)
    "A037"  # weight 0x37A0 = 14240 * 0.005 kg = 71.2 kg
    "EA070105070000"  # time stamp 2026-01-05 07:00:00
    "01"  # user id 1
    "F600"  # BMI 0x00F6 = 246 * 0.1 = 24.6 kg/m2
    "A506"  # height 0x06A5 = 1701 * 0.001 m = 1.701 m
)

IMPERIAL = bytes.fromhex(
    "09"  # flags: imperial (bit 0), BMI + height (3)
    "543D"  # weight 0x3D54 = 15700 * 0.01 lb = 157.0 lb
    "F600"  # BMI 24.6
    "9E02"  # height 0x029E = 670 * 0.1 in = 67.0 in
)


def test_si_full_frame() -> None:
    m = parse_weight_measurement(SI_FULL)
    assert m == WeightMeasurement(
        imperial=False, weight=71.2, time_stamp=datetime(2026, 1, 5, 7), user_id=1, bmi=24.6, height=1.701
    )
    assert to_reading(m, DEVICE, RECEIVED, raw=SI_FULL) == Reading(
        kind=Kind.BODY_WEIGHT,
        measurements=(
            Measurement(Metric.BODY_WEIGHT, 71.2, Unit.KG),
            Measurement(Metric.BMI, 24.6, Unit.KG_PER_M2),
            Measurement(Metric.BODY_HEIGHT, 1.701, Unit.M),
        ),
        device=DEVICE,
        received_at=RECEIVED,
        device_time=datetime(2026, 1, 5, 7),
        user_slot=1,
        raw=SI_FULL,
    )


def test_imperial_frame() -> None:
    m = parse_weight_measurement(IMPERIAL)
    assert m == WeightMeasurement(imperial=True, weight=157.0, bmi=24.6, height=67.0)
    assert to_reading(m, DEVICE, RECEIVED).measurements == (
        Measurement(Metric.BODY_WEIGHT, 157.0, Unit.LB),
        Measurement(Metric.BMI, 24.6, Unit.KG_PER_M2),
        Measurement(Metric.BODY_HEIGHT, 67.0, Unit.IN),
    )


def test_weight_only_with_reserved_flags_ignored() -> None:
    # flags 0xF0: bits 4-7 reserved, ignored; weight 0x37A0 = 71.2 kg; nothing else
    assert parse_weight_measurement(bytes.fromhex("F0A037")) == WeightMeasurement(False, 71.2)


def test_unknown_user_maps_to_no_slot() -> None:
    reading = to_reading(parse_weight_measurement(bytes.fromhex("04A037FF")), DEVICE, RECEIVED)
    assert reading.user_slot is None


def test_measurement_unsuccessful() -> None:
    raw = bytes.fromhex("04FFFF03")  # WSS 1.0 §3.2: weight 0xFFFF = measurement unsuccessful; user 3
    m = parse_weight_measurement(raw)
    assert m == WeightMeasurement(False, None, user_id=3)
    reading = to_reading(m, DEVICE, RECEIVED, raw=raw)
    assert reading.measurements == (Measurement.missing(Metric.BODY_WEIGHT, Unit.KG, Absent.UNSUCCESSFUL),)
    assert reading.user_slot == 3


@pytest.mark.parametrize("cut", range(len(SI_FULL)))
def test_short_frames(cut: int) -> None:
    with pytest.raises(MalformedFrameError):
        parse_weight_measurement(SI_FULL[:cut])


def test_trailing_bytes() -> None:
    with pytest.raises(MalformedFrameError):
        parse_weight_measurement(IMPERIAL + b"\x00")


def test_feature() -> None:
    # 0x000001BF: time stamp (bit 0), multiple users (1), BMI (2), weight resolution index 7 (bits 3-6:
    # 0.005 kg / 0.01 lb), height resolution index 3 (bits 7-9: 0.001 m / 0.1 in)
    assert parse_weight_feature(bytes.fromhex("BF010000")) == WeightScaleFeature(
        time_stamp=True,
        multiple_users=True,
        bmi=True,
        weight_resolution=(0.005, 0.01),
        height_resolution=(0.001, 0.1),
    )
    # 0x00000040: weight resolution index 8 (reserved) -> None; height 0 = not specified
    assert parse_weight_feature(bytes.fromhex("40000000")) == WeightScaleFeature(False, False, False, None, None)
    # bits 10-31 reserved: ignored
    assert parse_weight_feature(bytes.fromhex("0004FFFF")) == WeightScaleFeature(False, False, False, None, None)
    with pytest.raises(MalformedFrameError):
        parse_weight_feature(bytes.fromhex("BF0100"))


BODY_SINGLE = bytes.fromhex(
    "060C"  # flags 0x0C06: SI, time stamp (bit 1), user id (2), weight (10), height (11)
    "EA00"  # body fat 0x00EA = 234 * 0.1 % = 23.4 %
    "EA0703010C0000"  # time stamp 2026-03-01 12:00:00
    "03"  # user id 3
    "E43E"  # weight 0x3EE4 = 16100 * 0.005 kg = 80.5 kg
    "0807"  # height 0x0708 = 1800 * 0.001 m = 1.8 m
)

BODY_COMPARTMENTS = bytes.fromhex(
    "F803"  # flags 0x03F8: basal metabolism (3), muscle % (4), muscle mass (5), fat free mass (6),
    #          soft lean mass (7), body water mass (8), impedance (9)
    "C800"  # body fat 200 -> 20.0 %
    "6419"  # basal metabolism 0x1964 = 6500 kJ
    "9501"  # muscle percentage 0x0195 = 405 -> 40.5 %
    "7017"  # muscle mass 0x1770 = 6000 * 0.005 = 30.0 kg
    "E02E"  # fat free mass 0x2EE0 = 12000 -> 60.0 kg
    "F82A"  # soft lean mass 0x2AF8 = 11000 -> 55.0 kg
    "D020"  # body water mass 0x20D0 = 8400 -> 42.0 kg
    "8813"  # impedance 0x1388 = 5000 * 0.1 ohm = 500.0 ohm
)


def test_body_composition_single_packet() -> None:
    m = parse_body_composition(BODY_SINGLE)
    assert m == BodyCompositionMeasurement(
        imperial=False,
        body_fat_percent=23.4,
        time_stamp=datetime(2026, 3, 1, 12),
        user_id=3,
        weight=80.5,
        height=1.8,
    )
    assert body_to_reading(m, DEVICE, RECEIVED, raw=BODY_SINGLE) == Reading(
        kind=Kind.BODY_WEIGHT,
        measurements=(
            Measurement(Metric.BODY_WEIGHT, 80.5, Unit.KG),
            Measurement(Metric.BODY_HEIGHT, 1.8, Unit.M),
        ),
        device=DEVICE,
        received_at=RECEIVED,
        device_time=datetime(2026, 3, 1, 12),
        user_slot=3,
        raw=BODY_SINGLE,
    )


def test_body_composition_compartments() -> None:
    m = parse_body_composition(BODY_COMPARTMENTS)
    assert m == BodyCompositionMeasurement(
        imperial=False,
        body_fat_percent=20.0,
        basal_metabolism_kj=6500,
        muscle_percent=40.5,
        muscle_mass=30.0,
        fat_free_mass=60.0,
        soft_lean_mass=55.0,
        body_water_mass=42.0,
        impedance_ohm=500.0,
    )
    with pytest.raises(NoValueError):  # no weight field: nothing a BODY_WEIGHT reading can carry
        body_to_reading(m, DEVICE, RECEIVED)


def test_body_composition_imperial_masses() -> None:
    # flags 0x0401: imperial, weight; body fat 23.4 %; weight 0x3D54 = 15700 * 0.01 lb = 157.0 lb
    m = parse_body_composition(bytes.fromhex("0104EA00543D"))
    assert m == BodyCompositionMeasurement(imperial=True, body_fat_percent=23.4, weight=157.0)
    assert m.weight_unit is Unit.LB


def test_body_composition_multi_packet() -> None:
    first = bytes.fromhex("0610EA00EA0703010C000003")  # 0x1006: multiple packet, time stamp, user
    second = bytes.fromhex("001CEA00E43E0807")  # 0x1C00: multiple packet, weight, height
    assembler = BodyCompositionAssembler()
    assert assembler.add(parse_body_composition(first)) is None
    assert assembler.pending
    assert assembler.add(parse_body_composition(second)) == BodyCompositionMeasurement(
        imperial=False,
        body_fat_percent=23.4,
        time_stamp=datetime(2026, 3, 1, 12),
        user_id=3,
        weight=80.5,
        height=1.8,
        multiple_packet=True,
    )
    assert not assembler.pending


def test_body_composition_broken_pair() -> None:
    assembler = BodyCompositionAssembler()
    assembler.add(parse_body_composition(bytes.fromhex("0010EA00")))  # first half only
    with pytest.raises(DeviceProtocolError):
        assembler.add(parse_body_composition(BODY_SINGLE))
    assert not assembler.pending
    assert assembler.add(parse_body_composition(BODY_SINGLE)) == parse_body_composition(BODY_SINGLE)


def test_body_composition_pair_with_mixed_units() -> None:
    assembler = BodyCompositionAssembler()
    assembler.add(parse_body_composition(bytes.fromhex("0010EA00")))
    with pytest.raises(DeviceProtocolError):
        assembler.add(parse_body_composition(bytes.fromhex("0114EA00543D")))  # imperial half


def test_body_composition_unsuccessful_and_malformed() -> None:
    # body fat 0xFFFF = measurement unsuccessful (BCS 1.0 §3.2): no number, kept (dataAbsentReason downstream)
    assert parse_body_composition(bytes.fromhex("0000FFFF")) == BodyCompositionMeasurement(False, None)
    for cut in range(len(BODY_SINGLE)):
        with pytest.raises(MalformedFrameError):
            parse_body_composition(BODY_SINGLE[:cut])
    with pytest.raises(MalformedFrameError):
        parse_body_composition(BODY_SINGLE + b"\x00")
    # reserved flag bits 13-15 ignored
    assert parse_body_composition(bytes.fromhex("00E0EA00")) == BodyCompositionMeasurement(False, 23.4)
