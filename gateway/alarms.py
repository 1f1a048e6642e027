"""Alarms: conditions an operator must act on, each a sentence a clinic's IT person can follow.

One board per daemon. Components raise and clear alarms by a stable code; the board keeps a snapshot file
in the state folder (mode 0600, replaced atomically) so that `vitalgate status`, run in another process,
shows what the running daemon sees. The health model, metrics and console read the same board.
Sentences must never carry PHI (no patient references, serial numbers or values).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

__all__ = ["SNAPSHOT_NAME", "Alarm", "AlarmBoard", "Severity", "read_snapshot"]

SNAPSHOT_NAME = "alarms.json"


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Alarm:
    code: str  # stable, machine-readable, e.g. "disk_full"
    severity: Severity
    sentence: str  # what is wrong and what to do, in words
    since: float  # wall-clock seconds when first raised (informational only)


class AlarmBoard:
    """Active alarms by code. Raising an active alarm again updates its sentence, not its `since`."""

    def __init__(self, snapshot: Path | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self._alarms: dict[str, Alarm] = {}
        self._snapshot = snapshot
        self._clock = clock
        self._listeners: list[Callable[[Alarm, bool], None]] = []

    def subscribe(self, listener: Callable[[Alarm, bool], None]) -> None:
        """`listener(alarm, raised)` on every change: raised=True when set or changed, False when cleared."""
        self._listeners.append(listener)

    def raise_(self, code: str, sentence: str, severity: Severity = Severity.WARNING) -> bool:
        """Set an alarm; True when it is new or its text or severity changed."""
        old = self._alarms.get(code)
        if old is not None and old.sentence == sentence and old.severity == severity:
            return False
        alarm = Alarm(code, severity, sentence, old.since if old else self._clock())
        self._alarms[code] = alarm
        self._changed(alarm, True)
        return True

    def clear(self, code: str) -> bool:
        alarm = self._alarms.pop(code, None)
        if alarm is None:
            return False
        self._changed(alarm, False)
        return True

    def is_active(self, code: str) -> bool:
        return code in self._alarms

    def active(self) -> list[Alarm]:
        order = {Severity.CRITICAL: 0, Severity.WARNING: 1}
        return sorted(self._alarms.values(), key=lambda a: (order[a.severity], a.since, a.code))

    def _changed(self, alarm: Alarm, raised: bool) -> None:
        for listener in self._listeners:
            listener(alarm, raised)
        if self._snapshot is not None:
            self.write_snapshot(self._snapshot)

    def write_snapshot(self, path: Path) -> None:
        """Replace `path` atomically; a failure (e.g. a full disk) keeps the old file and is not fatal."""
        body = json.dumps(
            {"pid": os.getpid(), "written": self._clock(), "alarms": [asdict(a) for a in self.active()]}
        ).encode()
        with contextlib.suppress(OSError):
            fd, tmp = tempfile.mkstemp(prefix=".alarms.", dir=path.parent)
            try:
                os.write(fd, body)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.replace(tmp, path)
            except OSError:
                os.unlink(tmp)
                raise


def read_snapshot(path: Path) -> list[Alarm]:
    """The alarms a daemon last wrote to `path`; none when it is absent or unreadable."""
    try:
        data: Any = json.loads(path.read_bytes())
        return [
            Alarm(str(a["code"]), Severity(a["severity"]), str(a["sentence"]), float(a["since"]))
            for a in data.get("alarms", [])
        ]
    except (OSError, ValueError, KeyError, TypeError):
        return []
