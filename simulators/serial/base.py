"""A device on a real pseudo-terminal pair, served from a thread.

The gateway opens the slave side (`path`) exactly as it would open /dev/ttyUSB0: pyserial sets baud
and framing with termios, which a pty accepts and ignores. The simulator keeps its own slave fd open so
the master never sees EIO between gateway sessions. `unplug()` closes the master: the gateway's next
read fails with EIO, as when a USB adapter is pulled. `replug()` makes a new pty; with `link` set, a
stable symlink (like /dev/serial/by-id/...) is pointed at the current pty, so the "same" port returns.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import struct
import termios
import threading
import time
import tty
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import ClassVar, Self

from simulators.serial.records import GlucoseRecord

__all__ = ["Fault", "MeterSimulator", "PtyDevice"]


class Fault(StrEnum):
    """Faults a simulator can inject at a record; each fires once (the first time that record is sent)."""

    BAD_CHECKSUM = "bad-checksum"
    TRUNCATED = "truncated"
    GARBAGE = "garbage"
    CLOSE = "close"  # the port goes away in the middle of sending this record


class PtyDevice:
    """Owns the pty and the serving thread; subclasses implement `on_data` (bytes from the gateway)."""

    def __init__(self, *, link: str | Path | None = None) -> None:
        self.link = Path(link) if link is not None else None
        self._master = -1
        self._slave = -1
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.unplugged = threading.Event()
        self.received = bytearray()  # everything the gateway wrote, for tests

    # --- lifecycle ---------------------------------------------------------------------------------
    @property
    def pty_path(self) -> str:
        return os.ttyname(self._slave)

    @property
    def path(self) -> str:
        """What to configure as `port`: the stable link when there is one, else the pty itself."""
        return str(self.link) if self.link is not None else self.pty_path

    def opened_elsewhere(self) -> bool:
        """True once another descriptor in this process has the pty open (the gateway, in tests/demo).

        Read from /proc/self/fd, so it is a fact, not a guess by sleeping.
        """
        target = self.pty_path
        for fd in os.listdir("/proc/self/fd"):
            if int(fd) == self._slave:
                continue
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/self/fd/{fd}") == target:
                    return True
        return False

    def _open_pty(self) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        tty.setraw(self._master)
        os.set_blocking(self._master, False)
        if self.link is not None:
            tmp = self.link.with_name(self.link.name + ".tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(self.pty_path)
            tmp.replace(self.link)

    def start(self) -> Self:
        self._open_pty()
        self.unplugged.clear()
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name=f"sim-{type(self).__name__}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._close_fds()
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()

    def _close_fds(self) -> None:
        with self._lock:
            for fd in (self._master, self._slave):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._master = self._slave = -1

    def drained(self, timeout: float = 2.0) -> bool:
        """Wait until the gateway has read everything sent (the slave's input queue is empty).

        Linux drops a pty's unread input when the master closes; a real cable pulled mid-dump loses only
        what was still on the wire, so `unplug` waits for this first.
        """
        deadline = time.monotonic() + timeout
        empty_since: float | None = None
        while time.monotonic() < deadline:
            with self._lock:
                if self._slave < 0:
                    return True
                pending = struct.unpack("i", fcntl.ioctl(self._slave, termios.FIONREAD, b"\0\0\0\0"))[0]
            now = time.monotonic()
            if pending:
                empty_since = None
            elif empty_since is None:
                empty_since = now
            elif now - empty_since >= 0.1:
                # Empty for a while: the kernel pushes pty writes to the reader's queue from a work
                # queue, so one empty look right after a write can come before the bytes arrive.
                return True
            time.sleep(0.005)
        return False

    def unplug(self) -> None:
        """The cable is pulled (after the gateway read what was sent): its reads fail; serving ends."""
        self.drained()
        self._stop.set()
        self._close_fds()
        self.unplugged.set()

    def replug(self) -> None:
        """A new pty, the link (if any) pointed at it, serving again. Stored records stay."""
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- I/O -----------------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Send to the gateway (blocking until written; the pty buffer is a few KiB)."""
        view = memoryview(data)
        while view and not self._stop.is_set():
            with self._lock:
                if self._master < 0:
                    return
                try:
                    n = os.write(self._master, view)
                except BlockingIOError:
                    n = 0
                except OSError:
                    return
            view = view[n:]
            if view:
                select.select([], [self._master], [], 0.05)

    def _serve(self) -> None:
        while not self._stop.is_set():
            master = self._master
            if master < 0:
                return
            try:
                ready, _, _ = select.select([master], [], [], 0.05)
            except (OSError, ValueError):
                return
            if not ready:
                self.on_idle()
                continue
            try:
                data = os.read(master, 4096)
            except BlockingIOError:
                continue
            except OSError:
                return
            self.received += data
            self.on_data(data)

    def on_data(self, data: bytes) -> None:  # pragma: no cover - subclasses
        raise NotImplementedError

    def on_idle(self) -> None:
        """Called when nothing arrived for a moment; push devices send from here."""


class MeterSimulator(PtyDevice):
    """A glucose meter that stores records and keeps its own clock: identity, clock offset and set, faults.

    `faults` maps a record index to the fault injected the first time that record is sent.
    """

    default_serial_number: ClassVar[str]
    default_firmware: ClassVar[str]

    def __init__(
        self,
        records: list[GlucoseRecord],
        *,
        serial_number: str | None = None,
        firmware: str | None = None,
        clock_offset: timedelta = timedelta(0),
        faults: Mapping[int, Fault] | None = None,
        link: str | Path | None = None,
        now: Callable[[], datetime] = datetime.now,
    ) -> None:
        super().__init__(link=link)
        self.records = list(records)  # newest first, as the meters keep them
        self.serial_number = self.default_serial_number if serial_number is None else serial_number
        self.firmware = self.default_firmware if firmware is None else firmware
        self.clock_offset = clock_offset
        self.faults = dict(faults or {})
        self._now = now
        self.clock_sets = 0

    def meter_now(self) -> datetime:
        """The meter's own clock, to the second."""
        return (self._now() + self.clock_offset).replace(microsecond=0)

    def set_clock(self, wanted: datetime) -> None:
        """The host set the meter's clock to `wanted`."""
        self.clock_offset = wanted - self._now().replace(microsecond=0)
        self.clock_sets += 1
