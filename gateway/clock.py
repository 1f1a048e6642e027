"""Time the gateway can trust, or knows it cannot.

A Raspberry Pi has no real-time clock: until NTP answers it says 1970 or the last shutdown time, and a
clock once set years ahead stays wrong until someone notices. The fault campaign saw both: rows retried
under a 2040 clock kept `next_at` = 2040 after it was corrected, and rows delivered under a 2001 clock were
purged all at once on the next start.

`ClockWatch` judges the wall clock at start and every second: implausible before this build's date or
more than ten years after it, and it notices jumps (the wall clock moving against the monotonic one).
While implausible the daemon commits readings but sends nothing and purges nothing, and remembers how the
wrong wall clock stood against the monotonic clock; once the clock is plausible again the receive times
stamped meanwhile are moved by the difference (gateway.queue `shift_times`). A jump of either kind clamps
every retry to at most `retry_max` from now. An unsynchronised clock (the kernel's STA_UNSYNC through
adjtimex, or systemd-timesyncd's flag file) is a warning only: such a clock is usually right, and
holding all data for want of NTP would stop a clinic whose network blocks it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog

from gateway.alarms import AlarmBoard, Severity

__all__ = ["BUILD_DATE", "ClockWatch", "Segment", "implausible", "kernel_synchronised"]

log = structlog.get_logger(__name__)

# The date this source was released: no correct clock can be earlier. Bump it with each release.
BUILD_DATE = datetime(2026, 11, 1, tzinfo=UTC)
BUILD_EPOCH = BUILD_DATE.timestamp()
FUTURE_LIMIT = 3653 * 86400.0  # ten years after the build: beyond that the clock is wrong, not the build old
JUMP_SECONDS = 120.0  # a wall-clock step larger than this against the monotonic clock is a jump
TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
STATE_NAME = "clock.json"  # wrong-clock segments not yet corrected, kept across a daemon restart


def boottime() -> float:
    """Monotonic and shared by every process of this boot (it also counts suspend): a restart of the
    daemon before the clock is right does not lose the link between wrong stamps and true time."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _boot_id() -> str | None:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return None


STA_UNSYNC = 0x0040
TIME_ERROR = 5


def implausible(now: float) -> str | None:
    """Why the wall clock cannot be right, or None."""
    when = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d %H:%M UTC")
    if now < BUILD_EPOCH:
        return f"the system clock says {when}, before this VitalGate release ({BUILD_DATE:%Y-%m-%d})"
    if now > BUILD_EPOCH + FUTURE_LIMIT:
        return f"the system clock says {when}, more than ten years after this VitalGate release"
    return None


class _Timex(ctypes.Structure):
    # struct timex (linux/timex.h), 64-bit layout; only `modes` (in) and `status` (out) are used.
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("padding", ctypes.c_int * 11),
    ]


def kernel_synchronised() -> bool | None:
    """True/False from systemd-timesyncd's flag or the kernel's NTP state (adjtimex, read-only); None if unknown."""
    if TIMESYNCD_FLAG.exists():
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        tx = _Timex()  # modes = 0: only read
        state = int(libc.adjtimex(ctypes.byref(tx)))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return not (state == TIME_ERROR or tx.status & STA_UNSYNC)


@dataclass(slots=True)
class Segment:
    """A stretch of wrong wall-clock time: receive stamps within [low, high] were made with `offset`."""

    low: float
    high: float
    offset: float  # wall minus monotonic while it lasted


@dataclass
class ClockWatch:
    alarms: AlarmBoard | None = None
    wall: Callable[[], float] = time.time
    mono: Callable[[], float] = boottime
    synchronised: Callable[[], bool | None] = kernel_synchronised
    trusted: bool = True
    problem: str | None = None
    last_jump: float | None = None  # monotonic time of the last jump
    untrusted: list[Segment] = field(default_factory=list)
    correcting: bool = False  # trusted again, but stamps from the wrong time are still being fixed
    state_file: Path | None = None
    _offset: float | None = None
    _sync_checked: float = -1e18
    _persisted: float = -1e18

    def restore(self) -> None:
        """Take over the wrong-clock segments a previous daemon of this boot could not correct yet."""
        if self.state_file is None:
            return
        try:
            doc = json.loads(self.state_file.read_text())
            segments = [Segment(float(a), float(b), float(c)) for a, b, c in doc["segments"]]
            same_boot = doc.get("boot_id") == _boot_id() and _boot_id() is not None
        except (OSError, ValueError, KeyError, TypeError):
            return
        if not segments:
            return
        if not same_boot:
            log.warning(
                "clock_segments_lost",
                segments=len(segments),
                hint="readings received under a wrong clock before a reboot keep their receive times",
            )
            self._forget()
            return
        # Rows committed after the last save: a past segment reaches up to the build date, a future one on.
        last = segments[-1]
        last.high = BUILD_EPOCH if last.low < BUILD_EPOCH else float("inf")
        self.untrusted, self.trusted, self._offset = segments, False, last.offset
        log.info("clock_segments_restored", segments=len(segments))

    def _persist(self, force: bool = False) -> None:
        if self.state_file is None or (not force and self.mono() - self._persisted < 30):
            return
        self._persisted = self.mono()
        body = json.dumps({"boot_id": _boot_id(), "segments": [[g.low, g.high, g.offset] for g in self.untrusted]})
        with contextlib.suppress(OSError):
            tmp = self.state_file.with_name(self.state_file.name + ".tmp")
            tmp.write_text(body)
            os.replace(tmp, self.state_file)

    def _forget(self) -> None:
        if self.state_file is not None:
            with contextlib.suppress(OSError):
                self.state_file.unlink()

    def check(self) -> tuple[float | None, list[tuple[Segment, float]]]:
        """Judge the clock now. Returns (the jump in seconds if one happened, segments to correct with the
        delta to add to their stamps: given once, when the clock becomes trusted)."""
        wall, mono = self.wall(), self.mono()
        offset = wall - mono
        jump = None
        if self._offset is not None and abs(offset - self._offset) > JUMP_SECONDS:
            jump = offset - self._offset
            self.last_jump = mono
            log.warning("clock_jumped", seconds=round(jump, 1))
        self._offset = offset
        problem = implausible(wall)
        corrections: list[tuple[Segment, float]] = []
        if problem is not None:
            if self.trusted or self.problem != problem:
                log.error("clock_implausible", problem=problem)
            self.trusted, self.problem = False, problem
            new = not self.untrusted or jump is not None
            if new:
                self.untrusted.append(Segment(wall, wall, offset))
            self.untrusted[-1].high = max(self.untrusted[-1].high, wall) if not new else wall
            self._persist(force=new)
            if self.alarms is not None:
                self.alarms.raise_(
                    "clock_implausible",
                    f"{problem}: readings are kept but nothing is sent or purged until the clock is right "
                    "(check NTP / systemd-timesyncd and the network).",
                    Severity.CRITICAL,
                )
        elif not self.trusted:
            corrections = [(seg, offset - seg.offset) for seg in self.untrusted]
            self.untrusted = []
            self.trusted, self.problem = True, None
            self.correcting = bool(corrections)  # the caller says `corrected()` once they are applied
            log.info("clock_trusted", corrected_segments=len(corrections))
            if self.alarms is not None:
                self.alarms.clear("clock_implausible")
        self._check_sync(mono)
        return jump, corrections

    def _check_sync(self, mono: float) -> None:
        if mono - self._sync_checked < 60 or self.alarms is None:
            return
        self._sync_checked = mono
        synced = self.synchronised()
        if synced is False:
            self.alarms.raise_(
                "clock_unsynchronised",
                "The system clock is not synchronised (no NTP): times may drift; check NTP / systemd-timesyncd.",
                Severity.WARNING,
            )
        else:
            self.alarms.clear("clock_unsynchronised")

    def corrected(self) -> None:
        if self.correcting:
            self._forget()
        self.correcting = False

    def may_purge(self) -> bool:
        """Retention acts only on a plausible clock that has not just jumped (the new time is unproven)."""
        recent_jump = self.last_jump is not None and self.mono() - self.last_jump < 3600
        return self.may_send() and not recent_jump

    def may_send(self) -> bool:
        """Nothing goes out stamped with a wrong clock, nor before the stamps it left are fixed."""
        return self.trusted and not self.correcting
