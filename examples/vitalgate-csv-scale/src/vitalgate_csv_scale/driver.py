"""`csv-scale`: reads the weigh-ins a scale appended to a file since the last session.

Options (`[[devices]]`): `path` (required, absolute: the file the scale writes), `poll_seconds` (read by
the core: how often to look). The checkpoint is the byte offset after the last complete line read, stored
only after the readings before it were committed, so a crash re-reads at most what was not committed
and the queue's idempotency key drops the repeats.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from drivers.base import DeviceContext
from drivers.errors import DeviceProtocolError
from gateway.errors import ConfigError
from gateway.reading import DeviceIdentity, Kind, Measurement, Metric, Reading, Unit
from vitalgate_csv_scale.protocol import WeighIn, parse_line

__all__ = ["CsvScaleDriver"]

_OPTIONS = {"path", "poll_seconds"}
_UNITS = {"kg": Unit.KG, "lb": Unit.LB}


class CsvScaleDriver:
    name: ClassVar[str] = "csv-scale"
    transport: ClassVar[str] = "file"
    description: ClassVar[str] = "Example: a scale that appends one CSV line per weigh-in to a file"

    @classmethod
    def validate(cls, options: Mapping[str, Any], where: str) -> None:
        for key in options:
            if key not in _OPTIONS:
                raise ConfigError("<config>", f"{where}.{key}", "unknown option for driver 'csv-scale'")
        path = options.get("path")
        if not isinstance(path, str) or not Path(path).is_absolute():
            raise ConfigError("<config>", f"{where}.path", "required: the absolute path of the scale's file")

    async def run(self, ctx: DeviceContext) -> None:
        path = Path(str(ctx.options["path"]))
        offset = int(await ctx.checkpoint("offset") or 0)
        data = await asyncio.to_thread(_read_from, path, offset)
        end = data.rfind(b"\n") + 1  # only complete lines; a half-written one waits for the next session
        readings = []
        for line in data[:end].splitlines():
            if not line.strip():
                continue
            try:
                readings.append(_reading(parse_line(line), path, line))
            except DeviceProtocolError as exc:  # kept (encrypted) and counted; the other lines go on
                await ctx.reject(line, exc, source="csv-scale:line")
        if readings:
            await ctx.submit(readings)  # returns once committed ...
        if end:
            await ctx.set_checkpoint("offset", str(offset + end))  # ... so only then move the checkpoint


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read()
    except FileNotFoundError:
        return b""  # nothing weighed yet


def _reading(w: WeighIn, path: Path, raw: bytes) -> Reading:
    return Reading(
        kind=Kind.BODY_WEIGHT,
        measurements=(Measurement(Metric.BODY_WEIGHT, w.weight, _UNITS[w.unit]),),
        device=DeviceIdentity("csv-scale", address=str(path), serial_number=w.serial_number, manufacturer="Example"),
        received_at=datetime.now(UTC),
        device_time=w.time,
        raw=raw,
    )
