"""Session for Tanita body-composition scales that print one result line per measurement.

The scale pushes; we listen. Each line becomes one body-weight reading (weight, plus height and BMI
when the line carries them; body fat and the rest stay in the raw line kept with the reading). A bad
line is kept via `reject` and listening goes on. The scale has no clock we can query, so
`clock_offset` stays unknown; its own date/time (minute resolution) is the device time.

`run` listens until the port goes away (then `PortLostError`; the core reopens it with backoff).
Options: `port` (required), `baudrate`/`parity`/`stopbits`/`bytesize` (default 9600 8N1),
`timeout_seconds` (how long a half-received line may stall, default 3), `simulated`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

import structlog

from drivers.base import DeviceContext
from drivers.errors import DeviceProtocolError, MalformedFrameError
from drivers.serial import tanita as proto
from drivers.serial.common import SerialDriver, split_restarts
from drivers.serial.transport import PortLostError, PortSettings, ReadTimeoutError, SerialPort
from gateway.reading import DeviceIdentity, Kind, Measurement, Metric, Reading, Unit

__all__ = ["TanitaDriver", "to_reading"]

log = structlog.get_logger(__name__)
_MAX_LINE = 8192  # an MC-780 line with all 152 fields is about 1.5 kB
_WAIT_FOR_SCALE = 3600.0  # seconds between "still listening" turns while nobody steps on the scale


def to_reading(m: proto.TanitaMeasurement, address: str, *, simulated: bool = False) -> Reading:
    measurements = [Measurement(Metric.BODY_WEIGHT, m.weight_kg, Unit.KG)]
    if m.height_cm is not None and m.height_cm > 0:
        measurements.append(Measurement(Metric.BODY_HEIGHT, round(m.height_cm / 100.0, 4), Unit.M))
    if m.bmi is not None and m.bmi > 0:
        measurements.append(Measurement(Metric.BMI, m.bmi, Unit.KG_PER_M2))
    return Reading(
        kind=Kind.BODY_WEIGHT,
        measurements=tuple(measurements),
        device=DeviceIdentity(
            driver=TanitaDriver.name,
            address=address,
            serial_number=m.serial_number,
            manufacturer="Tanita",
            model=m.model,
        ),
        received_at=datetime.now(UTC),
        device_time=m.device_time,
        raw=m.raw,
        simulated=simulated,
    )


class TanitaDriver(SerialDriver):
    name: ClassVar[str] = "tanita-bc"
    description: ClassVar[str] = "Tanita body-composition scale, serial result line (weight, height, BMI)"
    defaults: ClassVar[PortSettings] = PortSettings(path="", baudrate=proto.BAUDRATE)

    async def run(self, ctx: DeviceContext) -> None:
        settings = PortSettings.from_options(ctx.options, self.defaults)
        simulated = bool(ctx.options.get("simulated", False))
        pending = b""
        async with await SerialPort.open(settings) as port:
            while True:
                # Wait long for a scale to be used, but only `timeout_seconds` for the rest of a line.
                try:
                    pending += await port.read_some(idle=settings.timeout if pending else _WAIT_FOR_SCALE)
                except ReadTimeoutError as exc:
                    if pending:
                        stalled, pending = pending, b""
                        await ctx.reject(stalled, exc, source=f"{self.name}:line")
                    continue
                except PortLostError as exc:
                    if pending:  # half a line when the cable went: kept for review like any bad input
                        await ctx.reject(pending, exc, source=f"{self.name}:line")
                    raise
                *lines, pending = pending.split(b"\n")
                if len(pending) > _MAX_LINE:
                    error = MalformedFrameError("line longer than any result line", pending)
                    await ctx.reject(pending, error, source=f"{self.name}:line")
                    pending = b""
                for line in lines:
                    for piece in split_restarts(line.rstrip(b"\r"), proto.PREFIX):
                        await self._handle(ctx, piece, settings.path, simulated)

    async def _handle(self, ctx: DeviceContext, line: bytes, path: str, simulated: bool) -> None:
        if not line.strip():
            return
        try:
            measurement = proto.parse_line(line)
        except DeviceProtocolError as exc:
            await ctx.reject(line, exc, source=f"{self.name}:line")
            return
        await ctx.submit([to_reading(measurement, path, simulated=simulated)])
        log.info("scale_measurement_received", driver=self.name)
