"""The durable, encrypted reading queue: the gateway's single source of truth.

A reading counts as received once its row is committed (WAL, synchronous=FULL); only then may a driver
acknowledge the device. All writes go through one writer task that folds whatever is waiting into one
transaction (group commit), so concurrent puts share an fsync and transactions never interleave. Reads
use a second connection and so only ever see committed rows.

Every payload is AES-256-GCM sealed with the row's identity as associated data: a payload copied onto
another row does not open. Identities are keyed hashes, so the file holds neither values, device serials
nor patient ids in plaintext.

This module holds the running queue (open, the writer, readings in and out); its other concerns are parts
of their own, mixed into ReadingQueue or called at open: tables, states and migrations (queue_schema), the
day-cut rule (queue_days), bindings (bindings, binding_store), device slots (device_slots), kept bad input
(rejects), wrong-clock repairs (queue_clock), the audit trail (queue_audit), shared row helpers (queue_rows).
The names callers import from here (ReadingQueue, State, Binding, DAY, ...) stay importable from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
import orjson
import structlog

from gateway import audit as audit_trail
from gateway import echo, rowguard
from gateway.binding_store import BindingStoreMixin
from gateway.bindings import Binding, device_selectors, identity_selectors, normalize_selector
from gateway.codec import decode_reading, encode_reading
from gateway.crypto import KeyRing, Sealed
from gateway.device_slots import DevicesMixin, _touch_slots
from gateway.keycheck import QueueFileError, open_failure, sniff
from gateway.queue_audit import AUDIT_KEY_LABEL, AuditMixin
from gateway.queue_clock import ClockRepairMixin
from gateway.queue_days import _ACK_SQL, _WITHHOLD_SQL, DAY, _day
from gateway.queue_rows import _existing, _Op, _why
from gateway.queue_schema import (
    _SCHEMA,
    SCHEMA_VERSION,
    State,
    _check_key,
    _close_all,
    _cut_withheld_times,
    _lenient_text,
    _migrate_metadata,
    _use_index_key,
    _use_wal,
    _withhold_old_server_reasons,
)
from gateway.reading import WITHHELD_STATUS, Reading
from gateway.rejects import MAX_REJECTS, RejectsMixin
from gateway.safefiles import check_no_symlink, open_folder

__all__ = [
    "AUDIT_KEY_LABEL",
    "CHECKPOINT_V2",
    "DAY",
    "MAX_REJECTS",
    "SCHEMA_VERSION",
    "Binding",
    "Leased",
    "PutResult",
    "ReadingQueue",
    "State",
    "device_selectors",
    "identity_selectors",
    "normalize_selector",
]

log = structlog.get_logger(__name__)

CHECKPOINT_V2 = b"\x01"  # sealed checkpoint payload: 0x01 + {"d": device key, "n": name, "v": value}


@dataclass(frozen=True, slots=True)
class PutResult:
    new: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class Leased:
    item_id: int
    attempts: int
    reading: Reading


class ReadingQueue(BindingStoreMixin, RejectsMixin, ClockRepairMixin, DevicesMixin, AuditMixin):
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
        self.damaged_bindings = 0  # binding rows that no longer open (shown by `status`)
        # Called before every commit; raises when the file on disk is no longer ours (gateway.statelock).
        self.file_guard: Callable[[], None] | None = None
        self.on_commit: Callable[[BaseException | None], None] | None = None  # each commit's outcome (DiskGuard)
        self.commits = 0
        self.new_data = asyncio.Event()  # set when rows become due: the drainer sleeps on it
        self.guard = rowguard.Guard(b"")
        # Integrity findings (code -> sentence, no PHI); the daemon turns them into alarms (gateway.alarms).
        self.integrity_problems: dict[str, str] = {}
        self.on_integrity: Callable[[str, str], None] | None = None

    # ---------------------------------------------------------------- lifecycle

    @classmethod
    async def open(cls, path: Path, keyring: KeyRing) -> ReadingQueue:
        """Open (or create) the queue; a damaged file or a key that does not fit it fails here, clearly
        (gateway.keycheck), instead of as tracebacks and a hang later."""
        # The folder must be ours and closed to others (then nobody can plant a link in it later), and the
        # database, its journal and the audit trail in it must not be links to somewhere else.
        os.close(open_folder(path.parent, create=True))
        sniff(path)  # a folder or a damaged file where the queue should be: QueueFileError, exit 4
        for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            check_no_symlink(name, private=False)  # ours, in our private folder: a loose mode is fixed below
        conns: list[aiosqlite.Connection] = []
        try:
            writer = await aiosqlite.connect(path, isolation_level=None)
            conns.append(writer)
            reader = await aiosqlite.connect(path, isolation_level=None)
            conns.append(reader)
            for conn in (writer, reader):
                # A row edited to hold invalid UTF-8 text must fail that row, not every fetch of its table.
                conn.text_factory = _lenient_text
                await conn.execute("PRAGMA busy_timeout = 10000")
            await _use_wal(writer)
            for conn in (writer, reader):
                await conn.execute("PRAGMA synchronous = FULL")
            await writer.executescript(_SCHEMA)
            await echo.ensure_column(writer)  # sealed server text of quarantined rows (gateway.echo)
            await _use_index_key(writer, keyring)
            await _check_key(writer, path, keyring)  # before anything derives keys from a key file that may not fit
            await audit_trail.ensure_schema(writer, keyring.subkey(AUDIT_KEY_LABEL))
            await _migrate_metadata(writer, keyring)
            await _cut_withheld_times(writer)
            await _withhold_old_server_reasons(writer)
            await writer.execute(
                "INSERT OR IGNORE INTO meta (k, v) VALUES ('schema', ?), ('bindings_version', '0')",
                (str(SCHEMA_VERSION),),
            )
            path.chmod(0o600)
            guard = await rowguard.install(writer, reader, keyring)
            q = cls(path, keyring, writer, reader)
            q.guard = guard
        except sqlite3.DatabaseError as exc:
            await _close_all(conns)
            raise QueueFileError(open_failure(path, exc)) from None
        except BaseException:
            await _close_all(conns)  # an open connection's thread would keep the process from exiting
            raise
        q._writer_task = asyncio.create_task(q._writer(), name="queue-writer")
        await q.sweep_tampered()
        await q.reload_bindings()
        return q

    def _integrity(self, code: str, sentence: str) -> None:
        self.integrity_problems[code] = sentence
        log.error("queue_integrity", code=code, problem=sentence)
        if self.on_integrity is not None:
            self.on_integrity(code, sentence)

    async def sweep_tampered(self) -> int:
        """Rows whose state was edited outside vitalgate go to TAMPERED (never sent), with an alarm."""

        async def op(db: aiosqlite.Connection) -> int:
            return await rowguard.sweep(db, self.guard)

        found = int(await self._write(op))
        if found:
            self._integrity(
                "queue_rows_tampered",
                f"{found} queued readings had their state changed outside vitalgate (e.g. a withheld reading "
                "flipped to pending); they are kept but never sent. Find out who had access to the gateway "
                "(vitalgate audit --verify).",
            )
        return found

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
                if self.file_guard is not None:
                    self.file_guard()
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
            if self.on_commit is not None:
                self.on_commit(error)
            self.commits += 1
            for i, (_, fut) in enumerate(batch):
                if not fut.done():
                    if error is not None:
                        fut.set_exception(error)
                    else:
                        fut.set_result(results[i])
                self._ops.task_done()

    async def transaction(self, op: _Op) -> Any:
        """Run `op` alone in one write transaction of the single writer (maintenance: gateway.rekey)."""
        return await self._write(op)

    async def rekey_hooks(self, db: aiosqlite.Connection, new: KeyRing) -> None:
        """Inside a retire's transaction, after rows were re-tagged: recompute what is keyed by the look-up key."""
        self.guard.key = new.subkey(rowguard.STATE_KEY_LABEL)
        await db.execute("UPDATE readings SET mac = vg_state_mac(dedup, state)")
        await rowguard.write_manifest(db, new)

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
        today = _day(now)
        rows = []
        latest: dict[bytes, tuple[Reading, int]] = {}  # per device slot: its newest reading and a count
        slot_of: dict[bytes, bytes] = {}  # reading dedup tag -> device slot tag (repeats in a batch once)
        version = self._bindings_version  # the bindings the states below are decided with
        for r in readings:
            dedup = self.keyring.tag("reading|" + r.idempotency_key)
            sealed = self._seal(b"readings", dedup, encode_reading(r))
            state = State.PENDING if self.binding_for(r) else State.UNASSIGNED
            withheld = _withheld(r)
            if withheld:
                state = State.WITHHELD
            rows.append(
                (
                    dedup,
                    int(state),
                    sealed.key_id,
                    sealed.nonce,
                    sealed.ciphertext,
                    today if withheld else now,  # a withheld row is never sent: its day only, as a delivered one
                    today if withheld else None,  # the day it was withheld: what the retention purge reads
                    self.guard.mac(dedup, int(state)),
                )
            )
            slot_tag = self.keyring.tag(f"slot|{r.device.key}|{r.user_slot}")
            latest[slot_tag] = (r, latest[slot_tag][1] + 1 if slot_tag in latest else 1)
            slot_of[dedup] = slot_tag

        async def op(db: aiosqlite.Connection) -> int:
            # A slot counts unique readings, not every download of them (a meter re-sends its whole memory):
            # find which are new inside this transaction (the writer is the only one), then insert in order.
            known = await _existing(db, list(slot_of))
            fresh: dict[bytes, int] = dict.fromkeys(latest, 0)
            for dedup, tag in slot_of.items():
                if dedup not in known:
                    fresh[tag] += 1
            before = db.total_changes
            await db.executemany(
                "INSERT OR IGNORE INTO readings (dedup, state, key_id, nonce, payload, created_at, done_at, mac) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            inserted = db.total_changes - before
            await _touch_slots(db, self.keyring, {t: r for t, (r, _) in latest.items()}, fresh, now)
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
        so the caller can quarantine them; they are never silently dropped. A row whose state MAC is wrong
        (its state was edited outside vitalgate, gateway.rowguard) is never leased: `sweep_tampered` takes
        it at the next open.
        """
        skip = set(exclude)
        leased: list[Leased] = []
        broken: list[tuple[int, str]] = []
        now = time.time()
        after: int | None = None
        # The MAC is checked here on the page fetched, not in the SQL: a WHERE on it ran the HMAC for every due
        # row before ORDER BY ... LIMIT (quadratic over a backlog). Rows passed over (excluded or failing the
        # MAC) do not count against `limit`: the next page starts after them.
        while len(leased) + len(broken) < limit:
            page = limit - len(leased) - len(broken) + len(skip)
            sql = (
                "SELECT id, attempts, key_id, nonce, payload, dedup, state, mac FROM readings "
                "WHERE state = 0 AND next_at <= ?"
            )
            args: tuple[float | int, ...] = (now, page)
            if after is not None:
                sql, args = sql + " AND id > ?", (now, after, page)
            async with self._r.execute(sql + " ORDER BY id LIMIT ?", args) as cur:
                rows = list(await cur.fetchall())
            for item_id, attempts, key_id, nonce, payload, dedup, state, mac in rows:
                after = item_id
                if item_id in skip or not self.guard.valid(mac, dedup, state):
                    continue
                if len(leased) + len(broken) >= limit:
                    break
                try:
                    reading = decode_reading(self._open(b"readings", dedup, key_id, nonce, payload))
                except Exception as exc:  # one damaged row (any way) must not hold up the rest
                    broken.append((item_id, _why(exc)))
                    continue
                leased.append(Leased(item_id, attempts, reading))
            if len(rows) < page:
                break
        return leased, broken

    async def ack(self, item_ids: Iterable[int]) -> None:
        """Delivered: from now on the row's times say only the day (received, delivered), no retry time."""
        ids = [(_day(time.time()), i) for i in item_ids]

        async def op(db: aiosqlite.Connection) -> None:
            await db.executemany(_ACK_SQL, ids)

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

    async def set_state(
        self, reasons: dict[int, str | None], state: State, *, echoed: Mapping[int, str] | None = None
    ) -> None:
        """Quarantine, withhold or park as unassigned, with a reason an operator can read (no PHI).

        `echoed`: a server's own words about a row (may carry PHI), sealed to that row (gateway.echo)."""
        now = _day(time.time())
        rows = [(int(state), now, reason, i) for i, reason in reasons.items()]
        texts = {i: t for i, t in (echoed or {}).items() if i in reasons and t}
        sql = "UPDATE readings SET state = ?, done_at = ?, reason = ?, echo = NULL WHERE id = ?"
        if state is State.WITHHELD:  # never sent: keeps only its day, as a delivered row (`_WITHHOLD_SQL`)
            sql = _WITHHOLD_SQL

        async def op(db: aiosqlite.Connection) -> None:
            await db.executemany(sql, rows)
            if texts:
                marks = ",".join("?" * len(texts))
                async with db.execute(f"SELECT id, dedup FROM readings WHERE id IN ({marks})", list(texts)) as cur:
                    sealed = [(echo.seal_echo(self.keyring, d, texts[i]), i) for i, d in await cur.fetchall()]
                # Only where the state change took (a tampered row's is refused by gateway.rowguard).
                await db.executemany(f"UPDATE readings SET echo = ? WHERE id = ? AND state = {int(state)}", sealed)

        if rows:
            await self._write(op)

    async def reveal(self, item_id: int) -> str | None:
        """The sealed server text of a quarantined row, opened (None: the row has none). The caller audits."""
        async with self._r.execute("SELECT dedup, echo FROM readings WHERE id = ? AND state = 2", (item_id,)) as cur:
            row = await cur.fetchone()
        if row is None or row[1] is None:
            return None
        return echo.open_echo(self.keyring, row[0], row[1])

    async def sealed_echoes(self) -> set[int]:
        """Quarantined rows that carry sealed server text (without opening any)."""
        async with self._r.execute("SELECT id FROM readings WHERE state = 2 AND echo IS NOT NULL") as cur:
            return {int(r[0]) for r in await cur.fetchall()}

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
            reset = "state = 0, attempts = 0, next_at = 0, done_at = NULL, reason = NULL, echo = NULL"
            cur = await db.execute(f"UPDATE readings SET {reset} WHERE {where}", item_ids or ())
            return cur.rowcount

        moved = int(await self._write(op))
        if moved:
            self.new_data.set()
        return moved

    async def purge_delivered(self, older_than_seconds: float) -> int:
        """Delete delivered rows past retention. Their idempotency keys go with them. `done_at` holds the
        delivery's day, so a row is kept at least the retention and at most a day more."""
        cutoff = time.time() - older_than_seconds - DAY

        async def op(db: aiosqlite.Connection) -> int:
            cur = await db.execute("DELETE FROM readings WHERE state = 1 AND done_at < ?", (cutoff,))
            return cur.rowcount

        return int(await self._write(op))

    async def purge_withheld(self, older_than_seconds: float) -> int:
        """Delete withheld rows (never sent) past the same retention as delivered ones, read from `done_at`
        (the day they were withheld): kept at least the retention and at most a day more. Quarantined rows
        stay until an operator acts on them."""
        cutoff = time.time() - older_than_seconds - DAY

        async def op(db: aiosqlite.Connection) -> int:
            cur = await db.execute(
                f"DELETE FROM readings WHERE state = {int(State.WITHHELD)} AND done_at < ?", (cutoff,)
            )
            return cur.rowcount

        return int(await self._write(op))

    async def unassigned(self) -> list[Leased]:
        """Unassigned rows that open; one that does not is quarantined with its reason, not skipped forever."""
        async with self._r.execute(
            "SELECT id, attempts, key_id, nonce, payload, dedup FROM readings WHERE state = 3 ORDER BY id"
        ) as cur:
            rows = await cur.fetchall()
        out = []
        broken: dict[int, str | None] = {}
        for item_id, attempts, key_id, nonce, payload, dedup in rows:
            try:
                reading = decode_reading(self._open(b"readings", dedup, key_id, nonce, payload))
            except Exception as exc:
                broken[item_id] = _why(exc)
                continue
            out.append(Leased(item_id, attempts, reading))
        if broken:
            log.error("rows_quarantined", rows=len(broken), reason="cannot open payload", state="unassigned")
            await self.set_state(broken, State.QUARANTINED)
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

    # ---------------------------------------------------------------- checkpoints (rejects: gateway.rejects)

    async def checkpoint(self, device_key: str, name: str) -> str | None:
        tag = self.keyring.tag(f"checkpoint|{device_key}|{name}")
        async with self._r.execute("SELECT key_id, nonce, payload FROM checkpoints WHERE tag = ?", (tag,)) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        try:
            plain = self._open(b"checkpoints", tag, row[0], row[1], row[2])
            return str(orjson.loads(plain[1:])["v"]) if plain[:1] == CHECKPOINT_V2 else plain.decode()
        except Exception as exc:  # read the device from its first record again: duplicates are dropped on put
            log.error("checkpoint_unreadable", error=_why(exc), hint="the device is read from its first record")
            return None

    async def set_checkpoint(self, device_key: str, name: str, value: str) -> None:
        tag = self.keyring.tag(f"checkpoint|{device_key}|{name}")
        # The names ride inside the sealed payload, so `keys rotate --retire` can compute the tag again.
        doc = CHECKPOINT_V2 + orjson.dumps({"d": device_key, "n": name, "v": value})
        sealed = self._seal(b"checkpoints", tag, doc)

        async def op(db: aiosqlite.Connection) -> None:
            await db.execute(
                "INSERT OR REPLACE INTO checkpoints (tag, key_id, nonce, payload) VALUES (?, ?, ?, ?)",
                (tag, sealed.key_id, sealed.nonce, sealed.ciphertext),
            )

        await self._write(op)

    # ---------------------------------------------------------------- meta (audit trail: gateway.queue_audit)

    async def swap_meta(self, key: str, value: str) -> str | None:
        """Store `value` under `key` in the meta table; returns what was there (e.g. the last config hash)."""

        async def op(db: aiosqlite.Connection) -> str | None:
            async with db.execute("SELECT v FROM meta WHERE k = ?", (key,)) as cur:
                row = await cur.fetchone()
            await db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (key, value))
            return None if row is None else str(row[0])

        return await self._write(op)  # type: ignore[no-any-return]

    async def integrity_check(self) -> str:
        async with self._r.execute("PRAGMA integrity_check") as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else "no answer"


def _withheld(r: Reading) -> bool:
    return bool(r.status & WITHHELD_STATUS)
