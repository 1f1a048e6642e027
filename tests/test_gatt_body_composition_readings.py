"""Body composition as its own reading, and the one-weight-per-weigh-in rule (drivers/ble/scale.py).

Frames are the BCS 1.0 §3.2 / GSS "Body Composition Measurement" vectors of tests/test_gatt_weight.py.
"""

from __future__ import annotations

from drivers.ble.scale import composition_readings
from drivers.gatt.body_composition import composition_reading, parse_body_composition
from gateway.reading import Kind, Measurement, Metric, Reading, Unit
from tests.test_gatt_weight import BODY_COMPARTMENTS, BODY_SINGLE, DEVICE, RECEIVED


def test_compartments_each_their_own_metric() -> None:
    m = parse_body_composition(BODY_COMPARTMENTS)
    assert composition_reading(m, DEVICE, RECEIVED, raw=BODY_COMPARTMENTS) == Reading(
        kind=Kind.BODY_COMPOSITION,
        measurements=(
            Measurement(Metric.BODY_FAT, 20.0, Unit.PERCENT),
            Measurement(Metric.MUSCLE_PERCENT, 40.5, Unit.PERCENT),
            Measurement(Metric.MUSCLE_MASS, 30.0, Unit.KG),
            Measurement(Metric.FAT_FREE_MASS, 60.0, Unit.KG),
            Measurement(Metric.SOFT_LEAN_MASS, 55.0, Unit.KG),
            Measurement(Metric.BODY_WATER_MASS, 42.0, Unit.KG),
            Measurement(Metric.IMPEDANCE, 500.0, Unit.OHM),
            Measurement(Metric.BASAL_METABOLISM, 6500.0, Unit.KJ),
        ),
        device=DEVICE,
        received_at=RECEIVED,
        raw=BODY_COMPARTMENTS,
    )


def test_imperial_masses_keep_their_unit() -> None:
    # flags 0x0121: imperial, muscle mass (5), body water mass (8); fat 23.4 %; 0x1770 = 60.00 lb; 0x0FA0 = 40.00 lb
    m = parse_body_composition(bytes.fromhex("2101EA007017A00F"))
    reading = composition_reading(m, DEVICE, RECEIVED)
    assert reading.measurements[1:] == (
        Measurement(Metric.MUSCLE_MASS, 60.0, Unit.LB),
        Measurement(Metric.BODY_WATER_MASS, 40.0, Unit.LB),
    )


def test_one_weight_per_weigh_in() -> None:
    m = parse_body_composition(BODY_SINGLE)  # carries weight 80.5 kg and height
    with_ws = composition_readings(m, DEVICE, None, BODY_SINGLE, weight_here=False, simulated=False)
    assert [r.kind for r in with_ws] == [Kind.BODY_COMPOSITION]  # the Weight Measurement has the weight
    assert with_ws[0].measurements == (Measurement(Metric.BODY_FAT, 23.4, Unit.PERCENT),)
    alone = composition_readings(m, DEVICE, None, BODY_SINGLE, weight_here=True, simulated=False)
    assert [r.kind for r in alone] == [Kind.BODY_COMPOSITION, Kind.BODY_WEIGHT]
    assert alone[1].measurements == (
        Measurement(Metric.BODY_WEIGHT, 80.5, Unit.KG),
        Measurement(Metric.BODY_HEIGHT, 1.8, Unit.M),
    )
    assert {r.user_slot for r in alone} == {3}


def test_unsuccessful_body_fat_is_kept_without_a_number() -> None:
    from gateway.reading import Absent

    # flags 0x0200: impedance; body fat 0xFFFF (unsuccessful, BCS 1.0 §3.2); impedance 0x1388 -> 500.0 ohm
    m = parse_body_composition(bytes.fromhex("0002FFFF8813"))
    fat, impedance = composition_reading(m, DEVICE, RECEIVED).measurements
    assert (fat.metric, fat.absent) == (Metric.BODY_FAT, Absent.UNSUCCESSFUL)
    assert impedance == Measurement(Metric.IMPEDANCE, 500.0, Unit.OHM)
