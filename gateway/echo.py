"""Server-echoed text of a quarantined reading, sealed (issue 11, must-have 7).

A FHIR server's free text (OperationOutcome `diagnostics`, `details.text`, an expression that is not a
plain path) may echo a patient's name, and no scrubber can tell a name from a word. The plaintext
quarantine reason keeps only the HTTP status, severity, code and a sanitised expression; the text itself
is kept here, AES-256-GCM sealed with the data key and bound to its row (the row's keyed identity is the
associated data, so a sealed text copied onto another row does not open). An operator reads it only on
purpose (`vitalgate quarantine --reveal ID`, or the console), and each reveal is audited.

Stored in `readings.echo` as one blob: key id length (1 byte), key id, nonce, ciphertext.
"""

from __future__ import annotations

import contextlib

import aiosqlite

from gateway.crypto import NONCE_BYTES, DecryptError, KeyRing, Sealed

__all__ = ["MAX_ECHO_BYTES", "ensure_column", "open_echo", "reseal_echo", "seal_echo"]

MAX_ECHO_BYTES = 4096  # a hostile server could answer megabytes; what an operator needs fits in this
_AAD = b"echo|"


def _aad(dedup: bytes) -> bytes:
    return _AAD + bytes(dedup)


def seal_echo(keyring: KeyRing, dedup: bytes, text: str) -> bytes:
    """The sealed blob for `text` (capped at MAX_ECHO_BYTES of UTF-8) on the row whose identity is `dedup`."""
    plain = text.encode("utf-8", errors="replace")[:MAX_ECHO_BYTES]
    sealed = keyring.seal(plain, _aad(dedup))
    kid = sealed.key_id.encode()
    return bytes([len(kid)]) + kid + sealed.nonce + sealed.ciphertext


def open_echo(keyring: KeyRing, dedup: bytes, blob: object) -> str:
    """The text sealed by `seal_echo`; DecryptError when it does not open (other row, tampered, key gone)."""
    if not isinstance(blob, bytes | bytearray | memoryview):  # text or a number put there by hand
        raise DecryptError(f"malformed sealed value (a {type(blob).__name__}, not a sealed blob)")
    blob = bytes(blob)
    if not blob:
        raise DecryptError("malformed sealed value (empty)")
    n = blob[0]
    kid, rest = blob[1 : 1 + n], blob[1 + n :]
    if len(kid) != n or len(rest) <= NONCE_BYTES:
        raise DecryptError("malformed sealed value (too short)")
    plain = keyring.open(Sealed(kid.decode(errors="replace"), rest[:NONCE_BYTES], rest[NONCE_BYTES:]), _aad(dedup))
    return plain.decode("utf-8", errors="replace")


def reseal_echo(old: KeyRing, new: KeyRing, old_dedup: bytes, new_dedup: bytes, blob: object) -> bytes | None:
    """For `keys rotate --retire`: the blob under the current key and the row's new identity; None if it
    no longer opens (the reason in plaintext stays; only the server's words are lost)."""
    try:
        text = open_echo(old, old_dedup, blob)
    except DecryptError:
        return None
    return seal_echo(new, new_dedup, text)


async def ensure_column(db: aiosqlite.Connection) -> None:
    """Migrate a queue made before sealed echoes: add the nullable column (existing rows have none).

    Looked for again under the write lock: another process opening the queue at the same moment (the daemon
    and `vitalgate status`) may have added it while this one waited."""
    if await _has_echo(db):
        return
    await db.execute("BEGIN IMMEDIATE")
    try:
        if not await _has_echo(db):
            await db.execute("ALTER TABLE readings ADD COLUMN echo BLOB")
        await db.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(Exception):
            await db.execute("ROLLBACK")
        raise


async def _has_echo(db: aiosqlite.Connection) -> bool:
    async with db.execute("PRAGMA table_info(readings)") as cur:
        return "echo" in {row[1] for row in await cur.fetchall()}
