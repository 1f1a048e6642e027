"""The queue's side of the audit trail: who looked at or changed PHI-bearing state, kept in the queue's file.

The trail itself (hash chain, MACs, syslog copy) is gateway.audit; this mixin of gateway.queue.ReadingQueue
writes and reads it through the queue's single writer and read connection, under the audit key.
"""

from __future__ import annotations

import aiosqlite

from gateway import audit as audit_trail
from gateway.queue_rows import QueueCore

AUDIT_KEY_LABEL = "audit v1"


class AuditMixin:
    """ReadingQueue's audit-trail methods."""

    async def audit(self: QueueCore, actor: str, action: str, detail: str = "") -> None:
        """Record who looked at or changed PHI-bearing state (bindings, device lists, queue contents).

        `detail` must carry no PHI: callers pass counts or keyed tags, never patient ids or serials.
        Entries are hash-chained and MAC-ed (gateway.audit) and copied to syslog.
        """
        key = self.keyring.subkey(AUDIT_KEY_LABEL)

        async def op(db: aiosqlite.Connection) -> bytes:
            return await audit_trail.append(db, key, actor, action, detail)

        audit_trail.forward(actor, action, detail, await self._write(op))

    async def verify_audit(self: QueueCore) -> list[str]:
        """Breaks in the audit trail (edited, deleted or inserted entries); empty when intact."""
        return await audit_trail.verify(self._r, self.keyring.subkey(AUDIT_KEY_LABEL))

    async def audit_trail(self: QueueCore, limit: int = 100) -> list[tuple[float, str, str, str]]:
        async with self._r.execute(
            "SELECT at, actor, action, detail FROM audit ORDER BY id DESC LIMIT ?", (limit,)
        ) as cur:
            return [(at, actor, action, detail) for at, actor, action, detail in await cur.fetchall()]

    def reference_tag(self: QueueCore, *parts: object) -> str:
        """A short keyed tag that lets an auditor match entries about the same binding without the ids."""
        return self.keyring.tag("audit|" + "|".join(map(str, parts))).hex()[:12]
