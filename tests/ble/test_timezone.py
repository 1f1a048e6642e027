"""A BLE device keeps Current Time in the zone it was set in: with `gateway.timezone` configured
(DeviceContext.local_tz) the offset is measured, and the device clock set, in that zone, not the system's."""

from __future__ import annotations

from datetime import datetime, timedelta

from bumble.link import LocalLink

from drivers.ble.bleak_transport import BleakTransport
from drivers.ble.glucose import GlucoseDriver
from drivers.ble.indicating import BloodPressureDriver
from gateway.queue import ReadingQueue
from simulators.ble.cuff import BloodPressureCuff
from simulators.ble.encoding import BpRecord
from simulators.ble.glucose import GlucoseMeter, make_records
from tests.ble.conftest import make_ctx
from tests.serial.test_timezone import other_zone

SLACK = timedelta(seconds=2)  # link round trips between the device's answer and the gateway's clock read


async def test_cuff_offset_and_clock_set_in_the_configured_zone(
    link: LocalLink, ble: BleakTransport, queue: ReadingQueue
) -> None:
    zone, zone_minus_system = other_zone()
    skew = timedelta(minutes=-7)
    # The simulated clock is the system's local time plus its skew: here, the zone's time 7 minutes slow.
    cuff = BloodPressureCuff(
        [BpRecord(120, 80, 93, time=datetime(2026, 11, 20, 7, 30), user=1)], clock_skew=zone_minus_system + skew
    )
    await cuff.start(link)
    rec = make_ctx(queue, "ble-blood-pressure", "cuff", address=cuff.address, idle_timeout=2.0)
    rec.ctx.local_tz = zone
    try:
        await BloodPressureDriver(ble).run(rec.ctx)
    finally:
        await cuff.stop()
    (reading,) = rec.readings
    assert reading.clock_offset is not None
    assert abs(reading.clock_offset - skew) <= SLACK  # not skew + the zones' difference
    assert abs(cuff.clock_skew - zone_minus_system) <= SLACK  # set to the zone's time


async def test_glucose_meter_offset_on_every_record_in_the_configured_zone(
    link: LocalLink, ble: BleakTransport, queue: ReadingQueue
) -> None:
    zone, zone_minus_system = other_zone()
    skew = timedelta(minutes=4)
    start = datetime(2026, 6, 1, 8, 0, 0)
    meter = GlucoseMeter(make_records(3, start=start), clock_skew=zone_minus_system + skew)
    await meter.start(link)
    try:
        session = await ble.connect(meter.address, pair=True)  # bond first, as `vitalgate pair` does
        await session.disconnect()
        await meter.disconnected.wait()
        rec = make_ctx(queue, "ble-glucose", "meter", address=meter.address, idle_timeout=2.0)
        rec.ctx.local_tz = zone
        await GlucoseDriver(ble).run(rec.ctx)
    finally:
        await meter.stop()
    offsets = {r.clock_offset for r in rec.readings}
    assert len(rec.readings) == 3 and len(offsets) == 1
    (offset,) = offsets
    assert offset is not None and abs(offset - skew) <= SLACK
    assert abs(meter.clock_skew - zone_minus_system) <= SLACK
