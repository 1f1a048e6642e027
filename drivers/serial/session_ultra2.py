"""Session for LifeScan OneTouch Ultra 2 meters (ASCII protocol in `onetouch_ultra2`).

Reads serial number, firmware and clock, then dumps memory (`DMP`). Records are submitted in batches as
they arrive, so a cable pulled mid-dump keeps everything before the cut. Incremental: the checkpoint
holds the fingerprint (time + value) of the newest record of the last *complete, clean* download; the
next dump stops when it reaches that record. A dump that was cut or had a bad line leaves the
checkpoint alone, so the next download reads everything again and the queue's idempotency key drops
the repeats (nothing lost, nothing duplicated).

Options: `port` (required), `baudrate`/`parity`/`stopbits`/`bytesize` (default 9600 8N1),
`timeout_seconds` (silence that counts as no answer, default 3), `simulated` (mark readings as test data),
`set_clock` (default true: after a clean download, set the meter's clock when it is off by more than the
gateway's clock tolerance; the offset recorded with each reading is the one it was measured under).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

import structlog

from drivers.base import DeviceContext
from drivers.errors import DeviceProtocolError, MalformedFrameError
from drivers.serial import onetouch_ultra2 as proto
from drivers.serial.common import Batcher, GlucoseMeterDriver, fingerprint, newest_checkpoint, split_restarts
from drivers.serial.transport import PortLostError, PortSettings, ReadTimeoutError, SerialPort
from gateway.reading import DeviceIdentity, Reading, Status

__all__ = ["OneTouchUltra2Driver", "ParityError"]

log = structlog.get_logger(__name__)
_RECORD_START = b'P "'


class ParityError(DeviceProtocolError):
    """The meter marked a stored record as failing its own memory check ('?' after the value)."""


class OneTouchUltra2Driver(GlucoseMeterDriver):
    name: ClassVar[str] = "onetouch-ultra2"
    description: ClassVar[str] = "LifeScan OneTouch Ultra 2 / Ultra glucose meter (ASCII serial protocol)"
    model: ClassVar[str] = "OneTouch Ultra 2"
    defaults: ClassVar[PortSettings] = PortSettings(path="", baudrate=proto.BAUDRATE)

    async def _ask(self, port: SerialPort, command: str) -> bytes:
        await port.write(proto.encode_command(command))
        return await port.read_until(b"\n")

    async def _reply(self, ctx: DeviceContext, port: SerialPort, command: str, parse: Any) -> Any:
        """One command, one line; a bad line is kept via `reject` and raised (the session cannot go on)."""
        line = await self._ask(port, command)
        try:
            return parse(line)
        except DeviceProtocolError as exc:
            await ctx.reject(line, exc, source=f"{self.name}:{command}")
            raise

    async def run(self, ctx: DeviceContext) -> None:
        settings = PortSettings.from_options(ctx.options, self.defaults)
        simulated = bool(ctx.options.get("simulated", False))
        async with await SerialPort.open(settings) as port:
            port.discard_input()
            serial_number: str = await self._reply(ctx, port, "DM@", proto.parse_serial_number)
            firmware: str = await self._reply(ctx, port, "DM?", proto.parse_version)
            device_now = await self._reply(ctx, port, "DMF", proto.parse_clock)
            device, offset = self.identify(settings.path, serial_number, firmware, device_now, ctx.local_tz)
            since = await ctx.checkpoint(newest_checkpoint(device))
            header = await self._reply(ctx, port, "DMP", proto.parse_dump_header)
            batch = Batcher(ctx)
            clean = True
            newest: str | None = None
            reached_checkpoint = False
            slots = 0  # record lines seen (good, bad or cut short); stray noise takes no slot
            try:
                while slots < header.count:
                    pieces = split_restarts(await port.read_until(b"\n"), _RECORD_START)
                    for position, line in enumerate(pieces):
                        if not line.startswith(b"P "):  # noise between records: kept, takes no slot
                            clean = False
                            error = MalformedFrameError("stray bytes in the dump", line)
                            await ctx.reject(line, error, source=f"{self.name}:record")
                            continue
                        slots += 1
                        if position < len(pieces) - 1:  # a record cut short by the next one starting
                            clean = False
                            error = MalformedFrameError("record line cut short", line)
                            await ctx.reject(line, error, source=f"{self.name}:record")
                            continue
                        record = await self._record(ctx, line)
                        if record is None:
                            clean = False
                            continue
                        mark = fingerprint(record.device_time, record.value_mg_dl)
                        if slots == 1:
                            newest = mark
                        if mark == since:
                            reached_checkpoint = True
                            break
                        await batch.add(self._reading(record, device, offset, simulated))
                    if reached_checkpoint:
                        await self._drain(port, header.count - slots)
                        break
            except ReadTimeoutError as exc:
                clean = False
                if exc.partial:
                    await ctx.reject(exc.partial, exc, source=f"{self.name}:record")
                raise
            except PortLostError as exc:
                if partial := port.take_buffered():  # the line that was on the wire when the cable went
                    await ctx.reject(partial, exc, source=f"{self.name}:record")
                raise
            finally:
                await batch.flush()  # what arrived before a cut is committed before the error propagates
            await self.finish(
                ctx, device=device, clean=clean, newest=newest, offset=offset,
                set_clock=lambda now: self._reply(ctx, port, proto.set_clock_command(now), proto.parse_clock),
            )  # fmt: skip
            log.info(
                "meter_download_done",
                driver=self.name,
                stored=header.count,
                submitted=batch.submitted,
                new=batch.new,
                incremental=reached_checkpoint,
                clean=clean,
            )

    async def _drain(self, port: SerialPort, remaining: int) -> None:
        """Read past the older records the meter still sends after the checkpoint (it cannot be stopped).

        Without this, the next command's reply (`DMT`) would be read from a leftover record line. These
        records are already in the queue, so they are not parsed; a meter that goes quiet early ends it.
        """
        try:
            while remaining > 0:
                pieces = split_restarts(await port.read_until(b"\n"), _RECORD_START)
                remaining -= sum(1 for piece in pieces if piece.startswith(b"P "))
        except ReadTimeoutError:
            pass
        port.discard_input()

    async def _record(self, ctx: DeviceContext, line: bytes) -> proto.Ultra2Record | None:
        try:
            record = proto.parse_record(line)
            if record.parity_error:
                raise ParityError("record failed the meter's parity check", line)
        except DeviceProtocolError as exc:
            await ctx.reject(line, exc, source=f"{self.name}:record")
            return None
        return record

    def _reading(
        self, record: proto.Ultra2Record, device: DeviceIdentity, offset: timedelta, simulated: bool
    ) -> Reading:
        status = frozenset({Status.CONTROL_SOLUTION}) if record.control_solution else frozenset()
        return self.glucose(record.value_mg_dl, record.device_time, record.raw, device, offset, simulated, status)
