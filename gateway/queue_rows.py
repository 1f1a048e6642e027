"""Row-level helpers the queue and its parts share: look-ups by tag and why a row does not open.

Look-ups go in chunks under SQLite's limit on bound variables; a row that does not open gets a reason an
operator can read, naming the fault, never the values. The queue, the device registry (gateway.device_slots)
and the binding store all use them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiosqlite

from gateway.codec import CodecError
from gateway.crypto import DecryptError, KeyRing, Sealed

_Op = Callable[[aiosqlite.Connection], Awaitable[Any]]


class QueueCore(Protocol):
    """What the queue's parts (mixins of gateway.queue.ReadingQueue) use of it: its key ring, its read
    connection, its single writer and its row seal (the self-type of their methods, for mypy)."""

    keyring: KeyRing
    _r: aiosqlite.Connection
    new_data: asyncio.Event

    async def _write(self, op: _Op) -> Any: ...

    def _seal(self, table: bytes, tag: bytes, plaintext: bytes) -> Sealed: ...

    def _open(self, table: bytes, tag: bytes, key_id: str, nonce: bytes, payload: bytes) -> bytes: ...


def _why(exc: Exception) -> str:
    """A row's quarantine reason: the fault's type and text (crypto and codec errors carry no values)."""
    if isinstance(exc, DecryptError | CodecError):
        return f"{type(exc).__name__}: {exc}"[:200]
    return f"{type(exc).__name__}: cannot open or decode this row"


async def _existing(db: aiosqlite.Connection, dedups: list[bytes]) -> set[bytes]:
    """Which of these reading tags are already stored (looked up in chunks under SQLite's variable limit)."""
    found: set[bytes] = set()
    for start in range(0, len(dedups), 500):
        chunk = dedups[start : start + 500]
        marks = ",".join("?" * len(chunk))
        async with db.execute(f"SELECT dedup FROM readings WHERE dedup IN ({marks})", chunk) as cur:
            found.update(bytes(row[0]) for row in await cur.fetchall())
    return found


async def _sealed_rows(
    db: aiosqlite.Connection, table: str, tags: list[bytes]
) -> dict[bytes, tuple[str, bytes, bytes]]:
    """tag -> (key_id, nonce, payload) of these rows (looked up in chunks under SQLite's variable limit)."""
    found: dict[bytes, tuple[str, bytes, bytes]] = {}
    for start in range(0, len(tags), 500):
        chunk = tags[start : start + 500]
        marks = ",".join("?" * len(chunk))
        # One round trip to SQLite's thread (execute_fetchall), not three: this runs on every put.
        sql = f"SELECT tag, key_id, nonce, payload FROM {table} WHERE tag IN ({marks})"
        rows = await db.execute_fetchall(sql, chunk)
        for tag, key_id, nonce, payload in rows:
            found[bytes(tag)] = (key_id, nonce, payload)
    return found
