"""The queue's meaning protected against edits with plain SQL: row states and the set of bindings.

A payload's AES-GCM seal already stops swapping or editing values. What it did not cover: a reading's
`state` column (a withheld control-solution row flipped to pending would be sent as patient data) and
which binding rows exist (an old sealed binding row restored from a backup rebinds a device to its old
patient). So:

- every reading row carries `mac` = HMAC(key, dedup tag | state), written by `put` and kept current on
  every state change by TEMP triggers that exist
  only on our own writer connection (an outside `sqlite3` edit does not run them); a BEFORE trigger ignores
  our own state changes of a row whose MAC is already wrong, so a tampered row cannot be laundered by a
  later transition; `lease` sends only rows whose MAC matches; `sweep` moves the others to the state
  TAMPERED (never sent, never requeued) with a reason, and the queue raises an alarm;
- the bindings table has a sealed manifest in `meta` (each binding row's tag and nonce, and the bindings
  version counter) written in the same transaction as every bind and unbind; a binding row missing from
  it, or with another nonce (an old copy), is refused and alarmed.

The keys derive from the look-up key (rotated by `keys rotate --retire`). Restoring the whole database to
an older copy is not detectable from inside it; the backend's identifiers and the syslog audit copy are.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any

import aiosqlite
import orjson

from gateway.crypto import DecryptError, KeyRing, Sealed

__all__ = ["STATE_KEY_LABEL", "TAMPERED_STATE", "Guard", "install", "manifest_check", "sweep", "write_manifest"]

STATE_KEY_LABEL = "row state v1"
TAMPERED_STATE = 5  # gateway.queue.State.TAMPERED
_MANIFEST_AAD = b"meta|bindings_manifest"


@dataclass
class Guard:
    key: bytes
    sweeping: bool = False
    # HMAC keyed once and copied per MAC (a third cheaper than keying each time: every row state change
    # runs two, in the triggers); rebuilt when `key` is replaced (keys rotate --retire, gateway.rekey).
    _keyed: tuple[bytes, hmac.HMAC] | None = field(default=None, init=False, repr=False, compare=False)

    def mac(self, dedup: bytes | None, state: int | None) -> bytes:
        key, keyed = self._keyed or (None, None)
        if keyed is None or key is not self.key:
            key = self.key
            keyed = hmac.new(key, digestmod=hashlib.sha256)
            self._keyed = (key, keyed)
        h = keyed.copy()
        h.update(bytes(dedup or b"") + b"|" + str(state).encode())
        return h.digest()

    def valid(self, mac: object, dedup: object, state: object) -> bool:
        """Whether a row's stored MAC is the one for its tag and state (checked in Python by `lease`)."""
        if not isinstance(mac, bytes) or not isinstance(dedup, bytes | None) or not isinstance(state, int | None):
            return False  # a value of another type put there by hand: never valid, never an exception
        return hmac.compare_digest(mac, self.mac(dedup, state))


async def install(writer: aiosqlite.Connection, reader: aiosqlite.Connection, keyring: KeyRing) -> Guard:
    """Functions on both connections, triggers on the writer, and the one-time migration of an old queue."""
    guard = Guard(keyring.subkey(STATE_KEY_LABEL))
    for conn in (writer, reader):
        await conn.create_function("vg_state_mac", 2, guard.mac, deterministic=True)
        await conn.create_function("vg_sweeping", 0, lambda: guard.sweeping)
    async with writer.execute("PRAGMA table_info(readings)") as cur:
        have = {row[1] for row in await cur.fetchall()}
    await writer.executescript(
        """
        CREATE TEMP TRIGGER IF NOT EXISTS vg_state_guard BEFORE UPDATE OF state, dedup ON readings
        WHEN OLD.mac IS NOT vg_state_mac(OLD.dedup, OLD.state) AND NOT vg_sweeping()
        BEGIN SELECT RAISE(IGNORE); END;
        CREATE TEMP TRIGGER IF NOT EXISTS vg_state_update AFTER UPDATE OF state, dedup ON readings
        BEGIN UPDATE readings SET mac = vg_state_mac(NEW.dedup, NEW.state) WHERE id = NEW.id; END;
        """
    )
    if "mac" not in have:
        # A queue from before this guard: its rows and bindings are trusted as found, once.
        await writer.execute("BEGIN IMMEDIATE")
        async with writer.execute("PRAGMA table_info(readings)") as cur:  # again under the write lock: another
            have = {row[1] for row in await cur.fetchall()}  # process opening the queue may have just done it
        if "mac" not in have:
            await writer.execute("ALTER TABLE readings ADD COLUMN mac BLOB")
            await writer.execute("UPDATE readings SET mac = vg_state_mac(dedup, state)")
            await write_manifest(writer, keyring)
        await writer.execute("COMMIT")
    return guard


async def write_manifest(db: aiosqlite.Connection, keyring: KeyRing) -> None:
    """Seal the list of binding rows (tag -> nonce) with the bindings version; call inside the transaction."""
    async with db.execute("SELECT tag, nonce FROM bindings") as cur:
        rows = {bytes(tag).hex(): bytes(nonce).hex() for tag, nonce in await cur.fetchall()}
    async with db.execute("SELECT v FROM meta WHERE k = 'bindings_version'") as cur:
        version = await cur.fetchone()
    doc = orjson.dumps({"version": version[0] if version else "0", "rows": rows})
    sealed = keyring.seal(doc, _MANIFEST_AAD)
    value = sealed.key_id.encode() + b"\0" + sealed.nonce + sealed.ciphertext  # bytes: no digit strings in the file
    await db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES ('bindings_manifest', ?)", (value,))


async def manifest_check(
    db: aiosqlite.Connection, keyring: KeyRing, rows: list[tuple[Any, ...]]
) -> tuple[list[tuple[Any, ...]], int]:
    """Binding rows (tag, key_id, nonce, payload) the manifest vouches for, and how many it does not."""
    async with db.execute("SELECT v FROM meta WHERE k = 'bindings_manifest'") as cur:
        row = await cur.fetchone()
    listed: dict[str, str] = {}
    if row is not None:
        try:
            kid, _, rest = bytes(row[0]).partition(b"\0")
            doc = orjson.loads(keyring.open(Sealed(kid.decode(), rest[:12], rest[12:]), _MANIFEST_AAD))
            listed = doc["rows"]
        except (ValueError, KeyError, TypeError, DecryptError):
            listed = {}
    ok = [r for r in rows if listed.get(bytes(r[0]).hex()) == bytes(r[2]).hex()]
    return ok, len(rows) - len(ok)


async def sweep(db: aiosqlite.Connection, guard: Guard) -> int:
    """Quarantine reading rows whose state MAC is wrong (inside the writer's transaction); returns how many."""
    async with db.execute("SELECT id FROM readings WHERE mac IS NOT vg_state_mac(dedup, state)") as cur:
        ids = [(row[0],) for row in await cur.fetchall()]
    if not ids:
        return 0
    reason = "its state was changed outside vitalgate; never sent (see vitalgate audit --verify)"
    guard.sweeping = True
    try:
        await db.executemany(
            "UPDATE readings SET state = ?, reason = ? WHERE id = ?", [(TAMPERED_STATE, reason, i) for (i,) in ids]
        )
    finally:
        guard.sweeping = False
    return len(ids)
