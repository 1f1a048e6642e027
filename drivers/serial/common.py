"""What the serial sessions share: options, clock offset, the "newest record" checkpoint, batching.

`SerialDriver` is the base of every serial driver (transport, option checks); `GlucoseMeterDriver` adds
what the two LifeScan meter sessions do around their different protocols: identify the meter and its
clock offset, build the glucose reading, and finish a download (checkpoint, clock setting).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, ClassVar

import structlog

from drivers.base import DeviceContext
from drivers.serial.transport import validate_port_options
from gateway.errors import ConfigError
from gateway.reading import DeviceIdentity, Kind, Measurement, Metric, Reading, Status, Unit

__all__ = [
    "BATCH",
    "NEWEST",
    "Batcher",
    "Clock",
    "GlucoseMeterDriver",
    "SerialDriver",
    "clock_needs_setting",
    "clock_offset",
    "fingerprint",
    "local_now",
    "newest_checkpoint",
    "split_restarts",
    "validate_common",
]

NEWEST = "newest"  # checkpoint name: fingerprint of the newest record imported by a complete download


def newest_checkpoint(device: DeviceIdentity) -> str:
    """Keyed by the meter (its serial number), so a replaced meter on the same port starts afresh."""
    return f"{NEWEST}:{device.key}"


BATCH = 50  # readings per submit: one commit per batch spares the SD card, and a cut dump keeps the rest
COMMON_KEYS = ("simulated", "poll_seconds", "set_clock")  # poll_seconds: the core's pause between downloads

Clock = Callable[[], datetime]

log = structlog.get_logger(__name__)


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


class SerialDriver:
    """Base of the serial drivers: the transport they declare and the options they all accept."""

    transport: ClassVar[str] = "serial"

    @classmethod
    def validate(cls, options: Mapping[str, Any], where: str) -> None:
        validate_port_options(options, where, COMMON_KEYS)
        validate_common(options, where)


class GlucoseMeterDriver(SerialDriver):
    """A LifeScan meter that stores readings and keeps a clock; subclasses speak its protocol in `run`."""

    name: ClassVar[str]
    model: ClassVar[str]
    poll_seconds: ClassVar[float] = 300.0  # download again every 5 minutes unless the config says otherwise

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock = clock  # None: the wall clock in the context's zone

    def now(self, tz: tzinfo | None) -> datetime:
        """The gateway's clock as the meter should show it: in `gateway.timezone` (`ctx.local_tz`)."""
        return self._clock() if self._clock is not None else local_now(tz)

    def identify(
        self, address: str, serial_number: str, firmware: str, device_now: datetime, tz: tzinfo | None = None
    ) -> tuple[DeviceIdentity, timedelta]:
        """The meter's identity and its clock offset, from what it answered when asked."""
        offset = clock_offset(device_now, self.now(tz))
        device = DeviceIdentity(
            driver=self.name,
            address=address,
            serial_number=serial_number,
            manufacturer="LifeScan",
            model=self.model,
            firmware=firmware,
        )
        log.info("meter_identified", driver=self.name, clock_offset_s=offset.total_seconds())
        return device, offset

    def glucose(
        self,
        value_mg_dl: int,
        device_time: datetime,
        raw: bytes,
        device: DeviceIdentity,
        offset: timedelta,
        simulated: bool,
        status: frozenset[Status] = frozenset(),
    ) -> Reading:
        return Reading(
            kind=Kind.BLOOD_GLUCOSE,
            measurements=(Measurement(Metric.GLUCOSE, float(value_mg_dl), Unit.MG_DL),),
            device=device,
            received_at=datetime.now(UTC),
            device_time=device_time,
            clock_offset=offset,
            status=status,
            raw=raw,
            simulated=simulated,
        )

    async def finish(
        self,
        ctx: DeviceContext,
        *,
        device: DeviceIdentity,
        clean: bool,
        newest: str | None,
        offset: timedelta,
        set_clock: Callable[[datetime], Awaitable[object]],
    ) -> None:
        """After a download: advance the checkpoint and set the meter's clock, both only if it was clean.

        Clock setting waits for a clean download so every stored record was committed with the offset it
        was measured under; records made from now on carry the corrected clock.
        """
        if clean and newest is not None:
            await ctx.set_checkpoint(newest_checkpoint(device), newest)
        if clean and clock_needs_setting(ctx.options, offset, ctx.clock_tolerance):
            await set_clock(self.now(ctx.local_tz).replace(microsecond=0))
            log.info("meter_clock_set", driver=self.name, was_off_s=offset.total_seconds())
