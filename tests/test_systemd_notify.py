"""sd_notify over a real AF_UNIX datagram socket, and the watchdog's health rules."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.systemd import Health, Notifier, watchdog_interval


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    yield sock, str(path)
    sock.close()


def test_ready_watchdog_status_stopping_arrive_as_datagrams(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    n = Notifier.from_environment({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready()
    assert sock.recv(4096) == f"READY=1\nMAINPID={os.getpid()}".encode()
    assert n.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert n.status("draining\n42 queued")
    assert sock.recv(4096) == b"STATUS=draining 42 queued"
    assert n.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    n.close()


def test_abstract_namespace_socket() -> None:
    name = f"vitalgate-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        n = Notifier.from_environment({"NOTIFY_SOCKET": "@" + name})
        assert n.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"
    finally:
        sock.close()


def test_without_systemd_everything_is_a_quiet_no_op() -> None:
    n = Notifier.from_environment({})
    assert not n.enabled
    assert n.ready() is False and n.watchdog() is False and n.stopping() is False
    assert n.watchdog_interval() is None


def test_vanished_socket_is_reported_not_raised(tmp_path: Path) -> None:
    n = Notifier(str(tmp_path / "nobody-listens"))
    assert n.ready() is False


def test_watchdog_interval_from_environment() -> None:
    me = str(os.getpid())
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": me}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None  # someone else's
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval({}) is None
    n = Notifier.from_environment({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "4000000"})
    assert n.watchdog_interval() == 4.0


class FakeClock:
    """Health takes its clock as a parameter so deadlines are tested without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_health_needs_every_component_fresh() -> None:
    clock = FakeClock()
    h = Health(clock)
    assert not h.healthy()  # nothing registered: nothing proven
    h.register("queue_writer", 10)
    h.register("drainer", 30)
    assert not h.healthy()
    assert h.stale() == ["drainer", "queue_writer"]  # registered but never beat
    h.beat("queue_writer")
    h.beat("drainer")
    assert h.healthy()
    clock.now += 11
    assert h.stale() == ["queue_writer"]
    assert not h.healthy()
    h.beat("queue_writer")
    assert h.healthy()
    clock.now += 15  # queue_writer 15 s (> 10) ago, drainer 26 s (< 30) ago
    assert h.stale() == ["queue_writer"]
    clock.now += 10
    assert h.stale() == ["drainer", "queue_writer"]


def test_health_rejects_unknown_components_and_bad_deadlines() -> None:
    h = Health(FakeClock())
    with pytest.raises(KeyError):
        h.beat("drainer")
    with pytest.raises(ValueError):
        h.register("drainer", 0)
