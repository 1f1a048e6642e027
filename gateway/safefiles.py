"""Opening PHI and key files so that a local user cannot redirect them.

Every check is made on the open descriptor (`fstat`), not on the name, and names are opened with
`O_NOFOLLOW`, so a symlink planted where a file or folder is expected is refused instead of followed, and
nothing can be swapped in between a check and the use. A folder that holds PHI must belong to us (or root)
and be closed to group and others: then nobody else can plant anything in it later either. New contents
are written to a `mkstemp` file in the same folder and renamed over the old name, so a reader sees the old
file or the new one, never half of one, and no fixed temporary name can be pre-planted.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path

from gateway.errors import GatewayError

__all__ = [
    "UnsafeFileError",
    "check_file_fd",
    "check_folder",
    "check_no_symlink",
    "open_folder",
    "open_in",
    "read_private",
    "write_atomic",
]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeFileError(GatewayError):
    """A file or folder that would let another local user read or redirect PHI or keys.

    `errno` is the open's error number when the refusal came from the open itself, so a caller can tell a
    full disk or a busy system (worth retrying) from a planted link or a loose mode (not).
    """

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


def _owner_ok(st: os.stat_result) -> bool:
    return st.st_uid in (os.geteuid(), 0)


def _describe_owner(st: os.stat_result) -> str:
    return f"uid {st.st_uid}"


def check_folder(fd: int, path: Path, *, private: bool = True) -> None:
    """Refuse a folder owned by someone else, or open to group/others (`private`) or writable by them."""
    st = os.fstat(fd)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeFileError(f"{path}: not a folder")
    if not _owner_ok(st):
        raise UnsafeFileError(
            f"{path}: owned by {_describe_owner(st)}, not by this user ({os.geteuid()}) or root; "
            f"another user could swap its files. Fix: chown {os.geteuid()} {path}"
        )
    loose = 0o077 if private else 0o022
    if st.st_mode & loose:
        mode = stat.S_IMODE(st.st_mode)
        raise UnsafeFileError(
            f"{path}: folder mode {mode:04o} lets group/others "
            f"{'in' if private else 'write to it'}; PHI and keys need chmod 700 {path}"
        )


def open_folder(path: Path, *, create: bool = False, private: bool = True) -> int:
    """A descriptor of the folder itself (never of a symlink's target), after the owner and mode check.

    `create` makes a missing folder (and its missing parents) with mode 0700.
    """
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except FileExistsError:
            pass  # a symlink or a file in its place: the open below says which
        except OSError as exc:
            raise UnsafeFileError(f"{path}: cannot create the folder ({exc.strerror})") from None
    try:
        fd = os.open(path, _DIR_FLAGS)
    except OSError as exc:
        raise UnsafeFileError(_open_error(path, exc, "folder")) from None
    try:
        check_folder(fd, path, private=private)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_file_fd(fd: int, path: Path, *, private: bool = True) -> os.stat_result:
    """Refuse anything but a regular file of ours (or root's) closed to group/others (`private`)."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFileError(f"{path}: not a regular file")
    if not _owner_ok(st):
        raise UnsafeFileError(f"{path}: owned by {_describe_owner(st)}, not by this user ({os.geteuid()}) or root")
    if private and st.st_mode & 0o077:
        raise UnsafeFileError(
            f"{path}: mode {stat.S_IMODE(st.st_mode):04o} lets group/others read it; run chmod 600 {path}"
        )
    return st


def _open_error(path: Path, exc: OSError, what: str) -> str:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(path):
        return f"{path}: is a symbolic link; refusing to follow it to a {what} elsewhere (remove the link)"
    if exc.errno == errno.ENOENT:
        return f"{path}: does not exist"
    if exc.errno == errno.EACCES:
        return f"{path}: not readable by this user"
    if exc.errno == errno.ENOTDIR:
        return f"{path}: not a {what}"
    return f"{path}: cannot open ({exc.strerror})"


def open_in(dir_fd: int, folder: Path, name: str, flags: int, *, private: bool = True) -> int:
    """Open `name` inside an already checked folder, never through a symlink, and check what was opened."""
    path = folder / name
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    except OSError as exc:
        raise UnsafeFileError(_open_error(path, exc, "file"), exc.errno) from None
    try:
        check_file_fd(fd, path, private=private)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_private(path: Path, *, private: bool = True, limit: int = 1 << 20) -> bytes:
    """The bytes of a small secret file, checked on its descriptor; its folder must not be writable by others."""
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise UnsafeFileError(_open_error(path.parent, exc, "folder")) from None
    try:
        check_folder(dir_fd, path.parent, private=False)
        fd = open_in(dir_fd, path.parent, path.name, os.O_RDONLY, private=private)
    finally:
        os.close(dir_fd)
    try:
        data = os.read(fd, limit + 1)
        chunks = [data]
        while data and sum(map(len, chunks)) <= limit:
            data = os.read(fd, limit + 1)
            chunks.append(data)
    finally:
        os.close(fd)
    out = b"".join(chunks)
    if len(out) > limit:
        raise UnsafeFileError(f"{path}: larger than {limit} bytes; not a key or secret file")
    return out


def write_atomic(path: Path, data: bytes, *, private_folder: bool = False) -> None:
    """Replace `path` with `data` (mode 0600): mkstemp in the same folder, fsync, rename, fsync the folder.

    An existing symlink at `path` is replaced by the new file, never written through.
    """
    dir_fd = open_folder(path.parent, private=private_folder)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            check_file_fd(fd, Path(tmp))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def check_no_symlink(path: Path, *, private: bool = True) -> None:
    """For files a library opens by name (SQLite, Bumble's key store): an existing one must be a regular
    file of ours, not a link. Safe against a later swap only inside a folder `open_folder` accepted."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UnsafeFileError(_open_error(path, exc, "file")) from None
    try:
        check_file_fd(fd, path, private=private)
    finally:
        os.close(fd)
