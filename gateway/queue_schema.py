"""The queue file's tables, its row states, and what opening it does before the first read or write.

Creating the tables, checking the key against the file, naming the look-up key and upgrading files written by
older versions all run once, at open, on the writer connection; they are kept here so gateway.queue holds only
the running queue. State is here because it is the `readings.state` column's codes (gateway.queue re-exports it).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import time
from enum import IntEnum
from pathlib import Path

import aiosqlite
import orjson
import structlog

from gateway.crypto import DecryptError, KeyRing, Sealed
from gateway.keycheck import judge, known_answer, used_key_ids_sql
from gateway.queue_days import _DAY_SQL, _day
from gateway.rejects import _reject_aad, _reject_doc

log = structlog.get_logger(__name__)


SCHEMA_VERSION = 2  # 2: slot times and counts sealed, binding/checkpoint times dropped (_migrate_metadata)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dedup BLOB NOT NULL UNIQUE,
    state INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    nonce BLOB NOT NULL,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0,
    done_at REAL,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS readings_ready ON readings (state, next_at, id);
CREATE INDEX IF NOT EXISTS readings_done ON readings (state, done_at);
CREATE TABLE IF NOT EXISTS slots (
    tag BLOB PRIMARY KEY,
    key_id TEXT NOT NULL,
    nonce BLOB NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS bindings (
    tag BLOB PRIMARY KEY,
    key_id TEXT NOT NULL,
    nonce BLOB NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    tag BLOB PRIMARY KEY,
    key_id TEXT NOT NULL,
    nonce BLOB NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rejects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at REAL NOT NULL,
    source TEXT NOT NULL,
    error TEXT NOT NULL,
    key_id TEXT NOT NULL,
    nonce BLOB NOT NULL,
    payload BLOB NOT NULL
);
"""


class State(IntEnum):
    PENDING = 0
    DELIVERED = 1
    QUARANTINED = 2
    UNASSIGNED = 3
    WITHHELD = 4  # kept but never sent as patient data (control solution, sensor fault)
    TAMPERED = 5  # its state was changed outside vitalgate (gateway.rowguard): never sent, never requeued


async def _migrate_metadata(db: aiosqlite.Connection, keyring: KeyRing) -> None:
    """Schema 1 -> 2, once: slot times and counts move into the slot's seal, binding and checkpoint times
    go, delivered rows keep only their day. Old values are zeroed where they lay (`secure_delete`) and the
    WAL is checkpointed and truncated, so the file no longer holds them (flash may keep older copies)."""
    async with db.execute("PRAGMA table_info(slots)") as cur:
        slot_columns = {row[1] for row in await cur.fetchall()}
    if "first_seen" not in slot_columns:
        return
    await db.execute("PRAGMA secure_delete = ON")
    await db.execute("BEGIN IMMEDIATE")
    try:
        async with db.execute("PRAGMA table_info(slots)") as cur:  # under the write lock: another process
            if "first_seen" not in {row[1] for row in await cur.fetchall()}:  # opening it may have just done it
                await db.execute("ROLLBACK")
                return
        async with db.execute("SELECT tag, key_id, nonce, payload, first_seen, last_seen, readings FROM slots") as cur:
            rows = list(await cur.fetchall())
        unreadable = 0
        for tag, key_id, nonce, payload, first, last, n in rows:
            try:
                doc = orjson.loads(keyring.open(Sealed(key_id, nonce, payload), b"slots|" + tag))
            except Exception:
                unreadable += 1  # left as it was; `devices` reports it as unreadable, as before
                continue
            doc.update(first_seen=first, last_seen=last, readings=n)
            s = keyring.seal(orjson.dumps(doc), b"slots|" + tag)
            await db.execute(
                "UPDATE slots SET key_id = ?, nonce = ?, payload = ? WHERE tag = ?",
                (s.key_id, s.nonce, s.ciphertext, tag),
            )
        for table, column in (("slots", "first_seen"), ("slots", "last_seen"), ("slots", "readings"),
                              ("bindings", "created_at"), ("checkpoints", "updated_at")):  # fmt: skip
            await db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        async with db.execute("SELECT id, created_at, source, key_id, nonce, payload FROM rejects") as cur:
            rejects = list(await cur.fetchall())
        for reject_id, created, source, key_id, nonce, payload in rejects:
            try:
                raw = keyring.open(Sealed(key_id, nonce, payload), b"rejects|" + _reject_aad(created, source))
            except DecryptError:
                continue  # left as it was: it did not open before either
            day = _day(created)
            s = keyring.seal(_reject_doc(source, raw), b"rejects|" + _reject_aad(day, ""))
            await db.execute(
                "UPDATE rejects SET created_at = ?, source = '', key_id = ?, nonce = ?, payload = ? WHERE id = ?",
                (day, s.key_id, s.nonce, s.ciphertext, reject_id),
            )
        await db.execute(
            f"UPDATE readings SET created_at = {_DAY_SQL.format('created_at')}, "
            f"done_at = {_DAY_SQL.format('done_at')}, next_at = 0 WHERE state = 1"
        )
        await db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        await db.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(Exception):
            await db.execute("ROLLBACK")
        raise
    finally:
        await db.execute("PRAGMA secure_delete = OFF")
    await db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    log.warning("queue_metadata_sealed", slots=len(rows), unreadable=unreadable, schema=SCHEMA_VERSION)


async def _cut_withheld_times(db: aiosqlite.Connection) -> None:
    """Rows withheld before withheld rows kept only their day: cut to it now (and dated for the retention
    purge), the old values zeroed where they lay as in `_migrate_metadata`. Nothing to do on later opens."""
    day = _DAY_SQL.format("created_at")
    where = f"state = {int(State.WITHHELD)} AND (done_at IS NULL OR created_at != {day} OR next_at != 0)"
    async with db.execute(f"SELECT count(*) FROM readings WHERE {where}") as cur:
        row = await cur.fetchone()
    if not row or not row[0]:
        return
    await db.execute("PRAGMA secure_delete = ON")
    try:
        await db.execute(
            f"UPDATE readings SET created_at = {day}, done_at = {_DAY_SQL.format('coalesce(done_at, created_at)')}, "
            f"next_at = 0 WHERE {where}"
        )
    finally:
        await db.execute("PRAGMA secure_delete = OFF")
    await db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    log.info("withheld_times_cut", rows=int(row[0]))


# A backend's refusal as releases before sealed server text stored it: `[entry N: ]HTTP NNN: <the server's
# severity, code and expression, only lightly scrubbed>`. What follows the status may hold an echoed name.
_OLD_SERVER_REASON = re.compile(r"^((?:entry \d+: )?HTTP \d{3}): .*", re.DOTALL)
OLD_SERVER_REASON_NOTE = "the server's details, stored by an earlier release, withheld"


async def _withhold_old_server_reasons(db: aiosqlite.Connection) -> None:
    """Once per queue: quarantine reasons an earlier release took from a backend's OperationOutcome are cut
    to their HTTP status (the server's words now go sealed, gateway.echo), old values zeroed where they lay.
    A queue created by this release has none; the meta row marks it done either way."""
    done = "SELECT 1 FROM meta WHERE k = 'server_reasons'"
    async with db.execute(done) as cur:
        if await cur.fetchone():
            return
    fixed: list[tuple[str, int]] = []
    await db.execute("PRAGMA secure_delete = ON")
    await db.execute("BEGIN IMMEDIATE")
    try:
        async with db.execute(done) as cur:  # under the write lock: another process may have just done it
            if await cur.fetchone():
                await db.execute("ROLLBACK")
                return
        async with db.execute("SELECT id, reason FROM readings WHERE reason LIKE '%HTTP %'") as cur:
            for item_id, reason in await cur.fetchall():
                m = _OLD_SERVER_REASON.match(str(reason))
                if m:
                    fixed.append((f"{m.group(1)}: {OLD_SERVER_REASON_NOTE}", item_id))
        await db.executemany("UPDATE readings SET reason = ? WHERE id = ?", fixed)
        await db.execute("INSERT INTO meta (k, v) VALUES ('server_reasons', 'sealed')")
        await db.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(Exception):
            await db.execute("ROLLBACK")
        raise
    finally:
        await db.execute("PRAGMA secure_delete = OFF")
    if fixed:
        await db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        log.info("old_server_reasons_withheld", rows=len(fixed))


async def _use_index_key(db: aiosqlite.Connection, keyring: KeyRing) -> None:
    """The queue names the key its look-up tags derive from (the key file's first, until a retire)."""
    async with db.execute("SELECT v FROM meta WHERE k = 'index_key'") as cur:
        row = await cur.fetchone()
    if row is None:
        await db.execute("INSERT OR IGNORE INTO meta (k, v) VALUES ('index_key', ?)", (keyring.index_id,))
    elif str(row[0]) in keyring:
        keyring.use_index(str(row[0]))
    # else: not this queue's key file; _check_key says so in the known-answer check's words


def _lenient_text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


async def _close_all(conns: list[aiosqlite.Connection]) -> None:
    for conn in conns:
        with contextlib.suppress(Exception):
            await conn.close()


async def _check_key(db: aiosqlite.Connection, path: Path, keyring: KeyRing) -> None:
    """Judge the key against the known-answer row; seal one into a queue that has none yet."""
    async with db.execute("SELECT k, v FROM meta WHERE k LIKE 'kat_%'") as cur:
        meta: dict[str, object] = {k: v for k, v in await cur.fetchall()}
    async with db.execute(f"{used_key_ids_sql()} UNION SELECT v FROM meta WHERE k = 'index_key'") as cur:
        ids = [r[0] for r in await cur.fetchall()]
    if any(k not in keyring for k in ids):
        keyring.reload()  # rotated by `vitalgate keys rotate` since this ring was loaded?
    judge(path, keyring, meta, ids)
    if not meta:
        # One transaction: another process opening the new queue at the same moment must see all of the
        # known answer or none of it, never a part it would judge as the wrong key.
        await db.execute("BEGIN IMMEDIATE")
        try:
            await db.executemany("INSERT OR IGNORE INTO meta (k, v) VALUES (?, ?)", list(known_answer(keyring).items()))
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        await db.execute("COMMIT")


async def _use_wal(db: aiosqlite.Connection) -> None:
    """Switch a new (or pre-WAL) file to WAL. The switch needs the file to itself and SQLite does not wait
    for it (no busy handler), so a second process opening the queue at the same moment (the daemon starting
    while `status` polls) retries for as long as the busy timeout instead of failing with "locked"."""
    deadline = time.monotonic() + 10.0
    while True:
        try:
            await db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)


async def _bump_bindings_version(db: aiosqlite.Connection) -> None:
    await db.execute("UPDATE meta SET v = CAST(CAST(v AS INTEGER) + 1 AS TEXT) WHERE k = 'bindings_version'")
