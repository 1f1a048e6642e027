"""Log noise (issue 12): each BLE poll is routine (debug); lines that matter name the configured device.

A real cuff simulator on Bumble, the whole gateway; the log events captured with the contextvars the
daemon binds merged in, as `configure_logging` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from bumble.link import LocalLink

from drivers.ble import runtime
from drivers.ble.bleak_transport import BleakTransport
from gateway.crypto import KeyRing
from gateway.daemon import Gateway
from gateway.queue import ReadingQueue
from simulators.ble.cuff import BloodPressureCuff
from simulators.ble.encoding import BpRecord
from tests.ble.test_pipeline import _ble_device, _config


@pytest.fixture
def installed(ble: BleakTransport) -> Iterator[BleakTransport]:
    runtime.use_transport(ble)
    yield ble
    runtime.reset_transport()


async def test_idle_polls_log_at_debug_and_name_the_device(
    tmp_path: Path, link: LocalLink, installed: BleakTransport, keyring: KeyRing, key_file: Path
) -> None:
    cuff = BloodPressureCuff([BpRecord(121, 79, 93, pulse=64, time=None, user=1)])
    await cuff.start(link)
    cfg = _config(tmp_path, key_file, (_ble_device("ble-blood-pressure", "bedroom-cuff", cuff.address),))
    async with await ReadingQueue.open(cfg.queue_path, keyring) as q:
        await q.bind(cuff.address, 1, "Patient/p-one")
    delivered = asyncio.Event()
    gw = Gateway(cfg, keyring, on_delivered=lambda _r, _f: delivered.set())
    stop = asyncio.Event()
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as events:
        task = asyncio.create_task(gw.run(stop))
        try:
            async with asyncio.timeout(30):
                await delivered.wait()
                await cuff.wait_connections(cuff.connections + 3)  # three more polls that find nothing
        finally:
            stop.set()
            await task
            await cuff.stop()
    ble = [e for e in events if str(e["event"]).startswith("ble_")]
    done = [e for e in ble if e["event"] == "ble_session_done"]
    assert [e["log_level"] for e in done if e["readings"] == 1] == ["info"]
    assert {e["log_level"] for e in done if e["readings"] == 0} == {"debug"} and len(done) >= 3
    assert {e["log_level"] for e in ble if e["event"] == "ble_battery"} == {"debug"}
    assert ble and all(e.get("device_name") == "bedroom-cuff" for e in ble)
