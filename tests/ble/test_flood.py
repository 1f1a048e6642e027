"""A BLE device flooding notifications (issue 11, must-have 6): the frames waiting for the session stay
bounded, readings per session are capped, and the next session works. Real Bumble peripheral and stack."""

from __future__ import annotations

import pytest
from bumble.link import LocalLink
from structlog.testing import capture_logs

from drivers.ble import common
from drivers.ble.bleak_transport import BleakTransport
from drivers.ble.indicating import BloodPressureDriver
from gateway.queue import ReadingQueue
from simulators.ble.cuff import BloodPressureCuff
from simulators.ble.encoding import BpRecord
from tests.ble.conftest import make_ctx

# Blood Pressure Measurement 0x2A35 (GSS 3.31): flags 0 (mmHg, no time/pulse/user/status), SFLOAT
# systolic 120, diastolic 80, mean 93.
FRAME = bytes([0x00, 0x78, 0x00, 0x50, 0x00, 0x5D, 0x00])


async def test_attack_ble_notification_flood_is_bounded_and_capped(
    link: LocalLink, ble: BleakTransport, queue: ReadingQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common, "MAX_QUEUED_FRAMES", 16)
    flood = BloodPressureCuff([FRAME] * 400)
    await flood.start(link)
    rec = make_ctx(
        queue, BloodPressureDriver.name, "cuff", address=flood.address, idle_timeout=2.0, max_readings_per_session=10
    )
    try:
        with capture_logs() as logs:
            await BloodPressureDriver(ble).run(rec.ctx)
    finally:
        await flood.stop()
    stats = next(e for e in logs if e["event"] == "ble_frame_queue")
    assert stats["limit"] == 16 and stats["high_water"] <= 16
    assert stats["dropped"] > 0  # it really flooded: more arrived than the session could take
    assert any(e["event"] == "ble_session_reading_cap" for e in logs)
    assert len(rec.readings) == 10  # the cap (below the 16 frames the queue surely held), not the 400 pushed

    # The gateway goes on: the next device session is served normally.
    honest = BloodPressureCuff([BpRecord(118, 76, 90, user=1)], address="C1:00:00:00:00:09")
    await honest.start(link)
    rec2 = make_ctx(queue, BloodPressureDriver.name, "cuff2", address=honest.address, idle_timeout=2.0)
    try:
        await BloodPressureDriver(ble).run(rec2.ctx)
    finally:
        await honest.stop()
    assert len(rec2.readings) == 1
