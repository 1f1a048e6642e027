"""What every BLE health-device session does: options, identity, device clock, frame handling.

The session shape (Bluetooth SIG health profiles): wait for the paired device to advertise (home devices
advertise for a few seconds after a measurement), connect, read Device Information for a stable identity,
check the device clock through Current Time, then collect measurements. Parsing is done here, in the
session task, never in the notification callback (which only enqueues bytes).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from drivers.base import DeviceContext
from drivers.ble.transport import BleError, BleSession
from drivers.errors import DeviceProtocolError, MalformedFrameError
from drivers.gatt import uuids
from drivers.gatt.date_time import encode_date_time, parse_date_time
from gateway.errors import ConfigError
from gateway.reading import DeviceIdentity, Reading

__all__ = [
    "BleOptions",
    "FrameSink",
    "check_clock",
    "collect_frames",
    "handle_frame",
    "read_identity",
    "validate_options",
]

log = structlog.get_logger(__name__)

_ADDRESS = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}(/[PR])?$")

# Device Information characteristic -> DeviceIdentity field (all UTF-8 strings but the System ID).
_DIS_STRINGS: dict[str, str] = {
    uuids.MANUFACTURER_NAME: "manufacturer",
    uuids.MODEL_NUMBER: "model",
    uuids.SERIAL_NUMBER: "serial_number",
    uuids.FIRMWARE_REVISION: "firmware",
}


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


_KNOWN = {"driver", "name", "address", "connect_timeout", "idle_timeout", "simulated", "patient", "users"}


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

    A malformed value is not fatal: the identity falls back to the next strongest key (see
    `DeviceIdentity.key`), and the address is always known.
    """
    fields: dict[str, str | None] = {}
    for uuid, name in _DIS_STRINGS.items():
        if session.has(uuid):
            try:
                fields[name] = _dis_string(await session.read(uuid))
            except DeviceProtocolError as exc:
                log.warning("ble_dis_field_malformed", field=name, error=type(exc).__name__)
    system_id: str | None = None
    if session.has(uuids.SYSTEM_ID):
        try:
            system_id = _system_id(await session.read(uuids.SYSTEM_ID))
        except DeviceProtocolError as exc:
            log.warning("ble_system_id_malformed", error=type(exc).__name__)
    return DeviceIdentity(driver=driver, address=session.address.upper(), system_id=system_id, **fields)


# TODO(ble-parsers): switch to drivers.gatt.device_info / current_time once that branch has them.
def _dis_string(raw: bytes) -> str:
    """DIS strings are UTF-8 (GSS utf8s); some devices pad with NULs."""
    try:
        return raw.rstrip(b"\x00").decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedFrameError("device information string is not UTF-8", raw) from None


def _system_id(raw: bytes) -> str:
    """System ID 0x2A23 (GSS §3.215): uint64 LE, OUI in the top 24 bits -> EUI-64 as 16 hex digits."""
    if len(raw) != 8:
        raise MalformedFrameError("system id: expected 8 bytes", raw)
    return raw[::-1].hex()


def _current_time(raw: bytes) -> datetime | None:
    """Current Time 0x2A2B (GSS §3.62): Date Time, day of week, fractions256, adjust reason."""
    if len(raw) != 10:
        raise MalformedFrameError("current time: expected 10 bytes", raw)
    return parse_date_time(raw[:7], raw)


def _encode_current_time(t: datetime) -> bytes:
    """Exact Time 256 for `t` + adjust reason 0x01 (manual time update)."""
    return encode_date_time(t) + bytes([t.isoweekday(), t.microsecond * 256 // 1_000_000, 0x01])


def _gateway_local_now() -> datetime:
    """The gateway's wall clock as a zone-less local time, comparable with a device clock."""
    return datetime.now().replace(microsecond=0)


async def check_clock(
    session: BleSession, tolerance: timedelta, now: Callable[[], datetime] = _gateway_local_now
) -> timedelta | None:
    """Read Current Time; set it when writable and off by more than `tolerance`.

    Returns the offset (device minus gateway) measured BEFORE any correction: the records the device
    already stores were stamped with that clock, so that is the offset their timestamps need.
    None when the device has no Current Time (or its value is unusable).
    """
    if not session.has(uuids.CURRENT_TIME):
        return None
    try:
        device_now = _current_time(await session.read(uuids.CURRENT_TIME))
    except DeviceProtocolError as exc:
        log.warning("ble_current_time_malformed", error=type(exc).__name__)
        return None
    if device_now is None:
        return None
    offset = device_now - now()
    if abs(offset) > tolerance and session.can_write(uuids.CURRENT_TIME):
        try:
            await session.write(uuids.CURRENT_TIME, _encode_current_time(now()))
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
        if frames.empty() and not session.is_connected:
            break
        getter = asyncio.ensure_future(frames.get())
        down = asyncio.ensure_future(session.wait_disconnected())
        try:
            done, _ = await asyncio.wait(
                {getter, down}, timeout=idle_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            down.cancel()
            if not getter.done():
                getter.cancel()
        if getter in done:
            accepted += await handle_frame(ctx, getter.result(), to_reading, source)
        elif not done:
            break  # quiet: the device has nothing more
    return accepted


def received_now() -> datetime:
    return datetime.now(UTC)
