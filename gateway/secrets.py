"""Secrets and key material from files or systemd credentials, with permission checks.

A secret is named in config either as a path (`/etc/vitalgate/mqtt.password`) or as
`credential:NAME`, read from `$CREDENTIALS_DIRECTORY/NAME` (systemd `LoadCredential=`). Files that
group or others can read are refused: a key readable by every local user is no key.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gateway.errors import KeyFileError
from gateway.safefiles import UnsafeFileError, read_private

__all__ = ["check_private", "read_secret", "resolve_secret_path"]

CREDENTIAL_PREFIX = "credential:"


def resolve_secret_path(spec: str) -> Path:
    """Where a secret named in config lives."""
    if spec.startswith(CREDENTIAL_PREFIX):
        name = spec[len(CREDENTIAL_PREFIX) :]
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise KeyFileError(f"{spec}: $CREDENTIALS_DIRECTORY is not set (not started by systemd?)")
        return Path(directory) / name
    return Path(spec)


def check_private(path: Path) -> None:
    """Refuse a secret file that group or others may read or write.

    systemd credentials are exempt: systemd owns that directory and serves them read-only to us.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: does not exist") from None
    except PermissionError:
        raise KeyFileError(f"{path}: not readable by this user") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"{path}: not a regular file")
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if directory and path.parent == Path(directory):
        return
    if st.st_mode & 0o077:
        raise KeyFileError(
            f"{path}: mode {stat.S_IMODE(st.st_mode):04o} lets group/others read it; run chmod 600 {path}"
        )


def read_secret(spec: str) -> bytes:
    """The secret's bytes, trailing newline removed, after the permission check."""
    return read_private_secret(resolve_secret_path(spec)).rstrip(b"\r\n")


def read_private_secret(path: Path) -> bytes:
    """Read a secret through `gateway.safefiles` (no symlink, owner and mode checked on the descriptor).

    A systemd credential is served read-only by systemd in its own folder, so only its owner is judged.
    """
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    private = not (directory and path.parent == Path(directory))
    try:
        return read_private(path, private=private)
    except UnsafeFileError as exc:
        raise KeyFileError(str(exc)) from None
