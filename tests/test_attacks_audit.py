"""Attacks on the audit trail with raw SQL (issue 11, must-have 4), and what the trail records.

Each attack edits the SQLite file with the sqlite3 module, as a local user with write access to the
database (or someone holding the SD card) would; `verify` / `vitalgate audit --verify` must name the break.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import Config
from gateway.crypto import KeyRing, create_key_file
from gateway.daemon import Gateway
from gateway.queue import ReadingQueue

ROOT = Path(__file__).resolve().parents[1]


async def _trail(path: Path, keyring: KeyRing, entries: int = 4) -> None:
    async with await ReadingQueue.open(path, keyring) as q:
        for i in range(entries):
            await q.audit(f"op{i} (uid {1000 + i})", "bind", f"binding tag{i}")


async def _verify(path: Path, keyring: KeyRing) -> list[str]:
    async with await ReadingQueue.open(path, keyring) as q:
        return await q.verify_audit()


def _sql(path: Path, statement: str, *params: object) -> None:
    db = sqlite3.connect(path)
    db.execute(statement, params)
    db.commit()
    db.close()


def test_intact_trail_verifies(tmp_path: Path, keyring: KeyRing) -> None:
    asyncio.run(_trail(tmp_path / "q.db", keyring))
    assert asyncio.run(_verify(tmp_path / "q.db", keyring)) == []


def test_attack_edited_audit_entry_is_detected(tmp_path: Path, keyring: KeyRing) -> None:
    path = tmp_path / "q.db"
    asyncio.run(_trail(path, keyring))
    _sql(path, "UPDATE audit SET actor = 'someone else (uid 0)' WHERE id = 2")
    assert asyncio.run(_verify(path, keyring)) == ["entry #2: content changed after it was written"]


def test_attack_deleted_audit_entry_is_detected(tmp_path: Path, keyring: KeyRing) -> None:
    path = tmp_path / "q.db"
    asyncio.run(_trail(path, keyring))
    _sql(path, "DELETE FROM audit WHERE id = 2")
    problems = asyncio.run(_verify(path, keyring))
    assert problems[0] == "entry #3: does not follow the entry before it (an entry was deleted or inserted)"
    assert "found 3 (entries removed or added)" in problems[-1]


def test_attack_deleted_last_audit_entry_is_detected(tmp_path: Path, keyring: KeyRing) -> None:
    path = tmp_path / "q.db"
    asyncio.run(_trail(path, keyring))
    _sql(path, "DELETE FROM audit WHERE id = 4")
    problems = asyncio.run(_verify(path, keyring))
    assert len(problems) == 1 and "should hold 4 entries" in problems[0]


def test_attack_inserted_audit_entry_is_detected(tmp_path: Path, keyring: KeyRing) -> None:
    path = tmp_path / "q.db"
    asyncio.run(_trail(path, keyring))
    # Plain INSERT between entries (a free id), and a copy of a real entry's chain fields onto a forged one.
    _sql(path, "INSERT INTO audit (id, at, actor, action, detail) VALUES (10, 1.0, 'x', 'unbind', 'y')")
    _sql(
        path,
        "INSERT INTO audit (id, at, actor, action, detail, prev, hash, mac) "
        "SELECT 11, at, 'forger', action, detail, hash, hash, mac FROM audit WHERE id = 4",
    )
    problems = asyncio.run(_verify(path, keyring))
    assert "entry #10: not chained (inserted outside vitalgate)" in problems
    assert "entry #11: content changed after it was written" in problems
    assert "found 6 (entries removed or added)" in problems[-1]


def test_attack_rewritten_head_record_is_detected(tmp_path: Path, keyring: KeyRing) -> None:
    path = tmp_path / "q.db"
    asyncio.run(_trail(path, keyring))
    _sql(path, "DELETE FROM audit WHERE id = 4")
    db = sqlite3.connect(path)
    (head,) = db.execute("SELECT v FROM meta WHERE k = 'audit_head'").fetchone()
    db.close()
    _sql(path, "UPDATE meta SET v = ? WHERE k = 'audit_head'", (3).to_bytes(8, "big") + head[8:])  # count 4 -> 3
    assert "the trail's head record was altered" in asyncio.run(_verify(path, keyring))


def test_legacy_trail_is_chained_at_migration_and_verifies(tmp_path: Path, keyring: KeyRing) -> None:
    path = tmp_path / "q.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);"
        "CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, actor TEXT NOT NULL,"
        " action TEXT NOT NULL, detail TEXT NOT NULL);"
        "INSERT INTO audit (at, actor, action, detail) VALUES (1.0, 'old (uid 1)', 'bind', 'binding abc');"
    )
    db.commit()
    db.close()
    assert asyncio.run(_verify(path, keyring)) == []


def _vitalgate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_cli_records_failed_commands_key_rotation_and_real_uid(tmp_path: Path) -> None:
    create_key_file(tmp_path / "data.key")
    cfg = tmp_path / "vg.toml"
    cfg.write_text(f'[gateway]\nstate_dir = "state"\nkey_file = "{tmp_path}/data.key"\n')
    c = ("--config", str(cfg))
    assert _vitalgate("bind", "AA:BB:CC:DD:EE:FF", "Patient/1", *c, env={"SUDO_USER": "mallory"}).returncode == 0
    assert _vitalgate("bind", "AA:BB:CC:DD:EE:FF", "not a patient!", *c).returncode == 2
    assert _vitalgate("requeue", *c).returncode == 2
    assert _vitalgate("keys", "rotate", *c).returncode == 0
    trail = _vitalgate("audit", *c).stdout
    lines = trail.splitlines()
    import os

    assert f"(uid {os.getuid()}" in lines[0] and "sudo claims mallory" in lines[0] and "bind" in lines[0]
    assert "bind" in lines[1] and "failed: config error" in lines[1]
    assert "requeue" in lines[2] and "failed: exit status 2" in lines[2]
    assert "keys" in lines[3] and "made current" in lines[3]
    ok = _vitalgate("audit", "--verify", *c)
    assert ok.returncode == 0 and "audit trail intact" in ok.stdout
    _sql(tmp_path / "state/queue.db", "UPDATE audit SET action = 'status' WHERE id = 1")
    broken = _vitalgate("audit", "--verify", *c)
    assert broken.returncode == 1 and "entry #1: content changed" in broken.stdout


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_daemon_start_stop_and_config_change_are_recorded(tmp_path: Path, keyring: KeyRing) -> None:
    conf = tmp_path / "vg.toml"
    conf.write_text("# first\n")
    cfg = Config(file=str(conf), state_dir=tmp_path, queue_path=tmp_path / "q.db")

    async def run_once() -> None:
        gw = Gateway(cfg, keyring)
        stop = asyncio.Event()
        task = asyncio.create_task(gw.run(stop))
        async with asyncio.timeout(20):
            await gw.ready.wait()
        stop.set()
        await asyncio.wait_for(task, 20)

    asyncio.run(run_once())
    conf.write_text("# second\n")
    asyncio.run(run_once())

    async def trail() -> list[str]:
        async with await ReadingQueue.open(tmp_path / "q.db", keyring) as q:
            return [f"{action}: {detail}" for _, _, action, detail in reversed(await q.audit_trail())]

    actions = [line.split(":")[0] for line in asyncio.run(trail())]
    assert actions == ["daemon start", "daemon stop", "daemon start", "config changed", "daemon stop"]


def test_demo_runs_are_recorded_as_demo(tmp_path: Path, keyring: KeyRing) -> None:
    cfg = Config(file="<demo>", state_dir=tmp_path, queue_path=tmp_path / "q.db")

    async def run_once() -> list[str]:
        gw = Gateway(cfg, keyring)
        stop = asyncio.Event()
        task = asyncio.create_task(gw.run(stop))
        async with asyncio.timeout(20):
            await gw.ready.wait()
        stop.set()
        await asyncio.wait_for(task, 20)
        async with await ReadingQueue.open(tmp_path / "q.db", keyring) as q:
            return [action for _, _, action, _ in reversed(await q.audit_trail())]

    assert asyncio.run(run_once()) == ["demo start", "demo stop"]
