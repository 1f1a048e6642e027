"""How bad device input is kept for review: sealed, with its source inside the seal and only its day outside.

The queue's reject methods (RejectsMixin, part of gateway.queue.ReadingQueue) and the schema-1 migration
(gateway.queue_schema) both build and open these rows, so their format and their methods live here, apart
from the readings they are not.
"""

from __future__ import annotations

import time

import aiosqlite

from gateway.queue_days import DAY, _day
from gateway.queue_rows import QueueCore

MAX_REJECTS = 10_000  # kept bad frames beyond this are purged oldest first (a flooding device)


def _reject_aad(created: float, source: str) -> bytes:
    return f"{created:.6f}|{source}".encode()


def _reject_doc(source: str, raw: bytes) -> bytes:
    """Schema 2's sealed reject: the source's length (2 bytes), the source, then the raw frame."""
    name = source.encode()[:0xFFFF]
    return len(name).to_bytes(2, "big") + name + raw


def _reject_open(source: str, plain: bytes) -> tuple[str, bytes]:
    """(source, raw) of a reject row: a schema-1 row has its source in the clear (`source` not empty)."""
    if source:
        return source, plain
    n = int.from_bytes(plain[:2], "big")
    return plain[2 : 2 + n].decode(errors="replace"), plain[2 + n :]


class RejectsMixin:
    """ReadingQueue's methods for kept bad device input (a mixin: the rows live in the queue's file)."""

    async def reject(self: QueueCore, raw: bytes, error: Exception, *, source: str) -> None:
        """Keep bad device input for review, encrypted; the error text names the fault, not the values.
        The source (a configured device name) rides inside the seal and the row keeps only its day."""
        created = _day(time.time())
        sealed = self._seal(b"rejects", _reject_aad(created, ""), _reject_doc(source, raw))

        async def op(db: aiosqlite.Connection) -> None:
            await db.execute(
                "INSERT INTO rejects (created_at, source, error, key_id, nonce, payload) VALUES (?, '', ?, ?, ?, ?)",
                (created, type(error).__name__, sealed.key_id, sealed.nonce, sealed.ciphertext),
            )

        await self._write(op)

    async def reject_count(self: QueueCore) -> int:
        """How many bad frames are kept, without decrypting any (for `status`)."""
        async with self._r.execute("SELECT count(*) FROM rejects") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def purge_rejects(self: QueueCore, older_than_seconds: float, keep_at_most: int = MAX_REJECTS) -> int:
        """Delete kept bad frames past retention (kept at least that, at most a day more: rows keep only their
        day), and the oldest beyond `keep_at_most` (a flooding device)."""
        cutoff = time.time() - older_than_seconds - DAY

        async def op(db: aiosqlite.Connection) -> int:
            cur = await db.execute("DELETE FROM rejects WHERE created_at < ?", (cutoff,))
            removed = cur.rowcount
            cur = await db.execute("DELETE FROM rejects WHERE id <= (SELECT max(id) FROM rejects) - ?", (keep_at_most,))
            return int(removed + cur.rowcount)

        return int(await self._write(op))

    async def rejects(self: QueueCore, limit: int = 1000, after_id: int = 0) -> list[tuple[int, str, str, bytes]]:
        """(id, source, error type, raw bytes) of kept bad frames, a page of `limit` after `after_id`."""
        async with self._r.execute(
            "SELECT id, created_at, source, error, key_id, nonce, payload FROM rejects WHERE id > ? "
            "ORDER BY id LIMIT ?",
            (after_id, limit),
        ) as cur:
            rows = await cur.fetchall()
        out = []
        for i, created, source, error, kid, nonce, payload in rows:
            plain = self._open(b"rejects", _reject_aad(created, source), kid, nonce, payload)
            name, raw = _reject_open(source, plain)
            out.append((i, name, error, raw))
        return out
