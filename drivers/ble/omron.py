"""Session for Omron cuffs that keep their records behind Omron's own BLE protocol (drivers/omron).

Supported models (omblepy's tested ones): HEM-7322T (M700 Intelli IT), HEM-7361T (M500/M7 Intelli IT),
HEM-7600T (Evolv), HEM-7530T (Complete; no unread counter: every sync reads the whole memory and the
queue drops what it already has). Expected path: the cuff bonded once in its pairing mode with
`vitalgate pair ADDRESS --omron-model MODEL` (which also stores the 16-byte pairing key), then
`[[devices]] driver = "omron-ble", model = "HEM-7322T", address = ...`.

One sync: unlock with the pairing key, start the transmission, read the settings' per-user "last written
slot" and "unread" counters, read each user's new records from the ring buffer (by our stored slot when
we have one, else the whole memory), commit them, store the slot, and only then write the unread
counters back to "nothing new" (`reset_unread`, default true) and end the transmission. A crash before
the commit leaves the cuff's counters as they were: the next sync reads the same records again, and
their identifiers (device time + values) keep them from being queued twice.

Clock (HEM-7322T, 7361T, 7600T; omblepy cannot set the HEM-7530T's): the settings' time-sync block is read
before the records, so their readings carry the offset of the clock that stamped them (and the operator
sees it, as for Current Time devices); when it is off by more than `clock_tolerance_seconds` (or holds no
valid time) it is set to the gateway's time (`set_clock`, default true) LAST, after the records are
committed and the counters written: a refused or failed clock write costs nothing but a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

import structlog

from drivers.base import DeviceContext
from drivers.ble.common import BleDriver, BleOptions, BoundedFrames, next_frame, received_now, validate_options
from drivers.ble.transport import BleSession, BleTimeoutError
from drivers.errors import ChecksumError, DeviceProtocolError, DriverError, MalformedFrameError
from drivers.gatt import current_time as gatt_time
from drivers.omron import protocol as om
from gateway.errors import ConfigError
from gateway.reading import DeviceIdentity, Reading

__all__ = ["DEFAULT_KEY", "OmronDriver", "program_key", "slot_checkpoint"]

log = structlog.get_logger(__name__)

#: The key VitalGate programs when none is configured (any 16 bytes do; it only has to match the cuff's).
DEFAULT_KEY = bytes.fromhex("5669746c47617465204f6d726f6e2131")
_HEX_KEY = re.compile(r"^[0-9a-fA-F]{32}$")
_EXTRA = frozenset({"model", "pairing_key", "reset_unread", "set_clock"})
Event = tuple[Literal["rx", "unlock"], int, bytes]
Reject = Callable[[bytes, Exception], Awaitable[None]]


class OmronKeyError(DeviceProtocolError):
    """The cuff refused our pairing key (paired with another gateway or app since)."""


def slot_checkpoint(identity: DeviceIdentity, user: int) -> str:
    return f"omron_slot:{identity.key}:{user}"


def key_of(options: Mapping[str, Any]) -> bytes:
    text = options.get("pairing_key")
    return DEFAULT_KEY if text is None else bytes.fromhex(str(text))


class _Link:
    """Request/response over the four channels of one connected cuff."""

    RETRIES = 3  # a corrupt answer (bad XOR) is kept for review and the command sent again

    def __init__(self, session: BleSession, timeout: float, reject: Reject | None = None) -> None:
        self.session = session
        self.timeout = timeout
        self.sink: BoundedFrames[Event] = BoundedFrames()  # answers to our own requests; a flood is dropped
        self.events = self.sink.frames
        self.rx = om.RxAssembler()
        self.reject = reject

    async def subscribe(self) -> None:
        for i, uuid in enumerate(om.RX_CHANNELS):
            await self.session.subscribe(uuid, self._handler(i))
        await self.session.subscribe(om.UNLOCK, lambda b: self.sink(("unlock", 0, b)))

    def _handler(self, index: int) -> Callable[[bytes], None]:
        return lambda b: self.sink(("rx", index, b))

    async def _next(self, kind: str) -> bytes | om.Response:
        while True:
            event = await next_frame(self.session, self.events, self.timeout, f"omron {kind}")
            if event is None:
                raise BleTimeoutError(f"omron {kind} (link lost)", self.timeout)
            channel, index, data = event
            if channel == "unlock" and kind == "unlock":
                return data
            if channel == "rx" and kind != "unlock":
                response = self.rx.feed(index, data)
                if response is not None:
                    return response

    async def unlock_channel(self, request: bytes) -> bytes:
        await self.session.write(om.UNLOCK, request)
        answer = await self._next("unlock")
        assert isinstance(answer, bytes)
        return answer

    async def transact(self, command: bytes, expect: bytes) -> om.Response:
        for attempt in range(self.RETRIES + 1):
            for channel, piece in enumerate(om.pieces(command)):
                await self.session.write(om.TX_CHANNELS[channel], piece)
            try:
                answer = await self._next("response")
                break
            except (ChecksumError, MalformedFrameError) as exc:
                if self.reject is not None:
                    await self.reject(exc.raw, exc)
                if attempt == self.RETRIES:
                    raise
        response = answer
        assert isinstance(response, om.Response)
        if response.kind != expect:
            raise DeviceProtocolError(
                f"omron: answer {response.kind.hex()} to a {command[1:3].hex()} command", response.raw
            )
        return response

    async def read(self, address: int, size: int, block: int) -> bytes:
        out = b""
        while size > 0:
            n = min(size, block)
            response = await self.transact(om.read_command(address, n), om.R_READ)
            if response.address != address or len(response.data) != n:
                raise DeviceProtocolError("omron: read answered for another address or size", response.raw)
            out += response.data
            address, size = address + n, size - n
        return out


async def program_key(session: BleSession, key: bytes = DEFAULT_KEY, *, wait: float = 10.0) -> None:
    """Store our pairing key in a cuff that is in pairing mode (-P- blinking); `vitalgate pair --omron-model`."""
    link = _Link(session, wait)
    await link.subscribe()
    for _attempt in range(10):  # the cuff answers only once its BLE bonding has finished
        answer = await link.unlock_channel(om.PROGRAM_MODE_REQUEST)
        if answer[:2] == b"\x82\x00":
            break
        await asyncio.sleep(1.0)
    else:
        raise OmronKeyError("omron: the cuff did not enter key programming (is it in pairing mode?)")
    if (await link.unlock_channel(om.program_key_request(key)))[:2] != b"\x80\x00":
        raise OmronKeyError("omron: the cuff did not store the pairing key")
    await link.transact(om.START, om.R_START)  # omblepy: a first start/end makes a fresh pairing stick
    await link.transact(om.END, om.R_END)


class OmronDriver(BleDriver):
    name: ClassVar[str] = "omron-ble"
    description: ClassVar[str] = "Omron blood pressure monitor, Omron's own BLE protocol (HEM-7322T/7361T/7600T/7530T)"

    @classmethod
    def validate(cls, options: Mapping[str, Any], where: str) -> None:
        validate_options(options, where, _EXTRA)
        if options.get("model") not in om.MODELS:
            raise ConfigError(where, "model", f"must be one of {', '.join(sorted(om.MODELS))}")
        key = options.get("pairing_key")
        if key is not None and not (isinstance(key, str) and _HEX_KEY.match(key)):
            raise ConfigError(where, "pairing_key", "must be 32 hex digits (16 bytes)")
        for flag in ("reset_unread", "set_clock"):
            if not isinstance(options.get(flag, True), bool):
                raise ConfigError(where, flag, "must be true or false")

    async def collect(
        self,
        session: BleSession,
        ctx: DeviceContext,
        identity: DeviceIdentity,
        offset: timedelta | None,
        opts: BleOptions,
    ) -> None:
        model = om.MODELS[str(ctx.options["model"])]
        if not session.has(om.UNLOCK):
            log.warning("omron_service_missing", model=model.name)
            return

        async def reject(raw: bytes, exc: Exception) -> None:
            log.warning("omron_answer_rejected", error=type(exc).__name__)
            await ctx.reject(raw, exc, source=f"{self.name}/answer")

        link = _Link(session, max(opts.idle_timeout, 5.0), reject)
        await link.subscribe()
        if (await link.unlock_channel(om.unlock_request(key_of(ctx.options))))[:2] != b"\x81\x00":
            err = OmronKeyError("omron: pairing key refused")
            log.error("omron_key_refused", model=model.name, action="pair the cuff again: vitalgate pair --omron-model")
            await ctx.reject(b"", err, source=f"{self.name}/unlock")
            return
        await link.transact(om.START, om.R_START)
        try:
            await self._sync(link, ctx, model, identity, offset, opts)
        finally:
            with contextlib.suppress(Exception):
                end = await link.transact(om.END, om.R_END)
                if end.data[:1] != b"\x00":
                    log.warning("omron_end_status", status=end.data[:1].hex())

    async def _sync(
        self,
        link: _Link,
        ctx: DeviceContext,
        model: om.OmronModel,
        identity: DeviceIdentity,
        offset: timedelta | None,
        opts: BleOptions,
    ) -> None:
        clock = await self._read_clock(link, ctx, model)
        if clock is not None and offset is None and clock[1] is not None:
            offset = clock[1]  # no Current Time service: the cuff's own clock gives the offset
            if callable(report := getattr(ctx, "report_clock", None)):
                report(offset)
        block: bytes | None = None
        state: list[tuple[int, int]] | None = None
        if model.unread is not None:
            lo, hi = model.unread
            block = await link.read(model.settings_read + lo, hi - lo, model.block)
            state = om.unread_state(model, block)
        committed = 0
        for user in range(len(model.users)):
            stored = await ctx.checkpoint(slot_checkpoint(identity, user + 1))
            if state is None:
                plan = [(model.users[user], model.slots[user] * model.record_size)]  # no index: all of it
            else:
                last = state[user][0]
                count = model.slots[user] if stored is None else (last - int(stored)) % model.slots[user]
                plan = om.read_plan(model, user, count, last)
            data = b"".join([await link.read(address, size, model.block) for address, size in plan])
            readings: list[Reading] = []
            now = received_now()
            for i in range(0, len(data), model.record_size):
                raw = data[i : i + model.record_size]
                try:
                    record = om.parse_record(model, raw)
                except DeviceProtocolError as exc:
                    await ctx.reject(raw, exc, source=f"{self.name}/record")
                    continue
                if record is not None:
                    readings.append(
                        om.to_reading(record, identity, now, user + 1, offset, raw, simulated=opts.simulated)
                    )
            if readings:
                await ctx.submit(readings)
                committed += len(readings)
            if state is not None:
                # Only now, with the user's records durable, may our index and (below) the cuff's counter move.
                await ctx.set_checkpoint(slot_checkpoint(identity, user + 1), str(state[user][0]))
        reset = bool(ctx.options.get("reset_unread", True))
        if reset and block is not None and model.unread is not None and any(n for _, n in state or ()):
            address = model.settings_write + model.unread[0]
            answer = await link.transact(om.write_command(address, om.reset_unread(model, block)), om.R_WRITE)
            if answer.address != address:
                raise DeviceProtocolError("omron: counter write answered for another address", answer.raw)
        log.info("omron_sync_done", model=model.name, committed=committed)
        if clock is not None and bool(ctx.options.get("set_clock", True)):
            await self._set_clock(link, ctx, model, *clock)

    async def _read_clock(
        self, link: _Link, ctx: DeviceContext, model: om.OmronModel
    ) -> tuple[bytes, timedelta | None] | None:
        """(the time-sync block, device minus gateway) before anything else; None when there is no clock."""
        if model.clock is None:
            return None
        lo, hi = model.clock
        try:
            block = await link.read(model.settings_read + lo, hi - lo, model.block)
        except DeviceProtocolError as exc:  # the records matter more: go on without the offset
            log.warning("omron_clock_unreadable", model=model.name, error=type(exc).__name__)
            return None
        device_now = om.parse_clock(model, block)
        if device_now is None:
            log.warning(
                "omron_clock_invalid",
                model=model.name,
                action="readings keep the cuff's time uncorrected; set_clock (default true) sets it after the sync",
            )
            return block, None
        return block, gatt_time.clock_offset(device_now, _local_now(ctx))

    async def _set_clock(
        self, link: _Link, ctx: DeviceContext, model: om.OmronModel, block: bytes, offset: timedelta | None
    ) -> None:
        """Write the gateway's time into the cuff's clock when it is off (or invalid): after the commit."""
        tolerance = ctx.clock_tolerance
        if tolerance == timedelta.max:  # the gateway's own clock is implausible: never set from it
            return
        if offset is not None and abs(offset) <= tolerance:
            return
        assert model.clock is not None
        address = model.settings_write + model.clock[0]
        try:
            data = om.encode_clock(model, block, _local_now(ctx))
            answer = await link.transact(om.write_command(address, data), om.R_WRITE)
            if answer.address != address:
                raise DeviceProtocolError("omron: clock write answered for another address", answer.raw)
        except (DriverError, OSError) as exc:  # the records are committed already; only the clock stays off
            log.warning(
                "omron_clock_set_failed",
                model=model.name,
                error=type(exc).__name__,
                action="set the cuff's clock by hand if it stays off; readings are corrected by the offset",
            )
            return
        log.info("omron_clock_set", model=model.name, offset_s=offset.total_seconds() if offset is not None else None)


def _local_now(ctx: DeviceContext) -> datetime:
    """The gateway's wall clock in the zone the cuff keeps, zone-less, to the second."""
    return datetime.now(ctx.local_tz).replace(tzinfo=None, microsecond=0)
