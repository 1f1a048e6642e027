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


async def test_fault_status_during_keys_retire_waits_and_no_reading_is_marked_tampered(tmp_path: Path) -> None:
    """A monitoring poll (`vitalgate status`) while `keys rotate --retire` re-keys the queue. The poll must
    wait: had it opened the queue during the retire's transaction, it would hold the retired look-up key,
    sweep every row as "state changed outside vitalgate" (TAMPERED, never sent) once the retire commits,
    and sign its audit entry with the retired key (`audit --verify` fails). Real retire transaction, the
    real operator-command path (`_with_queue`: admin lock, open, audit) in a thread of its own."""
    import asyncio
    import sqlite3
    import threading

    from gateway import cli
    from gateway.crypto import KeyRing, create_key_file, rotate_key_source
    from gateway.queue import ReadingQueue, State
    from gateway.rekey import retire
    from tests.conftest import bp

    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    key = tmp_path / "data.key"
    old = create_key_file(key)
    cfg = tmp_path / "vg.toml"
    cfg.write_text(f'[gateway]\nstate_dir = "{state}"\nkey_file = "{key}"\n')
    path = state / "queue.db"
    async with await ReadingQueue.open(path, KeyRing.load(str(key))) as q:
        await q.bind("BP123456", 1, "Patient/p1")
        for user in range(1, 41):  # a backlog: the retire's one transaction takes a while
            await q.put([bp(minute=m, user=user) for m in range(60)])
    rotate_key_source(str(key))

    polled: list[object] = []

    def poll() -> None:
        args = cli.build_parser().parse_args(["status", "--config", str(cfg)])
        try:
            polled.append(asyncio.run(cli._with_queue(args, lambda q: q.counts())))
        except Exception as exc:  # reported by the assertion below
            polled.append(exc)

    def retire_in_progress() -> bool:
        probe = sqlite3.connect(path, timeout=0)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            probe.close()

    poller = threading.Thread(target=poll, name="status-poll")
    with daemon_stopped(state):  # what keys rotate --retire holds (gateway.keycli)
        qa = await ReadingQueue.open(path, KeyRing.load(str(key)))
        try:
            job = asyncio.create_task(retire(qa, old))
            while not retire_in_progress():
                assert not job.done(), "the retire finished before its transaction was seen"
                await asyncio.sleep(0.005)
            poller.start()  # the poll arrives while the retire's transaction runs
            await job
        finally:
            await qa.close()
    await asyncio.to_thread(poller.join, 60)
    assert len(polled) == 1 and isinstance(polled[0], dict), polled
    async with await ReadingQueue.open(path, KeyRing.load(str(key))) as q:
        counts = await q.counts()
        assert counts[State.TAMPERED] == 0 and sum(counts.values()) == 2400, counts
        assert await q.verify_audit() == []


def test_a_daemon_starting_while_status_tests_the_lock_starts(tmp_path: Path) -> None:
    """`vitalgate status` tests the daemon lock with a shared flock for an instant (StateLock.held_by_other).
    A daemon starting in that instant waited for nothing and exited 5, taking it for another daemon (found
    by review). The shared lock is held here for longer than status does, 0.5 s, to make the instant certain."""
    import fcntl
    import os
    import threading

    cfg = write_config(tmp_path, devices=simulated("cuff", "S-POLL", 0, interval=0.05))
    lock = tmp_path / "state" / "daemon.lock"
    lock.parent.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # what status holds while it looks
    released = threading.Timer(0.5, os.close, (fd,))  # closing drops the flock
    proc = start(["run", "--config", str(cfg)])
    released.start()
    try:
        wait_for(lambda: proc.poll() is not None or _snapshot_pid(tmp_path) == proc.pid, 30, "the daemon starting")
        assert proc.poll() is None, "the daemon exited instead of starting"
    finally:
        released.join()
        code, _, err = stop(proc)
    assert code == 0, err.decode()[-2000:]
