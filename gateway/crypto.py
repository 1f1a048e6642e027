"""Data keys and AES-256-GCM sealing of queue payloads.

The key file holds one key per line, `<key id> <base64 key>`, oldest first; the last line is current.
Rotation appends, so every key that ever sealed a row can still open it. An index key for keyed hashes
(duplicate detection, binding look-up) is derived from the first key with HKDF, so it survives rotation
and the database holds no plaintext identifiers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.errors import KeyFileError
from gateway.secrets import check_private, resolve_secret_path

__all__ = ["DecryptError", "KeyRing", "Sealed", "create_key_file", "rotate_key_file"]

NONCE_BYTES = 12
KEY_BYTES = 32


class DecryptError(Exception):
    """A payload cannot be opened: unknown key id, or tampered / wrongly bound ciphertext."""


@dataclass(frozen=True, slots=True)
class Sealed:
    key_id: str
    nonce: bytes
    ciphertext: bytes


class KeyRing:
    """All data keys of this gateway; seals with the current one, opens with whichever sealed."""

    def __init__(self, keys: list[tuple[str, bytes]], source: str | None = None) -> None:
        self.source = source
        self._set(keys)

    def _set(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise KeyFileError("no keys")
        self._aead = {kid: AESGCM(key) for kid, key in keys}
        self.current_id = keys[-1][0]
        self._current = self._aead[self.current_id]
        self._index_key = _index_key(keys[0][1])

    @classmethod
    def load(cls, spec: str) -> KeyRing:
        """Read a key file named by path or `credential:NAME`, refusing loose permissions."""
        return cls(_read(spec), source=spec)

    def reload(self) -> bool:
        """Pick up keys added by `vitalgate keys rotate` while running; False if nothing new was there.

        The first key must be unchanged (it derives the index key): a file that is not an extension of the
        loaded one is refused rather than half-applied.
        """
        if self.source is None:
            return False
        keys = _read(self.source)
        if keys[0][0] not in self._aead or _index_key(keys[0][1]) != self._index_key:
            raise KeyFileError(f"{self.source}: its first key changed; restore the original key file")
        if {kid for kid, _ in keys} == set(self._aead):
            return False
        self._set(keys)
        return True

    @classmethod
    def generate(cls) -> KeyRing:
        """A throw-away ring (demo, tests)."""
        return cls([(_new_key_id(), secrets.token_bytes(KEY_BYTES))])

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._aead

    def seal(self, plaintext: bytes, aad: bytes) -> Sealed:
        nonce = os.urandom(NONCE_BYTES)
        return Sealed(self.current_id, nonce, self._current.encrypt(nonce, plaintext, aad))

    def open(self, sealed: Sealed, aad: bytes) -> bytes:
        aead = self._aead.get(sealed.key_id)
        if aead is None:
            raise DecryptError(f"unknown key id {sealed.key_id!r}")
        try:
            return aead.decrypt(sealed.nonce, sealed.ciphertext, aad)
        except InvalidTag:
            raise DecryptError("authentication failed (tampered, or bound to another row)") from None
        except (ValueError, TypeError) as exc:  # a damaged row: nonce of the wrong length, not bytes
            raise DecryptError(f"malformed sealed value ({exc})") from None

    def tag(self, value: str) -> bytes:
        """Keyed hash: equal values give equal tags, but the tag reveals nothing without the key."""
        return hmac.new(self._index_key, value.encode(), hashlib.sha256).digest()


def _index_key(first_key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"vitalgate index v1").derive(first_key)


def _read(spec: str) -> list[tuple[str, bytes]]:
    path = resolve_secret_path(spec)
    check_private(path)
    return _parse(path, path.read_text(encoding="ascii", errors="replace"))


def _new_key_id() -> str:
    return secrets.token_hex(4)


def _parse(path: Path, text: str) -> list[tuple[str, bytes]]:
    keys: list[tuple[str, bytes]] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        kid, _, encoded = line.partition(" ")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except ValueError:
            raise KeyFileError(f"{path}: line {number}: key is not base64") from None
        if len(key) != KEY_BYTES:
            raise KeyFileError(f"{path}: line {number}: key is {len(key) * 8} bits, expected 256")
        keys.append((kid, key))
    if not keys:
        raise KeyFileError(f"{path}: holds no key; create one with `vitalgate keys init`")
    return keys


def _line(kid: str, key: bytes) -> str:
    return f"{kid} {base64.b64encode(key).decode()}\n"


def create_key_file(path: Path) -> str:
    """Write a new key file with mode 0600 (never overwriting one); returns the key id."""
    path.parent.mkdir(parents=True, exist_ok=True)
    kid = _new_key_id()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# VitalGate data keys: <id> <base64 AES-256 key>; the last line is current\n")
        f.write(_line(kid, secrets.token_bytes(KEY_BYTES)))
        f.flush()
        os.fsync(f.fileno())
    return kid


def rotate_key_file(path: Path) -> str:
    """Append a new current key, atomically (write a copy, fsync, rename); returns its id."""
    check_private(path)
    old = path.read_text(encoding="ascii")
    _parse(path, old)
    kid = _new_key_id()
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(old if old.endswith("\n") else old + "\n")
        f.write(_line(kid, secrets.token_bytes(KEY_BYTES)))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return kid
