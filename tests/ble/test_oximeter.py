"""Pulse oximeter sessions through bleak + our Bumble backend + a Bumble PLX peripheral, real queue."""

from __future__ import annotations

import logging
from datetime import datetime

import pytest
from bumble.link import LocalLink

from drivers.ble.bleak_transport import BleakTransport
from drivers.ble.oximeter import PulseOximeterDriver, checkpoint_name
from drivers.gatt.device_info import parse_system_id
from gateway.queue import ReadingQueue
from gateway.reading import DeviceIdentity, Kind, Metric, Status
from simulators.ble import encoding
from simulators.ble.oximeter import ContinuousSample, PulseOximeter, SpotCheck
from tests.ble.conftest import Recorded, make_ctx

T = datetime(2026, 11, 30, 7, 0, 0)


def _at(minute: int) -> datetime:
    return T.replace(minute=minute)


async def _session(
    link: LocalLink, ble: BleakTransport, queue: ReadingQueue, device: PulseOximeter, **options: object
) -> Recorded:
    rec = make_ctx(queue, PulseOximeterDriver.name, "plx", address=device.address, idle_timeout=1.5, **options)
    await PulseOximeterDriver(ble).run(rec.ctx)
    return rec


def _stored_at(device: PulseOximeter) -> str:
    assert device.system_id is not None
    sid = parse_system_id(encoding.system_id(*device.system_id))
    return checkpoint_name(DeviceIdentity("ble-pulse-oximeter", system_id=sid))


async def test_stored_records_then_resume_then_delete(
    link: LocalLink, ble: BleakTransport, queue: ReadingQueue
) -> None:
    oxi = PulseOximeter(
        [SpotCheck(96, 71, time=_at(30))],
        stored=[SpotCheck(95, 70, time=_at(m)) for m in (1, 2, 3)],
    )
    await oxi.start(link)
    try:
        first = await _session(link, ble, queue, oxi)
        assert sorted((r.device_time, r.measurements[0].reported_value) for r in first.readings) == [
            (_at(1), 95),
            (_at(2), 95),
            (_at(3), 95),
            (_at(30), 96),
        ]
        assert {r.kind for r in first.readings} == {Kind.OXYGEN_SATURATION}
        assert await first.ctx.checkpoint(_stored_at(oxi)) == _at(30).isoformat()
        assert oxi.requests == [bytes([0x01, 0x01])]

        # A new stored record; the old ones are still on the device: only the new one is committed.
        oxi.stored.append(SpotCheck(93, 80, time=_at(40)))
        second = await _session(link, ble, queue, oxi, delete_after_sync=True)
        assert [(r.device_time, r.measurements[0].reported_value) for r in second.readings] == [(_at(40), 93)]
        # delete_after_sync: deleted only after the transfer completed and was committed.
        assert oxi.requests[1:] == [bytes([0x01, 0x01]), bytes([0x02, 0x01])]
        assert oxi.stored == []
    finally:
        await oxi.stop()


async def test_continuous_samples_are_thinned(link: LocalLink, ble: BleakTransport, queue: ReadingQueue) -> None:
    samples: list[ContinuousSample | bytes] = [ContinuousSample(97, 70)] * 10
    samples += [ContinuousSample(92, 70)]  # a drop of 5 points: kept at once
    samples += [bytes([0x04, 0x61, 0x00, 0x48, 0x00, 0x00, 0x20])]  # "measurement unavailable": counted only
    samples += [bytes([0x00, 0x61])]  # malformed: rejected and kept
    samples += [ContinuousSample(92, 71)] * 5
    oxi = PulseOximeter(continuous=samples, period=0.01)
    await oxi.start(link)
    try:
        rec = await _session(link, ble, queue, oxi, continuous_seconds=3600)
    finally:
        await oxi.stop()
    assert oxi.sent_continuous == len(samples)
    assert [r.measurements[0].reported_value for r in rec.readings] == [97, 92]
    assert all(r.device_time is None for r in rec.readings)
    rejects = await queue.rejects()
    assert [(source, error) for _id, source, error, _raw in rejects] == [
        ("plx:ble-pulse-oximeter/2a5f", "MalformedFrameError")
    ]


async def test_sensor_fault_and_test_data_flags_reach_the_reading(
    link: LocalLink, ble: BleakTransport, queue: ReadingQueue
) -> None:
    oxi = PulseOximeter([SpotCheck(97, 60, device_status=1 << 15), SpotCheck(98, 61, status=1 << 10, pai=4.2)])
    await oxi.start(link)
    try:
        rec = await _session(link, ble, queue, oxi, continuous_seconds=0)
    finally:
        await oxi.stop()
    # device and sensor status bit 15 "sensor disconnected"; measurement status bit 10 "data for demonstration"
    assert [r.status for r in rec.readings] == [
        frozenset({Status.PLX_SENSOR_DISCONNECTED}),
        frozenset({Status.TEST_DATA}),
    ]
    assert rec.readings[1].measurement(Metric.PULSE_AMPLITUDE_INDEX) is not None


async def test_stream_turned_off_before_hanging_up(
    link: LocalLink, ble: BleakTransport, queue: ReadingQueue, caplog: pytest.LogCaptureFixture
) -> None:
    """The session ends (quiet for idle_timeout) while the worn oximeter still streams: the gateway writes the
    continuous CCCD off and only then disconnects, so no sample is in flight towards a link that is gone
    (before: Bumble's controller logged `!!! no connection for ...` in every demo run)."""
    samples: list[ContinuousSample | bytes] = [ContinuousSample(97, 70 + i % 3) for i in range(50)]
    oxi = PulseOximeter(continuous=samples, period=0.4)
    await oxi.start(link)
    caplog.set_level(logging.WARNING, logger="bumble")
    try:
        rec = make_ctx(queue, PulseOximeterDriver.name, "plx", address=oxi.address, idle_timeout=0.2)
        await PulseOximeterDriver(ble).run(rec.ctx)
        await oxi.disconnected.wait()
    finally:
        await oxi.stop()
    assert oxi.stream_stops == 1  # the CCCD write came while connected
    assert 0 < oxi.sent_continuous < len(samples)  # the session ended mid-stream, and the stream stopped
    assert [r.getMessage() for r in caplog.records if "no connection" in r.getMessage()] == []
