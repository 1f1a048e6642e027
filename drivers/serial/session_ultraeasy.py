"""Session for LifeScan OneTouch Ultra Easy / Ultra Mini meters (binary protocol).

Link layer in `lifescan_binary`, messages in `onetouch_ultraeasy`. Each request is: our frame, the
meter's acknowledge, the meter's answer, our acknowledge. A corrupt or out-of-sequence answer is kept
via `reject` and the request is retried after restarting the link (the meter still has the record), up
to `retries` times. Garbage between frames is kept via `reject` and skipped.

Incremental: record 0 is the newest; the checkpoint holds the fingerprint (time + value) of the newest
record of the last complete download and reading stops when it is reached, so a re-read asks only for
new records. A download that could not read every record leaves the checkpoint alone; the queue's
idempotency key drops what a later full read repeats.

Options: `port` (required), `baudrate`/`parity`/`stopbits`/`bytesize` (default 9600 8N1),
`timeout_seconds` (default 3), `simulated`, `set_clock` (default true; see session_ultra2).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from typing import ClassVar, TypeVar

import structlog

from drivers.base import DeviceContext
from drivers.errors import DeviceProtocolError
from drivers.serial import onetouch_ultraeasy as msg
from drivers.serial.common import Batcher, GlucoseMeterDriver, fingerprint, newest_checkpoint
from drivers.serial.lifescan_binary import Frame, FrameDecoder, GarbageError, LinkState
from drivers.serial.transport import PortLostError, PortSettings, ReadTimeoutError, SerialPort
from gateway.reading import DeviceIdentity, Reading

__all__ = ["OneTouchUltraEasyDriver"]

log = structlog.get_logger(__name__)
T = TypeVar("T")


class _Link:
    """One open link to the meter: frames over the port, with retries and rejects."""

    def __init__(self, ctx: DeviceContext, port: SerialPort, source: str, retries: int) -> None:
        self.ctx = ctx
        self.port = port
        self.source = source
        self.retries = retries
        self.state = LinkState()
        self.decoder = FrameDecoder()
        self.failures = 0

    async def frame(self) -> Frame:
        while True:
            try:
                frame = self.decoder.next_frame()
            except GarbageError as exc:
                await self.ctx.reject(exc.raw, exc, source=f"{self.source}:garbage")
                continue
            if frame is not None:
                return frame
            self.decoder.receive_data(await self.port.read_some())

    async def connect(self) -> None:
        self.decoder = FrameDecoder()
        self.port.discard_input()
        await self.port.write(self.state.connect())
        ack = await self.frame()
        self.state.check_ack(ack, ack.raw)

    async def _resync(self) -> None:
        """After a bad answer: let the meter finish talking, drop it, restart the link."""
        try:
            while True:
                await self.port.read_some(idle=0.2)
        except ReadTimeoutError:
            pass
        await self.connect()

    async def request(self, message: bytes, parse: Callable[[bytes], T]) -> T:
        for attempt in range(self.retries + 1):
            try:
                await self.port.write(self.state.request(message))
                ack = await self.frame()
                self.state.check_ack(ack, ack.raw)
                answer = await self.frame()
                await self.port.write(self.state.accept_response(answer, answer.raw))
                return parse(answer.message)
            except PortLostError as exc:
                if partial := self.decoder.pending + self.port.take_buffered():
                    await self.ctx.reject(partial, exc, source=f"{self.source}:frame")
                raise
            except (DeviceProtocolError, ReadTimeoutError) as exc:
                self.failures += 1
                raw = exc.raw if isinstance(exc, DeviceProtocolError) else self.decoder.pending + exc.partial
                await self.ctx.reject(raw, exc, source=f"{self.source}:frame")
                if attempt == self.retries:
                    raise
                log.warning("meter_request_retry", driver=self.source, error=type(exc).__name__)
                await self._resync()
        raise AssertionError("unreachable")


class OneTouchUltraEasyDriver(GlucoseMeterDriver):
    name: ClassVar[str] = "onetouch-ultraeasy"
    description: ClassVar[str] = "LifeScan OneTouch Ultra Easy / Ultra Mini glucose meter (binary serial protocol)"
    model: ClassVar[str] = "OneTouch Ultra Easy"
    defaults: ClassVar[PortSettings] = PortSettings(path="", baudrate=msg.BAUDRATE)
    retries: ClassVar[int] = 2

    async def run(self, ctx: DeviceContext) -> None:
        settings = PortSettings.from_options(ctx.options, self.defaults)
        simulated = bool(ctx.options.get("simulated", False))
        async with await SerialPort.open(settings) as port:
            link = _Link(ctx, port, self.name, self.retries)
            await link.connect()
            serial_number = await link.request(msg.READ_SERIAL, msg.parse_serial_number)
            firmware = await link.request(msg.READ_VERSION, msg.parse_version)
            device_now = await link.request(msg.READ_CLOCK, msg.parse_clock)
            device, offset = self.identify(settings.path, serial_number, firmware, device_now, ctx.local_tz)
            since = await ctx.checkpoint(newest_checkpoint(device))
            count = await link.request(msg.read_record(msg.COUNT_RECORD_ID), msg.parse_count)
            batch = Batcher(ctx)
            clean = True
            newest: str | None = None
            try:
                for index in range(count):
                    try:
                        record = await link.request(msg.read_record(index), functools.partial(msg.parse_record, index))
                    except DeviceProtocolError:
                        clean = False  # kept via reject inside `request`; the rest can still be read
                        continue
                    mark = fingerprint(record.device_time, record.value_mg_dl)
                    if index == 0:
                        newest = mark
                    if mark == since:
                        break
                    await batch.add(self._reading(record, device, offset, simulated))
            finally:
                await batch.flush()
            await self.finish(
                ctx, device=device, clean=clean, newest=newest, offset=offset,
                set_clock=lambda now: link.request(msg.write_clock(now), msg.parse_clock),
            )  # fmt: skip
            await port.write(link.state.connect())  # the meter's "disconnect" is the same empty frame
            log.info(
                "meter_download_done",
                driver=self.name,
                stored=count,
                submitted=batch.submitted,
                new=batch.new,
                clean=clean,
                retries=link.failures,
            )

    def _reading(
        self, record: msg.UltraEasyRecord, device: DeviceIdentity, offset: timedelta, simulated: bool
    ) -> Reading:
        return self.glucose(record.value_mg_dl, record.device_time, record.raw, device, offset, simulated)
