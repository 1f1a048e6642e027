"""Attacks on the queue's meaning with raw SQL (issue 11, must-have 3): a withheld row flipped to pending,
an old sealed binding row restored. Both are refused, kept apart and alarmed."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import replace
from pathlib import Path

from gateway.alarms import SNAPSHOT_NAME
from gateway.config import Config
from gateway.crypto import KeyRing
from gateway.daemon import Gateway
from gateway.queue import DAY, ReadingQueue, State
from gateway.reading import Status
from tests.conftest import bp


def _sql(path: Path, statement: str, *params: object) -> None:
    db = sqlite3.connect(path)
    db.execute(statement, params)
    db.commit()
    db.close()


async def test_attack_withheld_row_flipped_to_pending_is_never_sent(tmp_path: Path, keyring: KeyRing) -> None:
    path = tmp_path / "q.db"
    q = await ReadingQueue.open(path, keyring)
    try:
        await q.bind("BP123456", 1, "Patient/p1")
        await q.put([replace(bp(), status=frozenset({Status.CONTROL_SOLUTION})), bp(minute=5)])
        assert (await q.counts())[State.WITHHELD] == 1
        _sql(path, "UPDATE readings SET state = 0 WHERE state = 4")  # the attack
        leased, broken = await q.lease(10)
        assert len(leased) == 1 and leased[0].reading.device_time == bp(minute=5).device_time and broken == []
        # Our own transitions cannot launder it: an ack or a quarantine of that row is ignored.
        db = sqlite3.connect(path)
        (flipped,) = db.execute("SELECT id FROM readings WHERE id != ?", (leased[0].item_id,)).fetchone()
        db.close()
        await q.set_state({flipped: "x"}, State.QUARANTINED)
        await q.requeue()
        assert [i.item_id for i in (await q.lease(10))[0]] == [leased[0].item_id]
    finally:
        await q.close()

    q = await ReadingQueue.open(path, keyring)  # any open (daemon start, `vitalgate status`) sweeps
    try:
        counts = await q.counts()
        assert counts[State.TAMPERED] == 1 and counts[State.PENDING] == 1 and counts[State.WITHHELD] == 0
        assert "queue_rows_tampered" in q.integrity_problems
        assert await q.requeue() == 0  # requeue --all never sends it
        assert len((await q.lease(10))[0]) == 1
    finally:
        await q.close()


async def test_attack_many_flipped_rows_do_not_starve_the_lease(tmp_path: Path, keyring: KeyRing) -> None:
    """More flipped rows than a lease's limit, all older than the good ones: the lease passes over them page
    by page (the MAC is checked on each fetched page, not on every due row) and still fills its batch."""
    path = tmp_path / "q.db"
    async with await ReadingQueue.open(path, keyring) as q:
        await q.bind("BP123456", 1, "Patient/p1")
        await q.put([replace(bp(minute=m), status=frozenset({Status.CONTROL_SOLUTION})) for m in range(5)])
        await q.put([bp(minute=m) for m in range(10, 14)])
        _sql(path, "UPDATE readings SET state = 0 WHERE state = 4")  # the attack: 5 rows ahead of the 4 good
        _sql(path, "UPDATE readings SET mac = 'not a mac' WHERE id = (SELECT max(id) FROM readings)")  # wrong type
        leased, broken = await q.lease(2)
        assert [x.reading.device_time for x in leased] == [bp(minute=m).device_time for m in (10, 11)]
        assert broken == []
        leased, broken = await q.lease(10, exclude=[leased[0].item_id])
        assert [x.reading.device_time for x in leased] == [bp(minute=m).device_time for m in (11, 12)]
        assert broken == []


async def test_attack_restored_old_binding_row_is_refused(tmp_path: Path, keyring: KeyRing) -> None:
    path = tmp_path / "q.db"
    q = await ReadingQueue.open(path, keyring)
    try:
        await q.bind("BP123456", 1, "Patient/old-patient")
        db = sqlite3.connect(path)
        old_row = db.execute("SELECT tag, key_id, nonce, payload FROM bindings").fetchone()
        db.close()
        await q.bind("BP123456", 1, "Patient/new-patient")  # the device went to another patient
    finally:
        await q.close()
    _sql(
        path,
        "INSERT OR REPLACE INTO bindings (tag, key_id, nonce, payload) VALUES (?, ?, ?, ?)",
        *old_row,
    )

    q = await ReadingQueue.open(path, keyring)
    try:
        assert await q.reload_bindings() == []  # neither the restored row nor (gone) the new one
        assert "bindings_tampered" in q.integrity_problems
        await q.put([bp(minute=7)])
        assert (await q.counts())[State.UNASSIGNED] == 1  # held, not sent to the old patient
        await q.bind("BP123456", 1, "Patient/new-patient")  # the operator binds again as intended
        assert [b.patient for b in await q.reload_bindings()] == ["Patient/new-patient"]
    finally:
        await q.close()


async def test_older_queue_is_migrated_and_keeps_working(tmp_path: Path, keyring: KeyRing) -> None:
    path = tmp_path / "q.db"
    async with await ReadingQueue.open(path, keyring) as q:
        await q.bind("BP123456", 1, "Patient/p1")
        await q.put([bp(minute=1), bp(minute=2)])
    # As a queue written before the guard existed: no MAC column, no bindings manifest.
    _sql(path, "ALTER TABLE readings DROP COLUMN mac")
    _sql(path, "DELETE FROM meta WHERE k = 'bindings_manifest'")
    async with await ReadingQueue.open(path, keyring) as q:
        assert q.integrity_problems == {}
        assert len(await q.reload_bindings()) == 1
        assert len((await q.lease(10))[0]) == 2


async def test_tampered_rows_raise_a_critical_alarm_in_the_daemon(tmp_path: Path, keyring: KeyRing) -> None:
    path = tmp_path / "q.db"
    async with await ReadingQueue.open(path, keyring) as q:
        await q.put([replace(bp(), status=frozenset({Status.SENSOR_FAULT}))])
    _sql(path, "UPDATE readings SET state = 0")
    cfg = Config(
        file="<test>", state_dir=tmp_path, queue_path=path, forwarder_options={"directory": str(tmp_path / "o")}
    )
    gw = Gateway(cfg, keyring)
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    async with asyncio.timeout(20):
        await gw.ready.wait()
    stop.set()
    await asyncio.wait_for(task, 20)
    snapshot = json.loads((tmp_path / SNAPSHOT_NAME).read_text())
    alarm = next(a for a in snapshot["alarms"] if a["code"] == "queue_rows_tampered")
    assert alarm["severity"] == "critical" and "never sent" in alarm["sentence"]


async def test_attack_reject_flood_is_paged_and_purged(tmp_path: Path, keyring: KeyRing) -> None:
    """A device sending only garbage: `status` counts rejects without decrypting them, review pages
    through them, and the table is cut to the newest MAX_REJECTS and to the retention period."""
    async with await ReadingQueue.open(tmp_path / "q.db", keyring) as q:
        for i in range(30):
            await q.reject(bytes([i]) * 8, ValueError("bad"), source="flood")
        assert await q.reject_count() == 30
        first = await q.rejects(limit=10)
        second = await q.rejects(limit=10, after_id=first[-1][0])
        assert [raw for *_, raw in first + second] == [bytes([i]) * 8 for i in range(20)]
        assert await q.purge_rejects(older_than_seconds=3600, keep_at_most=5) == 25
        assert [raw for *_, raw in await q.rejects()] == [bytes([i]) * 8 for i in range(25, 30)]
        # Rows keep only their day: kept at least the retention, at most a day more.
        assert await q.purge_rejects(older_than_seconds=-DAY) == 5
        assert await q.reject_count() == 0
