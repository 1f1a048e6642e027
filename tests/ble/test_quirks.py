"""Device quirks as data: the table, its lookup, and each behaviour applied to a real (simulated) session."""

from __future__ import annotations

from datetime import datetime

import pytest
from bumble.link import LocalLink

from drivers.ble import quirks
from drivers.ble.bleak_transport import BleakTransport
from drivers.ble.indicating import BloodPressureDriver
from drivers.ble.quirks import STANDARD, QuirkRow, Quirks, quirks_for
from drivers.gatt.date_time import parse_date_time
from gateway.queue import ReadingQueue
from gateway.reading import DeviceIdentity
from simulators.ble.cuff import BloodPressureCuff
from simulators.ble.encoding import BpRecord
from tests.ble.conftest import make_ctx


def _id(manufacturer: str | None, model: str | None) -> DeviceIdentity:
    return DeviceIdentity("ble-blood-pressure", address="C1:00:00:00:00:01", manufacturer=manufacturer, model=model)


def test_lookup_by_manufacturer_and_model() -> None:
    found, row = quirks_for(_id("A&D Medical", "UA-651BLE"))
    assert row is not None and found.set_clock == "always" and found.connect_delay == 1.0
    assert quirks_for(_id("a&d medical ", "ua-651ble-plus"))[1] is row  # case and trailing blanks
    assert quirks_for(_id("A&D Medical", "UA-767")) == (STANDARD, None)  # another model: standard
    assert quirks_for(_id(None, "UA-651BLE")) == (STANDARD, None)  # unknown devices: standard behaviour
    assert quirks_for(_id("Acme", None)) == (STANDARD, None)


def test_every_row_says_what_and_where_from() -> None:
    for row in quirks.TABLE:
        assert row.behaviour.strip() and row.source.strip() and row.quirks != STANDARD


async def test_clock_always_written_to_date_time_for_an_and_cuff(
    link: LocalLink, ble: BleakTransport, queue: ReadingQueue
) -> None:
    # Clock right (no drift): a standard cuff would be left alone; the A&D row says "write it anyway".
    cuff = BloodPressureCuff(
        [BpRecord(128, 82, 97, user=1)], manufacturer="A&D Medical", model="UA-651BLE", date_time_char=True
    )
    await cuff.start(link)
    rec = make_ctx(queue, "ble-blood-pressure", "and", address=cuff.address, idle_timeout=1.0)
    try:
        await BloodPressureDriver(ble).run(rec.ctx)
    finally:
        await cuff.stop()
    assert len(cuff.date_time_writes) == 1
    written = parse_date_time(cuff.date_time_writes[0])
    assert written is not None and abs((written - datetime.now()).total_seconds()) < 5
    assert len(rec.readings) == 1


async def test_standard_cuff_clock_left_alone(link: LocalLink, ble: BleakTransport, queue: ReadingQueue) -> None:
    cuff = BloodPressureCuff([BpRecord(128, 82, 97, user=1)], date_time_char=True)
    await cuff.start(link)
    rec = make_ctx(queue, "ble-blood-pressure", "std", address=cuff.address, idle_timeout=1.0)
    try:
        await BloodPressureDriver(ble).run(rec.ctx)
    finally:
        await cuff.stop()
    assert cuff.date_time_writes == []


async def test_last_record_only_and_never_set_clock(
    link: LocalLink, ble: BleakTransport, queue: ReadingQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows for the simulator's model exercise the other behaviours (the shipped table holds sourced rows only)."""
    from datetime import timedelta

    row = QuirkRow(
        "VitalGate Simulators", "SIM-QUIRK", Quirks(set_clock="never", last_record_only=True), "test", "test"
    )
    monkeypatch.setattr(quirks, "TABLE", (row,))
    skew = timedelta(hours=-1)  # a clock an hour behind (e.g. kept in another zone): measured, not rewritten
    cuff = BloodPressureCuff(
        [BpRecord(120, 80, 93, user=1), BpRecord(121, 81, 94, user=1)], model="SIM-QUIRK", clock_skew=skew, linger=5.0
    )
    await cuff.start(link)
    rec = make_ctx(queue, "ble-blood-pressure", "q", address=cuff.address, idle_timeout=4.0)
    try:
        await BloodPressureDriver(ble).run(rec.ctx)
    finally:
        await cuff.stop()
    assert len(rec.readings) == 1  # ended after one record instead of waiting idle_timeout
    assert cuff.clock_skew == skew  # not written
    offset = rec.readings[0].clock_offset
    assert offset is not None and abs(offset - skew) < timedelta(seconds=3)
