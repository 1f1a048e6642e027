"""Meters keep local time in the zone they were set in, which need not be the system's: the gateway reads its
own clock in `gateway.timezone` (DeviceContext.local_tz) before comparing, and sets the meter in that zone."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from drivers.serial.session_ultra2 import OneTouchUltra2Driver
from drivers.serial.session_ultraeasy import OneTouchUltraEasyDriver
from gateway.config import load_config
from gateway.crypto import KeyRing, create_key_file
from gateway.daemon import Gateway
from gateway.queue import ReadingQueue
from simulators.serial.base import PtyDevice
from simulators.serial.ultra2 import Ultra2Simulator
from simulators.serial.ultraeasy import UltraEasySimulator
from tests.serial.conftest import RECORDS, ctx_for
from tests.serial.test_gateway_serial import until

SKEW = timedelta(seconds=90)  # the meter runs 90 s fast in its own zone
# Timing between the meter's answer and the gateway reading its clock: the offset is whole seconds.
SLACK = timedelta(seconds=2)


def other_zone() -> tuple[tzinfo, timedelta]:
    """A zone whose current UTC offset differs from the system's, and that difference (zone minus system)."""
    system = datetime.now().astimezone().utcoffset() or timedelta(0)
    for name in ("Asia/Tokyo", "America/Chicago", "Pacific/Kiritimati"):
        zone = ZoneInfo(name)
        offset = datetime.now(zone).utcoffset() or timedelta(0)
        if offset != system:
            return zone, offset - system
    raise AssertionError("no zone differs from the system's")


@pytest.mark.parametrize(
    ("kind", "sim_cls", "driver_cls"),
    [
        ("onetouch-ultra2", Ultra2Simulator, OneTouchUltra2Driver),
        ("onetouch-ultraeasy", UltraEasySimulator, OneTouchUltraEasyDriver),
    ],
)
async def test_offset_measured_against_the_configured_zone(
    kind: str, sim_cls: type, driver_cls: type, queue: ReadingQueue, started: list[PtyDevice]
) -> None:
    zone, zone_minus_system = other_zone()
    # The simulator's base clock is the system's local time; the meter shows the configured zone's, 90 s fast.
    sim = sim_cls(RECORDS, clock_offset=zone_minus_system + SKEW).start()
    started.append(sim)
    ctx = ctx_for(queue, kind, {"port": sim.path, "timeout_seconds": 0.3})
    ctx.local_tz = zone
    await driver_cls().run(ctx)  # the real wall clock: no clock injected
    readings = [x.reading for x in await queue.unassigned()]
    assert len(readings) == len(RECORDS)
    offsets = {r.clock_offset for r in readings}
    assert len(offsets) == 1
    (offset,) = offsets
    assert offset is not None and abs(offset - SKEW) <= SLACK  # not SKEW + the zones' difference
    # 90 s is past the 60 s tolerance: the meter was set to the configured zone's time, not the system's.
    assert sim.clock_sets == 1
    assert abs(sim.clock_offset - zone_minus_system) <= SLACK


async def test_daemon_passes_the_configured_zone_to_device_sessions(tmp_path: Path, started: list[PtyDevice]) -> None:
    """`gateway.timezone` in the TOML reaches the session through the daemon's DeviceContext."""
    zone, zone_minus_system = other_zone()
    sim = Ultra2Simulator(RECORDS, clock_offset=zone_minus_system + SKEW).start()
    started.append(sim)
    create_key_file(tmp_path / "data.key")
    config = tmp_path / "vitalgate.toml"
    config.write_text(
        f"""
[gateway]
state_dir = "{tmp_path}"
key_file = "{tmp_path / "data.key"}"
timezone = "{zone}"

[output]
forwarder = "file"

[[devices]]
driver = "onetouch-ultra2"
name = "meter"
port = "{sim.path}"
timeout_seconds = 0.5
poll_seconds = 60
"""
    )
    cfg = load_config(config)
    gw = Gateway(cfg, KeyRing.load(cfg.key_file))
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    try:

        async def downloaded() -> bool:
            ctx = gw.contexts.get("meter")
            return ctx is not None and ctx.submitted == len(RECORDS)

        await until(downloaded, "the meter's records committed")
        assert gw.contexts["meter"].local_tz == zone
        assert gw.queue is not None
        offsets = {x.reading.clock_offset for x in await gw.queue.unassigned()}
    finally:
        stop.set()
        await task
    (offset,) = offsets
    assert offset is not None and abs(offset - SKEW) <= SLACK
