"""Session for Bluetooth LE glucose meters (Glucose Service 1.0, 0x1808), records fetched over RACP.

Supported: Glucose Measurement 0x2A18 joined with Measurement Context 0x2A34 by sequence number, Record
Access Control Point 0x2A52 (report all on the first sync, then records >= last committed + 1), Device
Information for identity, Current Time for the clock offset. The meter must be bonded first
(`vitalgate pair ADDRESS`, LE Secure Connections); the link is encrypted with the stored keys on connect.

No loss, no duplicates: the checkpoint `glucose_seq` (highest sequence number committed) advances only
after `ctx.submit` returned, so a disconnect mid-transfer means the next connection asks again from the
last committed record. Control-solution readings and sensor annunciations come through as Status flags.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import ClassVar, Literal

import structlog

from drivers.base import DeviceContext
from drivers.ble.common import BleDriver, BleOptions, BoundedFrames, next_frame, received_now
from drivers.ble.transport import BleSession, BleTimeoutError
from drivers.errors import DeviceProtocolError
from drivers.gatt import glucose, racp, uuids
from gateway.reading import DeviceIdentity, Reading

__all__ = ["CHECKPOINT", "GlucoseDriver", "checkpoint_name"]

log = structlog.get_logger(__name__)

CHECKPOINT = "glucose_seq"
BATCH = 64  # at most this many frames between queue commits during a transfer

Frame = tuple[Literal["measurement", "context", "racp"], bytes]
_SOURCES = {"measurement": "2a18", "context": "2a34", "racp": "2a52"}


def checkpoint_name(identity: DeviceIdentity) -> str:
    """Keyed by the meter itself: a meter replaced under the same [[devices]] entry starts from its own
    first record, not from the old meter's last record number."""
    return f"{CHECKPOINT}:{identity.key}"


GLUCOSE_MAX_QUEUED_FRAMES = 8192


class GlucoseDriver(BleDriver):
    name: ClassVar[str] = "ble-glucose"
    description: ClassVar[str] = "Bluetooth LE glucose meter (Glucose Service 0x1808, RACP record sync, bonded)"

    async def collect(
        self,
        session: BleSession,
        ctx: DeviceContext,
        identity: DeviceIdentity,
        offset: timedelta | None,
        opts: BleOptions,
    ) -> None:
        # Bounded, but above what a meter stores (records + contexts: a few thousand frames of < 20 bytes):
        # a flooding meter cannot grow memory, an honest one loses nothing.
        sink: BoundedFrames[Frame] = BoundedFrames(GLUCOSE_MAX_QUEUED_FRAMES)
        frames = sink.frames
        await session.subscribe(uuids.GLUCOSE_MEASUREMENT, lambda b: sink(("measurement", b)))
        if session.has(uuids.GLUCOSE_MEASUREMENT_CONTEXT):
            await session.subscribe(uuids.GLUCOSE_MEASUREMENT_CONTEXT, lambda b: sink(("context", b)))
        await session.subscribe(uuids.RECORD_ACCESS_CONTROL_POINT, lambda b: sink(("racp", b)))

        sync = racp.RacpSync(racp.parse_checkpoint(await ctx.checkpoint(checkpoint_name(identity))))
        await session.write(uuids.RECORD_ACCESS_CONTROL_POINT, sync.request())
        committed = 0
        fed = 0
        try:
            while not sync.done:
                frame = await next_frame(session, frames, opts.idle_timeout, "glucose record transfer")
                if frame is None:
                    break  # link lost: what was committed stays committed, the rest comes next time
                kind, data = frame
                fed += 1
                try:
                    self._feed(sync, kind, data)
                except DeviceProtocolError as exc:
                    log.warning("glucose_frame_rejected", source=kind, error=type(exc).__name__)
                    await ctx.reject(data, exc, source=f"{self.name}/{_SOURCES[kind]}")
                if sync.done or frames.empty() or fed >= BATCH:
                    committed += await self._commit(ctx, sync, identity, offset, opts.simulated)
                    fed = 0
        except (asyncio.CancelledError, BleTimeoutError):
            await self._abort(session, sync)
            raise
        committed += await self._commit(ctx, sync, identity, offset, opts.simulated)
        if sync.failure is not None:
            log.warning("glucose_racp_failed", code=sync.failure.code.name)
        (log.info if committed else log.debug)(  # nothing new on a poll is routine
            "glucose_sync_done", state=sync.state.value, committed=committed, duplicates=sync.duplicates
        )

    @staticmethod
    async def _abort(session: BleSession, sync: racp.RacpSync) -> None:
        """On shutdown mid-transfer, tell the meter to stop (RACP Abort Operation); best effort, brief.

        Records received but not committed are simply asked for again next time (checkpoint unchanged)."""
        if sync.state is not racp.SyncState.TRANSFERRING or not session.is_connected:
            return
        with contextlib.suppress(Exception):
            await session.write(uuids.RECORD_ACCESS_CONTROL_POINT, sync.abort(), timeout=1.0)
            log.info("glucose_transfer_aborted")

    @staticmethod
    def _feed(sync: racp.RacpSync, kind: str, data: bytes) -> None:
        if kind == "measurement":
            sync.receive_measurement(data)
        elif kind == "context":
            sync.receive_context(data)
        else:
            sync.receive_racp(data)

    async def _commit(
        self,
        ctx: DeviceContext,
        sync: racp.RacpSync,
        identity: DeviceIdentity,
        offset: timedelta | None,
        simulated: bool,
    ) -> int:
        records = sync.take_records()
        if not records:
            return 0
        readings: list[Reading] = []
        now = received_now()
        for record in records:
            try:
                readings.append(glucose.to_reading(record, identity, now, offset, simulated=simulated))
            except DeviceProtocolError as exc:
                await ctx.reject(record.raw, exc, source=f"{self.name}/2a18")
        if readings:
            await ctx.submit(readings)
        # Only now, with the readings durable, may the device's record number move on.
        if sync.checkpoint is not None:
            await ctx.set_checkpoint(checkpoint_name(identity), str(sync.checkpoint))
        return len(readings)
