"""`health.json`: the daemon's health model for other processes (`vitalgate status`).

Written by the daemon every few seconds (mode 0600, atomic replace); a reader decides whether the daemon
runs from the pid in it and how fresh it is, so a stale file from a crashed daemon is not mistaken for a
running one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["SNAPSHOT_NAME", "WRITE_EVERY", "daemon_state", "read", "write"]

SNAPSHOT_NAME = "health.json"
WRITE_EVERY = 5.0  # seconds; a snapshot older than 3 periods means the daemon is not working


def write(path: Path, doc: dict[str, Any]) -> None:
    """Replace `path` atomically; failures (a full disk) keep the old file and are not fatal."""
    body = json.dumps({**doc, "written": time.time()}).encode()
    with contextlib.suppress(OSError):
        fd, tmp = tempfile.mkstemp(prefix=".health.", dir=path.parent)
        try:
            os.write(fd, body)
        finally:
            os.close(fd)
        try:
            os.replace(tmp, path)
        except OSError:
            os.unlink(tmp)


def read(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user (the service account)
        return True
    return True


def daemon_state(doc: dict[str, Any] | None, now: float | None = None) -> tuple[str, str]:
    """("running" | "stalled" | "not running" | "unknown", a sentence for the operator)."""
    if doc is None:
        return "unknown", "no health snapshot: the daemon has not run with this state folder"
    now = time.time() if now is None else now
    pid = int(doc.get("pid", 0))
    age = now - float(doc.get("written", 0))
    if pid <= 0 or not _alive(pid):
        return "not running", f"not running (pid {pid} gone; last snapshot {age:.0f} s ago)"
    if age > 3 * WRITE_EVERY:
        return "stalled", f"pid {pid} exists but its last snapshot is {age:.0f} s old: the daemon may be hung"
    up = now - float(doc.get("started_at", now))
    return "running", f"running (pid {pid}, up {_span(up)})"


def _span(seconds: float) -> str:
    s = int(seconds)
    if s >= 86400:
        return f"{s // 86400}d {s % 86400 // 3600}h"
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 60}m {s % 60}s"
