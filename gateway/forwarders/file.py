"""The `file` forwarder: FHIR Bundles appended as NDJSON, fsynced before anything is confirmed.

The built-in default when no backend is configured, and the demo's output. One file per UTC day. Like a
FHIR server with conditional create, it skips a bundle whose identifier it already wrote, so redelivery
after a crash (written, not yet acked) leaves no duplicate line. Only the newest file can hold such a
bundle, so only it is scanned at start.

The files are readable FHIR with patient references and values, so the folder and its files are opened
through `gateway.safefiles` (no symlinks, owner and mode checked on the descriptor), and `vitalgate run`
accepts this forwarder only with `allow_plaintext = true` and a `retention_days` after which day files are
deleted (`require_opt_in`). The demo writes readable files on purpose and is not held to that.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import orjson

from gateway.clock import implausible
from gateway.errors import ConfigError
from gateway.forwarders import ForwarderContext
from gateway.forwarders.base import Outgoing, PermanentError, RetryableError, SendReport
from gateway.safefiles import UnsafeFileError, open_folder, open_in

__all__ = ["FileForwarder", "build", "bundle_identifiers", "require_opt_in"]

_KEYS = {"directory", "window", "allow_plaintext", "retention_days"}


def bundle_identifiers(bundle: Mapping[str, Any]) -> Iterable[str]:
    """Identifier values of the Observations in a bundle: what duplicate detection keys on."""
    for entry in bundle.get("entry", ()):
        resource = entry.get("resource", {})
        if resource.get("resourceType") == "Observation":
            for ident in resource.get("identifier", ()):
                if "value" in ident:
                    yield ident["value"]


class FileForwarder:
    name = "file"

    def __init__(self, directory: Path, window: int = 500, retention_days: float | None = None) -> None:
        self.directory = directory
        self._window = window
        self.retention_days = retention_days  # None: keep files (demo, tests); else purge older day files
        self._seen: set[str] = set()
        self._current: Path | None = None
        self._dir_fd: int | None = None
        self.purged = 0

    @property
    def window(self) -> int:
        return self._window

    async def __aenter__(self) -> Self:
        try:
            self._dir_fd = open_folder(self.directory, create=True)
        except UnsafeFileError as exc:
            raise PermanentError(str(exc)) from None
        self.purge()
        files = sorted(n for n in os.listdir(self._dir_fd) if _is_day_file(n) and not self._is_folder(n))
        if files:
            self._scan(self.directory / files[-1])
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    def purge(self, now: float | None = None) -> int:
        """Delete day files older than the retention period; returns how many went."""
        if self.retention_days is None or self._dir_fd is None:
            return 0
        now = now or time.time()
        if implausible(now) is not None:  # a clock in 2040 would delete every day file (gateway.clock)
            return 0
        cutoff = time.strftime("%Y%m%d", time.gmtime(now - self.retention_days * 86400))
        removed = 0
        for name in os.listdir(self._dir_fd):
            if _is_day_file(name) and name[8:16] < cutoff and not self._is_folder(name):
                os.unlink(name, dir_fd=self._dir_fd)
                removed += 1
        if removed:
            os.fsync(self._dir_fd)
            self.purged += removed
        return removed

    def _open(self, name: str, flags: int) -> int:
        assert self._dir_fd is not None, "use `async with FileForwarder(...)`"
        try:
            return open_in(self._dir_fd, self.directory, name, flags)
        except UnsafeFileError as exc:
            if exc.errno is not None and exc.errno in _RETRYABLE_OPEN:  # the disk, the system, a folder in the way
                raise RetryableError(f"cannot write {name}: {os.strerror(exc.errno)}") from None
            raise PermanentError(str(exc)) from None

    def _scan(self, path: Path) -> None:
        fd = self._open(path.name, os.O_RDONLY)
        with os.fdopen(fd, "rb") as f:
            for line in f:
                try:
                    self._seen.update(bundle_identifiers(orjson.loads(line)))
                except orjson.JSONDecodeError:
                    continue  # a torn last line from a crash: its bundle was never confirmed

    def _path_for(self, now: datetime) -> Path:
        path = self.directory / f"bundles-{now:%Y%m%d}.ndjson"
        if path != self._current:
            self._current = path
            self._seen.clear()
            self.purge()
            if self._dir_fd is not None and path.name in os.listdir(self._dir_fd) and not self._is_folder(path.name):
                self._scan(path)  # a folder of that name is not read: the write fails with EISDIR, retried
        return path

    def _is_folder(self, name: str) -> bool:
        return stat.S_ISDIR(os.stat(name, dir_fd=self._dir_fd, follow_symlinks=False).st_mode)

    async def send(self, batch: Sequence[Outgoing]) -> SendReport:
        path = self._path_for(datetime.now(UTC))
        lines = []
        for item in batch:
            if item.identifier in self._seen:
                continue
            lines.append(item.body.rstrip(b"\n") + b"\n")
        fd = self._open(path.name, os.O_RDWR | os.O_CREAT | os.O_APPEND)
        try:
            size = os.fstat(fd).st_size
            # A torn line from a crash would glue onto ours: start on a fresh line.
            if size and os.pread(fd, 1, size - 1) != b"\n":
                os.write(fd, b"\n")
            os.write(fd, b"".join(lines))
            os.fsync(fd)
            if not size:
                assert self._dir_fd is not None
                os.fsync(self._dir_fd)
        except OSError as exc:
            raise RetryableError(f"cannot write {path.name}: {exc.strerror}") from None
        finally:
            os.close(fd)
        self._seen.update(item.identifier for item in batch)
        return SendReport(confirmed=frozenset(item.item_id for item in batch))


# Open errors that say nothing about who owns or redirects the file: retried like a failed write, instead of
# waiting `retry_permanent` (10 min) with "fix the configuration" for a full disk or too many open files.
_RETRYABLE_OPEN = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EMFILE, errno.ENFILE, errno.EINTR, errno.EAGAIN, errno.ENOMEM}
    | {errno.EISDIR, errno.EROFS, errno.EBUSY}
)


def _is_day_file(name: str) -> bool:
    return name.startswith("bundles-") and name.endswith(".ndjson") and name[8:16].isdigit()


def build(section: Mapping[str, Any], ctx: ForwarderContext) -> FileForwarder:
    unknown = set(section) - _KEYS
    if unknown:
        raise ConfigError(ctx.config_file, f"output.file.{sorted(unknown)[0]}", "unknown key (typo?)")
    directory = section.get("directory", "outbox")
    if not isinstance(directory, str):
        raise ConfigError(ctx.config_file, "output.file.directory", "expected a path string")
    window = section.get("window", 500)
    if not isinstance(window, int) or isinstance(window, bool) or window < 1:
        raise ConfigError(ctx.config_file, "output.file.window", "expected a positive integer")
    allow = section.get("allow_plaintext", False)
    if not isinstance(allow, bool):
        raise ConfigError(ctx.config_file, "output.file.allow_plaintext", "expected true or false")
    retention = section.get("retention_days")
    if retention is not None and (
        isinstance(retention, bool) or not isinstance(retention, int | float) or not 0 < retention <= 3650
    ):
        raise ConfigError(ctx.config_file, "output.file.retention_days", "expected days between 0 and 3650")
    path = Path(directory)
    return FileForwarder(
        path if path.is_absolute() else ctx.state_dir / path,
        window,
        None if retention is None else float(retention),
    )


def require_opt_in(section: Mapping[str, Any], config_file: str) -> None:
    """`vitalgate run` with the file forwarder: readable PHI on the gateway's disk only when asked for, and
    never kept forever."""
    if section.get("allow_plaintext") is not True:
        raise ConfigError(
            config_file,
            "output.file.allow_plaintext",
            "the file forwarder writes readable FHIR (patient references, values) to the gateway's disk; "
            'configure a backend ([output] forwarder = "mqtt" or "https"), or set allow_plaintext = true '
            "with retention_days in [output.file] if local files are really wanted",
        )
    if section.get("retention_days") is None:
        raise ConfigError(
            config_file, "output.file.retention_days", "required with allow_plaintext: days before files are deleted"
        )
