"""Prove, before any work, that a queue file is a VitalGate queue and that this key file opens it.

A wrong key used to show up late and badly: tracebacks from `status`, a daemon that never became ready,
or a whole backlog quarantined as "tampered". Now a known-answer row is sealed into `meta` when a queue is
created (or on the first writing open of an older queue): its keyed tag proves the first key (which derives
the index key for bindings and duplicate detection) and its sealed payload proves the key opens. Every key
id any row was sealed with must be in the key file too, or rows sealed with a key line since removed would
be quarantined one by one. `check-config` runs the same judgement on a read-only connection.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from gateway.crypto import DecryptError, KeyRing, Sealed
from gateway.errors import GatewayError, KeyFileError

__all__ = [
    "KAT_AAD",
    "KAT_PLAINTEXT",
    "KeyMismatchError",
    "QueueFileError",
    "check_queue_file",
    "judge",
    "known_answer",
    "open_failure",
    "sniff",
]

SQLITE_MAGIC = b"SQLite format 3\x00"
KAT_PLAINTEXT = b"vitalgate known answer v1"
KAT_AAD = b"meta|kat"
SEALED_TABLES = ("readings", "slots", "bindings", "checkpoints", "rejects")


class QueueFileError(GatewayError):
    """The queue file is missing, not a file, not SQLite, or damaged."""


class KeyMismatchError(KeyFileError):
    """The key file does not open this queue (another key file, or a key line removed)."""


def sniff(path: Path) -> None:
    """Refuse what SQLite would otherwise meet with a traceback or silently replace: a folder, a file
    that is not SQLite (or whose header was zeroed). An empty or absent file is a queue to create."""
    if path.is_symlink() or not path.exists():
        return  # a link is refused by gateway.safefiles, without following it here
    if not path.is_file():
        raise QueueFileError(f"{path}: the queue path is not a file (a folder?); point queue.path at a file")
    try:
        with path.open("rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise QueueFileError(f"{path}: cannot read the queue file ({exc.strerror})") from None
    if head and head != SQLITE_MAGIC:
        raise QueueFileError(
            f"{path}: not a VitalGate queue (no SQLite header: damaged or another file); "
            "move it aside and restore the queue from a backup"
        )


def open_failure(path: Path, exc: sqlite3.DatabaseError) -> str:
    """What to tell the operator when SQLite refuses the queue: a full disk is not a damaged file."""
    try:
        st = os.statvfs(path.parent)
        free = st.f_bavail * st.f_frsize
    except OSError:
        free = None
    if isinstance(exc, sqlite3.OperationalError) and free is not None and free < 1024 * 1024:
        return f"{path}: the disk holding the queue is full ({free // 1024} KB free); free space, then start again"
    return f"{path}: the queue file cannot be used ({exc}); restore it from a backup"


def known_answer(keyring: KeyRing) -> dict[str, str | bytes]:
    """The meta rows of a known-answer check, sealed with the current key (raw bytes, not hex text: the
    file must not show digit runs a reader could mistake for values)."""
    sealed = keyring.seal(KAT_PLAINTEXT, KAT_AAD)
    return {
        "kat_tag": keyring.tag("known answer"),
        "kat_key": sealed.key_id,
        "kat_nonce": sealed.nonce,
        "kat_payload": sealed.ciphertext,
    }


def judge(path: Path, keyring: KeyRing, meta: dict[str, object], key_ids: Iterable[str]) -> None:
    """Raise KeyMismatchError with a sentence an operator can act on, or return when the key fits."""
    hint = "use the key file this queue was created with (restore it from your backup)"
    source = keyring.source or "the key file"
    if "kat_tag" in meta and meta["kat_tag"] != keyring.tag("known answer"):
        raise KeyMismatchError(f"{source} does not match the queue {path}: its first key differs; {hint}")
    used = set(key_ids) | ({str(meta["kat_key"])} if "kat_key" in meta else set())
    missing = sorted(k for k in used if k not in keyring)
    if missing:
        raise KeyMismatchError(
            f"{source} lacks key {missing[0]!r} that {path} is sealed with "
            f"({len(missing)} key(s) missing: a key line was removed, or this is another key file); {hint}"
        )
    if "kat_tag" in meta:
        nonce, payload = meta.get("kat_nonce"), meta.get("kat_payload")
        ok = False
        if isinstance(nonce, bytes) and isinstance(payload, bytes):
            with contextlib.suppress(DecryptError):
                ok = keyring.open(Sealed(str(meta.get("kat_key")), nonce, payload), KAT_AAD) == KAT_PLAINTEXT
        if not ok:
            raise KeyMismatchError(f"{source} does not open the queue {path} (known-answer check failed); {hint}")


def used_key_ids_sql() -> str:
    return " UNION ".join(f"SELECT DISTINCT key_id FROM {t}" for t in SEALED_TABLES)


def check_queue_file(path: Path, keyring: KeyRing) -> str:
    """For `check-config`: open the queue read-only and judge the key; returns a short summary."""
    if not path.exists():
        return "queue not created yet (the daemon creates it)"
    sniff(path)
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    except sqlite3.Error as exc:
        raise QueueFileError(f"{path}: cannot open the queue read-only ({exc})") from None
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"meta", *SEALED_TABLES} <= tables:
            raise QueueFileError(f"{path}: is SQLite but not a VitalGate queue (tables missing)")
        meta = {k: v for k, v in db.execute("SELECT k, v FROM meta WHERE k LIKE 'kat_%'")}
        ids = [r[0] for r in db.execute(used_key_ids_sql())]
        rows = db.execute("SELECT count(*) FROM readings").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise QueueFileError(f"{path}: the queue file is damaged ({exc}); restore it from a backup") from None
    finally:
        db.close()
    if any(k not in keyring for k in ids):
        keyring.reload()  # rotated since loaded? judged with the fresh file below
    judge(path, keyring, meta, ids)
    proof = "known-answer row opens" if meta else "no known-answer row yet (the daemon adds one)"
    return f"key matches the queue: {proof}, {rows} rows"
