"""The systemd watchdog follows the gateway's real health, over a real notify socket and a real lock."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gateway.config import Config
from gateway.crypto import KeyRing
from gateway.daemon import Gateway
from gateway.systemd import Notifier


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    yield sock
    sock.close()


def received(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096))
        except BlockingIOError:
            return out


async def wait_until(predicate: object, seconds: float) -> None:
    async with asyncio.timeout(seconds):
        while not predicate():  # type: ignore[operator]  # noqa: ASYNC110 - polling a socket and a log list
            await asyncio.sleep(0.05)


async def test_watchdog_starves_while_the_database_cannot_be_written(
    tmp_path: Path, keyring: KeyRing, notify_socket: socket.socket
) -> None:
    cfg = Config(
        file="<test>",
        state_dir=tmp_path,
        queue_path=tmp_path / "q.db",
        forwarder_options={"directory": str(tmp_path / "out")},
    )
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "1000000"})
    gw = Gateway(cfg, keyring, notifier=notifier)
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(gw.run(stop))
        await wait_until(lambda: b"WATCHDOG=1" in received(notify_socket), 60)
        assert gw.healthy()

        # Another process holds the write lock (a stuck backup, a full disk would look alike to us).
        blocker = sqlite3.connect(tmp_path / "q.db", timeout=0)
        blocker.execute("BEGIN EXCLUSIVE")
        await wait_until(lambda: any(e["event"] == "watchdog_starved" for e in logs), 60)
        assert not gw.healthy()
        received(notify_socket)
        await asyncio.sleep(1.5)  # still locked: no progress, so no WATCHDOG=1 however the loop turns
        assert b"WATCHDOG=1" not in received(notify_socket)
        starved = next(e for e in logs if e["event"] == "watchdog_starved")
        assert "queue_writer" in starved["stale"]

        blocker.rollback()
        blocker.close()
        await wait_until(lambda: b"WATCHDOG=1" in received(notify_socket), 60)
        assert gw.healthy()
        stop.set()
        await asyncio.wait_for(task, 60)
    assert b"STOPPING=1" in received(notify_socket)
