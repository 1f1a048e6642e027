"""Device quirks as data: the table, its lookup, and each behaviour applied to a real (simulated) session."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from bumble.link import LocalLink

from drivers.ble import quirks
from drivers.ble.bleak_transport import BleakTransport
from drivers.ble.indicating import BloodPressureDriver
from drivers.ble.quirks import STANDARD, QuirkRow, Quirks, quirks_for
from drivers.gatt import blood_pressure
from drivers.gatt.date_time import parse_date_time
from gateway.health.model import HealthModel
from gateway.queue import ReadingQueue
from gateway.reading import DeviceIdentity
from simulators.ble.cuff import BloodPressureCuff
from simulators.ble.encoding import BpRecord
from tests.ble.conftest import make_ctx
from tests.serial.test_timezone import other_zone


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


# -- the wrong-time-zone quirk (`clock_zone`) -------------------------------------------------------------


def test_zone_names() -> None:
    assert quirks.parse_zone("UTC") is UTC
    assert quirks.parse_zone("+08:00").utcoffset(None) == timedelta(hours=8)
    assert quirks.parse_zone("-03:30").utcoffset(None) == timedelta(hours=-3, minutes=-30)
    assert quirks.parse_zone("Asia/Kolkata") == ZoneInfo("Asia/Kolkata")
    for bad in ("", "8", "+8:00", "Mars/Olympus"):
        with pytest.raises(ValueError, match="time zone"):
            quirks.parse_zone(bad)


def test_time_stamp_of_a_device_keeping_utc_is_read_in_utc() -> None:
    # GSS Blood Pressure Measurement: flags 0x02 (time stamp present, mmHg), systolic 120 / diastolic 80 /
    # MAP 93 as SFLOAT, then Date Time 2026-11-30 07:30:00 (year LE, month, day, h, m, s).
    frame = bytes.fromhex("02780050005d00ea070b1e071e00")
    m = blood_pressure.parse_bp_measurement(frame)
    reading = blood_pressure.to_reading(m, _id("Acme", "UTC-BP"), datetime.now(UTC), raw=frame)
    berlin = ZoneInfo("Europe/Berlin")  # UTC+1 in November
    # Standard behaviour: the bare digits are the gateway's local wall clock (here Berlin): 06:30 UTC.
    assert reading.effective_time(berlin) == datetime(2026, 11, 30, 6, 30, tzinfo=UTC)
    # Declared: the clock keeps UTC, so 07:30 is 07:30 UTC whatever the gateway's zone.
    zoned = quirks.with_clock_zone(reading, quirks.parse_zone("UTC"))
    assert zoned.device_time == datetime(2026, 11, 30, 7, 30, tzinfo=UTC)
    assert zoned.effective_time(berlin) == datetime(2026, 11, 30, 7, 30, tzinfo=UTC)
    fixed = quirks.with_clock_zone(reading, quirks.parse_zone("+08:00"))
    assert fixed.effective_time(berlin) == datetime(2026, 11, 29, 23, 30, tzinfo=UTC)
    assert quirks.with_clock_zone(zoned, berlin) is zoned  # already zoned: as is
    assert quirks.with_clock_zone(reading, None) is reading  # no declared zone: standard


async def test_device_keeping_utc_without_a_readable_clock(
    link: LocalLink, ble: BleakTransport, queue: ReadingQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No Current Time to measure the offset from: only the declared zone puts the reading at the right time."""
    zone, _ = other_zone()  # the gateway's configured zone differs from the system's (and from UTC here)
    row = QuirkRow("VitalGate Simulators", "SIM-UTC", Quirks(clock_zone="UTC"), "test", "test")
    monkeypatch.setattr(quirks, "TABLE", (row,))
    taken = datetime.now(UTC).replace(microsecond=0, tzinfo=None) - timedelta(minutes=5)  # UTC digits
    cuff = BloodPressureCuff([BpRecord(120, 80, 93, time=taken, user=1)], model="SIM-UTC", current_time=False)
    await cuff.start(link)
    rec = make_ctx(queue, "ble-blood-pressure", "utc", address=cuff.address, idle_timeout=1.0)
    rec.ctx.local_tz = zone
    try:
        await BloodPressureDriver(ble).run(rec.ctx)
    finally:
        await cuff.stop()
    (reading,) = rec.readings
    assert reading.device_time == taken.replace(tzinfo=UTC)
    assert reading.effective_time(zone) == taken.replace(tzinfo=UTC)
    stored = [item.reading for item in await queue.unassigned()]  # not bound to a patient: held unassigned
    assert [r.device_time for r in stored] == [taken.replace(tzinfo=UTC)]  # the zone survives the queue


# -- Roche (xDrip): the clock in Date Time 0x2A08, no Current Time service ---------------------------------


async def test_roche_clock_read_and_set_at_date_time(link: LocalLink, ble: BleakTransport, queue: ReadingQueue) -> None:
    skew = timedelta(minutes=10)
    meter = BloodPressureCuff(
        [BpRecord(120, 80, 93, user=1)],
        manufacturer="Roche",
        model="Accu-Chek Guide",
        date_time_char=True,
        current_time=False,
        clock_skew=skew,
    )
    await meter.start(link)
    rec = make_ctx(queue, "ble-blood-pressure", "roche", address=meter.address, idle_timeout=1.0)
    rec.ctx.health = HealthModel(version="t", gateway_id="g", forwarder="file", target="out")
    try:
        await BloodPressureDriver(ble).run(rec.ctx)
    finally:
        await meter.stop()
    # Operators see it: the health model (`vitalgate status`) says what applies to this device.
    assert rec.ctx.health.as_dict()["devices"][0]["quirks"] == ["clock at 0x2A08"]
    (reading,) = rec.readings
    assert reading.clock_offset is not None and abs(reading.clock_offset - skew) < timedelta(seconds=3)
    assert len(meter.date_time_writes) == 1  # off by 10 min (> 30 s tolerance): set, at 0x2A08
    assert abs(meter.clock_skew) < timedelta(seconds=3)


async def test_unknown_device_clock_elsewhere_left_alone(
    link: LocalLink, ble: BleakTransport, queue: ReadingQueue
) -> None:
    """The same device under another name: standard behaviour (Current Time only), its Date Time untouched."""
    meter = BloodPressureCuff(
        [BpRecord(120, 80, 93, user=1)], date_time_char=True, current_time=False, clock_skew=timedelta(minutes=10)
    )
    await meter.start(link)
    rec = make_ctx(queue, "ble-blood-pressure", "std2", address=meter.address, idle_timeout=1.0)
    try:
        await BloodPressureDriver(ble).run(rec.ctx)
    finally:
        await meter.stop()
    (reading,) = rec.readings
    assert reading.clock_offset is None and meter.date_time_writes == []


def test_every_row_shows_its_effects() -> None:
    for row in quirks.TABLE:
        assert row.quirks.effects()
    assert STANDARD.effects() == []
    assert Quirks(clock_zone="UTC", last_record_only=True).effects() == ["last record only", "clock keeps UTC"]


def test_drivers_command_lists_the_quirks_with_their_sources(capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import main

    assert main(["drivers", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["quirks"]
    assert [(q["manufacturer"], q["model"]) for q in shown] == [(r.manufacturer, r.model) for r in quirks.TABLE]
    roche = next(q for q in shown if q["manufacturer"] == "Roche*")
    assert roche["applied"] == ["clock at 0x2A08"] and "xDrip" in roche["source"]
    assert main(["drivers"]) == 0
    assert "Roche* / *: clock at 0x2A08" in capsys.readouterr().out
