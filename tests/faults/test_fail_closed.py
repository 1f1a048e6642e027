"""Fail closed, clearly (issue 10, must-haves 3, 4, 6): wrong keys, damaged queue files, bad rows, bad
numbers. Each fault is made for real (another key file, bytes overwritten in the SQLite file, a folder in
its place) and the real CLI runs as a child process: one sentence, a documented exit code, no traceback,
no hang (every call has a deadline)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from gateway.crypto import KeyRing, create_key_file, rotate_key_file
from gateway.queue import ReadingQueue, State
from tests.conftest import bp
from tests.faults.common import identifiers, simulated, start, stop, vitalgate, wait_for, write_config

EXIT_CONFIG, EXIT_KEY, EXIT_QUEUE, EXIT_IO = 2, 3, 4, 7


def one_clear_line(proc: object, code: int) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)  # type: ignore[attr-defined]
    err: str = proc.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def fill(cfg_dir: Path, key: Path, n: int, *, bound: bool = True) -> None:
    """n readings of one cuff committed through the real queue (bound or left unassigned)."""

    async def go() -> None:
        q = await ReadingQueue.open(cfg_dir / "state" / "queue.db", KeyRing.load(str(key)))
        try:
            if bound:
                await q.bind("BP123456", 1, "Patient/p1")
            await q.put([bp(minute=i) for i in range(n)])
        finally:
            await q.close()

    asyncio.run(go())


@pytest.mark.parametrize("command", ["run", "status", "devices", "check-config"])
def test_key_file_from_another_keys_init_is_refused_by_every_command(tmp_path: Path, command: str) -> None:
    cfg = write_config(tmp_path)
    fill(tmp_path, tmp_path / "data.key", 3)
    (tmp_path / "data.key").unlink()
    create_key_file(tmp_path / "data.key")  # the fault: a fresh `keys init` over the lost key
    line = one_clear_line(vitalgate(command, "--config", str(cfg), timeout=30), EXIT_KEY)
    assert "does not match the queue" in line and "backup" in line


def test_newest_key_line_removed_is_named_not_quarantined(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    key = tmp_path / "data.key"
    rotate_key_file(key)
    fill(tmp_path, key, 3)  # sealed with the newest key
    lines = key.read_text().splitlines()
    key.write_text("\n".join(lines[:-1]) + "\n")
    for command in ("run", "status", "check-config"):
        line = one_clear_line(vitalgate(command, "--config", str(cfg), timeout=30), EXIT_KEY)
        assert "lacks key" in line, line
    # Nothing was quarantined on the way: with the line restored, all three rows are still pending.
    key.write_text("\n".join(lines) + "\n")
    assert "pending      3" in vitalgate("status", "--config", str(cfg)).stdout


def test_oldest_key_line_removed_fails_the_known_answer(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    key = tmp_path / "data.key"
    fill(tmp_path, key, 2)
    rotate_key_file(key)
    lines = [ln for ln in key.read_text().splitlines() if not ln.startswith("#")]
    key.write_text(lines[-1] + "\n")
    line = one_clear_line(vitalgate("run", "--config", str(cfg), timeout=30), EXIT_KEY)
    assert "first key differs" in line


def test_check_config_proves_the_key_with_the_known_answer_row(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    assert "queue not created yet" in vitalgate("check-config", "--config", str(cfg)).stdout
    fill(tmp_path, tmp_path / "data.key", 1)
    ok = vitalgate("check-config", "--config", str(cfg))
    assert ok.returncode == 0 and "key matches the queue: known-answer row opens, 1 rows" in ok.stdout


def _not_sqlite(db: Path) -> None:
    db.write_bytes(b"this is not a database\n" * 100)


def _header_zeroed(db: Path) -> None:
    with db.open("r+b") as f:
        f.write(b"\0" * 100)


def _folder(db: Path) -> None:
    db.unlink()
    for extra in ("-wal", "-shm"):
        db.with_name(db.name + extra).unlink(missing_ok=True)
    db.mkdir()


@pytest.mark.parametrize("damage", [_not_sqlite, _header_zeroed, _folder])
@pytest.mark.parametrize("command", ["run", "status", "check-config"])
def test_damaged_queue_file_is_one_sentence_and_exit_4(tmp_path: Path, damage: object, command: str) -> None:
    cfg = write_config(tmp_path)
    fill(tmp_path, tmp_path / "data.key", 2)
    damage(tmp_path / "state" / "queue.db")  # type: ignore[operator]
    line = one_clear_line(vitalgate(command, "--config", str(cfg), timeout=30), EXIT_QUEUE)
    assert "queue" in line and str(tmp_path / "state" / "queue.db") in line


def test_bad_rows_are_quarantined_with_a_reason_and_the_rest_flow(tmp_path: Path) -> None:
    """The campaign's cases: a pending row with a 4-byte nonce blocked 9 good rows forever; a tampered
    unassigned row stayed unassigned with no reason and no log line."""
    cfg = write_config(tmp_path, devices=simulated("cuff", "S-LATER", 0, interval=3600))
    key = tmp_path / "data.key"
    fill(tmp_path, key, 10)  # bound: pending
    db = tmp_path / "state" / "queue.db"

    async def unassigned() -> None:
        q = await ReadingQueue.open(db, KeyRing.load(str(key)))
        try:
            await q.put([bp(minute=i, user=2) for i in range(3)])  # user 2 is not bound
        finally:
            await q.close()

    asyncio.run(unassigned())
    with sqlite3.connect(db) as con:
        ids = [r[0] for r in con.execute("SELECT id FROM readings ORDER BY id")]
        con.execute("UPDATE readings SET nonce = x'00000000' WHERE id = ?", (ids[4],))  # pending, malformed
        # unassigned, edited into a TEXT value that is not even UTF-8 (it used to fail every fetch of the table)
        con.execute("UPDATE readings SET payload = x'00ff' || payload WHERE id = ?", (ids[11],))
    con.close()
    proc = start(["run", "--config", str(cfg)])
    try:
        wait_for(lambda: len(identifiers(tmp_path)) >= 9, 30, "the 9 good pending rows")
        # Binding user 2 makes the assign pass open every unassigned row: the tampered one is quarantined.
        assert vitalgate("bind", "BP123456", "p2", "--user", "2", "--config", str(cfg)).returncode == 0
        wait_for(lambda: len(identifiers(tmp_path)) >= 11, 30, "the 2 good unassigned rows after binding")
    finally:
        code, out, err = stop(proc)
    assert code == 0, err.decode()[-2000:]
    assert len(identifiers(tmp_path)) == len(set(identifiers(tmp_path))) == 11
    status = vitalgate("status", "--config", str(cfg)).stdout
    assert "delivered    11" in status and "quarantined  2" in status, status
    assert f"quarantined #{ids[4]}: DecryptError: malformed sealed value" in status
    assert f"quarantined #{ids[11]}: DecryptError: malformed sealed value" in status
    assert out.count(b'"rows_quarantined"') == 2 and b"Traceback" not in out + err


def test_unassigned_listing_quarantines_a_row_that_does_not_open(tmp_path: Path) -> None:
    async def go() -> None:
        key = tmp_path / "k"
        create_key_file(key)
        q = await ReadingQueue.open(tmp_path / "q.db", KeyRing.load(str(key)))
        try:
            await q.put([bp(minute=i) for i in range(3)])
            with sqlite3.connect(tmp_path / "q.db") as con:
                con.execute("UPDATE readings SET key_id = 'gone' WHERE id = 2")
            con.close()
            assert [u.item_id for u in await q.unassigned()] == [1, 3]
            assert await q.quarantined() == [(2, "DecryptError: unknown key id 'gone'")]
            assert (await q.counts())[State.UNASSIGNED] == 2
        finally:
            await q.close()

    asyncio.run(go())


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("retry_initial_seconds = nan", "queue.retry_initial_seconds"),
        ("retention_days = inf", "queue.retention_days"),
        ("retention_days = 1e9", "queue.retention_days"),
    ],
)
def test_config_numbers_out_of_range_stop_check_config_and_run(tmp_path: Path, body: str, key: str) -> None:
    cfg = write_config(tmp_path)
    keep = "" if body.startswith("retry_initial_seconds") else "retry_initial_seconds = 0.05\n"
    cfg.write_text(cfg.read_text().replace("[queue]\nretry_initial_seconds = 0.05\n", f"[queue]\n{keep}{body}\n"))
    for command in ("check-config", "run"):
        line = one_clear_line(vitalgate(command, "--config", str(cfg), timeout=30), EXIT_CONFIG)
        assert f": {key}: " in line


@pytest.mark.parametrize(
    "argv",
    [
        ["bind", "AA:BB:CC:DD:EE:FF", "p1", "--user", str(10**25)],
        ["bind", "AA:BB:CC:DD:EE:FF", "p1", "--user", "-5"],
        ["bind", "", "p1"],
        ["bind", "   ", "p1"],
        ["unbind", "AA:BB:CC:DD:EE:FF", "--user", "nan"],
        ["requeue", str(10**25)],
        ["requeue", "-1"],
        ["audit", "--limit", str(10**25)],
        ["audit", "--limit", "-3"],
        ["demo", "--seconds", "-1"],
        ["demo", "--seconds", "nan"],
        ["demo", "--seconds", "inf"],
        ["simulate", "ultra2", "--records", "-5"],
        ["simulate", "ultra2", "--interval", "nan"],
        ["simulate", "ble-cuff", "--port", "70000"],
        ["simulate", "ble-cuff", "--users", "0"],
        ["simulate", "ble-cuff", "--every", "-1"],
        ["scan", "--seconds", "nan"],
        ["pair", "AA:BB:CC:DD:EE:FF", "--passkey", "1234567"],
        ["pair", "AA:BB:CC:DD:EE:FF", "--user", "300"],
        ["pair", "AA:BB:CC:DD:EE:FF", "--timeout", "inf"],
    ],
)
def test_cli_arguments_out_of_range_are_usage_errors(tmp_path: Path, argv: list[str]) -> None:
    cfg = write_config(tmp_path)
    args = [*argv, "--config", str(cfg)] if argv[0] in ("bind", "unbind", "requeue", "audit") else argv
    proc = vitalgate(*args, timeout=30)
    assert proc.returncode == EXIT_CONFIG, proc.stderr
    assert "Traceback" not in proc.stderr and "error: argument" in proc.stderr
    assert not (tmp_path / "state").exists()  # refused before anything was opened


def test_demo_out_naming_a_file_and_key_in_proc_are_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    proc = vitalgate("demo", "--out", str(tmp_path / "afile"), timeout=30)
    assert proc.returncode == EXIT_CONFIG and "is not a folder" in proc.stderr and "Traceback" not in proc.stderr
    line = one_clear_line(vitalgate("keys", "init", "--path", "/proc/vg.key", timeout=30), EXIT_IO)
    assert line.startswith("vitalgate: /proc/vg.key: ")


def test_damaged_binding_checkpoint_and_reject_rows_do_not_stop_status_or_the_meter(tmp_path: Path) -> None:
    """Rows edited in the other tables: status still answers (and names the binding), a damaged download
    checkpoint makes the meter be read from its first record (duplicates dropped), nothing crashes."""

    async def go() -> None:
        key = tmp_path / "k"
        create_key_file(key)
        q = await ReadingQueue.open(tmp_path / "q.db", KeyRing.load(str(key)))
        try:
            await q.bind("BP123456", 1, "Patient/p1")
            await q.set_checkpoint("meter", "last", "41")
            await q.reject(b"\x01\x02", ValueError("bad frame"), source="test")
        finally:
            await q.close()
        with sqlite3.connect(tmp_path / "q.db") as con:
            for table in ("bindings", "checkpoints", "rejects"):
                con.execute(f"UPDATE {table} SET payload = x'00' || payload")
        con.close()
        q = await ReadingQueue.open(tmp_path / "q.db", KeyRing.load(str(key)))
        try:
            assert q.damaged_bindings == 1 and q.binding_for(bp()) is None
            assert await q.checkpoint("meter", "last") is None
            assert await q.reject_count() == 1
        finally:
            await q.close()

    asyncio.run(go())
