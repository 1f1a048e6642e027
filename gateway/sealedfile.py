"""Small secret files sealed at rest with a key derived from the gateway's data key (the BLE bond store).

Bumble keeps a bond's LTK, IRK and CSRK in a JSON file; whoever reads the SD card could then impersonate
the gateway to the patient's devices, or the devices to the gateway. Sealed, the file is

    b"VitalGate sealed file v1\\n" <key id> b"\\n" <12-byte nonce> <AES-256-GCM ciphertext + tag>

with a key derived by HKDF from data key <key id> under this file's own label, and the header and label as
associated data (a file sealed for one purpose does not open as another). Writes go through
`gateway.safefiles` (O_NOFOLLOW, owner and mode checked on the descriptor, mkstemp beside it, 0600).
A file written before sealing (plaintext) is still read, and sealed on its next write; its old blocks are
overwritten with zeros first (best effort: flash wear levelling may keep copies).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.crypto import NONCE_BYTES, DecryptError, KeyRing
from gateway.errors import GatewayError
from gateway.safefiles import check_file_fd, open_folder, read_private, write_atomic

__all__ = ["BOND_STORE_LABEL", "MAGIC", "SealedFileError", "SealedFiles", "bond_sealer", "key_id"]

MAGIC = b"VitalGate sealed file v1\n"
BOND_STORE_LABEL = "ble bonds v1"
_LIMIT = 4 << 20


class SealedFileError(GatewayError, ValueError):
    """A sealed file that does not open: tampered, truncated, or sealed with a key no longer in the key file."""


class SealedFiles:
    """Reads and writes files sealed under one label; holds the key ring, so keys added by a rotation are used."""

    def __init__(self, ring: KeyRing, label: str, on_problem: Callable[[str | None], None] | None = None) -> None:
        self.ring = ring
        self.label = label
        # Told when a file could not be used (the reason) and when one was written again (None): the daemon
        # turns it into an alarm that `vitalgate status` shows.
        self.on_problem = on_problem
        self.problem: str | None = None

    def seal(self, plaintext: bytes) -> bytes:
        kid = self.ring.current_id
        header = MAGIC + kid.encode("ascii") + b"\n"
        nonce = os.urandom(NONCE_BYTES)
        key = self.ring.file_key(kid, self.label)
        return header + nonce + AESGCM(key).encrypt(nonce, plaintext, header + self.label.encode())

    def open(self, blob: bytes, path: Path | str = "sealed file") -> bytes:
        kid = key_id(blob)
        if kid is None:
            raise SealedFileError(f"{path}: not a VitalGate sealed file")
        header = MAGIC + kid.encode("ascii") + b"\n"
        body = blob[len(header) :]
        if len(body) < NONCE_BYTES + 16:
            raise SealedFileError(f"{path}: truncated ({len(blob)} bytes)")
        try:
            key = self.ring.file_key(kid, self.label)
        except DecryptError:
            raise SealedFileError(
                f"{path}: sealed with data key {kid}, which is not in the key file (retired, or another gateway's key)"
            ) from None
        try:
            return AESGCM(key).decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], header + self.label.encode())
        except InvalidTag:
            raise SealedFileError(f"{path}: fails its authentication check (tampered or truncated)") from None

    def read(self, path: Path) -> tuple[bytes, bool] | None:
        """(plaintext, was it sealed) or None when there is no file. A file without the sealed header is a
        plaintext file from before sealing: returned as it is, for the caller to check and write back sealed.
        Raises SealedFileError when a sealed file does not open, UnsafeFileError for a link or a loose mode."""
        os.close(open_folder(path.parent, create=True))
        if not os.path.lexists(path):
            return None
        blob = read_private(path, limit=_LIMIT)
        if not blob.startswith(MAGIC):
            return blob, False
        return self.open(blob, path), True

    def write(self, path: Path, plaintext: bytes) -> None:
        """Seal and replace atomically; a plaintext file it replaces is overwritten with zeros first."""
        old = _open_plaintext(path)
        try:
            write_atomic(path, self.seal(plaintext), private_folder=True)
            if old is not None:
                _zero(old)
        finally:
            if old is not None:
                os.close(old)
        if self.problem is not None:
            self._report(None)

    def unreadable(self, path: Path, reason: str) -> None:
        """The file at `path` could not be used (the caller moved it aside): `reason` names why."""
        self._report(reason)

    def _report(self, problem: str | None) -> None:
        self.problem = problem
        if self.on_problem is not None:
            self.on_problem(problem)

    def reseal(self, path: Path) -> bool:
        """Move a sealed (or legacy plaintext) file to the current key, for `keys rotate --retire`; False if
        there is no file or it already is sealed with the current key. SealedFileError if it does not open."""
        if not os.path.lexists(path):
            return False
        blob = read_private(path, limit=_LIMIT)
        if key_id(blob) == self.ring.current_id:
            return False
        plain = self.open(blob, path) if blob.startswith(MAGIC) else blob
        self.write(path, plain)
        return True


def bond_sealer(ring: KeyRing, on_problem: Callable[[str | None], None] | None = None) -> SealedFiles:
    """What seals the BLE bond store: handed to drivers.ble.runtime, which never sees the key itself."""
    return SealedFiles(ring, BOND_STORE_LABEL, on_problem)


def key_id(blob: bytes) -> str | None:
    """The data key id a sealed file names, or None if `blob` is not one."""
    if not blob.startswith(MAGIC):
        return None
    line, newline, _ = blob[len(MAGIC) : len(MAGIC) + 65].partition(b"\n")
    if not newline or not line:
        return None
    try:
        return line.decode("ascii")
    except UnicodeDecodeError:
        return None


def _open_plaintext(path: Path) -> int | None:
    """A write descriptor of the file at `path` if it is a plaintext one of ours (never through a link)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None  # missing, or a link: write_atomic replaces the name without touching the target
    try:
        check_file_fd(fd, path)
        if os.pread(fd, len(MAGIC), 0) == MAGIC:
            os.close(fd)
            return None
    except Exception:
        os.close(fd)
        return None
    return fd


def _zero(fd: int) -> None:
    with contextlib.suppress(OSError):
        size = os.fstat(fd).st_size
        os.pwrite(fd, bytes(size), 0)
        os.fsync(fd)
