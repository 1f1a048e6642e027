"""One daemon per state folder, and a queue file that stays the one we opened.

Two daemons on one state folder both drain the same rows: the backend gets every reading twice (574
duplicates in 15 s in the fault campaign). The daemon therefore holds an exclusive `flock` on
`<state_dir>/daemon.lock` for its lifetime; the kernel drops it when the process dies, however it dies,
so there is no stale lock to clean up. Maintenance that must not run beside the daemon (`keys rotate
--retire`, which changes the look-up key the daemon holds in memory) takes the same lock
(`daemon_stopped`): it is refused while a daemon runs, and no daemon starts until it is done. Writing
operator commands (bind, unbind, requeue, keys rotate) take `<state_dir>/admin.lock` briefly so two of
them never interleave; they run beside the daemon, which picks their changes up through the queue.

A queue file deleted or replaced under a running daemon (a restore, a clean-up script) would have the
daemon go on writing to an unlinked file: everything committed from then on vanishes at the next start.
`QueueWatch` compares the path's device and inode with those of the file opened.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from gateway.errors import GatewayError

__all__ = [
    "DAEMON_LOCK",
    "GatewayRunningError",
    "QueueReplacedError",
    "QueueWatch",
    "StateLock",
    "StateLockedError",
    "admin_lock",
    "daemon_stopped",
]

DAEMON_LOCK = "daemon.lock"
ADMIN_LOCK = "admin.lock"


class StateLockedError(GatewayError):
    """Another process holds the state folder's lock."""


class GatewayRunningError(GatewayError):
    """The daemon runs on this state folder, and the command must not run beside it."""


class QueueReplacedError(GatewayError):
    """The queue file on disk is no longer the one the daemon opened."""


class StateLock:
    """An exclusive flock on a file in the state folder; the holder's pid is written into it for messages."""

    def __init__(self, folder: Path, name: str = DAEMON_LOCK, *, wait: float = 0.0) -> None:
        self.wait = wait  # how long `with` waits for it
        self.path = folder / name
        self._fd: int | None = None

    def acquire(self, *, wait: float = 0.0, on_wait: str | None = None) -> None:
        """Take the lock, waiting up to `wait` seconds (printing `on_wait` once); StateLockedError otherwise."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + wait
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
            if time.monotonic() >= deadline:
                holder = _read_pid(fd)
                os.close(fd)
                who = f" (pid {holder})" if holder else ""
                raise StateLockedError(
                    f"another vitalgate process{who} holds {self.path}: "
                    + (
                        "a daemon is already running on this state folder; stop it first "
                        "(systemctl stop vitalgate) or give this one its own state_dir"
                        if self.path.name == DAEMON_LOCK
                        else "another operator command is still running; try again when it has finished"
                    )
                )
            if on_wait and not told:
                print(on_wait, flush=True)
                told = True
            time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def held_by_other(self) -> bool:
        """True while another process holds this lock (we do not take it)."""
        if not self.path.exists():
            return False
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> StateLock:
        self.acquire(wait=self.wait)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def admin_lock(folder: Path, wait: float = 30.0) -> Iterator[None]:
    """Held by a writing operator command for its few milliseconds of work."""
    lock = StateLock(folder, ADMIN_LOCK)
    lock.acquire(wait=wait, on_wait=f"vitalgate: waiting up to {wait:g} s for another operator command ...")
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def daemon_stopped(folder: Path) -> Iterator[None]:
    """Held by maintenance that needs the daemon stopped: the daemon's own lock, taken without waiting, and
    the operator commands' lock: a command opened beside a retire would hold the retired look-up key and,
    once the retire commits, sweep every row as tampered and sign its audit entry with the retired key."""
    from gateway.safefiles import open_folder

    os.close(open_folder(folder, create=True))
    lock = StateLock(folder)
    try:
        lock.acquire()
    except StateLockedError:
        raise GatewayRunningError(
            f"{folder}: the gateway is running on this state folder; stop it first (systemctl stop vitalgate)"
        ) from None
    try:
        with admin_lock(folder):
            yield
    finally:
        lock.release()


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    return None


class QueueWatch:
    """Remembers the identity (device, inode) of the queue file as opened."""

    def __init__(self, path: Path) -> None:
        self.path = path
        st = os.stat(path)
        self._identity = (st.st_dev, st.st_ino)

    def problem(self) -> str | None:
        """None while the path still names the file we opened; else a sentence saying what happened."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return f"the queue file {self.path} was deleted while the daemon was running"
        except OSError as exc:
            return f"the queue file {self.path} cannot be checked ({exc.strerror})"
        if (st.st_dev, st.st_ino) != self._identity:
            return f"the queue file {self.path} was replaced by another file while the daemon was running"
        return None

    def check(self) -> None:
        problem = self.problem()
        if problem is not None:
            raise QueueReplacedError(
                f"{problem}; stopped so that nothing is written to a file that is gone. "
                "Restore the right queue file, then start the daemon again"
            )
