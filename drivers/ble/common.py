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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from functools import partial
from typing import Any, ClassVar, Generic, TypeVar, cast

import structlog

from drivers.base import DeviceContext
from drivers.ble.quirks import STANDARD, Quirks, parse_zone, quirks_for, with_clock_zone
from drivers.ble.runtime import get_transport
from drivers.ble.transport import (
    BleError,
    BleNotFoundError,
    BlePairingError,
    BleSession,
    BleTimeoutError,
    BleTransport,
)
from drivers.errors import DeviceProtocolError
from drivers.gatt import battery, device_info, uuids
from drivers.gatt import current_time as gatt_time
from drivers.gatt.date_time import encode_date_time, parse_date_time
from gateway.errors import ConfigError
from gateway.reading import DeviceIdentity, Reading

__all__ = [
    "BleDriver",
    "BleOptions",
    "BoundedFrames",
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

# Bounds on what a device can make us hold (issue 11): frames waiting for the session (a notification flood
# from a spoofed or broken device) and readings taken in one session.
MAX_QUEUED_FRAMES = 512
DEFAULT_MAX_READINGS = 500


class BoundedFrames(Generic[T]):
    """The notification callback's side: queue a frame unless `MAX_QUEUED_FRAMES` are already waiting;
    frames beyond that are dropped and counted (a flood must not grow memory)."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit or MAX_QUEUED_FRAMES
        self.frames: asyncio.Queue[T] = asyncio.Queue(self.limit)
        self.dropped = 0
        self.high_water = 0

    def __call__(self, frame: T) -> None:
        try:
            self.frames.put_nowait(frame)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1:
                log.warning("ble_frame_queue_full", limit=self.limit)
            return
        self.high_water = max(self.high_water, self.frames.qsize())


_ADDRESS = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}(/[PR])?$")


@dataclass(frozen=True, slots=True)
class BleOptions:
    """A BLE device's `[[devices]]` options (after `validate_options`)."""

    address: str
    connect_timeout: float = 30.0  # how long one run waits for the device to advertise
    idle_timeout: float = 5.0  # how long a quiet link stays open before the session ends
    simulated: bool = False  # readings come from a simulator: marked as test data
    max_readings_per_session: int = DEFAULT_MAX_READINGS  # then the session ends (a flooding device)
    allow_unbonded: bool = False  # take readings over a link not encrypted with a bond (devices that cannot bond)

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> BleOptions:
        return cls(
            address=str(options["address"]).upper(),
            connect_timeout=float(options.get("connect_timeout", 30.0)),
            idle_timeout=float(options.get("idle_timeout", 5.0)),
            simulated=bool(options.get("simulated", False)),
            max_readings_per_session=int(options.get("max_readings_per_session", DEFAULT_MAX_READINGS)),
            allow_unbonded=bool(options.get("allow_unbonded", False)),
        )


_KNOWN = {
    "driver",
    "name",
    "poll_seconds",
    "address",
    "connect_timeout",
    "idle_timeout",
    "simulated",
    "max_readings_per_session",
    "allow_unbonded",
}


def validate_options(options: Mapping[str, Any], where: str, extra: frozenset[str] = frozenset()) -> None:
    address = options.get("address")
    if not isinstance(address, str) or not _ADDRESS.match(address):
        raise ConfigError(where, "address", "a Bluetooth address like C1:00:00:00:00:01 is required")
    for key in ("connect_timeout", "idle_timeout"):
        value = options.get(key, 1.0)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
            raise ConfigError(where, key, "must be a number of seconds in (0, 3600]")
    for key in ("simulated", "allow_unbonded"):
        if not isinstance(options.get(key, False), bool):
            raise ConfigError(where, key, "must be true or false")
    cap = options.get("max_readings_per_session", DEFAULT_MAX_READINGS)
    if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= 100_000:
        raise ConfigError(where, "max_readings_per_session", "must be a whole number between 1 and 100000")
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
    log.debug("ble_battery", driver=driver, percent=level)  # every poll: detail, not news
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
    quirks: Quirks = STANDARD,
) -> timedelta | None:
    """Read Current Time; set it when writable and off by more than `tolerance`.

    The gateway's clock is read in `tz` (the context's `local_tz`), the zone the device keeps, unless a
    `now` is given. A device's row in the quirks table may ask for the clock to be written always (some
    send nothing until it is, possibly to Date Time 0x2A08) or never (drivers/ble/quirks.py).

    Returns the offset (device minus gateway) measured BEFORE any correction: the records the device
    already stores were stamped with that clock, so that is the offset their timestamps need.
    None when the device has no Current Time (or its value is unusable).
    """
    if now is None:
        now = partial(_gateway_local_now, tz)
    offset: timedelta | None = None
    target = quirks.time_characteristic
    # Where the clock is read: Current Time when the device has it, else the row's own clock (Date Time).
    source = uuids.CURRENT_TIME if session.has(uuids.CURRENT_TIME) else target
    if session.can_read(source):
        device_now: datetime | None
        try:
            raw = await session.read(source)
            device_now = (
                gatt_time.parse_current_time(raw).time if source == uuids.CURRENT_TIME else parse_date_time(raw)
            )
        except DeviceProtocolError as exc:
            log.warning("ble_current_time_malformed", error=type(exc).__name__)
            device_now = None
        if device_now is not None:
            offset = gatt_time.clock_offset(device_now.replace(microsecond=0), now())
    off = offset is not None and abs(offset) > tolerance
    if (quirks.set_clock == "always" or (quirks.set_clock == "when-off" and off)) and session.can_write(target):
        value = gatt_time.encode_current_time(now()) if target == uuids.CURRENT_TIME else encode_date_time(now())
        try:
            await session.write(target, value)
            log.info("ble_clock_set", offset_s=offset.total_seconds() if offset is not None else None)
        except BleError as exc:  # some devices refuse; the offset still corrects the readings
            log.warning("ble_clock_set_failed", error=type(exc).__name__)
    return offset


class ZonedContext:
    """The session's context for a device whose clock keeps a declared zone (`Quirks.clock_zone`).

    Readings pass through `with_clock_zone` on their way to the queue, so every driver's time stamps are
    read in the device's zone without a branch in the driver; everything else is the core's context.
    """

    def __init__(self, ctx: DeviceContext, zone: tzinfo) -> None:
        self._ctx = ctx
        self.zone = zone

    def __getattr__(self, name: str) -> Any:  # options, checkpoints, report_* hooks: the core's
        return getattr(self._ctx, name)

    @property
    def local_tz(self) -> tzinfo | None:
        return self.zone

    async def submit(self, readings: Sequence[Reading]) -> int:
        return await self._ctx.submit([with_clock_zone(r, self.zone) for r in readings])


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
    max_readings: int = DEFAULT_MAX_READINGS,
    limit: int | None = None,
) -> int:
    """Subscribe to `uuid` and commit every frame until the device disconnects, goes quiet, has sent
    `max_readings` in this session (then the caller disconnects: a flooding device gets no more), or `limit`
    frames were handled (a device known to send its last record only)."""
    sink: BoundedFrames[bytes] = BoundedFrames()
    await session.subscribe(uuid, sink)
    accepted = handled = 0
    while accepted < max_readings:
        try:
            raw = await next_frame(session, sink.frames, idle_timeout, "measurement")
        except BleTimeoutError:
            break  # quiet: the device has nothing more
        if raw is None:
            break
        accepted += await handle_frame(ctx, raw, to_reading, source)
        handled += 1
        if limit is not None and handled >= limit:
            break
    else:
        log.warning("ble_session_reading_cap", source=source, limit=max_readings)
    (log.warning if sink.dropped else log.debug)(
        "ble_frame_queue", source=source, high_water=sink.high_water, dropped=sink.dropped, limit=sink.limit
    )
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
    quirks: Quirks = STANDARD  # this device's known behaviours, looked up once its identity is read

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
            if not opts.allow_unbonded and not await session.bonded_and_encrypted():
                # Anyone can answer at a bound address; a bond (its keys, made by `vitalgate pair`) cannot be
                # spoofed. Nothing is read from this device in this session.
                log.warning("ble_device_not_bonded", driver=self.name)
                raise BlePairingError(
                    "device is not bonded or the link is not encrypted: run `vitalgate pair ADDRESS`, "
                    "or set allow_unbonded = true for a device that cannot bond"
                )
            identity = await read_identity(session, self.name)
            self.quirks, row = quirks_for(identity)
            if row is not None:
                log.info(
                    "ble_device_quirks",
                    driver=self.name,
                    model=identity.model,
                    applied=", ".join(self.quirks.effects()),
                    behaviour=row.behaviour,
                )
            if callable(report := getattr(ctx, "report_quirks", None)):
                report(self.quirks.effects() if row is not None else [])
            if self.quirks.clock_zone:
                # The device's clock keeps this zone: compare, set and read its time stamps in it.
                ctx = cast(DeviceContext, ZonedContext(ctx, parse_zone(self.quirks.clock_zone)))
            if self.quirks.connect_delay:
                await asyncio.sleep(self.quirks.connect_delay)
            offset = await check_clock(session, ctx.clock_tolerance, tz=ctx.local_tz, quirks=self.quirks)
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
