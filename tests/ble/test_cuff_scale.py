"""Cuff and scale sessions through bleak + our Bumble backend + real Bumble peripherals, real queue."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from bumble.link import LocalLink

from drivers.ble.bleak_transport import BleakTransport
from drivers.ble.indicating import BloodPressureDriver, WeightScaleDriver
from gateway.queue import ReadingQueue
from gateway.reading import Absent, DeviceIdentity, Kind, Measurement, Metric, Status, Unit
from simulators.ble.cuff import BloodPressureCuff
from simulators.ble.encoding import BpRecord, WeightRecord
from simulators.ble.scale import WeightScale
from tests.ble.conftest import Recorded, make_ctx

T1 = datetime(2026, 11, 20, 7, 30, 0)
T2 = datetime(2026, 11, 21, 19, 5, 12)

CUFF_IDENTITY = DeviceIdentity(
    driver="ble-blood-pressure",
    address="C1:00:00:00:00:01",
    serial_number="CUFF0001",
    system_id="001BDC0000000001",
    manufacturer="VitalGate Simulators",
    model="SIM-BP",
    firmware="1.0.0",
)


Session = Callable[..., Awaitable[Recorded]]


@pytest.fixture
def session(link: LocalLink, ble: BleakTransport, queue: ReadingQueue) -> Session:
    """`await session(device, **options)`: the device's driver runs once against it (started for it and
    stopped after, whatever happens); returns what was submitted."""

    async def run(device: BloodPressureCuff | WeightScale, **options: Any) -> Recorded:
        cuff = isinstance(device, BloodPressureCuff)
        driver, name = (BloodPressureDriver, "cuff") if cuff else (WeightScaleDriver, "scale")
        await device.start(link)
        rec = make_ctx(queue, driver.name, name, address=device.address, idle_timeout=2.0, **options)
        try:
            await driver(ble).run(rec.ctx)
        finally:
            await device.stop()
        return rec

    return run


def _values(r: object) -> dict[Metric, tuple[float, Unit]]:
    return {m.metric: (m.reported_value, m.reported_unit) for m in r.measurements}  # type: ignore[attr-defined]


async def test_cuff_two_users_with_and_without_timestamps(session: Session) -> None:
    cuff = BloodPressureCuff(
        [
            BpRecord(121, 79, 93, pulse=64, time=T1, user=1),
            BpRecord(135, 88, 104, pulse=71, time=T2, user=2, status=0x0004),  # irregular pulse
            BpRecord(118, 76, 90, pulse=None, time=None, user=1),
            BpRecord(16.0, 10.6, 12.4, pulse=58, time=None, user=2, kpa=True),
        ]
    )
    rec = await session(cuff)

    got = rec.readings
    assert [r.kind for r in got] == [Kind.BLOOD_PRESSURE] * 4
    assert [r.user_slot for r in got] == [1, 2, 1, 2]
    assert [r.device_time for r in got] == [T1, T2, None, None]
    assert {r.device for r in got} == {CUFF_IDENTITY}
    assert [r.status for r in got] == [frozenset(), frozenset({Status.IRREGULAR_PULSE}), frozenset(), frozenset()]
    assert _values(got[0]) == {
        Metric.SYSTOLIC: (121, Unit.MMHG),
        Metric.DIASTOLIC: (79, Unit.MMHG),
        Metric.MEAN_ARTERIAL: (93, Unit.MMHG),
        Metric.PULSE_RATE: (64, Unit.PER_MIN),
    }
    assert _values(got[2]) == {
        Metric.SYSTOLIC: (118, Unit.MMHG),
        Metric.DIASTOLIC: (76, Unit.MMHG),
        Metric.MEAN_ARTERIAL: (90, Unit.MMHG),
    }
    assert _values(got[3]) == {
        Metric.SYSTOLIC: (16.0, Unit.KPA),
        Metric.DIASTOLIC: (10.6, Unit.KPA),
        Metric.MEAN_ARTERIAL: (12.4, Unit.KPA),
        Metric.PULSE_RATE: (58, Unit.PER_MIN),
    }
    assert [r.raw for r in got] == cuff.sent  # the exact frames, kept
    assert rec.new == 4
    assert not cuff.pending


async def test_cuff_clock_offset_recorded_and_clock_set(session: Session) -> None:
    cuff = BloodPressureCuff([BpRecord(120, 80, 93, time=T1, user=1)], clock_skew=timedelta(minutes=-7))
    rec = await session(cuff)
    (reading,) = rec.readings
    assert reading.clock_offset is not None
    assert abs(reading.clock_offset - timedelta(minutes=-7)) <= timedelta(seconds=2)
    assert abs(cuff.clock_skew) <= timedelta(seconds=2)  # the session set the device clock


async def test_cuff_within_tolerance_is_left_alone(session: Session) -> None:
    cuff = BloodPressureCuff([BpRecord(120, 80, 93, user=1)], clock_skew=timedelta(seconds=-20))
    rec = await session(cuff, tolerance=60)
    assert cuff.clock_skew == timedelta(seconds=-20)
    assert len(rec.readings) == 1


async def test_malformed_indication_rejected_and_session_goes_on(session: Session, queue: ReadingQueue) -> None:
    truncated = bytes([0x02, 0x78, 0x00, 0x50, 0x00])  # timestamp flag set, diastolic cut short
    special = bytes([0x00, 0xFF, 0x07, 0x50, 0x00, 0x5D, 0x00])  # systolic = SFLOAT NaN (0x07FF)
    cuff = BloodPressureCuff([truncated, BpRecord(122, 81, 95, user=1), special, BpRecord(119, 77, 91, user=2)])
    rec = await session(cuff)
    systolic = [r.measurement(Metric.SYSTOLIC) for r in rec.readings]
    assert [
        (r.user_slot, m.reported_value if m and m.absent is None else m)
        for r, m in zip(rec.readings, systolic, strict=True)
    ] == [
        (1, 122),
        (None, Measurement.missing(Metric.SYSTOLIC, Unit.MMHG, Absent.NOT_A_NUMBER)),  # kept: FHIR dataAbsentReason
        (2, 119),
    ]
    rejects = await queue.rejects()
    assert [(source, error, raw) for _id, source, error, raw in rejects] == [
        ("cuff:ble-blood-pressure/2a35", "MalformedFrameError", truncated),
    ]
    assert rec.ctx.rejected == 1


async def test_scale_multi_user_si_and_imperial(session: Session) -> None:
    scale = WeightScale(
        [
            WeightRecord(72.45, time=T1, user=1, bmi=23.4, height=1.76),
            WeightRecord(154.2, time=T2, user=2, imperial=True),
            WeightRecord(80.0),
        ]
    )
    rec = await session(scale)
    got = rec.readings
    assert [r.kind for r in got] == [Kind.BODY_WEIGHT] * 3
    assert [r.user_slot for r in got] == [1, 2, None]
    assert [r.device_time for r in got] == [T1, T2, None]
    assert got[0].measurements == (
        Measurement(Metric.BODY_WEIGHT, 72.45, Unit.KG),
        Measurement(Metric.BMI, 23.4, Unit.KG_PER_M2),
        Measurement(Metric.BODY_HEIGHT, 1.76, Unit.M),
    )
    assert got[1].measurements == (Measurement(Metric.BODY_WEIGHT, 154.2, Unit.LB),)
    assert got[2].measurements == (Measurement(Metric.BODY_WEIGHT, 80.0, Unit.KG),)
    assert got[0].device.system_id == "001BDC0000000002"


async def test_device_not_advertising_returns_quietly(ble: BleakTransport, queue: ReadingQueue) -> None:
    rec = make_ctx(queue, "ble-blood-pressure", "cuff", address="C1:00:00:00:00:99", connect_timeout=0.3)
    await BloodPressureDriver(ble).run(rec.ctx)
    assert rec.readings == []
