"""The `file` forwarder: FHIR Bundles appended as NDJSON, fsynced before anything is confirmed.

The built-in default when no backend is configured, and the demo's output. One file per UTC day. Like a
FHIR server with conditional create, it skips a bundle whose identifier it already wrote, so redelivery
after a crash (written, not yet acked) leaves no duplicate line. Only the newest file can hold such a
bundle, so only it is scanned at start.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import orjson

from gateway.errors import ConfigError
from gateway.forwarders import ForwarderContext
from gateway.forwarders.base import Outgoing, PermanentError, RetryableError, SendReport

__all__ = ["FileForwarder", "build", "bundle_identifiers"]


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

    def __init__(self, directory: Path, window: int = 500) -> None:
        self.directory = directory
        self._window = window
        self._seen: set[str] = set()
        self._current: Path | None = None

    @property
    def window(self) -> int:
        return self._window

    async def __aenter__(self) -> Self:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise PermanentError(f"cannot create output directory {self.directory}: {exc.strerror}") from None
        files = sorted(self.directory.glob("bundles-*.ndjson"))
        if files:
            self._scan(files[-1])
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def _scan(self, path: Path) -> None:
        with path.open("rb") as f:
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
            if path.exists():
                self._scan(path)
        return path

    async def send(self, batch: Sequence[Outgoing]) -> SendReport:
        path = self._path_for(datetime.now(UTC))
        lines = []
        for item in batch:
            if item.identifier in self._seen:
                continue
            lines.append(item.body.rstrip(b"\n") + b"\n")
        try:
            created = not path.exists()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                # A torn line from a crash would glue onto ours: start on a fresh line.
                if not created and os.fstat(fd).st_size and _last_byte(path) != b"\n":
                    os.write(fd, b"\n")
                os.write(fd, b"".join(lines))
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                _fsync_dir(self.directory)
        except OSError as exc:
            raise RetryableError(f"cannot write {path.name}: {exc.strerror}") from None
        self._seen.update(item.identifier for item in batch)
        return SendReport(confirmed=frozenset(item.item_id for item in batch))


def _last_byte(path: Path) -> bytes:
    with path.open("rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def build(section: Mapping[str, Any], ctx: ForwarderContext) -> FileForwarder:
    unknown = set(section) - {"directory", "window"}
    if unknown:
        raise ConfigError(ctx.config_file, f"output.file.{sorted(unknown)[0]}", "unknown key (typo?)")
    directory = section.get("directory", "outbox")
    if not isinstance(directory, str):
        raise ConfigError(ctx.config_file, "output.file.directory", "expected a path string")
    window = section.get("window", 500)
    if not isinstance(window, int) or isinstance(window, bool) or window < 1:
        raise ConfigError(ctx.config_file, "output.file.window", "expected a positive integer")
    path = Path(directory)
    return FileForwarder(path if path.is_absolute() else ctx.state_dir / path, window)
