"""Glucose meter over RACP: bonded (LE Secure Connections, passkey), 500 records, resume, faults."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from bumble.link import LocalLink

from drivers.ble.bleak_transport import BleakTransport
from drivers.ble.glucose import GlucoseDriver, checkpoint_name
from drivers.ble.transport import BleError
from drivers.gatt.device_info import parse_system_id
from gateway.queue import ReadingQueue
from gateway.reading import DeviceIdentity, Kind, Measurement, Metric, Status, Unit
from simulators.ble import encoding
from simulators.ble.encoding import GlucoseRecord
from simulators.ble.glucose import GlucoseMeter, make_records
from tests.ble.conftest import Recorded, make_ctx

START = datetime(2026, 6, 1, 8, 0, 0)


def stored_at(meter: GlucoseMeter) -> str:
    """Where the driver keeps this meter's record checkpoint: under the meter's own identity (System ID)."""
    assert meter.system_id is not None
    return checkpoint_name(
        DeviceIdentity("ble-glucose", system_id=parse_system_id(encoding.system_id(*meter.system_id)))
    )


async def _bond(ble: BleakTransport, meter: GlucoseMeter) -> None:
    """What `vitalgate pair` does: connect, pair (passkey entry), disconnect; keys stay in the hub."""
    session = await ble.connect(meter.address, pair=True)
    await session.disconnect()
    await meter.disconnected.wait()


@contextlib.asynccontextmanager
async def _bonded(link: LocalLink, ble: BleakTransport, meter: GlucoseMeter) -> AsyncIterator[GlucoseMeter]:
    """The meter running and bonded to the gateway for the block, stopped after it whatever happens."""
    await meter.start(link)
    try:
        await _bond(ble, meter)
        yield meter
    finally:
        await meter.stop()


async def _sync(ble: BleakTransport, queue: ReadingQueue, meter: GlucoseMeter) -> Recorded:
    """One session of the glucose driver against `meter`, as the supervisor would run it."""
    rec = make_ctx(queue, "ble-glucose", "meter", address=meter.address, idle_timeout=2.0)
    await GlucoseDriver(ble).run(rec.ctx)
    return rec


async def test_unbonded_gateway_cannot_read_records(link: LocalLink, ble: BleakTransport, queue: ReadingQueue) -> None:
    meter = GlucoseMeter(make_records(3, start=START))
    await meter.start(link)
    rec = make_ctx(queue, "ble-glucose", "meter", address=meter.address, idle_timeout=2.0)
    try:
        try:
            await GlucoseDriver(ble).run(rec.ctx)
        except BleError:
            pass
        else:
            raise AssertionError("an unbonded session must not get records")
    finally:
        await meter.stop()
    assert rec.readings == []
    assert meter.sent_sequences == []


async def test_500_records_first_sync_all_second_only_new(
    link: LocalLink, ble: BleakTransport, queue: ReadingQueue
) -> None:
    async with _bonded(link, ble, GlucoseMeter(make_records(500, start=START))) as meter:
        rec = await _sync(ble, queue, meter)
        assert [r.sequence for r in rec.readings] == list(range(1, 501))
        assert rec.new == 500
        assert await rec.ctx.checkpoint(stored_at(meter)) == "500"
        assert meter.requests[-1] == bytes([0x01, 0x01])  # report stored records, all

        first = rec.readings[0]
        assert first.kind is Kind.BLOOD_GLUCOSE
        assert first.measurements == (Measurement(Metric.GLUCOSE, 70.0, Unit.MG_DL),)
        assert first.device_time == START
        assert first.device.system_id == "001BDC0000000003"
        assert first.device.serial_number == "GLU00003"

        meter.add(GlucoseRecord(501, datetime(2026, 9, 1, 7, 0), 104))
        meter.add(GlucoseRecord(502, datetime(2026, 9, 1, 12, 0), 151, meal=2))
        rec2 = await _sync(ble, queue, meter)
        assert meter.requests[-1] == bytes([0x01, 0x03, 0x01, 0xF5, 0x01])  # >= sequence 501
        assert [(r.sequence, r.measurements[0].reported_value) for r in rec2.readings] == [(501, 104), (502, 151)]
        assert rec2.readings[1].raw.endswith(bytes([0x02, 0xF6, 0x01, 0x02]))  # context frame kept too
        assert await rec2.ctx.checkpoint(stored_at(meter)) == "502"

        rec3 = await _sync(ble, queue, meter)  # nothing new: "no records found"
        assert rec3.readings == []
        assert await rec3.ctx.checkpoint(stored_at(meter)) == "502"


async def test_disconnect_mid_transfer_resumes_without_loss_or_duplicate(
    link: LocalLink, ble: BleakTransport, queue: ReadingQueue
) -> None:
    async with _bonded(link, ble, GlucoseMeter(make_records(200, start=START), fail_after=83)) as meter:
        rec = await _sync(ble, queue, meter)  # the meter drops the link after handing 83 to its stack
        # Frames still queued in the meter's stack die with the link, as over the air: a prefix arrives.
        k = len(rec.readings)
        assert 0 < k <= 83
        assert [r.sequence for r in rec.readings] == list(range(1, k + 1))
        assert await rec.ctx.checkpoint(stored_at(meter)) == str(k)

        rec2 = await _sync(ble, queue, meter)
        assert meter.requests[-1] == bytes([0x01, 0x03, 0x01]) + (k + 1).to_bytes(2, "little")
        assert [r.sequence for r in rec2.readings] == list(range(k + 1, 201))
        assert rec2.new == 200 - k
    counts = await queue.counts()
    assert sum(counts.values()) == 200


async def test_malformed_record_rejected_kept_and_sync_goes_on(
    link: LocalLink, ble: BleakTransport, queue: ReadingQueue
) -> None:
    records = make_records(10, start=START)
    records[4] = GlucoseRecord(5, START, 88, sensor_status=0x0001)  # battery low annunciation
    records[6] = GlucoseRecord(7, START, 95, sample_type=0xA)  # control solution
    async with _bonded(link, ble, GlucoseMeter(records, malformed={3, 9})) as meter:
        rec = await _sync(ble, queue, meter)
    assert [r.sequence for r in rec.readings] == [1, 2, 4, 5, 6, 7, 8, 10]
    by_seq = {r.sequence: r for r in rec.readings}
    assert by_seq[5].status == frozenset({Status.BATTERY_LOW})
    assert Status.CONTROL_SOLUTION in by_seq[7].status
    rejects = await queue.rejects()
    assert [(source, error, len(raw)) for _id, source, error, raw in rejects] == [
        ("meter:ble-glucose/2a18", "MalformedFrameError", 5),
        ("meter:ble-glucose/2a18", "MalformedFrameError", 5),
    ]
    assert [raw[1:3] for *_, raw in rejects] == [bytes([3, 0]), bytes([9, 0])]  # their sequence numbers
    assert await rec.ctx.checkpoint(stored_at(meter)) == "10"


async def test_meter_clock_offset_on_every_record_and_clock_corrected(
    link: LocalLink, ble: BleakTransport, queue: ReadingQueue
) -> None:
    meter = GlucoseMeter(make_records(5, start=START), clock_skew=timedelta(hours=1, minutes=3))  # DST slip
    async with _bonded(link, ble, meter):
        rec = await _sync(ble, queue, meter)
    offsets = {r.clock_offset for r in rec.readings}
    assert len(rec.readings) == 5 and len(offsets) == 1
    (offset,) = offsets
    assert offset is not None and abs(offset - timedelta(hours=1, minutes=3)) <= timedelta(seconds=2)
    assert [r.device_time for r in rec.readings] == [START + timedelta(hours=4 * i) for i in range(5)]
    assert abs(meter.clock_skew) <= timedelta(seconds=2)


async def test_shutdown_mid_transfer_aborts_racp_keeps_committed_and_resumes(
    link: LocalLink, ble: BleakTransport, queue: ReadingQueue
) -> None:
    async with _bonded(link, ble, GlucoseMeter(make_records(300, start=START), pause_after=100)) as meter:
        hundred = asyncio.Event()
        rec = make_ctx(queue, "ble-glucose", "meter", reached=(100, hundred), address=meter.address, idle_timeout=5.0)
        run = asyncio.create_task(GlucoseDriver(ble).run(rec.ctx))
        await hundred.wait()  # the meter stalls after 100 records; all of them are committed
        for _ in range(500):  # ... and then the checkpoint is stored (a cancel in between only means re-reading)
            if await rec.ctx.checkpoint(stored_at(meter)) == "100":
                break
            await asyncio.sleep(0.01)
        run.cancel()  # the daemon shuts down mid-transfer
        with pytest.raises(asyncio.CancelledError):
            await run
        assert bytes([0x03, 0x00]) in meter.requests  # RACP Abort Operation
        assert [r.sequence for r in rec.readings] == list(range(1, 101))
        assert await rec.ctx.checkpoint(stored_at(meter)) == "100"

        rec2 = await _sync(ble, queue, meter)
        assert meter.requests[-1] == bytes([0x01, 0x03, 0x01, 101, 0x00])
        assert [r.sequence for r in rec2.readings] == list(range(101, 301))


async def test_replaced_meter_under_the_same_entry_is_read_from_its_first_record(
    link: LocalLink, ble: BleakTransport, queue: ReadingQueue
) -> None:
    """A clinic swaps a meter and keeps the [[devices]] entry: the new meter's records must all come in,
    not only those numbered above the old meter's last record."""
    async with _bonded(link, ble, GlucoseMeter(make_records(20, start=START))) as old:
        assert [r.sequence for r in (await _sync(ble, queue, old)).readings] == list(range(1, 21))
    replacement = GlucoseMeter(
        make_records(3, start=START + timedelta(days=1)),
        serial="GLU00004",
        system_id=(0x0000_0004, 0x00_1B_DC),
        address="C3:00:00:00:00:04",
    )
    async with _bonded(link, ble, replacement) as new:
        rec = await _sync(ble, queue, new)
    assert [r.sequence for r in rec.readings] == [1, 2, 3]
    assert rec.new == 3
    assert await rec.ctx.checkpoint(stored_at(new)) == "3"
    assert await rec.ctx.checkpoint(stored_at(old)) == "20"
