"""A running gateway holds a shared lock on `<queue>.running`; maintenance that must not run beside it
(`keys rotate --retire`, which changes the look-up key the daemon holds in memory) takes it exclusively.

flock(2) locks go with the process: a crashed daemon leaves no stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from gateway.errors import GatewayError

__all__ = ["GatewayRunningError", "exclusive", "held_while_running"]


class GatewayRunningError(GatewayError):
    """The gateway is running on this queue."""


def _path(queue_path: Path) -> Path:
    return queue_path.with_name(queue_path.name + ".running")


def _open(queue_path: Path) -> int:
    from gateway.safefiles import open_folder

    os.close(open_folder(queue_path.parent, create=True))
    return os.open(_path(queue_path), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


@contextlib.contextmanager
def held_while_running(queue_path: Path) -> Iterator[None]:
    fd = _open(queue_path)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive(queue_path: Path) -> Iterator[None]:
    fd = _open(queue_path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise GatewayRunningError(
                f"{queue_path}: the gateway is running on this queue; stop it first (systemctl stop vitalgate)"
            ) from None
        yield
    finally:
        os.close(fd)
