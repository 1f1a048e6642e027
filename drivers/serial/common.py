"""What the serial sessions share: options, clock offset, the "newest record" checkpoint, batching."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, tzinfo
from typing import Any

from drivers.base import DeviceContext
from gateway.errors import ConfigError
from gateway.reading import Reading

__all__ = [
    "BATCH",
    "NEWEST",
    "Batcher",
    "Clock",
    "clock_needs_setting",
    "clock_offset",
    "fingerprint",
    "local_now",
    "split_restarts",
    "validate_common",
]

NEWEST = "newest"  # checkpoint name: fingerprint of the newest record imported by a complete download
BATCH = 50  # readings per submit: one commit per batch spares the SD card, and a cut dump keeps the rest
COMMON_KEYS = ("simulated", "poll_seconds", "set_clock")  # poll_seconds: the core's pause between downloads

Clock = Callable[[], datetime]


def local_now(tz: tzinfo | None = None) -> datetime:
    """The gateway's wall clock, naive, in the zone the meters are set to (`tz`; None: the system zone)."""
    return datetime.now(tz).astimezone(tz).replace(tzinfo=None)


def clock_offset(device_now: datetime, gateway_now: datetime) -> timedelta:
    """Device clock minus gateway clock, to whole seconds (meters count seconds at best)."""
    return timedelta(seconds=round((device_now - gateway_now).total_seconds()))


def fingerprint(device_time: datetime, value: int | float) -> str:
    """Identifies one stored record without a record number: meters keep no two readings in one second."""
    return f"{device_time.isoformat()}|{value}"


def clock_needs_setting(options: Mapping[str, Any], offset: timedelta, tolerance: timedelta) -> bool:
    """Set a meter's clock only when allowed (`set_clock`, default true) and off by more than the tolerance."""
    return bool(options.get("set_clock", True)) and abs(offset) > tolerance


def validate_common(options: Mapping[str, Any], where: str) -> None:
    simulated = options.get("simulated", False)
    if not isinstance(simulated, bool):
        raise ConfigError("", f"{where}.simulated", "must be true or false")
    if not isinstance(options.get("set_clock", True), bool):
        raise ConfigError("", f"{where}.set_clock", "must be true or false")
    poll = options.get("poll_seconds", 1.0)
    if isinstance(poll, bool) or not isinstance(poll, int | float) or not 0 <= poll <= 86400:
        raise ConfigError("", f"{where}.poll_seconds", "must be seconds between 0 and 86400")


class Batcher:
    """Collects readings and submits them in batches; `submitted` counts what is durably committed."""

    def __init__(self, ctx: DeviceContext, size: int = BATCH) -> None:
        self._ctx = ctx
        self._size = size
        self._pending: list[Reading] = []
        self.submitted = 0
        self.new = 0

    async def add(self, reading: Reading) -> None:
        self._pending.append(reading)
        if len(self._pending) >= self._size:
            await self.flush()

    async def flush(self) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            self.new += await self._ctx.submit(batch)
            self.submitted += len(batch)


def split_restarts(line: bytes, marker: bytes) -> list[bytes]:
    """A line cut short and followed at once by the next one: split where `marker` starts a new line."""
    pieces = []
    start = 0
    while (cut := line.find(marker, start + 1)) > 0:
        pieces.append(line[start:cut])
        start = cut
    pieces.append(line[start:])
    return pieces
