"""The durable, encrypted reading queue: the gateway's single source of truth.

A reading counts as received once its row is committed (WAL, synchronous=FULL); only then may a driver
acknowledge the device. All writes go through one writer task that folds whatever is waiting into one
transaction (group commit), so concurrent puts share an fsync and transactions never interleave. Reads
use a second connection and so only ever see committed rows.

Every payload is AES-256-GCM sealed with the row's identity as associated data: a payload copied onto
another row does not open. Identities are keyed hashes, so the file holds neither values, device serials
nor patient ids in plaintext.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

import aiosqlite
import orjson
import structlog

from gateway.codec import CodecError, decode_reading, encode_reading
from gateway.crypto import DecryptError, KeyRing, Sealed
from gateway.reading import DeviceIdentity, Reading, Status

__all__ = ["Binding", "Leased", "PutResult", "ReadingQueue", "State", "identity_selectors"]

log = structlog.get_logger(__name__)

SCHEMA_VERSION = 1

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
    payload BLOB NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    readings INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS bindings (
    tag BLOB PRIMARY KEY,
    key_id TEXT NOT NULL,
    nonce BLOB NOT NULL,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    tag BLOB PRIMARY KEY,
    key_id TEXT NOT NULL,
    nonce BLOB NOT NULL,
    payload BLOB NOT NULL,
    updated_at REAL NOT NULL
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


@dataclass(frozen=True, slots=True)
class PutResult:
    new: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class Leased:
    item_id: int
    attempts: int
    reading: Reading


@dataclass(frozen=True, slots=True)
class Binding:
    """Operator's statement: readings of this device (and user slot) belong to this patient.

    `device` matches any of a reading's identifiers (System ID, serial number, address or `DeviceIdentity.key`).
    """

    device: str
    user_slot: int | None
    patient: str

    def matches(self, reading: Reading) -> bool:
        if self.user_slot != reading.user_slot:
            return False
        return self.device in device_selectors(reading)


def device_selectors(reading: Reading) -> set[str]:
    return identity_selectors(reading.device)


def identity_selectors(d: DeviceIdentity) -> set[str]:
    """Every name an operator may bind this device by (see `Binding`); `vitalgate devices` uses it too."""
    names = {d.key}
    if d.address:
        names |= {d.address.upper(), f"addr:{d.address.upper()}"}
    if d.serial_number:
        names |= {d.serial_number, f"serial:{d.manufacturer or d.driver}:{d.serial_number}"}
    if d.system_id:
        names |= {d.system_id.lower(), f"eui64:{d.system_id.lower()}"}
    return names


def normalize_selector(device: str) -> str:
    """Addresses compare upper-case, System IDs lower-case (bare or `addr:` / `eui64:`); others as typed."""
    s = device.strip()
    for prefix, normalize in (("addr:", str.upper), ("eui64:", str.lower)):
        if s.lower().startswith(prefix):
            return prefix + normalize(s[len(prefix) :].strip())
    if len(s) == 17 and s.count(":") == 5:
        return s.upper()
    if len(s) == 16 and all(c in "0123456789abcdefABCDEF" for c in s):
        return s.lower()
    return s


_Op = Callable[[aiosqlite.Connection], Awaitable[Any]]


class ReadingQueue:
    """Open with `await ReadingQueue.open(path, keyring)`; close with `await q.close()`."""

    def __init__(self, path: Path, keyring: KeyRing, writer: aiosqlite.Connection, reader: aiosqlite.Connection):
        self.path = path
        self.keyring = keyring
        self._w = writer
        self._r = reader
        self._ops: asyncio.Queue[tuple[_Op, asyncio.Future[Any]]] = asyncio.Queue()
        self._writer_task: asyncio.Task[None] | None = None
        self._bindings: list[Binding] = []
        self._bindings_version = ""
        self.commits = 0
        self.new_data = asyncio.Event()  # set when rows become due: the drainer sleeps on it

    # ---------------------------------------------------------------- lifecycle

    @classmethod
    async def open(cls, path: Path, keyring: KeyRing) -> ReadingQueue:
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = await aiosqlite.connect(path, isolation_level=None)
        reader = await aiosqlite.connect(path, isolation_level=None)
        for conn in (writer, reader):
            await conn.execute("PRAGMA busy_timeout = 10000")
        await writer.execute("PRAGMA journal_mode = WAL")
        for conn in (writer, reader):
            await conn.execute("PRAGMA synchronous = FULL")
        await writer.executescript(_SCHEMA)
        await writer.execute(
            "INSERT OR IGNORE INTO meta (k, v) VALUES ('schema', ?), ('bindings_version', '0')",
            (str(SCHEMA_VERSION),),
        )
        path.chmod(0o600)
        q = cls(path, keyring, writer, reader)
        await q.reload_bindings()
        q._writer_task = asyncio.create_task(q._writer(), name="queue-writer")
        return q

    async def close(self) -> None:
        """Finish every write already submitted, then close."""
        if self._writer_task is not None:
            await self._ops.join()
            self._writer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer_task
            self._writer_task = None
        await self._r.close()
        await self._w.close()

    async def __aenter__(self) -> ReadingQueue:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---------------------------------------------------------------- the writer

    async def _write(self, op: _Op) -> Any:
        if self._writer_task is None or self._writer_task.done():
            raise RuntimeError("queue writer is not running")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._ops.put((op, fut))
        return await fut

    async def _writer(self) -> None:
        """Fold every waiting operation into one transaction: one fsync for many puts."""
        while True:
            batch = [await self._ops.get()]
            while not self._ops.empty() and len(batch) < 512:
                batch.append(self._ops.get_nowait())
            results: list[Any] = []
            error: BaseException | None = None
            try:
                await self._w.execute("BEGIN IMMEDIATE")
                try:
                    for op, _ in batch:
                        results.append(await op(self._w))
                    await self._w.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(Exception):
                        await self._w.execute("ROLLBACK")
                    raise
            except asyncio.CancelledError:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(RuntimeError("queue closed before commit"))
                    self._ops.task_done()
                raise
            except Exception as exc:
                error = exc
                log.error("queue_commit_failed", error=type(exc).__name__, detail=str(exc), ops=len(batch))
            self.commits += 1
            for i, (_, fut) in enumerate(batch):
                if not fut.done():
                    if error is not None:
                        fut.set_exception(error)
                    else:
                        fut.set_result(results[i])
                self._ops.task_done()

    async def ping(self) -> None:
        """An empty write transaction: returns only if the writer takes the database's write lock."""

        async def op(db: aiosqlite.Connection) -> None:
            return None

        await self._write(op)

    # ---------------------------------------------------------------- sealing helpers

    def _seal(self, table: bytes, tag: bytes, plaintext: bytes) -> Sealed:
        return self.keyring.seal(plaintext, table + b"|" + tag)

    def _open(self, table: bytes, tag: bytes, key_id: str, nonce: bytes, payload: bytes) -> bytes:
        return self.keyring.open(Sealed(key_id, nonce, payload), table + b"|" + tag)

    # ---------------------------------------------------------------- readings

    async def put(self, readings: Sequence[Reading]) -> PutResult:
        """Encrypt and commit; returns once durable. A reading already queued is not stored again."""
        now = time.time()
        rows = []
        latest: dict[bytes, tuple[Reading, int]] = {}  # per device slot: its newest reading and a count
        version = self._bindings_version  # the bindings the states below are decided with
        for r in readings:
            dedup = self.keyring.tag("reading|" + r.idempotency_key)
            sealed = self._seal(b"readings", dedup, encode_reading(r))
            state = State.PENDING if self.binding_for(r) else State.UNASSIGNED
            if _withheld(r):
                state = State.WITHHELD
            rows.append((dedup, int(state), sealed.key_id, sealed.nonce, sealed.ciphertext, now))
            slot_tag = self.keyring.tag(f"slot|{r.device.key}|{r.user_slot}")
            latest[slot_tag] = (r, latest[slot_tag][1] + 1 if slot_tag in latest else 1)
        # One sealed device record per slot and batch, not per reading.
        slots = {t: (self._seal(b"slots", t, _slot_doc(r)), n) for t, (r, n) in latest.items()}

        async def op(db: aiosqlite.Connection) -> int:
            before = db.total_changes
            await db.executemany(
                "INSERT OR IGNORE INTO readings (dedup, state, key_id, nonce, payload, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            inserted = db.total_changes - before
            await db.executemany(
                "INSERT INTO slots (tag, key_id, nonce, payload, first_seen, last_seen, readings) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tag) DO UPDATE SET key_id = excluded.key_id, "
                "nonce = excluded.nonce, payload = excluded.payload, last_seen = excluded.last_seen, "
                "readings = readings + excluded.readings",
                [(t, s.key_id, s.nonce, s.ciphertext, now, now, n) for t, (s, n) in slots.items()],
            )
            return inserted

        new = int(await self._write(op)) if rows else 0
        if new:
            self.new_data.set()
        if version != self._bindings_version and any(row[1] == State.UNASSIGNED for row in rows):
            # Bindings were reloaded while this put waited for its commit, and the assign pass that came
            # with the reload could not see these rows yet: run it again, or they stay parked.
            await self.assign_unassigned()
        return PutResult(new=new, duplicates=len(rows) - new)

    async def lease(self, limit: int, *, exclude: Iterable[int] = ()) -> tuple[list[Leased], list[tuple[int, str]]]:
        """Up to `limit` pending rows due now, oldest first, skipping `exclude` (already in flight).

        Rows that no longer open (key lost, tampered, unknown format) come back separately with a reason
        so the caller can quarantine them; they are never silently dropped.
        """
        skip = set(exclude)
        async with self._r.execute(
            "SELECT id, attempts, key_id, nonce, payload, dedup FROM readings "
            "WHERE state = 0 AND next_at <= ? ORDER BY id LIMIT ?",
            (time.time(), limit + len(skip)),
        ) as cur:
            rows = await cur.fetchall()
        leased: list[Leased] = []
        broken: list[tuple[int, str]] = []
        for item_id, attempts, key_id, nonce, payload, dedup in rows:
            if item_id in skip:
                continue
            if len(leased) + len(broken) >= limit:
                break
            try:
                reading = decode_reading(self._open(b"readings", dedup, key_id, nonce, payload))
            except (DecryptError, CodecError) as exc:
                broken.append((item_id, f"{type(exc).__name__}: {exc}"))
                continue
            leased.append(Leased(item_id, attempts, reading))
        return leased, broken

    async def ack(self, item_ids: Iterable[int]) -> None:
        ids = [(time.time(), i) for i in item_ids]

        async def op(db: aiosqlite.Connection) -> None:
            await db.executemany("UPDATE readings SET state = 1, done_at = ?, reason = NULL WHERE id = ?", ids)

        if ids:
            await self._write(op)

    async def release(self, delays: dict[int, float]) -> None:
        """Give rows back for a later attempt, each after its own backoff delay (seconds)."""
        now = time.time()
        rows = [(now + d, i) for i, d in delays.items()]

        async def op(db: aiosqlite.Connection) -> None:
            await db.executemany("UPDATE readings SET attempts = attempts + 1, next_at = ? WHERE id = ?", rows)

        if rows:
            await self._write(op)

    async def set_state(self, reasons: dict[int, str | None], state: State) -> None:
        """Quarantine, withhold or park as unassigned, with a reason an operator can read (no PHI)."""
        now = time.time()
        rows = [(int(state), now, reason, i) for i, reason in reasons.items()]

        async def op(db: aiosqlite.Connection) -> None:
            await db.executemany("UPDATE readings SET state = ?, done_at = ?, reason = ? WHERE id = ?", rows)

        if rows:
            await self._write(op)

    async def counts(self) -> dict[State, int]:
        counts = dict.fromkeys(State, 0)
        async with self._r.execute("SELECT state, count(*) FROM readings GROUP BY state") as cur:
            for state, n in await cur.fetchall():
                counts[State(state)] = n
        return counts

    async def quarantined(self) -> list[tuple[int, str]]:
        async with self._r.execute("SELECT id, reason FROM readings WHERE state = 2 ORDER BY id") as cur:
            return [(i, r or "") for i, r in await cur.fetchall()]

    async def requeue(self, item_ids: list[int] | None = None) -> int:
        """Give quarantined rows another try (all when `item_ids` is None), e.g. after a backend fix.

        Rows that still do not open or map come straight back to quarantine on the next drain.
        """
        where = "state = 2" if item_ids is None else f"state = 2 AND id IN ({','.join('?' * len(item_ids))})"

        async def op(db: aiosqlite.Connection) -> int:
            reset = "state = 0, attempts = 0, next_at = 0, done_at = NULL, reason = NULL"
            cur = await db.execute(f"UPDATE readings SET {reset} WHERE {where}", item_ids or ())
            return cur.rowcount

        moved = int(await self._write(op))
        if moved:
            self.new_data.set()
        return moved

    async def purge_delivered(self, older_than_seconds: float) -> int:
        """Delete delivered rows past retention. Their idempotency keys go with them."""
        cutoff = time.time() - older_than_seconds

        async def op(db: aiosqlite.Connection) -> int:
            cur = await db.execute("DELETE FROM readings WHERE state = 1 AND done_at < ?", (cutoff,))
            return cur.rowcount

        return int(await self._write(op))

    async def unassigned(self) -> list[Leased]:
        async with self._r.execute(
            "SELECT id, attempts, key_id, nonce, payload, dedup FROM readings WHERE state = 3 ORDER BY id"
        ) as cur:
            rows = await cur.fetchall()
        out = []
        for item_id, attempts, key_id, nonce, payload, dedup in rows:
            with contextlib.suppress(DecryptError, CodecError):
                out.append(
                    Leased(
                        item_id,
                        attempts,
                        decode_reading(self._open(b"readings", dedup, key_id, nonce, payload)),
                    )
                )
        return out

    async def assign_unassigned(self) -> int:
        """Move unassigned rows whose device slot is now bound back to pending."""
        ready = [u.item_id for u in await self.unassigned() if self.binding_for(u.reading)]
        rows = [(i,) for i in ready]

        async def op(db: aiosqlite.Connection) -> None:
            await db.executemany(
                "UPDATE readings SET state = 0, next_at = 0, reason = NULL WHERE id = ? AND state = 3", rows
            )

        if rows:
            await self._write(op)
            self.new_data.set()
        return len(rows)

    # ---------------------------------------------------------------- bindings and devices

    def binding_for(self, reading: Reading) -> Binding | None:
        return next((b for b in self._bindings if b.matches(reading)), None)

    async def bindings_changed(self) -> bool:
        async with self._r.execute("SELECT v FROM meta WHERE k = 'bindings_version'") as cur:
            row = await cur.fetchone()
        return row is not None and row[0] != self._bindings_version

    async def reload_bindings(self) -> list[Binding]:
        async with self._r.execute("SELECT v FROM meta WHERE k = 'bindings_version'") as cur:
            row = await cur.fetchone()
        async with self._r.execute("SELECT tag, key_id, nonce, payload FROM bindings") as cur:
            rows = await cur.fetchall()
        bindings = []
        if any(key_id not in self.keyring for _, key_id, _, _ in rows) and self.keyring.reload():
            log.info("data_keys_reloaded", current=self.keyring.current_id)  # rotated by `vitalgate keys rotate`
        for tag, key_id, nonce, payload in rows:
            doc = orjson.loads(self._open(b"bindings", tag, key_id, nonce, payload))
            bindings.append(Binding(doc["device"], doc["user"], doc["patient"]))
        self._bindings = bindings
        self._bindings_version = row[0] if row else ""
        return bindings

    async def bind(self, device: str, user_slot: int | None, patient: str) -> None:
        device = normalize_selector(device)
        tag = self.keyring.tag(f"binding|{device}|{user_slot}")
        doc = orjson.dumps({"device": device, "user": user_slot, "patient": patient})
        sealed = self._seal(b"bindings", tag, doc)

        async def op(db: aiosqlite.Connection) -> None:
            await db.execute(
                "INSERT OR REPLACE INTO bindings (tag, key_id, nonce, payload, created_at) VALUES (?, ?, ?, ?, ?)",
                (tag, sealed.key_id, sealed.nonce, sealed.ciphertext, time.time()),
            )
            await _bump_bindings_version(db)

        await self._write(op)
        await self.reload_bindings()
        await self.assign_unassigned()

    async def unbind(self, device: str, user_slot: int | None) -> bool:
        # Also the form as typed: bindings stored before `addr:` / `eui64:` were normalized stay removable.
        forms = {normalize_selector(device), device.strip()}
        tags = [(self.keyring.tag(f"binding|{form}|{user_slot}"),) for form in forms]

        async def op(db: aiosqlite.Connection) -> int:
            before = db.total_changes
            await db.executemany("DELETE FROM bindings WHERE tag = ?", tags)
            removed = db.total_changes - before
            await _bump_bindings_version(db)
            return removed

        removed = int(await self._write(op)) > 0
        await self.reload_bindings()
        return removed

    async def devices(self) -> list[dict[str, Any]]:
        """Every device slot seen, with its binding: what `vitalgate devices` shows the operator."""
        async with self._r.execute(
            "SELECT tag, key_id, nonce, payload, first_seen, last_seen, readings FROM slots ORDER BY first_seen"
        ) as cur:
            rows = await cur.fetchall()
        out = []
        for tag, key_id, nonce, payload, first, last, n in rows:
            doc = orjson.loads(self._open(b"slots", tag, key_id, nonce, payload))
            out.append({**doc, "first_seen": first, "last_seen": last, "readings": n})
        return out

    # ---------------------------------------------------------------- checkpoints and rejects

    async def checkpoint(self, device_key: str, name: str) -> str | None:
        tag = self.keyring.tag(f"checkpoint|{device_key}|{name}")
        async with self._r.execute("SELECT key_id, nonce, payload FROM checkpoints WHERE tag = ?", (tag,)) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        return self._open(b"checkpoints", tag, row[0], row[1], row[2]).decode()

    async def set_checkpoint(self, device_key: str, name: str, value: str) -> None:
        tag = self.keyring.tag(f"checkpoint|{device_key}|{name}")
        sealed = self._seal(b"checkpoints", tag, value.encode())

        async def op(db: aiosqlite.Connection) -> None:
            await db.execute(
                "INSERT OR REPLACE INTO checkpoints (tag, key_id, nonce, payload, updated_at) VALUES (?, ?, ?, ?, ?)",
                (tag, sealed.key_id, sealed.nonce, sealed.ciphertext, time.time()),
            )

        await self._write(op)

    async def reject(self, raw: bytes, error: Exception, *, source: str) -> None:
        """Keep bad device input for review, encrypted; the error text names the fault, not the values."""
        created = time.time()
        tag = f"{created:.6f}|{source}".encode()
        sealed = self._seal(b"rejects", tag, raw)

        async def op(db: aiosqlite.Connection) -> None:
            await db.execute(
                "INSERT INTO rejects (created_at, source, error, key_id, nonce, payload) VALUES (?, ?, ?, ?, ?, ?)",
                (created, source, type(error).__name__, sealed.key_id, sealed.nonce, sealed.ciphertext),
            )

        await self._write(op)

    async def rejects(self) -> list[tuple[int, str, str, bytes]]:
        """(id, source, error type, raw bytes) of every kept bad frame."""
        async with self._r.execute(
            "SELECT id, created_at, source, error, key_id, nonce, payload FROM rejects ORDER BY id"
        ) as cur:
            rows = await cur.fetchall()
        return [
            (
                i,
                source,
                error,
                self._open(b"rejects", f"{created:.6f}|{source}".encode(), kid, nonce, payload),
            )
            for i, created, source, error, kid, nonce, payload in rows
        ]

    # ---------------------------------------------------------------- audit trail

    async def audit(self, actor: str, action: str, detail: str = "") -> None:
        """Record who looked at or changed PHI-bearing state (bindings, device lists, queue contents).

        `detail` must carry no PHI: callers pass counts or keyed tags, never patient ids or serials.
        """

        async def op(db: aiosqlite.Connection) -> None:
            await db.execute(
                "INSERT INTO audit (at, actor, action, detail) VALUES (?, ?, ?, ?)",
                (time.time(), actor, action, detail),
            )

        await self._write(op)

    async def audit_trail(self, limit: int = 100) -> list[tuple[float, str, str, str]]:
        async with self._r.execute(
            "SELECT at, actor, action, detail FROM audit ORDER BY id DESC LIMIT ?", (limit,)
        ) as cur:
            return [(at, actor, action, detail) for at, actor, action, detail in await cur.fetchall()]

    def reference_tag(self, *parts: object) -> str:
        """A short keyed tag that lets an auditor match entries about the same binding without the ids."""
        return self.keyring.tag("audit|" + "|".join(map(str, parts))).hex()[:12]

    async def integrity_check(self) -> str:
        async with self._r.execute("PRAGMA integrity_check") as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else "no answer"


def _withheld(r: Reading) -> bool:
    return bool(r.status & {Status.CONTROL_SOLUTION, Status.SENSOR_FAULT, Status.TEST_DATA})


def _slot_doc(r: Reading) -> bytes:
    d = r.device
    return orjson.dumps(
        {
            "key": d.key,
            "driver": d.driver,
            "address": d.address,
            "serial_number": d.serial_number,
            "system_id": d.system_id,
            "manufacturer": d.manufacturer,
            "model": d.model,
            "user": r.user_slot,
        }
    )


async def _bump_bindings_version(db: aiosqlite.Connection) -> None:
    await db.execute("UPDATE meta SET v = CAST(CAST(v AS INTEGER) + 1 AS TEXT) WHERE k = 'bindings_version'")
