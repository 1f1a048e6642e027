"""The device registry: one sealed record per device slot (a device and its user slot) the gateway has heard.

A slot's record holds its identity, first and last seen and how many unique readings it sent, all under the
seal, so a stolen card shows how many slots there are, not when or how often each was used. The queue updates
it inside every put's transaction; `vitalgate devices` reads it (ReadingQueue.devices).
"""

from __future__ import annotations

from typing import Any

import aiosqlite
import orjson
import structlog

from gateway.crypto import KeyRing, Sealed
from gateway.queue_rows import QueueCore, _sealed_rows, _why
from gateway.reading import Reading

log = structlog.get_logger(__name__)


def _slot_doc(r: Reading) -> dict[str, Any]:
    d = r.device
    return {
        "key": d.key,
        "driver": d.driver,
        "address": d.address,
        "serial_number": d.serial_number,
        "system_id": d.system_id,
        "manufacturer": d.manufacturer,
        "model": d.model,
        "user": r.user_slot,
    }


async def _touch_slots(
    db: aiosqlite.Connection, keyring: KeyRing, latest: dict[bytes, Reading], fresh: dict[bytes, int], now: float
) -> None:
    """One sealed record per device slot and batch: identity, first and last seen, unique readings, all under
    the seal (a stolen card shows how many slots there are, not when or how often each was used). Runs
    inside the writer's transaction, so the read-modify-write of a slot's record cannot interleave."""
    known = await _sealed_rows(db, "slots", list(latest))
    rows = []
    for tag, r in latest.items():
        prev: dict[str, Any] = {}
        if tag in known:
            try:
                prev = orjson.loads(keyring.open(Sealed(*known[tag]), b"slots|" + tag))
            except Exception as exc:  # a damaged record starts again; the readings themselves are intact
                log.error("device_record_unreadable", error=_why(exc), hint="its counts start again")
        doc = _slot_doc(r)
        doc["first_seen"] = prev.get("first_seen") or now
        doc["last_seen"] = now
        doc["readings"] = int(prev.get("readings") or 0) + fresh[tag]
        s = keyring.seal(orjson.dumps(doc), b"slots|" + tag)
        rows.append((tag, s.key_id, s.nonce, s.ciphertext))
    await db.executemany("INSERT OR REPLACE INTO slots (tag, key_id, nonce, payload) VALUES (?, ?, ?, ?)", rows)


class DevicesMixin:
    """ReadingQueue's read side of the registry."""

    async def devices(self: QueueCore) -> list[dict[str, Any]]:
        """Every device slot seen, with its binding: what `vitalgate devices` shows the operator."""
        async with self._r.execute("SELECT tag, key_id, nonce, payload FROM slots") as cur:
            rows = await cur.fetchall()
        out = []
        for tag, key_id, nonce, payload in rows:
            try:
                doc = orjson.loads(self._open(b"slots", tag, key_id, nonce, payload))
            except Exception as exc:
                log.error("device_record_unreadable", error=_why(exc))
                continue
            # First and last seen and the count ride inside the seal (schema 2): the file shows none of them.
            out.append({**doc, "first_seen": doc.get("first_seen"), "last_seen": doc.get("last_seen"),
                        "readings": int(doc.get("readings") or 0)})  # fmt: skip
        return sorted(out, key=lambda d: d["first_seen"] or 0.0)
