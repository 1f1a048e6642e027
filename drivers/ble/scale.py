"""Session for Bluetooth LE scales: Weight Scale 0x181D and/or Body Composition 0x181B.

Supported: Weight Measurement 0x2A9D and Body Composition Measurement 0x2A9C (both indicated; the latter
possibly split in two packets, BCS 1.0 §4.2.1, joined by `BodyCompositionAssembler`), multi-user (the
scale's user id becomes the reading's user slot), Device Information, Current Time.

One weigh-in, one weight: a scale with both services sends the weight in both characteristics. The weight
then comes from Weight Measurement only, and the body composition reading carries body fat, muscle,
water, impedance and basal metabolism. A scale with only Body Composition gives its weight (and height)
as the BODY_WEIGHT reading. Durability: as for cuffs (drivers/ble/indicating.py).
"""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar, Literal

import structlog

from drivers.base import DeviceContext
from drivers.ble.common import BleOptions, BoundedFrames, handle_frame, next_frame, received_now
from drivers.ble.indicating import IndicatingDriver, _weight
from drivers.ble.transport import BleSession, BleTimeoutError
from drivers.errors import DeviceProtocolError
from drivers.gatt import body_composition as bcs
from drivers.gatt import uuids
from gateway.reading import DeviceIdentity, Reading

__all__ = ["ScaleDriver", "composition_readings"]

log = structlog.get_logger(__name__)

Frame = tuple[Literal["weight", "body"], bytes]


def composition_readings(
    m: bcs.BodyCompositionMeasurement,
    identity: DeviceIdentity,
    offset: timedelta | None,
    raw: bytes,
    *,
    weight_here: bool,
    simulated: bool,
) -> list[Reading]:
    """The readings one complete body composition measurement gives (see the module docstring)."""
    now = received_now()
    out = [bcs.composition_reading(m, identity, now, offset, raw, simulated=simulated)]
    if weight_here and m.weight is not None:
        out.append(bcs.to_reading(m, identity, now, offset, raw, simulated=simulated))
    return out


class ScaleDriver(IndicatingDriver):
    name: ClassVar[str] = "ble-weight-scale"
    description: ClassVar[str] = "Bluetooth LE scale (Weight Scale 0x181D, Body Composition 0x181B), multi-user"
    service = uuids.WEIGHT_SCALE_SERVICE
    measurement = uuids.WEIGHT_MEASUREMENT

    async def collect(
        self,
        session: BleSession,
        ctx: DeviceContext,
        identity: DeviceIdentity,
        offset: timedelta | None,
        opts: BleOptions,
    ) -> None:
        sink: BoundedFrames[Frame] = BoundedFrames()  # a flooding scale cannot grow memory
        has_weight = session.has(uuids.WEIGHT_MEASUREMENT)
        if has_weight:
            await session.subscribe(uuids.WEIGHT_MEASUREMENT, lambda b: sink(("weight", b)))
        if session.has(uuids.BODY_COMPOSITION_MEASUREMENT):
            await session.subscribe(uuids.BODY_COMPOSITION_MEASUREMENT, lambda b: sink(("body", b)))
        assembler = bcs.BodyCompositionAssembler()
        half: bytes = b""  # raw bytes of the first packet of a split measurement
        source_body = f"{self.name}/2a9c"
        count = 0

        def weight(raw: bytes) -> Reading:
            return _weight(raw, identity, received_now(), offset, opts.simulated)

        while True:
            try:
                frame = await next_frame(session, sink.frames, opts.idle_timeout, "measurement")
            except BleTimeoutError:
                break
            if frame is None:
                break
            kind, raw = frame
            if kind == "weight":
                count += await handle_frame(ctx, raw, weight, f"{self.name}/2a9d")
                continue
            try:
                packet = bcs.parse_body_composition(raw)
                if assembler.pending and not packet.multiple_packet:
                    # The pair was broken: keep its first half for review, then take this one on its own.
                    await ctx.reject(
                        half, DeviceProtocolError("second packet of a pair lost", half), source=source_body
                    )
                    assembler.reset()
                whole = assembler.add(packet)
                if whole is None:
                    half = raw
                    continue
                data = half + raw if packet.multiple_packet else raw
                half = b""
                readings = composition_readings(
                    whole, identity, offset, data, weight_here=not has_weight, simulated=opts.simulated
                )
            except DeviceProtocolError as exc:
                log.warning("ble_frame_rejected", source=source_body, error=type(exc).__name__)
                await ctx.reject(raw, exc, source=source_body)
                continue
            await ctx.submit(readings)
            count += len(readings)
        if assembler.pending:
            await ctx.reject(half, DeviceProtocolError("second packet never came", half), source=source_body)
        log.info("ble_session_done", driver=self.name, readings=count)
