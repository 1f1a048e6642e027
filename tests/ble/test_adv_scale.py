"""Advertisement-only Xiaomi scales through bleak + our Bumble backend: a Bumble scale broadcasting
weigh-ins, the gateway listening (no connection), the real queue; a connected device read meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from bleak.args.bluez import OrPattern
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.bluezdbus.scanner import BleakScannerBlueZDBus
from bleak.exc import BleakError
from bumble.link import LocalLink
from prometheus_client import generate_latest
from structlog.testing import capture_logs

from drivers.ble.adv_scale import XiaomiScaleDriver
from drivers.ble.bleak_transport import BleakTransport, passive_scan_args
from drivers.ble.thermometer import ThermometerDriver
from drivers.ble.transport import BleError, ScanFilter
from gateway.alarms import SNAPSHOT_NAME as ALARMS_SNAPSHOT
from gateway.alarms import AlarmBoard
from gateway.health import HealthModel, snapshot
from gateway.health.report import render_status, status_document
from gateway.health.rules import Facts, Thresholds, evaluate
from gateway.metrics import registry_for
from gateway.queue import ReadingQueue
from gateway.reading import Kind, Measurement, Metric, Unit
from simulators.ble.bleak_bumble import BleakClientBumble, BleakScannerBumble, BumbleHub
from simulators.ble.mi_scale import MiScale
from simulators.ble.thermometer import TemperatureRecord, Thermometer
from tests.ble.conftest import make_ctx

AT = datetime(2026, 11, 30, 7, 15, 0)


async def wait_until(predicate: Callable[[], bool], seconds: float) -> None:
    async with asyncio.timeout(seconds):
        while not predicate():  # noqa: ASYNC110 - polling the hub's HCI trace and the recorded readings
            await asyncio.sleep(0.02)


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


async def test_listener_scans_passively_and_a_connected_session_still_works(
    link: LocalLink, hub: BumbleHub, ble: BleakTransport, queue: ReadingQueue
) -> None:
    """What the gateway's host tells its controller (LE Set Scan Parameters, as an HCI trace shows): passive
    while only the scale's listener scans; active only while a connected session looks for its device (one
    adapter scans one way), passive again after; the weigh-in and the thermometer's reading both arrive."""
    scale = MiScale("v2")
    thermo = Thermometer([TemperatureRecord(37.1)])
    await scale.start(link)
    await thermo.start(link)
    rec = make_ctx(
        queue, "xiaomi-scale", "mi", address=scale.address, users=USERS, listen_seconds=6.0, settle_seconds=0.6
    )
    thermo_rec = make_ctx(queue, ThermometerDriver.name, "thermo", address=thermo.address, idle_timeout=1.0)
    driver = XiaomiScaleDriver(ble)

    try:
        listening = asyncio.create_task(driver.run(rec.ctx))
        await wait_until(lambda: hub.scan_parameters == ["passive"], 30)  # the listener alone: passive
        await scale.weigh(62.35, impedance=455, at=AT)
        await wait_until(lambda: len(rec.readings) == 2, 30)  # weight and impedance, heard passively
        assert hub.scan_parameters == ["passive"]
        await ThermometerDriver(ble).run(thermo_rec.ctx)  # a connected session meanwhile
        during = list(hub.scan_parameters)
        await scale.weigh(84.1, impedance=None, at=AT.replace(minute=16))
        await listening
    finally:
        await scale.stop()
        await thermo.stop()
    assert [r.measurements[0].reported_value for r in thermo_rec.readings] == [37.1]
    assert during == ["passive", "active", "passive"]  # active only while the session looked for its device
    assert hub.scan_parameters == during  # and the listener went on passively to the end
    assert driver.passive
    assert [(r.user_slot, r.measurements[0].reported_value) for r in rec.readings] == [
        (1, 62.35),
        (1, 455.0),
        (2, 84.1),
    ]


def test_passive_scan_arguments_for_bluez() -> None:
    """BlueZ scans passively only through an AdvertisementMonitor, which needs or-patterns (bleak raises
    without one). Ours match the two service data UUIDs, little-endian at the start of the AD data."""
    args = passive_scan_args(ScanFilter(address="C6:00:00:00:00:06", service_data=(0x181D, 0x181B)))
    assert args == {
        "scanning_mode": "passive",
        "bluez": {
            "or_patterns": [
                OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID16, b"\x1d\x18"),
                OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID16, b"\x1b\x18"),
            ]
        },
    }
    with pytest.raises(BleError, match="service data"):
        passive_scan_args(ScanFilter(address="C6:00:00:00:00:06"))
    # bleak's own BlueZ backend takes them (constructing it needs no D-Bus; starting it would): it is what
    # `BleakTransport()` builds on Linux. Its attributes are bleak's private ones, read here only to check.
    scanner = BleakScannerBlueZDBus(None, None, "passive", bluez=args["bluez"])
    assert scanner._scanning_mode == "passive" and scanner._or_patterns == args["bluez"]["or_patterns"]
    with pytest.raises(BleakError, match="or_patterns"):
        BleakScannerBlueZDBus(None, None, "passive", bluez={})


def _health_of(model: HealthModel, board: AlarmBoard, tmp_path: Path) -> tuple[dict[str, Any], list[str]]:
    """The scale's health as `status --json` gives it, and `status`'s text lines: the daemon's own path
    (rules over the model, the health and alarm snapshots read back by `status`)."""
    evaluate(model, board, Thresholds(), Facts())
    snapshot.write(tmp_path / snapshot.SNAPSHOT_NAME, model.as_dict())
    board.write_snapshot(tmp_path / ALARMS_SNAPSHOT)
    doc = status_document(tmp_path, {"pending": 0}, [], 0)
    return doc, render_status(doc).splitlines()


async def test_stack_without_passive_scanning_falls_back_to_active(
    link: LocalLink, hub: BumbleHub, queue: ReadingQueue, tmp_path: Path
) -> None:
    """BlueZ without --experimental refuses a passive scan; it cannot be produced here (no BlueZ), so a Bumble
    scanner stands in that refuses `scanning_mode="passive"` with bleak's BlueZ message while `refusing` is
    set. The listener warns with what to do and listens actively: the weigh-in is still read. Operators see
    it: health `scan` active-fallback with the stack's reason, a `scan:` line in `status`, a warning alarm.
    The next run asks again: refused again (still fallen back), then, with the stack fixed, passive again
    and the alarm cleared, without a new driver."""
    refusing = [True]

    class NoPassiveScanner(BleakScannerBumble):
        def __init__(self, callback: Any, uuids: Any, scanning_mode: str = "active", **kwargs: Any) -> None:
            if scanning_mode == "passive" and refusing[0]:
                raise BleakError("passive scanning on Linux requires BlueZ >= 5.55 with --experimental enabled")
            super().__init__(callback, uuids, scanning_mode, **kwargs)

    ble = BleakTransport(scanner_backend=NoPassiveScanner, client_backend=BleakClientBumble, hub=hub)
    scale = MiScale("v1")
    await scale.start(link)
    rec = make_ctx(
        queue, "xiaomi-scale", "mi", address=scale.address, users=USERS, listen_seconds=3.0, settle_seconds=0.5
    )
    model = HealthModel(version="t", gateway_id="gw", forwarder="file", target="out", devices=[("mi", "xiaomi-scale")])
    rec.ctx.health = model
    board = AlarmBoard()
    driver = XiaomiScaleDriver(ble)
    try:
        with capture_logs() as logs:
            listening = asyncio.create_task(driver.run(rec.ctx))
            await wait_until(lambda: hub.scan_parameters == ["active"], 30)
            await scale.weigh(62.35, at=AT)
            await listening
        assert [(e["event"], e["log_level"]) for e in logs if "passive" in e["event"]] == [
            ("adv_scale_passive_scan_unavailable", "warning")
        ]
        assert [r.measurements[0].reported_value for r in rec.readings] == [62.35]
        assert driver.passive is False and hub.scan_parameters == ["active"]
        refusal = "passive scan refused: passive scanning on Linux requires BlueZ >= 5.55 with --experimental enabled"
        doc, text = _health_of(model, board, tmp_path)
        (device,) = doc["health"]["devices"]
        assert device["scan"] == {"mode": "active-fallback", "reason": refusal}
        row = next(i for i, line in enumerate(text) if line.split()[:1] == ["mi"])
        assert text[row + 1].strip() == (
            f"scan: active, fallback: the Bluetooth stack refused a passive scan ({refusal}); start bluetoothd "
            "with --experimental (BlueZ >= 5.56) and it listens passively again at its next cycle"
        )
        assert doc["alarms"] == [
            {
                "code": "scan_fallback:mi",
                "severity": "warning",
                "sentence": "Scale 'mi' listens with an active scan: the Bluetooth stack refused a passive one "
                "(start bluetoothd with --experimental, BlueZ >= 5.56) — readings still arrive, but the gateway "
                "sends scan requests.",
                "since": doc["alarms"][0]["since"],
            }
        ]
        assert "  [warning] Scale 'mi' listens with an active scan" in "\n".join(text)

        with capture_logs() as logs:
            await driver.run(rec.ctx)  # the next cycle asks for a passive scan again: still refused
        assert hub.scan_parameters == ["active", "active"] and driver.passive is False
        assert [(e["event"], e["log_level"]) for e in logs if "passive" in e["event"]] == [
            ("adv_scale_passive_scan_still_unavailable", "debug")  # warned once, not every cycle
        ]
        _health_of(model, board, tmp_path)
        assert board.is_active("scan_fallback:mi")

        refusing[0] = False  # bluetoothd restarted with --experimental
        with capture_logs() as logs:
            await driver.run(rec.ctx)
        assert hub.scan_parameters == ["active", "active", "passive"] and driver.passive is True
        doc, text = _health_of(model, board, tmp_path)
        assert doc["health"]["devices"][0]["scan"] == {"mode": "passive", "reason": None}
        assert doc["alarms"] == []
        assert [(e["event"], e["log_level"]) for e in logs if "passive" in e["event"]] == [
            ("adv_scale_passive_scan_restored", "info")
        ]
    finally:
        await scale.stop()


async def test_a_passive_listener_shows_passive_and_raises_no_alarm(
    link: LocalLink, hub: BumbleHub, ble: BleakTransport, queue: ReadingQueue, tmp_path: Path
) -> None:
    """A stack that scans passively: the health model, `status` (text and JSON) and the metrics say so,
    whether or not a scale advertised during the listen; no alarm."""
    scale = MiScale("v1")
    await scale.start(link)
    rec = make_ctx(queue, "xiaomi-scale", "mi", address=scale.address, listen_seconds=1.0, settle_seconds=0.5)
    model = HealthModel(version="t", gateway_id="gw", forwarder="file", target="out", devices=[("mi", "xiaomi-scale")])
    rec.ctx.health = model
    board = AlarmBoard()
    try:
        await XiaomiScaleDriver(ble).run(rec.ctx)  # nobody on the scale: the listen ends unrefused
    finally:
        await scale.stop()
    assert hub.scan_parameters == ["passive"]
    doc, text = _health_of(model, board, tmp_path)
    assert doc["health"]["devices"][0]["scan"] == {"mode": "passive", "reason": None}
    row = next(i for i, line in enumerate(text) if line.split()[:1] == ["mi"])
    assert text[row + 1].strip() == "scan: passive (no scan requests)"
    assert doc["alarms"] == [] and not board.active()
    scraped = generate_latest(registry_for(model)).decode()
    assert 'vitalgate_device_passive_scan{device="mi"} 1.0' in scraped.splitlines()
