"""Advertisement-only Xiaomi scales through bleak + our Bumble backend: a Bumble scale broadcasting
weigh-ins, the gateway listening (no connection), the real queue; a connected device read meanwhile."""

from __future__ import annotations

import asyncio
from datetime import datetime

from bumble.link import LocalLink

from drivers.ble.adv_scale import XiaomiScaleDriver
from drivers.ble.bleak_transport import BleakTransport
from drivers.ble.thermometer import ThermometerDriver
from gateway.queue import ReadingQueue
from gateway.reading import Kind, Measurement, Metric, Unit
from simulators.ble.mi_scale import MiScale
from simulators.ble.thermometer import TemperatureRecord, Thermometer
from tests.ble.conftest import make_ctx

AT = datetime(2026, 11, 30, 7, 15, 0)
USERS = [{"slot": 1, "min_kg": 50, "max_kg": 70}, {"slot": 2, "min_kg": 75, "max_kg": 100}]


async def test_weigh_ins_once_each_by_user_range_beside_a_connected_session(
    link: LocalLink, ble: BleakTransport, queue: ReadingQueue
) -> None:
    scale = MiScale("v2")
    thermo = Thermometer([TemperatureRecord(36.9)])
    await scale.start(link)
    await thermo.start(link)
    rec = make_ctx(
        queue, "xiaomi-scale", "mi", address=scale.address, users=USERS, listen_seconds=4.0, settle_seconds=0.6
    )
    thermo_rec = make_ctx(queue, ThermometerDriver.name, "thermo", address=thermo.address, idle_timeout=1.0)
    driver = XiaomiScaleDriver(ble)
    try:

        async def person() -> None:
            await asyncio.sleep(0.3)
            await scale.weigh(62.35, impedance=455, at=AT)
            await scale.weigh(84.1, impedance=None, at=AT.replace(minute=16))

        await asyncio.gather(driver.run(rec.ctx), person(), ThermometerDriver(ble).run(thermo_rec.ctx))
    finally:
        await scale.stop()
        await thermo.stop()
    assert [(r.kind, r.user_slot, r.measurements) for r in rec.readings] == [
        (Kind.BODY_WEIGHT, 1, (Measurement(Metric.BODY_WEIGHT, 62.35, Unit.KG),)),
        (Kind.BODY_COMPOSITION, 1, (Measurement(Metric.IMPEDANCE, 455.0, Unit.OHM),)),
        (Kind.BODY_WEIGHT, 2, (Measurement(Metric.BODY_WEIGHT, 84.1, Unit.KG),)),
    ]
    assert [r.device_time for r in rec.readings] == [AT, AT, AT.replace(minute=16)]
    assert scale.advertised >= 18  # every weigh-in was advertised many times, read once
    assert [r.measurements[0].reported_value for r in thermo_rec.readings] == [36.9]  # read during the scan


async def test_malformed_payload_kept_once(link: LocalLink, ble: BleakTransport, queue: ReadingQueue) -> None:
    scale = MiScale("v1")
    await scale.start(link)
    rec = make_ctx(queue, "xiaomi-scale", "mi", address=scale.address, listen_seconds=1.5, settle_seconds=0.5)
    try:

        async def broken() -> None:
            for _ in range(5):
                await scale.show(b"\x22\x01")  # too short for a Mi Scale 2 payload

        await asyncio.gather(XiaomiScaleDriver(ble).run(rec.ctx), broken())
    finally:
        await scale.stop()
    assert rec.readings == []
    rejects = await queue.rejects()
    assert [(source, error, raw) for _id, source, error, raw in rejects] == [
        ("mi:xiaomi-scale/service-data", "MalformedFrameError", b"\x22\x01")
    ]


async def test_a_scale_clock_in_utc_is_corrected(link: LocalLink, ble: BleakTransport, queue: ReadingQueue) -> None:
    """openScale PR #1427 / export2garmin #18: Mi scales keep bare digits, often set in UTC by an app. The
    live advert's time minus the gateway's local clock is the offset; the reading's time comes out right."""
    from datetime import timedelta

    scale = MiScale("v1")
    await scale.start(link)
    skew = timedelta(hours=-2)  # e.g. a scale set in UTC, read by a gateway in UTC+2
    rec = make_ctx(queue, "xiaomi-scale", "mi", address=scale.address, listen_seconds=2.5, settle_seconds=0.5)
    try:

        async def person() -> None:
            await asyncio.sleep(0.3)
            await scale.weigh(70.5, at=(datetime.now() + skew).replace(microsecond=0))

        await asyncio.gather(XiaomiScaleDriver(ble).run(rec.ctx), person())
    finally:
        await scale.stop()
    (reading,) = rec.readings
    assert reading.clock_offset is not None and abs(reading.clock_offset - skew) < timedelta(seconds=5)
    assert abs(reading.effective_time() - reading.received_at) < timedelta(seconds=5)
