"""What a stolen SD card tells about a patient's activity (issue 11, Low: "metadata (created_at, last seen,
per-slot counts, device names) is plaintext").

The thief reads the queue file with plain `sqlite3` and a hex viewer. Schema 2 keeps a device slot's first
and last seen and its reading count inside the slot's seal, keeps no binding or checkpoint times, and leaves
a delivered reading only its day. A queue written by the schema-1 code is migrated on open, and the old
values are gone from the file's bytes.
"""

from __future__ import annotations

import sqlite3
import struct
import time
from pathlib import Path

import orjson

from gateway.codec import encode_reading
from gateway.crypto import KeyRing
from gateway.queue import CHECKPOINT_V2, DAY, ReadingQueue, State
from tests.conftest import CUFF, bp

# The schema-1 tables exactly as gateway/queue.py created them before this change (the readings table as it
# was before the row-state MAC column, which gateway.rowguard adds on open).
SCHEMA_1 = """
CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE readings (
    id INTEGER PRIMARY KEY AUTOINCREMENT, dedup BLOB NOT NULL UNIQUE, state INTEGER NOT NULL,
    key_id TEXT NOT NULL, nonce BLOB NOT NULL, payload BLOB NOT NULL, created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL DEFAULT 0, done_at REAL, reason TEXT
);
CREATE INDEX readings_ready ON readings (state, next_at, id);
CREATE INDEX readings_done ON readings (state, done_at);
CREATE TABLE slots (
    tag BLOB PRIMARY KEY, key_id TEXT NOT NULL, nonce BLOB NOT NULL, payload BLOB NOT NULL,
    first_seen REAL NOT NULL, last_seen REAL NOT NULL, readings INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE bindings (
    tag BLOB PRIMARY KEY, key_id TEXT NOT NULL, nonce BLOB NOT NULL, payload BLOB NOT NULL, created_at REAL NOT NULL
);
CREATE TABLE checkpoints (
    tag BLOB PRIMARY KEY, key_id TEXT NOT NULL, nonce BLOB NOT NULL, payload BLOB NOT NULL, updated_at REAL NOT NULL
);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE rejects (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created_at REAL NOT NULL, source TEXT NOT NULL, error TEXT NOT NULL,
    key_id TEXT NOT NULL, nonce BLOB NOT NULL, payload BLOB NOT NULL
);
"""

# Distinctive times (2026-11-2x, with microseconds) a patient's morning readings would leave.
FIRST_SEEN, LAST_SEEN = 1763967600.123456, 1764399660.654321
BOUND_AT, CHECKPOINT_AT = 1763967000.111111, 1764399661.222222
RECEIVED, DELIVERED, RETRY = 1764399662.333333, 1764399700.444444, 1764399690.555555
PENDING_RECEIVED = 1764400000.777777
REJECTED = 1764399663.888888
DEVICE_NAME = "mrs-smith-cuff"  # an operator's name for a device, as configured: kept only in the seal
SLOT_COUNT = 7


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]


def _old_queue(path: Path, ring: KeyRing) -> None:
    """A queue as the schema-1 code left it: a cuff's slot seen 7 times, bound, a checkpoint, one reading
    delivered (retried once) and one pending."""
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_1)
    db.execute("INSERT INTO meta (k, v) VALUES ('schema', '1'), ('bindings_version', '1')")
    slot_tag = ring.tag(f"slot|{CUFF.key}|1")
    doc = {
        "key": CUFF.key, "driver": CUFF.driver, "address": CUFF.address, "serial_number": CUFF.serial_number,
        "system_id": CUFF.system_id, "manufacturer": CUFF.manufacturer, "model": CUFF.model, "user": 1,
    }  # fmt: skip
    s = ring.seal(orjson.dumps(doc), b"slots|" + slot_tag)
    db.execute(
        "INSERT INTO slots VALUES (?, ?, ?, ?, ?, ?, ?)",
        (slot_tag, s.key_id, s.nonce, s.ciphertext, FIRST_SEEN, LAST_SEEN, SLOT_COUNT),
    )
    tag = ring.tag("binding|BP123456|1")
    s = ring.seal(orjson.dumps({"device": "BP123456", "user": 1, "patient": "Patient/p-1"}), b"bindings|" + tag)
    db.execute("INSERT INTO bindings VALUES (?, ?, ?, ?, ?)", (tag, s.key_id, s.nonce, s.ciphertext, BOUND_AT))
    tag = ring.tag(f"checkpoint|{CUFF.key}|racp")
    s = ring.seal(CHECKPOINT_V2 + orjson.dumps({"d": CUFF.key, "n": "racp", "v": "41"}), b"checkpoints|" + tag)
    db.execute("INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?)", (tag, s.key_id, s.nonce, s.ciphertext, CHECKPOINT_AT))
    for reading, state, created, attempts, next_at, done in (
        (bp(minute=1), 1, RECEIVED, 1, RETRY, DELIVERED),
        (bp(minute=2), 0, PENDING_RECEIVED, 0, 0.0, None),
    ):
        dedup = ring.tag("reading|" + reading.idempotency_key)
        s = ring.seal(encode_reading(reading), b"readings|" + dedup)
        db.execute(
            "INSERT INTO readings (dedup, state, key_id, nonce, payload, created_at, attempts, next_at, done_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (dedup, state, s.key_id, s.nonce, s.ciphertext, created, attempts, next_at, done),
        )
    source = f"{DEVICE_NAME}:0x2A35"
    s = ring.seal(b"\x01garbage", f"rejects|{REJECTED:.6f}|{source}".encode())
    db.execute(
        "INSERT INTO rejects (created_at, source, error, key_id, nonce, payload) VALUES (?, ?, ?, ?, ?, ?)",
        (REJECTED, source, "ValueError", s.key_id, s.nonce, s.ciphertext),
    )
    db.commit()
    db.close()


def _file_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists())


def _day(t: float) -> float:
    return t - t % DAY


async def test_attack_stolen_card_after_upgrade_shows_no_slot_times_counts_or_exact_delivery_times(
    tmp_path: Path, keyring: KeyRing
) -> None:
    path = tmp_path / "state" / "queue.db"
    path.parent.mkdir(mode=0o700)
    _old_queue(path, keyring)
    hidden = (FIRST_SEEN, LAST_SEEN, BOUND_AT, CHECKPOINT_AT, RECEIVED, DELIVERED, RETRY, REJECTED)
    before = _file_bytes(path)
    assert all(struct.pack(">d", t) in before for t in hidden)  # SQLite keeps a REAL as a big-endian double
    assert DEVICE_NAME.encode() in before

    async with await ReadingQueue.open(path, keyring) as q:
        # Everything the operator saw is still there, now from inside the seals.
        [device] = await q.devices()
        assert (device["first_seen"], device["last_seen"], device["readings"]) == (FIRST_SEEN, LAST_SEEN, SLOT_COUNT)
        assert device["serial_number"] == "BP123456" and device["user"] == 1
        assert [(b.device, b.patient) for b in await q.reload_bindings()] == [("BP123456", "Patient/p-1")]
        assert await q.checkpoint(CUFF.key, "racp") == "41"
        leased, broken = await q.lease(10)
        assert [lease.reading for lease in leased] == [bp(minute=2)] and broken == []
        assert await q.rejects() == [(1, f"{DEVICE_NAME}:0x2A35", "ValueError", b"\x01garbage")]
        assert await q.integrity_check() == "ok"

    stolen = _file_bytes(path)
    assert not [t for t in hidden if struct.pack(">d", t) in stolen]
    assert DEVICE_NAME.encode() not in stolen
    db = sqlite3.connect(path)
    try:
        assert _columns(db, "slots") == ["tag", "key_id", "nonce", "payload"]
        assert "created_at" not in _columns(db, "bindings") and "updated_at" not in _columns(db, "checkpoints")
        rows = db.execute("SELECT state, created_at, done_at, next_at FROM readings ORDER BY id").fetchall()
        assert rows == [(1, _day(RECEIVED), _day(DELIVERED), 0.0), (0, PENDING_RECEIVED, None, 0.0)]
        assert db.execute("SELECT created_at, source FROM rejects").fetchall() == [(_day(REJECTED), "")]
        assert db.execute("SELECT v FROM meta WHERE k = 'schema'").fetchone() == ("2",)
    finally:
        db.close()

    # It goes on counting where it was, and a second open migrates nothing again.
    async with await ReadingQueue.open(path, keyring) as q:
        await q.put([bp(minute=3)])
        [device] = await q.devices()
        assert device["first_seen"] == FIRST_SEEN and device["readings"] == SLOT_COUNT + 1
        assert device["last_seen"] > LAST_SEEN


async def test_attack_stolen_card_shows_no_device_activity_in_a_new_queue(tmp_path: Path, keyring: KeyRing) -> None:
    path = tmp_path / "queue.db"
    async with await ReadingQueue.open(path, keyring) as q:
        await q.bind("BP123456", 1, "Patient/p-1")
        await q.set_checkpoint(CUFF.key, "racp", "3")
        start = time.time()
        for minute in range(5):  # five sessions
            await q.put([bp(minute=minute), bp(minute=minute, user=2)])
        await q.put([bp(minute=0)])  # a meter re-sending its memory: not counted again
        leased, _ = await q.lease(3)
        await q.release({leased[0].item_id: 30.0})
        await q.ack([lease.item_id for lease in leased])
        await q.reject(b"\x02junk", ValueError("bad frame"), source=f"{DEVICE_NAME}:0x2A35")
        assert [r[1:] for r in await q.rejects()] == [(f"{DEVICE_NAME}:0x2A35", "ValueError", b"\x02junk")]
        devices = {d["user"]: d for d in await q.devices()}
    assert {u: d["readings"] for u, d in devices.items()} == {1: 5, 2: 5}
    assert all(start <= d["first_seen"] <= d["last_seen"] <= time.time() for d in devices.values())

    db = sqlite3.connect(path)  # the thief's view
    try:
        assert [_columns(db, t) for t in ("slots", "bindings", "checkpoints")] == [
            ["tag", "key_id", "nonce", "payload"]
        ] * 3
        delivered = db.execute("SELECT created_at, done_at, next_at FROM readings WHERE state = 1").fetchall()
        assert len(delivered) == 3
        assert all(c % DAY == 0 and d % DAY == 0 and n == 0 for c, d, n in delivered)
        slots = db.execute("SELECT payload FROM slots").fetchall()
        assert len(slots) == 2 and not any(b"readings" in bytes(p) or b"BP123456" in bytes(p) for (p,) in slots)
        [(created, source)] = db.execute("SELECT created_at, source FROM rejects").fetchall()
        assert created % DAY == 0 and source == ""
    finally:
        db.close()
    assert DEVICE_NAME.encode() not in _file_bytes(path)


def _doubles_between(blob: bytes, low: float, high: float) -> list[float]:
    """Every big-endian double (SQLite's REAL on disk) at any byte offset of `blob` within [low, high]."""
    found = []
    for shift in range(8):
        tail = blob[shift:]
        found += [t for (t,) in struct.iter_unpack(">d", tail[: len(tail) - len(tail) % 8]) if low <= t <= high]
    return found


async def test_attack_stolen_card_shows_no_exact_time_of_a_withheld_reading(tmp_path: Path, keyring: KeyRing) -> None:
    """A withheld reading (control solution, sensor fault) is never sent, so it is never acked: it must not
    keep its exact receive time for good. The thief searches the file's bytes (incl. the WAL) for any time
    stamp from the moment it was committed; the same search finds a pending row's (the search works)."""
    from dataclasses import replace

    from gateway.reading import Status

    path = tmp_path / "queue.db"
    async with await ReadingQueue.open(path, keyring) as q:
        await q.bind("BP123456", 1, "Patient/p-1")
        t0 = time.time()
        await q.put([bp(minute=1)])  # pending: keeps its exact receive time (README says why)
        t1 = time.time()
        await q.put([replace(bp(minute=2), status=frozenset({Status.CONTROL_SOLUTION}))])
        t2 = time.time()
        counts = {s.name: n for s, n in (await q.counts()).items() if n}
    assert counts == {"PENDING": 1, "WITHHELD": 1}  # still counted in `status`

    stolen = _file_bytes(path)
    assert len(_doubles_between(stolen, t0, t1)) == 1  # the pending row's created_at: the search finds it
    assert _doubles_between(stolen, t1, t2) == []  # nothing from the moment the withheld row was committed
    db = sqlite3.connect(path)
    try:
        [(created, done, next_at)] = db.execute("SELECT created_at, done_at, next_at FROM readings WHERE state = 4")
    finally:
        db.close()
    assert created == done == _day(t1) and next_at == 0  # its day only, which the retention purge reads


async def test_attack_stolen_card_withheld_rows_of_an_older_queue_are_cut_to_the_day_on_open(
    tmp_path: Path, keyring: KeyRing
) -> None:
    """Rows withheld by an older vitalgate kept their exact receive time and no `done_at` (never purged):
    the first open cuts them to the day, zeroes the old values in the file, and dates them for the purge."""
    path = tmp_path / "state" / "queue.db"
    path.parent.mkdir(mode=0o700)
    _old_queue(path, keyring)
    db = sqlite3.connect(path)
    db.execute("UPDATE readings SET state = 4, done_at = NULL, next_at = ? WHERE state = 0", (RETRY + 1,))
    db.commit()
    db.close()
    before = _file_bytes(path)
    assert struct.pack(">d", PENDING_RECEIVED) in before

    async with await ReadingQueue.open(path, keyring) as q:
        assert (await q.counts())[State.WITHHELD] == 1  # the guard trusted the old rows as found, once
    stolen = _file_bytes(path)
    assert struct.pack(">d", PENDING_RECEIVED) not in stolen and struct.pack(">d", RETRY + 1) not in stolen
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT created_at, done_at, next_at FROM readings WHERE state = 4").fetchall()
    finally:
        db.close()
    assert rows == [(_day(PENDING_RECEIVED), _day(PENDING_RECEIVED), 0.0)]


async def test_fault_daemon_and_status_opening_a_schema_1_queue_at_once_both_open(
    tmp_path: Path, keyring: KeyRing
) -> None:
    """After an upgrade the daemon starts while `vitalgate status` (a monitoring poll) opens the queue too:
    two connections, each in its own SQLite thread, both see a schema-1 file and both want to change it.
    Each must look again under the write lock; neither may fail with "restore it from a backup"."""
    import asyncio

    from gateway.keycheck import known_answer

    for attempt in range(5):  # the race is real (two threads), not staged: several tries make it show
        path = tmp_path / f"state{attempt}" / "queue.db"
        path.parent.mkdir(mode=0o700)
        _old_queue(path, keyring)
        db = sqlite3.connect(path)  # as a schema-1 release left it: key index and known answer in place
        db.executemany("INSERT INTO meta (k, v) VALUES (?, ?)", [("index_key", keyring.index_id),
                                                                  *known_answer(keyring).items()])  # fmt: skip
        db.commit()
        db.close()
        opened = await asyncio.gather(*(ReadingQueue.open(path, keyring) for _ in range(2)), return_exceptions=True)
        for q in opened:
            if isinstance(q, ReadingQueue):
                await q.close()
        assert [type(q).__name__ for q in opened] == ["ReadingQueue"] * 2, [str(q) for q in opened]
        async with await ReadingQueue.open(path, keyring) as q:
            [device] = await q.devices()
            assert (device["first_seen"], device["readings"]) == (FIRST_SEEN, SLOT_COUNT)
            leased, broken = await q.lease(10)
            assert [lease.reading for lease in leased] == [bp(minute=2)] and broken == []
            assert await q.rejects() == [(1, f"{DEVICE_NAME}:0x2A35", "ValueError", b"\x01garbage")]
