"""Power-loss style crash test: SIGKILL a writer at random moments, many times, on one database.

After every kill: each put that had returned is in the queue, exactly once (nothing acknowledged to a
device is lost, nothing is stored twice), and SQLite's integrity check passes.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from gateway.crypto import KeyRing
from tests.childio import ChildLines

ROOT = Path(__file__).resolve().parent.parent
KILLS = 50


def dedup_tags(db: Path) -> list[bytes]:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return [row[0] for row in conn.execute("SELECT dedup FROM readings")]


def test_sigkill_at_random_moments_loses_no_committed_put(tmp_path: Path, key_file: Path) -> None:
    db = tmp_path / "queue.db"
    ring = KeyRing.load(str(key_file))
    rng = random.Random(20261124)
    acknowledged: set[str] = set()
    attempted: set[str] = set()
    for run in range(KILLS):
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.crash_child", str(db), str(key_file), str(run)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        lines = ChildLines.of(child, "crash_child")
        assert lines.readline(60).strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.25))
        os.kill(child.pid, signal.SIGKILL)
        out = lines.rest(60)
        assert child.wait(timeout=60) == -signal.SIGKILL
        for line in out:
            parts = line.split()
            if len(parts) != 2 or len(parts[1]) != 64:
                continue  # a line torn by the kill names no put that returned
            (acknowledged if parts[0] == "ok" else attempted).add(parts[1])
        tags = dedup_tags(db)
        assert len(tags) == len(set(tags)), f"run {run}: a reading is stored twice"
        stored = set(tags)
        missing = [k for k in acknowledged if ring.tag("reading|" + k) not in stored]
        assert not missing, f"run {run}: {len(missing)} committed puts lost"
        assert len(stored) <= len(attempted | acknowledged)
    assert len(acknowledged) > KILLS  # the kills landed while puts were returning, not before any
    assert attempted - acknowledged  # and some landed mid-put
