"""Take no reading we cannot keep: the free-space reserve and the state of the queue's commits.

Cuffs and scales delete a measurement once the Bluetooth stack confirmed its indication, and the stack
confirms before the gateway commits: on a full disk such readings were lost (42 of 142 in the fault
campaign). So sessions with devices that cannot send a reading again start only while the queue can
commit (free space above `queue.min_free_mb`, and no commit failing); readings already received when
commits start failing are held in memory by their session and committed when space returns. Meters with
memory (RACP, serial downloads) need none of this: their checkpoint only advances after a commit.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from gateway.alarms import AlarmBoard, Severity
from gateway.statelock import QueueReplacedError

__all__ = ["DiskGuard"]

log = structlog.get_logger(__name__)

MB = 1024 * 1024
RETRY_AFTER_FREED = 256 * 1024  # bytes freed since a failed commit before sessions may try again


class DiskGuard:
    def __init__(
        self,
        folder: Path,
        reserve_bytes: int,
        alarms: AlarmBoard | None = None,
        *,
        free: Callable[[Path], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.folder = folder
        self.reserve = reserve_bytes
        self.alarms = alarms
        self._free = free or _statvfs_free
        self._clock = clock
        self.failing: str | None = None  # why the last commit failed, until one succeeds
        self._free_at_failure = 0
        self.held = 0  # readings held in memory by sessions waiting for a commit

    def free_bytes(self) -> int | None:
        try:
            return self._free(self.folder)
        except OSError:
            return None

    # -- fed by the queue writer ----------------------------------------------------------------------

    def commit_result(self, error: BaseException | None) -> None:
        if isinstance(error, QueueReplacedError):
            return  # not a disk problem: the daemon stops with its own alarm
        if error is None:
            if self.failing is not None:
                self.failing = None
                log.info("queue_commits_recovered")
                if self.alarms is not None:
                    self.alarms.clear("queue_commit_failing")
            return
        first = self.failing is None
        self.failing = f"{type(error).__name__}: {str(error)[:120]}"
        self._free_at_failure = self.free_bytes() or 0
        if first:
            self._alarm_failing()

    def _alarm_failing(self) -> None:
        if self.alarms is not None:
            held = f"; {self.held} readings are held in memory until it can" if self.held else ""
            self.alarms.raise_(
                "queue_commit_failing",
                f"The queue in {self.folder} cannot commit ({self.failing}){held}. Bluetooth cuffs and scales "
                "are not read until it can (they keep their readings); free space on that disk.",
                Severity.CRITICAL,
            )

    def holding(self, delta: int) -> None:
        self.held = max(0, self.held + delta)
        if self.failing is not None:
            self._alarm_failing()

    # -- asked before a session that cannot re-read starts ---------------------------------------------

    def can_take_readings(self) -> bool:
        free = self.free_bytes()
        if self.failing is not None:
            if free is None or free < self._free_at_failure + RETRY_AFTER_FREED:
                return False
            self.failing = None  # space was freed since: let a session try (its commit tells)
        if free is not None and free < self.reserve:
            if self.alarms is not None:
                self.alarms.raise_(
                    "disk_reserve",
                    f"Free space in {self.folder} is {free / MB:.1f} MB, below the reserve of "
                    f"{self.reserve / MB:g} MB (queue.min_free_mb): Bluetooth cuffs and scales are not read "
                    "until space is freed (they keep their readings meanwhile).",
                    Severity.CRITICAL,
                )
            return False
        if self.alarms is not None:
            self.alarms.clear("disk_reserve")
        return True


def _statvfs_free(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize
