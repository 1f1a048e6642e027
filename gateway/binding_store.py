"""The queue's binding store: operators' bindings of device slots to patients, sealed in the queue's file.

Bindings are read into memory (every put decides a reading's state by them), reloaded when another process
changed them, and vouched for by the manifest (gateway.rowguard), so a binding row restored from an old copy
is refused. A mixin of gateway.queue.ReadingQueue; the binding model itself is gateway.bindings.
"""

from __future__ import annotations

from typing import Protocol

import aiosqlite
import orjson
import structlog

from gateway import rowguard
from gateway.bindings import Binding, normalize_selector
from gateway.crypto import DecryptError
from gateway.queue_rows import QueueCore, _why
from gateway.queue_schema import _bump_bindings_version
from gateway.reading import Reading

log = structlog.get_logger(__name__)


class BindingCore(QueueCore, Protocol):
    """What the binding store uses of the queue beyond QueueCore (its own state and the assign pass)."""

    _bindings: list[Binding]
    _bindings_version: str
    damaged_bindings: int

    def _integrity(self, code: str, sentence: str) -> None: ...

    async def assign_unassigned(self) -> int: ...

    async def reload_bindings(self) -> list[Binding]: ...


class BindingStoreMixin:
    """ReadingQueue's bindings: look-up, reload, bind and unbind."""

    def binding_for(self: BindingCore, reading: Reading) -> Binding | None:
        return next((b for b in self._bindings if b.matches(reading)), None)

    async def bindings_changed(self: BindingCore) -> bool:
        async with self._r.execute("SELECT v FROM meta WHERE k = 'bindings_version'") as cur:
            row = await cur.fetchone()
        return row is not None and row[0] != self._bindings_version

    async def reload_bindings(self: BindingCore) -> list[Binding]:
        async with self._r.execute("SELECT v FROM meta WHERE k = 'bindings_version'") as cur:
            row = await cur.fetchone()
        async with self._r.execute("SELECT tag, key_id, nonce, payload FROM bindings") as cur:
            rows = await cur.fetchall()
        bindings = []
        if any(key_id not in self.keyring for _, key_id, _, _ in rows) and self.keyring.reload():
            log.info("data_keys_reloaded", current=self.keyring.current_id)  # rotated by `vitalgate keys rotate`
        vouched, refused = await rowguard.manifest_check(self._r, self.keyring, [tuple(r) for r in rows])
        if refused:
            self._integrity(
                "bindings_tampered",
                f"{refused} binding rows were put into the database outside vitalgate (e.g. an old binding "
                "restored from a copy) and are ignored; check `vitalgate devices` and bind again as intended.",
            )
        damaged = 0
        for tag, key_id, nonce, payload in vouched:
            try:
                doc = orjson.loads(self._open(b"bindings", tag, key_id, nonce, payload))
                bindings.append(Binding(doc["device"], doc["user"], doc["patient"]))
            except DecryptError as exc:
                # E.g. bound with a key rotated after start while the key is a systemd credential (a copy made
                # at start): never loop on it; its readings wait as unassigned until the restart.
                damaged += 1
                self._integrity(
                    "binding_unreadable",
                    f"a binding cannot be opened ({exc}); if the data key was rotated, restart the gateway "
                    "(systemctl restart vitalgate) so it loads the new key",
                )
            except Exception as exc:  # its readings stay unassigned (kept) until the device is bound again
                damaged += 1
                log.error("binding_unreadable", error=_why(exc), hint="bind the device again")
        self.damaged_bindings = damaged
        self._bindings = bindings
        self._bindings_version = row[0] if row else ""
        return bindings

    async def bind(self: BindingCore, device: str, user_slot: int | None, patient: str) -> None:
        device = normalize_selector(device)
        tag = self.keyring.tag(f"binding|{device}|{user_slot}")
        doc = orjson.dumps({"device": device, "user": user_slot, "patient": patient})
        sealed = self._seal(b"bindings", tag, doc)

        async def op(db: aiosqlite.Connection) -> None:
            await db.execute(
                "INSERT OR REPLACE INTO bindings (tag, key_id, nonce, payload) VALUES (?, ?, ?, ?)",
                (tag, sealed.key_id, sealed.nonce, sealed.ciphertext),
            )
            await _bump_bindings_version(db)
            await rowguard.write_manifest(db, self.keyring)

        await self._write(op)
        await self.reload_bindings()
        await self.assign_unassigned()

    async def unbind(self: BindingCore, device: str, user_slot: int | None) -> bool:
        # Also the form as typed: bindings stored before `addr:` / `eui64:` were normalized stay removable.
        forms = {normalize_selector(device), device.strip()}
        tags = [(self.keyring.tag(f"binding|{form}|{user_slot}"),) for form in forms]

        async def op(db: aiosqlite.Connection) -> int:
            before = db.total_changes
            await db.executemany("DELETE FROM bindings WHERE tag = ?", tags)
            removed = db.total_changes - before
            await _bump_bindings_version(db)
            await rowguard.write_manifest(db, self.keyring)
            return removed

        removed = int(await self._write(op)) > 0
        await self.reload_bindings()
        return removed
