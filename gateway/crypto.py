"""Data keys and AES-256-GCM sealing of queue payloads.

The key file holds one key per line, `<key id> <base64 key>`, oldest first; the last line is current.
Rotation appends, so every key that ever sealed a row can still open it. An index key for keyed hashes
(duplicate detection, binding look-up) is derived with HKDF from one key of the file: the first, unless
the queue names another (meta `index_key`, changed by `vitalgate keys rotate --retire`, gateway.rekey).
The file may be plain (mode 0600), a systemd credential (`credential:NAME`) or a Clevis JWE
(`clevis:PATH`, gateway.keysource) decrypted at start with a key held off the device.
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

__all__ = ["DecryptError", "KeyRing", "Sealed", "create_key_file", "rotate_key_file", "rotate_key_source"]

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
        self.index_id = keys[0][0] if keys else ""
        self._set(keys)

    def _set(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise KeyFileError("no keys")
        self._raw = dict(keys)
        self._aead = {kid: AESGCM(key) for kid, key in keys}
        self.current_id = keys[-1][0]
        self._current = self._aead[self.current_id]
        if self.index_id not in self._raw:
            raise KeyFileError(
                f"{self.source or 'key file'}: the look-up key {self.index_id} is not in it any more "
                "(retired while running?): restart the gateway"
            )
        self._index_key = _index_key(self._raw[self.index_id])

    @property
    def key_ids(self) -> list[str]:
        return list(self._raw)

    def with_index(self, key_id: str) -> KeyRing:
        """A copy of this ring whose look-up key derives from `key_id` (for re-tagging rows)."""
        ring = KeyRing(list(self._raw.items()), source=self.source)
        ring.use_index(key_id)
        return ring

    def use_index(self, key_id: str) -> None:
        """Derive look-up tags and MAC keys from this key (the queue says which: meta `index_key`)."""
        if key_id not in self._raw:
            raise KeyFileError(
                f"{self.source or 'key file'}: the queue's look-up key {key_id} is missing from the key file; "
                "restore the key file from its backup"
            )
        self.index_id = key_id
        self._index_key = _index_key(self._raw[key_id])

    @classmethod
    def load(cls, spec: str) -> KeyRing:
        """Read a key file named by path or `credential:NAME`, refusing loose permissions."""
        return cls(_read(spec), source=spec)

    def reload(self) -> bool:
        """Pick up keys added by `vitalgate keys rotate` while running; False if nothing new was there.

        The look-up key must be unchanged: a file that is not an extension of the loaded one is refused
        rather than half-applied (after `keys rotate --retire` the gateway is restarted instead).
        """
        if self.source is None:
            return False
        keys = _read(self.source)
        new = dict(keys)
        if new.get(self.index_id) != self._raw[self.index_id]:
            raise KeyFileError(f"{self.source}: the look-up key {self.index_id} changed or went; restart the gateway")
        if set(new) == set(self._raw):
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

    def subkey(self, label: str) -> bytes:
        """A key for one purpose (audit MACs, row-state MACs), derived from the look-up key so it rotates
        with it."""
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"vitalgate {label}".encode()).derive(
            self._index_key
        )

    def file_key(self, key_id: str, label: str) -> bytes:
        """A key for one sealed file (the BLE bond store), derived from data key `key_id` itself, not from
        the look-up key: the file names the key id it was sealed with, so a plain rotation leaves it
        readable and it moves to the current key when next written (or by `keys rotate --retire`)."""
        raw = self._raw.get(key_id)
        if raw is None:
            raise DecryptError(f"unknown key id {key_id!r}")
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"vitalgate file {label}".encode()).derive(
            raw
        )

    def tag(self, value: str) -> bytes:
        """Keyed hash: equal values give equal tags, but the tag reveals nothing without the key."""
        return hmac.new(self._index_key, value.encode(), hashlib.sha256).digest()


def _index_key(first_key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"vitalgate index v1").derive(first_key)


def _read(spec: str) -> list[tuple[str, bytes]]:
    from gateway.keysource import source_for

    source = source_for(spec)
    return _parse(source.path, source.read())


def _new_key_id() -> str:
    return secrets.token_hex(4)


def parse_keys(path: Path, text: str) -> list[tuple[str, bytes]]:
    return _parse(path, text)


def key_line(kid: str, key: bytes) -> str:
    return _line(kid, key)


def new_key() -> tuple[str, bytes]:
    return _new_key_id(), secrets.token_bytes(KEY_BYTES)


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
    return rotate_key_source(str(path))


def rotate_key_source(spec: str) -> str:
    """`rotate_key_file` for any key source (plain file, Clevis JWE); returns the new key's id."""
    from gateway.keysource import source_for

    source = source_for(spec)
    old = source.read()
    _parse(source.path, old)
    kid = _new_key_id()
    # Written via mkstemp beside it + rename: a planted `<key>.tmp` or a symlink at its name is never followed.
    source.write((old if old.endswith("\n") else old + "\n") + _line(kid, secrets.token_bytes(KEY_BYTES)))
    return kid
