"""What every BLE health-device session does: options, identity, device clock, frame handling.

The session shape (Bluetooth SIG health profiles): wait for the paired device to advertise (home devices
advertise for a few seconds after a measurement), connect, read Device Information for a stable identity,
check the device clock through Current Time, then collect measurements. `BleDriver.run` is that shape;
a driver supplies only the last step (`collect`). Parsing is done here, in the session task, never in
the notification callback (which only enqueues bytes).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from functools import partial
from typing import Any, ClassVar, TypeVar

import structlog

from drivers.base import DeviceContext
from drivers.ble.runtime import get_transport
from drivers.ble.transport import BleError, BleNotFoundError, BleSession, BleTimeoutError, BleTransport
from drivers.errors import DeviceProtocolError
from drivers.gatt import battery, device_info, uuids
from drivers.gatt import current_time as gatt_time
from gateway.errors import ConfigError
from gateway.reading import DeviceIdentity, Reading

__all__ = [
    "BleDriver",
    "BleOptions",
    "FrameSink",
    "check_clock",
    "collect_frames",
    "handle_frame",
    "log_battery",
    "next_frame",
    "read_identity",
    "validate_options",
]

log = structlog.get_logger(__name__)
T = TypeVar("T")

_ADDRESS = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}(/[PR])?$")


@dataclass(frozen=True, slots=True)
class BleOptions:
    """A BLE device's `[[devices]]` options (after `validate_options`)."""

    address: str
    connect_timeout: float = 30.0  # how long one run waits for the device to advertise
    idle_timeout: float = 5.0  # how long a quiet link stays open before the session ends
    simulated: bool = False  # readings come from a simulator: marked as test data

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> BleOptions:
        return cls(
            address=str(options["address"]).upper(),
            connect_timeout=float(options.get("connect_timeout", 30.0)),
            idle_timeout=float(options.get("idle_timeout", 5.0)),
            simulated=bool(options.get("simulated", False)),
        )


_KNOWN = {"driver", "name", "poll_seconds", "address", "connect_timeout", "idle_timeout", "simulated"}


def validate_options(options: Mapping[str, Any], where: str, extra: frozenset[str] = frozenset()) -> None:
    address = options.get("address")
    if not isinstance(address, str) or not _ADDRESS.match(address):
        raise ConfigError(where, "address", "a Bluetooth address like C1:00:00:00:00:01 is required")
    for key in ("connect_timeout", "idle_timeout"):
        value = options.get(key, 1.0)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
            raise ConfigError(where, key, "must be a number of seconds in (0, 3600]")
    if not isinstance(options.get("simulated", False), bool):
        raise ConfigError(where, "simulated", "must be true or false")
    unknown = set(options) - _KNOWN - extra
    if unknown:
        raise ConfigError(where, sorted(unknown)[0], "unknown option for a BLE device")


async def read_identity(session: BleSession, driver: str) -> DeviceIdentity:
    """Device Information 0x180A -> DeviceIdentity; absent characteristics stay None.

    A malformed value is not fatal: that field is left out and the identity falls back to the next
    strongest key (see `DeviceIdentity.key`); the address is always known.
    """
    info: dict[str, str | None] = {}
    for uuid in (*device_info.STRING_FIELDS, uuids.SYSTEM_ID):
        if not session.has(uuid):
            continue
        raw = await session.read(uuid)
        try:
            parsed = device_info.parse_device_information({uuid: raw})
        except DeviceProtocolError as exc:
            log.warning("ble_dis_field_malformed", uuid=uuid[4:8], error=type(exc).__name__)
            continue
        info.update({k: v for k, v in _fields_of(parsed).items() if v is not None})
    merged = device_info.DeviceInformation(**info)
    return device_info.to_identity(merged, driver, session.address.upper())


def _fields_of(info: device_info.DeviceInformation) -> dict[str, str | None]:
    return {name: getattr(info, name) for name in info.__slots__}


async def log_battery(session: BleSession, driver: str) -> int | None:
    """Battery Level 0x180F/0x2A19, logged so an operator sees a device about to go quiet (not PHI)."""
    if not session.has(uuids.BATTERY_LEVEL):
        return None
    try:
        level = battery.parse_battery_level(await session.read(uuids.BATTERY_LEVEL))
    except (DeviceProtocolError, BleError) as exc:
        log.warning("ble_battery_unreadable", driver=driver, error=type(exc).__name__)
        return None
    log.info("ble_battery", driver=driver, percent=level)
    return level


def _gateway_local_now(tz: tzinfo | None = None) -> datetime:
    """The gateway's wall clock in `tz` (None: the system zone), zone-less to compare with a device clock."""
    return datetime.now(tz).replace(tzinfo=None, microsecond=0)


async def check_clock(
    session: BleSession,
    tolerance: timedelta,
    now: Callable[[], datetime] | None = None,
    *,
    tz: tzinfo | None = None,
) -> timedelta | None:
    """Read Current Time; set it when writable and off by more than `tolerance`.

    The gateway's clock is read in `tz` (the context's `local_tz`), the zone the device keeps, unless a
    `now` is given.

    Returns the offset (device minus gateway) measured BEFORE any correction: the records the device
    already stores were stamped with that clock, so that is the offset their timestamps need.
    None when the device has no Current Time (or its value is unusable).
    """
    if not session.has(uuids.CURRENT_TIME):
        return None
    try:
        device_now = gatt_time.parse_current_time(await session.read(uuids.CURRENT_TIME)).time
    except DeviceProtocolError as exc:
        log.warning("ble_current_time_malformed", error=type(exc).__name__)
        return None
    if device_now is None:
        return None
    if now is None:
        now = partial(_gateway_local_now, tz)
    offset = gatt_time.clock_offset(device_now.replace(microsecond=0), now())
    if abs(offset) > tolerance and session.can_write(uuids.CURRENT_TIME):
        try:
            await session.write(uuids.CURRENT_TIME, gatt_time.encode_current_time(now()))
            log.info("ble_clock_set", offset_s=offset.total_seconds())
        except BleError as exc:  # some devices refuse; the offset still corrects the readings
            log.warning("ble_clock_set_failed", error=type(exc).__name__)
    return offset


FrameSink = Callable[[bytes], Reading]


async def handle_frame(ctx: DeviceContext, raw: bytes, to_reading: FrameSink, source: str) -> bool:
    """Parse one frame and commit its reading; a bad frame is rejected (kept) and the session goes on."""
    try:
        reading = to_reading(raw)
    except DeviceProtocolError as exc:
        log.warning("ble_frame_rejected", source=source, error=type(exc).__name__)
        await ctx.reject(raw, exc, source=source)
        return False
    await ctx.submit([reading])
    return True


async def collect_frames(
    session: BleSession,
    ctx: DeviceContext,
    uuid: str,
    to_reading: FrameSink,
    *,
    idle_timeout: float,
    source: str,
) -> int:
    """Subscribe to `uuid` and commit every frame until the device disconnects or goes quiet."""
    frames: asyncio.Queue[bytes] = asyncio.Queue()
    await session.subscribe(uuid, frames.put_nowait)
    accepted = 0
    while True:
        try:
            raw = await next_frame(session, frames, idle_timeout, "measurement")
        except BleTimeoutError:
            break  # quiet: the device has nothing more
        if raw is None:
            break
        accepted += await handle_frame(ctx, raw, to_reading, source)
    return accepted


async def next_frame(session: BleSession, frames: asyncio.Queue[T], idle: float, what: str) -> T | None:
    """The next frame the callbacks queued; None once the link is down and none is left.

    Raises `BleTimeoutError` when the link stays up but nothing arrives for `idle` seconds.
    """
    if not frames.empty():
        return frames.get_nowait()
    if not session.is_connected:
        return None
    getter = asyncio.ensure_future(frames.get())
    down = asyncio.ensure_future(session.wait_disconnected())
    try:
        done, _ = await asyncio.wait({getter, down}, timeout=idle, return_when=asyncio.FIRST_COMPLETED)
    finally:
        down.cancel()
        if not getter.done():
            getter.cancel()
    if getter in done:
        return getter.result()
    if down in done:
        return frames.get_nowait() if not frames.empty() else None
    raise BleTimeoutError(what, idle)


def received_now() -> datetime:
    return datetime.now(UTC)


class BleDriver:
    """Connect when the device advertises, identify it, check its clock, log its battery, `collect`, disconnect."""

    name: ClassVar[str]
    transport: ClassVar[str] = "ble"
    description: ClassVar[str]

    def __init__(self, ble: BleTransport | None = None) -> None:
        self._ble = ble

    @classmethod
    def validate(cls, options: Mapping[str, Any], where: str) -> None:
        validate_options(options, where)

    async def run(self, ctx: DeviceContext) -> None:
        opts = BleOptions.from_mapping(ctx.options)
        ble = self._ble or get_transport()
        try:
            session = await ble.connect(opts.address, timeout=opts.connect_timeout)
        except BleNotFoundError:
            return  # not advertising: nothing measured since last time
        try:
            identity = await read_identity(session, self.name)
            offset = await check_clock(session, ctx.clock_tolerance, tz=ctx.local_tz)
            level = await log_battery(session, self.name)
            # The operator's health view (gateway.health) takes these when the core offers it.
            if callable(report := getattr(ctx, "report_clock", None)):
                report(offset)
            if level is not None and callable(report := getattr(ctx, "report_battery", None)):
                report(level)
            await self.collect(session, ctx, identity, offset, opts)
        finally:
            await session.disconnect()

    async def collect(
        self,
        session: BleSession,
        ctx: DeviceContext,
        identity: DeviceIdentity,
        offset: timedelta | None,
        opts: BleOptions,
    ) -> None:
        """The profile's own part: read the measurements and commit them."""
        raise NotImplementedError
