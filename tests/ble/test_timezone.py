"""A BLE device keeps Current Time in the zone it was set in: with `gateway.timezone` configured
(DeviceContext.local_tz) the offset is measured, and the device clock set, in that zone, not the system's."""

from __future__ import annotations

from datetime import datetime, timedelta

from bumble.link import LocalLink

from drivers.ble.bleak_transport import BleakTransport
from drivers.ble.indicating import BloodPressureDriver
from gateway.queue import ReadingQueue
from simulators.ble.cuff import BloodPressureCuff
from simulators.ble.encoding import BpRecord
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
