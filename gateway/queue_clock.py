"""Repairs of the times a wrong wall clock stamped on queued rows (gateway.clock decides when).

A mixin of gateway.queue.ReadingQueue: the rows are the queue's, but the repairs are their own concern,
run after a clock jump or at start, never on the reading path.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import aiosqlite

from gateway.codec import decode_reading, encode_reading
from gateway.queue_days import _day
from gateway.queue_rows import QueueCore
from gateway.queue_schema import State


class ClockRepairMixin:
    """ReadingQueue's methods that fix times stamped by a wrong clock."""

    async def clamp_times(self: QueueCore, now: float, max_delay: float, floor: float) -> int:
        """After a wall-clock jump or at start: no retry later than `max_delay` from now, no delivered row
        stamped in the future or before `floor` (the build date: a wrong clock's stamp; it then keeps a
        full retention from now instead of being purged at once). Returns the rows changed."""

        async def op(db: aiosqlite.Connection) -> int:
            before = db.total_changes
            await db.execute("UPDATE readings SET next_at = ? WHERE state = 0 AND next_at > ?", (now, now + max_delay))
            await db.execute(
                "UPDATE readings SET done_at = ? WHERE done_at IS NOT NULL AND (done_at > ? OR done_at < ?)",
                (_day(now), now + 60, floor),
            )
            return db.total_changes - before

        changed = int(await self._write(op))
        if changed:
            self.new_data.set()
        return changed

    async def shift_times(self: QueueCore, low: float, high: float, delta: float) -> int:
        """Move the receive times of rows committed while the wall clock read [low, high] by `delta`:
        the clock was wrong then and is right now (gateway.clock). Re-sealed under the same identity."""
        withheld = int(State.WITHHELD)
        async with self._r.execute(
            "SELECT id, key_id, nonce, payload, dedup, state FROM readings WHERE created_at BETWEEN ? AND ? "
            f"AND state != {withheld} UNION ALL "
            # A withheld row keeps only its day: found by it, then told apart by its sealed receive time.
            "SELECT id, key_id, nonce, payload, dedup, state FROM readings WHERE created_at BETWEEN ? AND ? "
            f"AND state = {withheld}",
            (low, high, _day(low), high),
        ) as cur:
            rows = await cur.fetchall()
        updates, days = [], []
        for item_id, key_id, nonce, payload, dedup, state in rows:
            try:
                reading = decode_reading(self._open(b"readings", dedup, key_id, nonce, payload))
            except Exception:
                continue  # a row that does not open is quarantined by the drainer with its reason
            if state == withheld and not low <= reading.received_at.timestamp() <= high:
                continue  # withheld on that day, but not while the clock was wrong
            shift = timedelta(seconds=delta)
            # The device clock's offset was measured against the wrong gateway clock too.
            offset = reading.clock_offset - shift if reading.clock_offset is not None else None
            fixed = dataclasses.replace(reading, received_at=reading.received_at + shift, clock_offset=offset)
            sealed = self._seal(b"readings", dedup, encode_reading(fixed))
            if state == withheld:
                day = _day(fixed.received_at.timestamp())
                days.append((sealed.key_id, sealed.nonce, sealed.ciphertext, day, day, item_id))
            else:
                updates.append((sealed.key_id, sealed.nonce, sealed.ciphertext, delta, item_id))

        async def op(db: aiosqlite.Connection) -> None:
            await db.executemany(
                "UPDATE readings SET key_id = ?, nonce = ?, payload = ?, created_at = created_at + ? WHERE id = ?",
                updates,
            )
            await db.executemany(
                "UPDATE readings SET key_id = ?, nonce = ?, payload = ?, created_at = ?, done_at = ? WHERE id = ?",
                days,
            )

        if updates or days:
            await self._write(op)
        return len(updates) + len(days)
