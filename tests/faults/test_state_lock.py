"""One daemon per state folder, and a queue file that stays ours (issue 10, must-have 5).

Real processes: two `vitalgate run` on one state folder; operator commands beside a running daemon; the
queue file deleted and replaced under a running daemon. Counts prove nothing was sent twice."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from gateway.statelock import StateLock, daemon_stopped
from tests.faults.common import events, identifiers, simulated, start, stop, vitalgate, wait_for, write_config

EXIT_LOCKED, EXIT_REPLACED = 5, 6


def test_a_second_daemon_on_the_same_state_folder_exits_5_and_nothing_is_sent_twice(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, devices=simulated("cuff", "S-TWO", 200, interval=0.01))
    assert vitalgate("bind", "S-TWO", "p1", "--config", str(cfg)).returncode == 0
    first = start(["run", "--config", str(cfg)])
    try:
        wait_for(lambda: len(identifiers(tmp_path)) >= 5, 30, "first daemon delivering")
        second = vitalgate("run", "--config", str(cfg), timeout=30)
        assert second.returncode == EXIT_LOCKED, second.stderr
        assert f"(pid {first.pid})" in second.stderr and "already running on this state folder" in second.stderr
        assert "Traceback" not in second.stderr
        # Operator commands run beside the daemon (they take the admin lock only for a moment).
        status = vitalgate("status", "--config", str(cfg))
        assert status.returncode == 0 and re.search(r"(?m)^daemon +running", status.stdout), status.stdout
        wait_for(lambda: len(identifiers(tmp_path)) >= 200, 60, "all 200 readings")
    finally:
        code, _, err = stop(first)
    assert code == 0, err.decode()[-2000:]
    ids = identifiers(tmp_path)
    assert len(ids) == len(set(ids)) == 200  # generated 200, delivered 200, 0 repeats
    assert re.search(r"(?m)^daemon +not running", vitalgate("status", "--config", str(cfg)).stdout)
    # The lock went with the process: a new daemon starts at once.
    again = start(["run", "--config", str(cfg)])
    try:
        wait_for(StateLock(tmp_path / "state").held_by_other, 30, "the restarted daemon taking the lock")
        wait_for(lambda: _snapshot_pid(tmp_path) == again.pid, 30, "the restarted daemon's alarm board")
    finally:
        assert stop(again)[0] == 0


def test_retire_and_the_daemon_exclude_each_other_through_the_one_lock(tmp_path: Path) -> None:
    """`keys rotate --retire` takes the daemon's own lock: while it runs no daemon starts (exit 5), and while
    a daemon runs it is refused (exit 3) before it touches the key file."""
    cfg = write_config(tmp_path, devices=simulated("cuff", "S-RET", 0, interval=0.05))
    with daemon_stopped(tmp_path / "state"):  # what a retire holds for its whole run
        refused = vitalgate("run", "--config", str(cfg), timeout=30)
    assert refused.returncode == EXIT_LOCKED, refused.stderr
    assert "Traceback" not in refused.stderr
    proc = start(["run", "--config", str(cfg)])
    try:
        wait_for(StateLock(tmp_path / "state").held_by_other, 30, "the daemon taking the lock")
        retire = vitalgate("keys", "rotate", "--retire", "0000", "--config", str(cfg))
        assert retire.returncode == 3 and "the gateway is running" in retire.stderr, retire.stderr
    finally:
        assert stop(proc)[0] == 0


def _snapshot_pid(folder: Path) -> int | None:
    try:
        return int(json.loads((folder / "state/alarms.json").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def _delete(db: Path) -> None:
    db.unlink()


def _replace(db: Path) -> None:
    copy = db.with_name("restored.db")
    shutil.copyfile(db, copy)
    copy.replace(db)  # what a restore script does: a new inode under the old name


@pytest.mark.parametrize("fault", [_delete, _replace])
def test_queue_file_deleted_or_replaced_stops_the_daemon_with_an_alarm(tmp_path: Path, fault: object) -> None:
    cfg = write_config(tmp_path, devices=simulated("cuff", "S-DEL", 0, interval=0.05))
    assert vitalgate("bind", "S-DEL", "p1", "--config", str(cfg)).returncode == 0
    proc = start(["run", "--config", str(cfg)])
    try:
        wait_for(lambda: len(identifiers(tmp_path)) >= 3, 30, "the daemon delivering")
        fault(tmp_path / "state/queue.db")  # type: ignore[operator]
        code, out, err = stop(proc, timeout=15) if _exits(proc, 15) else (None, b"", b"")
    finally:
        if proc.poll() is None:
            stop(proc)
    assert code == EXIT_REPLACED, err.decode()[-2000:]
    assert b"Traceback" not in err
    assert "stopped so that nothing is written to a file that is gone" in err.decode()
    alarms = {a["code"]: a for a in json.loads((tmp_path / "state/alarms.json").read_text())["alarms"]}
    assert alarms["queue_replaced"]["severity"] == "critical"
    assert "alarm_raised" in {e["event"] for e in events(out)}


def _exits(proc: object, seconds: float) -> bool:
    wait_for(lambda: proc.poll() is not None, seconds, "daemon stopping on its own")  # type: ignore[attr-defined]
    return True
