"""The daemon's health task: probe the queue, gather facts, evaluate alarms, publish the model.

One task, every few seconds: the probe uses its own read-only connection (two cheap aggregate queries), so
neither the queue's writer nor its API grows for the sake of monitoring. Publishing means the snapshot file
for other processes and systemd's STATUS= line; metrics and the console read the model in process.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiosqlite
import structlog

from gateway.alarms import AlarmBoard
from gateway.health import snapshot
from gateway.health.model import HealthModel
from gateway.health.rules import Facts, Thresholds, evaluate
from gateway.queue import State
from gateway.systemd import Notifier

__all__ = ["HealthMonitor", "certificate_expiries", "describe_target"]

log = structlog.get_logger(__name__)

PROBE_EVERY = 2.0
FACTS_EVERY = 3600.0


def describe_target(forwarder: str, options: Mapping[str, Any]) -> str:
    """Where readings go, in words with no secrets (user info is dropped from URLs)."""
    if forwarder == "mqtt":
        tls = options.get("tls", True)
        port = options.get("port", 8883 if tls else 1883)
        return f"{'mqtts' if tls else 'mqtt'}://{options.get('host', '?')}:{port}"
    if forwarder == "https":
        url = urlsplit(str(options.get("base_url", "")))
        return f"{url.scheme}://{url.hostname or '?'}{f':{url.port}' if url.port else ''}{url.path}"
    if forwarder == "file":
        return f"file:{options.get('directory', 'outbox')}"
    return forwarder


_CERT_KEYS = ("ca_file", "client_cert", "client_cert_file", "token_ca_file")


def certificate_expiries(
    section: str, options: Mapping[str, Any], extra: Mapping[str, Path] | None = None
) -> dict[str, float]:
    """not-after (epoch) of every configured certificate file, by config key; unreadable ones are skipped
    (the forwarder reports those itself)."""
    from cryptography import x509

    from gateway.secrets import resolve_secret_path

    files: dict[str, Path] = {}
    for key in _CERT_KEYS:
        value = options.get(key)
        if isinstance(value, str) and value not in ("", "system"):
            with contextlib.suppress(Exception):
                files[f"{section}.{key}"] = resolve_secret_path(value)
    files.update(extra or {})
    out: dict[str, float] = {}
    for label, path in files.items():
        with contextlib.suppress(OSError, ValueError):
            # The first certificate of a file is the leaf (client) or the first anchor (CA bundle).
            out[label] = x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc.timestamp()
    return out


class HealthMonitor:
    def __init__(
        self,
        model: HealthModel,
        board: AlarmBoard,
        *,
        queue_path: Path,
        state_dir: Path,
        thresholds: Thresholds,
        key_file: Path | None = None,
        credentials: Mapping[str, float] | None = None,
        notifier: Notifier | None = None,
        refresh: Callable[[], None] | None = None,
    ) -> None:
        self.model = model
        self.board = board
        self.queue_path = queue_path
        self.state_dir = state_dir
        self.thresholds = thresholds
        self.key_file = key_file
        self.credentials = dict(credentials or {})
        self.notifier = notifier
        self.refresh = refresh  # the daemon's own updates to the model before each evaluation
        self.snapshot_path = state_dir / snapshot.SNAPSHOT_NAME
        self._db: aiosqlite.Connection | None = None
        self._status = ""
        self._written = 0.0

    async def probe(self) -> None:
        """Queue counts, oldest pending row and kept rejects, via a read-only connection of our own."""
        if self._db is None:
            self._db = await aiosqlite.connect(f"file:{self.queue_path}?mode=ro", uri=True)
            await self._db.execute("PRAGMA busy_timeout = 2000")
        counts = dict.fromkeys((s.name.lower() for s in State), 0)
        async with self._db.execute("SELECT state, count(*), min(created_at) FROM readings GROUP BY state") as cur:
            rows = await cur.fetchall()
        oldest = None
        for state, n, first in rows:
            counts[State(state).name.lower()] = n
            if state == State.PENDING:
                oldest = first
        async with self._db.execute("SELECT count(*) FROM rejects") as cur:
            row = await cur.fetchone()
        self.model.queue_probed(counts, oldest, int(row[0]) if row else 0)
        with contextlib.suppress(OSError):
            usage = shutil.disk_usage(self.queue_path.parent)
            self.model.disk_free_fraction = usage.free / usage.total if usage.total else None

    def facts(self) -> Facts:
        age = None
        if self.key_file is not None:
            with contextlib.suppress(OSError):
                age = (time.time() - self.key_file.stat().st_mtime) / 86400
        return Facts(key_age_days=age, credentials=self.credentials)

    def publish(self, *, force: bool = False) -> None:
        now = time.monotonic()
        line = self.model.status_line()
        # Periodically, and soon after what STATUS= shows changed (at most once a second).
        if force or now - self._written >= snapshot.WRITE_EVERY or (line != self._status and now - self._written >= 1):
            snapshot.write(self.snapshot_path, self.model.as_dict())
            self._written = now
        if (force or line != self._status) and self.notifier is not None:
            self.notifier.status(line)
        self._status = line

    async def step(self, facts: Facts) -> None:
        try:
            await self.probe()
        except Exception as exc:  # a locked or damaged file must not stop the daemon; the writer will tell
            log.warning("health_probe_failed", error=type(exc).__name__)
        if self.refresh is not None:
            self.refresh()
        evaluate(self.model, self.board, self.thresholds, facts)
        self.publish()

    async def run(self) -> None:
        facts, facts_at = self.facts(), time.monotonic()
        try:
            while True:
                if time.monotonic() - facts_at > FACTS_EVERY:
                    facts, facts_at = self.facts(), time.monotonic()
                await self.step(facts)
                await asyncio.sleep(PROBE_EVERY)
        finally:
            if self._db is not None:
                await self._db.close()
