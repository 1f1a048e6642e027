"""`vitalgate keys rotate --retire OLD`: move every row off a data key, then delete that key.

Order, so that a kill at any point leaves every row readable with the key file on disk:
1. a new current key is appended to the key file if OLD is still current (a plain rotate);
2. in ONE SQLite transaction: every row sealed with OLD is opened and sealed again with the current key
   (a quarantined row's sealed server text, gateway.echo, with it); every look-up tag (duplicate detection,
   bindings, device slots, checkpoints) is computed again with a look-up key derived from the current key,
   and the queue's meta `index_key` names it; the audit trail's MACs and the row-state MACs are recomputed
   under keys derived from it. Before the commit the database is as it was; after it, every row opens
   with keys still in the file;
3. OLD is removed from the key file (mkstemp + rename: old file or new file, never half of one).
A kill between 2 and 3 leaves OLD in the file unused; running the command again finishes the job.
The gateway must be stopped meanwhile (it holds the old look-up key in memory).
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

import aiosqlite
import orjson

from gateway import audit as audit_trail
from gateway.codec import CodecError, decode_reading
from gateway.crypto import DecryptError, Sealed
from gateway.echo import reseal_echo
from gateway.errors import KeyFileError
from gateway.keycheck import known_answer
from gateway.queue import AUDIT_KEY_LABEL, CHECKPOINT_V2, ReadingQueue

__all__ = ["KILL_ENV", "RetireReport", "retire"]

# Test hook (tests/test_attacks_keys.py): "rows:N" kills the process after N re-sealed readings, inside
# the transaction; "committed" right after the commit, before the key file is rewritten.
KILL_ENV = "VITALGATE_TEST_RETIRE_KILL"


@dataclass(frozen=True, slots=True)
class RetireReport:
    resealed: int
    unreadable: int  # rows that did not open before either (tampered, or a key already lost): left as they were
    checkpoints_dropped: int  # legacy checkpoints without their names: the meter is read again from its start
    index_key: str


def _kill_if(point: str) -> None:
    if os.environ.get(KILL_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


async def retire(q: ReadingQueue, old: str) -> RetireReport:
    ring = q.keyring
    if old == ring.current_id:
        raise KeyFileError(f"key {old} is still current: rotate first")
    new = ring.with_index(ring.current_id)
    problems = await q.verify_audit()
    if problems:
        raise KeyFileError(
            f"the audit trail is broken ({problems[0]}); not re-signing it under a new key. "
            "Keep a copy of the database for investigation (vitalgate audit --verify)"
        )
    old_audit_key = ring.subkey(AUDIT_KEY_LABEL)
    kill_after = os.environ.get(KILL_ENV, "")
    kill_rows = int(kill_after[5:]) if kill_after.startswith("rows:") else -1

    async def op(db: aiosqlite.Connection) -> RetireReport:
        resealed = unreadable = dropped = 0

        def reopen(aad: bytes, key_id: str, nonce: bytes, payload: bytes) -> bytes | None:
            nonlocal unreadable
            try:
                return ring.open(Sealed(key_id, nonce, payload), aad)
            except DecryptError:
                unreadable += 1
                return None

        async with db.execute("SELECT id, dedup, key_id, nonce, payload, echo FROM readings") as cur:
            readings = await cur.fetchall()
        for item_id, dedup, key_id, nonce, payload, sealed_echo in readings:
            plain = reopen(b"readings|" + dedup, key_id, nonce, payload)
            if plain is None:
                continue
            try:
                tag = new.tag("reading|" + decode_reading(plain).idempotency_key)
            except CodecError:
                unreadable += 1
                continue
            s = new.seal(plain, b"readings|" + tag)
            # The server's sealed words go with the row (bound to its identity, which changes here).
            echoed = None if sealed_echo is None else reseal_echo(ring, new, dedup, tag, sealed_echo)
            await db.execute(
                "UPDATE readings SET dedup = ?, key_id = ?, nonce = ?, payload = ?, echo = ? WHERE id = ?",
                (tag, s.key_id, s.nonce, s.ciphertext, echoed, item_id),
            )
            resealed += 1
            if resealed == kill_rows:
                _kill_if(kill_after)

        for table, fields in (("slots", ("slot", "key")), ("bindings", ("binding", "device"))):
            async with db.execute(f"SELECT tag, key_id, nonce, payload FROM {table}") as cur:
                rows = await cur.fetchall()
            for tag, key_id, nonce, payload in rows:
                plain = reopen(table.encode() + b"|" + tag, key_id, nonce, payload)
                if plain is None:
                    continue
                doc = orjson.loads(plain)
                new_tag = new.tag(f"{fields[0]}|{doc[fields[1]]}|{doc['user']}")
                s = new.seal(plain, table.encode() + b"|" + new_tag)
                await db.execute(
                    f"UPDATE {table} SET tag = ?, key_id = ?, nonce = ?, payload = ? WHERE tag = ?",
                    (new_tag, s.key_id, s.nonce, s.ciphertext, tag),
                )
                resealed += 1

        async with db.execute("SELECT tag, key_id, nonce, payload FROM checkpoints") as cur:
            rows = await cur.fetchall()
        for tag, key_id, nonce, payload in rows:
            plain = reopen(b"checkpoints|" + tag, key_id, nonce, payload)
            if plain is None:
                continue
            if plain[:1] != CHECKPOINT_V2:
                await db.execute("DELETE FROM checkpoints WHERE tag = ?", (tag,))
                dropped += 1
                continue
            doc = orjson.loads(plain[1:])
            new_tag = new.tag(f"checkpoint|{doc['d']}|{doc['n']}")
            s = new.seal(plain, b"checkpoints|" + new_tag)
            await db.execute(
                "UPDATE checkpoints SET tag = ?, key_id = ?, nonce = ?, payload = ? WHERE tag = ?",
                (new_tag, s.key_id, s.nonce, s.ciphertext, tag),
            )
            resealed += 1

        async with db.execute("SELECT id, created_at, source, key_id, nonce, payload FROM rejects") as cur:
            rows = await cur.fetchall()
        for reject_id, created, source, key_id, nonce, payload in rows:
            aad = f"{created:.6f}|{source}".encode()
            plain = reopen(b"rejects|" + aad, key_id, nonce, payload)
            if plain is None:
                continue
            s = new.seal(plain, b"rejects|" + aad)
            await db.execute(
                "UPDATE rejects SET key_id = ?, nonce = ?, payload = ? WHERE id = ?",
                (s.key_id, s.nonce, s.ciphertext, reject_id),
            )
            resealed += 1

        await db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES ('index_key', ?)", (new.index_id,))
        # The known-answer row (gateway.keycheck) proves the key file fits this queue: seal it anew too, or
        # the next open would find the retired key missing and refuse the queue.
        await db.executemany(
            "INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", list(known_answer(new).items())
        )
        if await audit_trail.verify(db, old_audit_key):
            raise KeyFileError("the audit trail changed during the retire; nothing was changed")
        await audit_trail.remac(db, new.subkey(AUDIT_KEY_LABEL))
        await q.rekey_hooks(db, new)
        return RetireReport(resealed, unreadable, dropped, new.index_id)

    report: RetireReport = await q.transaction(op)
    ring.use_index(new.index_id)
    _kill_if("committed")
    return report
