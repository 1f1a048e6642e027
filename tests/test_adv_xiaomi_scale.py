"""Xiaomi scales' advertisement payloads, pinned by bytes; the weigh-in tracker and user ranges.

Vectors: the service-data payloads of ble_monitor's Mi Scale tests (custom-components/ble_monitor,
tests/test_miscale.py: "Mi Scale V1" = Mi Scale 2 on UUID 0x181D, "Mi Scale V2" = Mi Body Composition
Scale 2 on UUID 0x181B) with the values that project asserts; field meanings after openScale's Xiaomi
handlers (control bits, weight / 200 in kg, / 100 in lb or catty).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from drivers.adv import xiaomi_scale as mi
from drivers.errors import MalformedFrameError
from gateway.reading import DeviceIdentity, Kind, Measurement, Metric, Reading, Unit

V1_STABLE_REMOVED = bytes.fromhex("a22044b20701010a1a15")  # 87.2 kg, stabilized, removed, clock unset (1970)
V1_UNSTABLE = bytes.fromhex("821400e507040b101708")  # 0.1 kg, not stabilized, removed
V1_STABLE = bytes.fromhex("229e43e507040b101301")  # 86.55 kg, stabilized, 2021-04-11 16:19:01
V2_UNSTABLE = bytes.fromhex("0204b207010112101a0000a852")  # 105.8 kg, not stabilized, no impedance
V2_IMPEDANCE = bytes.fromhex("02a6b20701011201128c01a852")  # 105.8 kg, stabilized, removed, impedance 396

DEVICE = DeviceIdentity(driver="xiaomi-scale", address="DF:DE:44:82:14:EF")
RX = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)


def test_v1_vectors() -> None:
    assert mi.parse_v1(V1_STABLE) == mi.MiScaleFrame(
        "v1", 86.55, Unit.KG, True, False, datetime(2021, 4, 11, 16, 19, 1), None, V1_STABLE
    )
    assert mi.parse_v1(V1_STABLE_REMOVED) == mi.MiScaleFrame(
        "v1", 87.2, Unit.KG, True, True, None, None, V1_STABLE_REMOVED
    )
    unstable = mi.parse_v1(V1_UNSTABLE)
    assert (unstable.weight, unstable.stabilized, unstable.removed) == (0.1, False, True)


def test_v2_vectors() -> None:
    assert mi.parse_v2(V2_UNSTABLE) == mi.MiScaleFrame("v2", 105.8, Unit.KG, False, False, None, None, V2_UNSTABLE)
    assert mi.parse_v2(V2_IMPEDANCE) == mi.MiScaleFrame("v2", 105.8, Unit.KG, True, True, None, 396.0, V2_IMPEDANCE)


def test_units_from_the_control_bits() -> None:
    # v1 control 0x21: pounds + stabilized; 0x5a8c = 23180 -> 231.80 lb
    assert mi.parse_v1(bytes.fromhex("218c5ae907060f0c0000")).weigh_in == (231.8, Unit.LB)
    # v2 control1 0x60: catty + stabilized; 0x2710 = 10000 -> 100.00 jin = 50.0 kg
    frame = mi.parse_v2(bytes.fromhex("0060e907060f0c00000000" + "1027"))
    assert frame.weigh_in == (50.0, Unit.KG)


def test_service_data_picks_the_layout() -> None:
    assert mi.parse_mi_scale({mi.SERVICE_V1: V1_STABLE}) == mi.parse_v1(V1_STABLE)
    assert mi.parse_mi_scale({mi.SERVICE_V2: V2_IMPEDANCE}) == mi.parse_v2(V2_IMPEDANCE)
    assert mi.parse_mi_scale({"0000fe95-0000-1000-8000-00805f9b34fb": b"\x00"}) is None


@pytest.mark.parametrize("payload", [b"", V1_STABLE[:-1], V1_STABLE + b"\x00"])
def test_malformed_v1(payload: bytes) -> None:
    with pytest.raises(MalformedFrameError):
        mi.parse_v1(payload)


def test_malformed_v2() -> None:
    with pytest.raises(MalformedFrameError):
        mi.parse_v2(V2_IMPEDANCE[:12])


def _v2(weight_raw: int, *, stable: bool, impedance: int = 0, removed: bool = False) -> mi.MiScaleFrame:
    ctrl1 = (0x20 if stable else 0) | (0x02 if impedance else 0) | (0x80 if removed else 0)
    payload = bytes([0x02, ctrl1]) + bytes.fromhex("ea070b1e070000") + impedance.to_bytes(2, "little")
    return mi.parse_v2(payload + weight_raw.to_bytes(2, "little"))


def test_one_weigh_in_from_many_adverts() -> None:
    t = mi.WeighInTracker(settle=3, repeat=60)
    events = [
        (_v2(14000, stable=False), 0.0),  # stepping on: ignored
        (_v2(14020, stable=False), 0.5),
        (_v2(14030, stable=True), 1.0),  # stabilized, impedance still being measured
        (_v2(14030, stable=True), 2.0),  # repeat
        (_v2(14030, stable=True, impedance=480, removed=True), 2.5),  # final: with impedance
        (_v2(14030, stable=True, impedance=480, removed=True), 3.5),  # the scale repeats its result
        (_v2(14030, stable=True, impedance=480, removed=True), 30.0),
    ]
    final = [f for frame, now in events for f in t.feed(frame, now)]
    assert [(f.weight, f.impedance) for f in final] == [(70.15, 480.0)]
    assert final[0].time == datetime(2026, 11, 30, 7, 0)
    assert t.repeats == 2


def test_weigh_in_without_impedance_settles_and_a_new_weight_replaces() -> None:
    t = mi.WeighInTracker(settle=3, repeat=60)
    assert t.feed(_v2(12000, stable=True), 0.0) == []
    assert t.flush(2.9) == []
    assert [f.weight for f in t.flush(3.0)] == [60.0]  # quiet for `settle`: final without impedance
    assert t.feed(_v2(16000, stable=True), 10.0) == []
    assert [f.weight for f in t.feed(_v2(15000, stable=True), 11.0)] == [80.0]  # another person stepped on
    assert [f.weight for f in t.flush(11.0, force=True)] == [75.0]
    # After the repeat window the same weight is a new weigh-in.
    assert t.feed(_v2(12000, stable=True), 70.0) == []
    assert [f.weight for f in t.flush(80.0)] == [60.0]


def test_user_by_weight_range() -> None:
    users = (mi.UserRange(1, 50, 70), mi.UserRange(2, 65, 90))
    assert mi.assign_user(55.0, users) == 1
    assert mi.assign_user(80.0, users) == 2
    assert mi.assign_user(67.0, users) == mi.UNKNOWN_USER  # both ranges: nobody's, kept unassigned
    assert mi.assign_user(120.0, users) == mi.UNKNOWN_USER
    assert mi.assign_user(67.0, ()) is None


def test_readings() -> None:
    frame = mi.parse_v1(V1_STABLE)
    assert mi.to_readings(frame, DEVICE, RX, 1) == [
        Reading(
            kind=Kind.BODY_WEIGHT,
            measurements=(Measurement(Metric.BODY_WEIGHT, 86.55, Unit.KG),),
            device=DEVICE,
            received_at=RX,
            device_time=datetime(2021, 4, 11, 16, 19, 1),
            user_slot=1,
            raw=V1_STABLE,
        )
    ]
    both = mi.to_readings(mi.parse_v2(V2_IMPEDANCE), DEVICE, RX, None)
    assert [(r.kind, r.measurements) for r in both] == [
        (Kind.BODY_WEIGHT, (Measurement(Metric.BODY_WEIGHT, 105.8, Unit.KG),)),
        (Kind.BODY_COMPOSITION, (Measurement(Metric.IMPEDANCE, 396.0, Unit.OHM),)),
    ]
