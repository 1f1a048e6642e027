"""Take no reading we cannot keep (issue 10, must-have 1): the queue's disk fills up under each kind of
device, and every reading the devices generated arrives once.

The small disk is a real 4 MB tmpfs mounted for the test (the suite runs as root here); where mounting is
not allowed the test is skipped and says so, because filling the machine's real disk is not an option.
The gateway runs whole (supervisor, queue, drainer, file output) with the devices on their real stacks:
the BLE cuff and glucose meter as Bumble peripherals reached through bleak, the serial meter on a pty.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import orjson
import pytest
from bumble.link import LocalLink

from drivers.ble import runtime
from drivers.ble.bleak_transport import BleakTransport
from gateway.config import Config, DeviceConfig
from gateway.crypto import KeyRing
from gateway.daemon import Gateway
from gateway.forwarders.base import Outgoing, PermanentError, RetryableError
from gateway.forwarders.file import FileForwarder
from gateway.queue import ReadingQueue, State
from simulators.ble.cuff import BloodPressureCuff
from simulators.ble.encoding import BpRecord
from simulators.ble.glucose import GlucoseMeter, make_records
from simulators.serial.base import PtyDevice
from simulators.serial.ultra2 import Ultra2Simulator
from tests.serial.conftest import METER_NOW, RECORDS

SIZE = 4 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs; not filling the real disk instead")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(mnt)], capture_output=True, timeout=30
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}); not filling the real disk")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)


@pytest.fixture
def installed(ble: BleakTransport) -> Iterator[BleakTransport]:
    runtime.use_transport(ble)
    yield ble
    runtime.reset_transport()


def free(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def fill(folder: Path, leave: int = 0) -> Path:
    """Write a filler file until `leave` bytes are free (0: until the file system says ENOSPC)."""
    filler = folder / "filler"
    with filler.open("ab") as f:
        try:
            while (room := free(folder) - leave) > 0:
                f.write(b"\xa5" * min(room, 64 * 1024))
                f.flush()
        except OSError:
            pass
    return filler


async def settled(gw: Gateway) -> dict[State, int]:
    """Queue counts once nothing is pending any more (the file is written before its rows are acked)."""
    assert gw.queue is not None
    queue = gw.queue

    async def done() -> bool:
        return (await queue.counts())[State.PENDING] == 0

    await until(done, "every row acked")
    return await queue.counts()


def config(state: Path, outbox: Path, key: Path, devices: tuple[DeviceConfig, ...], reserve_mb: float) -> Config:
    return Config(
        file="<test>",
        gateway_id="gw-disk",
        state_dir=state,
        key_file=str(key),
        queue_path=state / "queue.db",
        forwarder="file",
        forwarder_options={"directory": str(outbox)},
        retry_initial=0.05,
        retry_max=0.5,
        min_free_bytes=int(reserve_mb * 1024 * 1024),
        devices=devices,
    )


def ble_device(driver: str, address: str) -> DeviceConfig:
    options = {"driver": driver, "address": address, "idle_timeout": 0.5, "connect_timeout": 0.5, "poll_seconds": 0.1}
    # The Bumble cuff simulator does not bond: accepted explicitly, as tests/ble does (the refusal of an
    # unbonded device is pinned by tests/ble/test_device_auth.py).
    options["allow_unbonded"] = True
    return DeviceConfig(driver, "dev", options, "devices[0]")


def received(outbox: Path) -> list[str]:
    """One conditional-create identifier per delivered reading (the first Observation of each bundle)."""
    out = []
    for f in sorted(outbox.glob("*.ndjson")):
        for line in f.read_bytes().splitlines():
            obs = [e for e in orjson.loads(line)["entry"] if e["resource"]["resourceType"] == "Observation"]
            out.append(obs[0]["request"]["ifNoneExist"])
    return out


async def until(check: Callable[[], Awaitable[bool] | bool], what: str, seconds: float = 60) -> None:
    try:
        async with asyncio.timeout(seconds):
            while True:
                result = check()
                if await result if isinstance(result, Awaitable) else result:
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"{what}: not within {seconds} s") from None


async def bind(cfg: Config, keyring: KeyRing, device: str, user: int | None = None) -> None:
    async with await ReadingQueue.open(cfg.queue_path, keyring) as q:
        await q.bind(device, user, "Patient/p-disk")


def records(n: int) -> list[BpRecord | bytes]:
    t0 = datetime(2026, 11, 20, 7, 0)
    return [
        BpRecord(110 + i, 70 + i % 20, 90, pulse=60 + i % 30, time=t0 + timedelta(minutes=i), user=1) for i in range(n)
    ]


async def test_cuff_is_not_read_below_the_reserve_and_loses_nothing(
    tmp_path: Path,
    small_disk: Path,
    link: LocalLink,
    installed: BleakTransport,
    keyring: KeyRing,
    key_file: Path,
) -> None:
    cuff = BloodPressureCuff(records(12))
    await cuff.start(link)
    cfg = config(small_disk, tmp_path / "outbox", key_file, (ble_device("ble-blood-pressure", cuff.address),), 1.0)
    await bind(cfg, keyring, cuff.address, 1)
    filler = fill(small_disk, leave=512 * 1024)  # below the 1 MB reserve
    try:
        gw = await running_gateway(cfg, keyring)
        await until(lambda: gw.alarms.is_active("disk_reserve"), "the disk_reserve alarm")
        snapshot = orjson.loads((small_disk / "alarms.json").read_bytes())
        assert "disk_reserve" in [a["code"] for a in snapshot["alarms"]]
        await asyncio.sleep(1.5)  # the supervisor asks again every second: still no connection
        assert cuff.connections == 0 and len(cuff.pending) == 12  # the cuff keeps all 12
        filler.unlink()
        await until(lambda: len(received(tmp_path / "outbox")) >= 12, "all 12 delivered after space was freed")
        assert not gw.alarms.is_active("disk_reserve")
        counts = await settled(gw)
    finally:
        await stop_all()
        await cuff.stop()
    ids = received(tmp_path / "outbox")
    assert (12, counts[State.DELIVERED], len(ids), len(set(ids))) == (12, 12, 12, 12)  # generated, committed, received


async def test_cuff_readings_received_while_commits_fail_are_held_and_kept(
    tmp_path: Path,
    small_disk: Path,
    link: LocalLink,
    installed: BleakTransport,
    keyring: KeyRing,
    key_file: Path,
) -> None:
    """The campaign's loss: the stack confirms, the cuff deletes, the commit fails. Reserve 0 lets the
    session start on a full disk, so the commit fails after the cuff deleted its readings."""
    cuff = BloodPressureCuff([])
    await cuff.start(link)
    cfg = config(small_disk, tmp_path / "outbox", key_file, (ble_device("ble-blood-pressure", cuff.address),), 0)
    await bind(cfg, keyring, cuff.address, 1)
    try:
        gw = await running_gateway(cfg, keyring)
        await cuff.wait_connections(1)
        filler = fill(small_disk)  # completely full: every commit fails now
        for r in records(8):
            cuff.add(r)
        await until(lambda: not cuff.pending, "the cuff sent (and deleted) all 8")
        await until(lambda: gw.disk.held > 0, "readings held in memory")
        await until(lambda: gw.alarms.is_active("queue_commit_failing"), "the commit alarm")
        assert len(received(tmp_path / "outbox")) == 0
        filler.unlink()
        await until(lambda: len(received(tmp_path / "outbox")) >= 8, "all 8 delivered after space was freed")
        await until(lambda: not gw.alarms.is_active("queue_commit_failing"), "the alarm cleared")
        counts = await settled(gw)
    finally:
        await stop_all()
        await cuff.stop()
    ids = received(tmp_path / "outbox")
    assert (8, counts[State.DELIVERED], len(ids), len(set(ids))) == (8, 8, 8, 8)


async def test_glucose_meter_racp_keeps_its_checkpoint_on_a_full_disk(
    tmp_path: Path,
    small_disk: Path,
    link: LocalLink,
    installed: BleakTransport,
    keyring: KeyRing,
    key_file: Path,
) -> None:
    meter = GlucoseMeter([])
    await meter.start(link)
    session = await installed.connect(meter.address, pair=True)
    await session.disconnect()
    cfg = config(small_disk, tmp_path / "outbox", key_file, (ble_device("ble-glucose", meter.address),), 0)
    await bind(cfg, keyring, meter.address)
    try:
        gw = await running_gateway(cfg, keyring)
        await meter.wait_connections(meter.connections + 1)  # a first (empty) sync
        filler = fill(small_disk)  # completely full: every commit fails now
        for r in make_records(30, start=datetime(2026, 3, 1, 6, 0)):
            meter.add(r)
        await until(lambda: gw.disk.failing is not None, "a failed commit")
        await meter.wait_connections(meter.connections + 1)  # another sync attempt on the full disk
        assert len(received(tmp_path / "outbox")) == 0 and len(meter.records) == 30  # the meter keeps them
        filler.unlink()
        await until(lambda: len(received(tmp_path / "outbox")) >= 30, "all 30 delivered after space was freed")
        counts = await settled(gw)
    finally:
        await stop_all()
        await meter.stop()
    ids = received(tmp_path / "outbox")
    assert (30, counts[State.DELIVERED], len(ids), len(set(ids))) == (30, 30, 30, 30)


async def test_serial_meter_download_on_a_full_disk_loses_nothing(
    tmp_path: Path,
    small_disk: Path,
    started: list[PtyDevice],
    keyring: KeyRing,
    key_file: Path,
) -> None:
    link_path = tmp_path / "ttyMeter"
    options = {"driver": "onetouch-ultra2", "port": str(link_path), "timeout_seconds": 0.5, "poll_seconds": 0.2}
    cfg = config(
        small_disk, tmp_path / "outbox", key_file, (DeviceConfig("onetouch-ultra2", "meter", options, "d"),), 0
    )
    await bind(cfg, keyring, "AB123456Y")
    try:
        gw = await running_gateway(cfg, keyring)  # the meter is not plugged in yet
        filler = fill(small_disk)  # completely full: every commit fails now
        started.append(Ultra2Simulator(RECORDS, link=link_path, now=lambda: METER_NOW).start())
        await until(lambda: gw.disk.failing is not None, "a failed commit", seconds=120)
        assert len(received(tmp_path / "outbox")) == 0
        filler.unlink()
        await until(lambda: len(received(tmp_path / "outbox")) >= len(RECORDS), "every record delivered")
        counts = await settled(gw)
    finally:
        await stop_all()
    ids = received(tmp_path / "outbox")
    n = len(RECORDS)
    assert (n, counts[State.DELIVERED], len(ids), len(set(ids))) == (n, n, n, n)


_RUNNING: list[tuple[asyncio.Event, asyncio.Task[None]]] = []


async def running_gateway(cfg: Config, keyring: KeyRing) -> Gateway:
    gw = Gateway(cfg, keyring)
    stop = asyncio.Event()
    _RUNNING.append((stop, asyncio.create_task(gw.run(stop))))
    await until(gw.ready.is_set, "gateway ready")
    return gw


async def stop_all() -> None:
    while _RUNNING:
        stop, task = _RUNNING.pop()
        stop.set()
        await task


def test_file_output_on_a_disk_out_of_inodes_is_retried_not_refused(tmp_path: Path) -> None:
    """A new day file on a full disk fails with ENOSPC at open: retried like a failed write, not reported as
    a configuration error and held for `retry_permanent` (10 min) as a planted symlink is."""
    mnt = tmp_path / "inodes"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs")
    # nr_inodes=2: the root folder and one file; the next file cannot be created (ENOSPC), for real.
    opts = "size=1M,nr_inodes=2,mode=0700"
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(mnt)], capture_output=True, timeout=30)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()})")
    try:
        (mnt / "filler").touch(mode=0o600)
        item = Outgoing(item_id=1, identifier="id-1", bundle={}, body=b'{"resourceType":"Bundle"}', entries=())

        async def go() -> None:
            async with FileForwarder(mnt) as fwd:
                await fwd.send([item])

        with pytest.raises(RetryableError, match="No space left") as raised:
            asyncio.run(go())
        assert not isinstance(raised.value, PermanentError)
        (mnt / "filler").unlink()  # space again: the same forwarder code writes the day file
        asyncio.run(go())
        assert [f.read_bytes() for f in mnt.glob("bundles-*.ndjson")] == [item.body + b"\n"]
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)
