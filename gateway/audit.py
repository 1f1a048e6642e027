"""The tamper-evident audit trail: who did what to PHI-bearing state, hash-chained and MAC-ed.

Each entry's hash covers its own fields and the previous entry's hash; a MAC over that hash with a key
derived from the gateway's data keys (HKDF, label `vitalgate audit v1`) proves the entry was written by
someone holding the key. A sealed head record (entry count and last hash) in `meta` catches a truncated
tail. `verify` therefore finds an edited, deleted or inserted entry made with plain SQL by anyone without
the key: a stolen card put back, a local user with write access to the database, a restored backup row.

Why a key derived from the data key and not a separate one: the daemon must append entries (start, stop,
config change) without an operator present, so it needs the MAC key in any design; a key it cannot read
could not be used by it. A compromised daemon user could therefore rewrite the trail; against that every
entry is also sent, with its hash, to syslog/journald (`forward`), which the daemon user cannot edit
(`journalctl --verify` with Forward Secure Sealing makes that copy tamper-evident as well).

The actor is taken from the kernel, not the environment: the real uid and the login uid (`/proc/self/
loginuid`, set at login and kept across sudo). `SUDO_USER` is recorded only as a claim next to them.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import pwd
import time
from dataclasses import dataclass

import aiosqlite
import orjson

__all__ = ["Entry", "append", "current_actor", "ensure_schema", "forward", "remac", "verify"]

_COLUMNS = {"prev": "BLOB", "hash": "BLOB", "mac": "BLOB"}
GENESIS = b"\x00" * 32
UNSET_LOGINUID = 4294967295


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    at: float
    actor: str
    action: str
    detail: str


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a container's arbitrary uid has no passwd entry: the uid alone must do
        return "?"


def current_actor() -> str:
    """`name (uid N)`, plus `login uid M` when it differs, plus `sudo claims X` when SUDO_USER is set."""
    uid = os.getuid()
    parts = [f"{_name(uid)} (uid {uid}"]
    try:
        with open("/proc/self/loginuid", encoding="ascii") as f:
            login = int(f.read().strip())
    except (OSError, ValueError):
        login = UNSET_LOGINUID
    if login != UNSET_LOGINUID and login != uid:
        parts.append(f", login {_name(login)} uid {login}")
    parts.append(")")
    claim = os.environ.get("SUDO_USER")
    if claim:
        parts.append(f" sudo claims {claim[:32]}")
    return "".join(parts)


def _entry_hash(prev: bytes, e: Entry) -> bytes:
    body = orjson.dumps([e.id, repr(e.at), e.actor, e.action, e.detail])
    return hashlib.sha256(b"vitalgate audit v1|" + prev + body).digest()


def _mac(key: bytes, digest: bytes) -> bytes:
    return hmac.new(key, digest, hashlib.sha256).digest()


def _head_mac(key: bytes, count: int, last: bytes) -> bytes:
    return _mac(key, b"head|" + str(count).encode() + b"|" + last)


async def ensure_schema(db: aiosqlite.Connection, key: bytes) -> None:
    """Add the chain columns to an older queue and chain its existing entries (trusted as found)."""
    if not await _missing(db):
        return
    # One transaction, the columns looked for again under the write lock: another process opening the
    # queue at the same moment may have just done it, and a kill half-way leaves the trail as it was.
    await db.execute("BEGIN IMMEDIATE")
    try:
        missing = await _missing(db)
        for column in missing:
            await db.execute(f"ALTER TABLE audit ADD COLUMN {column} {_COLUMNS[column]}")
        async with db.execute("SELECT 1 FROM meta WHERE k = 'audit_head'") as cur:
            has_head = await cur.fetchone() is not None
        # Only a queue from before the chain is chained as found; a chained trail whose head record went
        # missing is not re-chained (that would launder edits): `verify` reports it.
        if missing and not has_head:
            await remac(db, key, rechain=True)
        await db.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(Exception):
            await db.execute("ROLLBACK")
        raise


async def _missing(db: aiosqlite.Connection) -> list[str]:
    async with db.execute("PRAGMA table_info(audit)") as cur:
        have = {row[1] for row in await cur.fetchall()}
    return [c for c in _COLUMNS if c not in have]


async def _rows(db: aiosqlite.Connection) -> list[tuple[Entry, bytes | None, bytes | None, bytes | None]]:
    async with db.execute("SELECT id, at, actor, action, detail, prev, hash, mac FROM audit ORDER BY id") as cur:
        return [(Entry(i, at, a, act, d), p, h, m) for i, at, a, act, d, p, h, m in await cur.fetchall()]


async def _set_head(db: aiosqlite.Connection, key: bytes, count: int, last: bytes) -> None:
    # Raw bytes, not hex text: the database must not hold digit strings that look like values.
    value = count.to_bytes(8, "big") + last + _head_mac(key, count, last)
    await db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES ('audit_head', ?)", (value,))


def _head(value: object) -> tuple[int, bytes, bytes]:
    """(count, last hash, MAC) from the head record; a malformed one reads as a count of -1."""
    raw = value if isinstance(value, bytes) else b""
    if len(raw) != 72:
        return -1, b"", b""
    return int.from_bytes(raw[:8], "big"), raw[8:40], raw[40:]


async def remac(db: aiosqlite.Connection, key: bytes, *, rechain: bool = False) -> int:
    """MAC every entry again under `key` (after the data keys' look-up key was retired); `rechain` also
    recomputes the hashes (only for migrating entries written before the chain existed)."""
    prev = GENESIS
    count = 0
    for e, _p, h, _m in await _rows(db):
        digest = _entry_hash(prev, e) if rechain or h is None else h
        await db.execute(
            "UPDATE audit SET prev = ?, hash = ?, mac = ? WHERE id = ?", (prev, digest, _mac(key, digest), e.id)
        )
        prev, count = digest, count + 1
    await _set_head(db, key, count, prev)
    return count


async def append(db: aiosqlite.Connection, key: bytes, actor: str, action: str, detail: str) -> bytes:
    """Append one entry inside the caller's write transaction; returns its hash (for `forward`)."""
    async with db.execute("SELECT v FROM meta WHERE k = 'audit_head'") as cur:
        row = await cur.fetchone()
    count, prev = (0, GENESIS)
    if row is not None:
        count, prev, _ = _head(row[0])
    at = time.time()
    cur2 = await db.execute(
        "INSERT INTO audit (at, actor, action, detail) VALUES (?, ?, ?, ?)", (at, actor, action, detail)
    )
    entry_id = int(cur2.lastrowid or 0)
    digest = _entry_hash(prev, Entry(entry_id, at, actor, action, detail))
    await db.execute(
        "UPDATE audit SET prev = ?, hash = ?, mac = ? WHERE id = ?", (prev, digest, _mac(key, digest), entry_id)
    )
    await _set_head(db, key, count + 1, digest)
    return digest


async def verify(db: aiosqlite.Connection, key: bytes) -> list[str]:
    """Every break in the trail, as sentences naming the entry; empty when intact."""
    problems: list[str] = []
    prev = GENESIS
    count = 0
    for e, p, h, m in await _rows(db):
        count += 1
        if h is None or m is None or p is None:
            problems.append(f"entry #{e.id}: not chained (inserted outside vitalgate)")
            continue
        if p != prev:
            problems.append(f"entry #{e.id}: does not follow the entry before it (an entry was deleted or inserted)")
        if not hmac.compare_digest(_mac(key, h), m):
            problems.append(f"entry #{e.id}: MAC does not match (written without the gateway's key)")
        elif _entry_hash(p, e) != h:
            problems.append(f"entry #{e.id}: content changed after it was written")
        prev = h
    async with db.execute("SELECT v FROM meta WHERE k = 'audit_head'") as cur:
        row = await cur.fetchone()
    if row is None:
        problems.append("the trail's head record is missing")
    else:
        n, last, mac = _head(row[0])
        if n < 0 or not hmac.compare_digest(_head_mac(key, n, last), mac):
            problems.append("the trail's head record was altered")
        elif n != count or last != prev:
            problems.append(
                f"the trail should hold {n} entries ending in {last.hex()[:12]}; found {count} "
                "(entries removed or added)"
            )
    return problems


def forward(actor: str, action: str, detail: str, digest: bytes) -> None:
    """A copy to syslog (journald on the Pi), which the daemon user cannot rewrite; best effort."""
    try:
        import syslog

        syslog.openlog("vitalgate-audit", 0, syslog.LOG_AUTHPRIV)
        syslog.syslog(syslog.LOG_INFO, f"{action} by {actor}: {detail} [chain {digest.hex()[:16]}]")
    except Exception:
        pass
