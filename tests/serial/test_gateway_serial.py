"""The daemon with a serial meter from a TOML config: cable pulled mid-download, the core reopens the port
with backoff when it returns, and every reading is delivered exactly once to the file output."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from gateway.config import load_config
from gateway.crypto import KeyRing, create_key_file
from gateway.daemon import Gateway
from gateway.queue import ReadingQueue, State
from simulators.serial.base import Fault, PtyDevice
from simulators.serial.ultra2 import Ultra2Simulator
from tests.serial.conftest import METER_NOW, RECORDS
from tests.serial.test_serial_to_fhir import observations


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(1500):  # a safety cap, not a timing assertion
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def test_port_lost_and_back_through_the_daemon(tmp_path: Path, started: list[PtyDevice]) -> None:
    link = tmp_path / "by-id" / "usb-Prolific_USB-Serial-if00-port0"
    link.parent.mkdir()
    sim = Ultra2Simulator(RECORDS, faults={3: Fault.CLOSE}, link=link, now=lambda: METER_NOW).start()
    started.append(sim)
    create_key_file(tmp_path / "data.key")
    config = tmp_path / "vitalgate.toml"
    config.write_text(
        f"""
[gateway]
state_dir = "{tmp_path}"
key_file = "{tmp_path / "data.key"}"

[output]
forwarder = "file"

[[devices]]
driver = "onetouch-ultra2"
name = "meter"
port = "{link}"
timeout_seconds = 0.5
poll_seconds = 0.2
"""
    )
    cfg = load_config(config)
    keyring = KeyRing.load(cfg.key_file)
    async with await ReadingQueue.open(cfg.queue_path, keyring) as q:
        await q.bind("AB123456Y", None, "Patient/p-3")
    gw = Gateway(cfg, keyring)
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    try:

        async def cut() -> bool:
            ctx = gw.contexts.get("meter")
            return sim.unplugged.is_set() and ctx is not None and ctx.submitted == 3

        await until(cut, "first download cut after three records")
        sim.replug()  # the same by-id path comes back

        async def delivered() -> bool:
            assert gw.queue is not None
            return (await gw.queue.counts())[State.DELIVERED] == 8

        await until(delivered, "all eight readings delivered")
        assert gw.queue is not None
        counts = await gw.queue.counts()
        assert sum(counts.values()) == 8  # nothing duplicated by the re-read
    finally:
        stop.set()
        await task
    glucose = [o for o in observations(tmp_path / "outbox") if any(c["code"] == "41653-7" for c in o["code"]["coding"])]
    assert sorted(o["valueQuantity"]["value"] for o in glucose) == sorted(r.mg_dl for r in RECORDS)
