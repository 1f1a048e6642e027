"""Session for Bluetooth LE pulse oximeters (Pulse Oximeter Service 1.0, 0x1822).

Supported: PLX Spot-Check Measurement 0x2A5E (indicated; each one a reading), PLX Continuous Measurement
0x2A5F (notified about once a second; sampled: one reading per `continuous_seconds` and any sample whose
SpO2 or pulse moved by `continuous_spo2_change` / `continuous_pulse_change`), PLX Features 0x2A60, and
stored spot-checks through the Record Access Control Point 0x2A52 when the oximeter has one (report all
records; see drivers/gatt/plx_records.py for why the checkpoint is a time stamp). Device Information and
Current Time as for every BLE device. Expected path: the address in `[[devices]]`; bond first
(`vitalgate pair`) when the oximeter requires it.

No loss, no duplicates: stored records are committed before the checkpoint (newest time stamp) moves,
and with `delete_after_sync = true` the device's records are deleted only after the transfer completed and
every record was committed. Continuous samples with no usable value (finger out: "measurement
unavailable", NaN) are counted, not kept as rejects; malformed frames are rejected and kept.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, ClassVar, Literal

import structlog

from drivers.base import DeviceContext
from drivers.ble.common import BleDriver, BleOptions, BoundedFrames, next_frame, received_now, validate_options
from drivers.ble.sampling import ContinuousSampler
from drivers.ble.transport import BleError, BleSession, BleTimeoutError
from drivers.errors import DeviceProtocolError
from drivers.gatt import plx, uuids
from drivers.gatt.plx_records import PlxRecordSync, PlxSyncState, parse_time_checkpoint
from gateway.errors import ConfigError
from gateway.reading import DeviceIdentity, Metric, Reading

__all__ = ["CHECKPOINT", "OPTIONS", "PulseOximeterDriver", "checkpoint_name"]

log = structlog.get_logger(__name__)

MAX_QUEUED_RECORD_FRAMES = 8192  # as drivers.ble.glucose: a full memory of stored spot-checks

CHECKPOINT = "plx_time"
BATCH = 64
Frame = tuple[Literal["spot", "continuous", "racp"], bytes]
_SOURCES = {"spot": "2a5e", "continuous": "2a5f", "racp": "2a52"}

#: option -> (default, lowest allowed, highest allowed); booleans separately.
OPTIONS: dict[str, tuple[float, float, float]] = {
    "continuous_seconds": (60.0, 0.0, 86400.0),  # 0: do not store continuous samples at all
    "continuous_spo2_change": (3.0, 0.1, 100.0),
    "continuous_pulse_change": (10.0, 0.1, 300.0),
}


def checkpoint_name(identity: DeviceIdentity) -> str:
    return f"{CHECKPOINT}:{identity.key}"


async def _stop_stream(session: BleSession) -> None:
    """Turn the continuous notifications off before the gateway hangs up.

    A worn oximeter streams about once a second; hanging up mid-stream leaves a sample in flight towards a
    link that is gone (Bumble's controller logs it as `!!! no connection for`). Once the device confirmed the
    Client Characteristic Configuration write it sends no more, so the disconnect that follows is clean.
    """
    if not session.is_connected:
        return
    try:
        await session.unsubscribe(uuids.PLX_CONTINUOUS_MEASUREMENT)
    except BleError as exc:  # the device left meanwhile, or refused: the disconnect follows anyway
        log.debug("plx_stream_stop_failed", error=type(exc).__name__)


class PulseOximeterDriver(BleDriver):
    name: ClassVar[str] = "ble-pulse-oximeter"
    description: ClassVar[str] = "Bluetooth LE pulse oximeter (Pulse Oximeter Service 0x1822, spot-check + sampled)"

    @classmethod
    def validate(cls, options: Mapping[str, Any], where: str) -> None:
        validate_options(options, where, frozenset({*OPTIONS, "delete_after_sync"}))
        for key, (_default, low, high) in OPTIONS.items():
            value = options.get(key, low)
            if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                raise ConfigError(where, key, f"must be a number in [{low:g}, {high:g}]")
        if not isinstance(options.get("delete_after_sync", False), bool):
            raise ConfigError(where, "delete_after_sync", "must be true or false")

    async def collect(
        self,
        session: BleSession,
        ctx: DeviceContext,
        identity: DeviceIdentity,
        offset: timedelta | None,
        opts: BleOptions,
    ) -> None:
        o = {key: float(ctx.options.get(key, default)) for key, (default, _, _) in OPTIONS.items()}
        delete_after = bool(ctx.options.get("delete_after_sync", False))
        features = await self._features(session)
        # Bounded like glucose's: stored records come in bursts, a flood must not grow memory.
        sink: BoundedFrames[Frame] = BoundedFrames(MAX_QUEUED_RECORD_FRAMES)
        if session.has(uuids.PLX_SPOT_CHECK_MEASUREMENT):
            await session.subscribe(uuids.PLX_SPOT_CHECK_MEASUREMENT, lambda b: sink(("spot", b)))
        streaming = o["continuous_seconds"] > 0 and session.has(uuids.PLX_CONTINUOUS_MEASUREMENT)
        if streaming:
            await session.subscribe(uuids.PLX_CONTINUOUS_MEASUREMENT, lambda b: sink(("continuous", b)))
        storage = session.has(uuids.RECORD_ACCESS_CONTROL_POINT) and (
            features is None or plx.PlxFeature.SPOT_CHECK_STORAGE in features.supported
        )
        sync = PlxRecordSync(parse_time_checkpoint(await ctx.checkpoint(checkpoint_name(identity))))
        if storage:
            await session.subscribe(uuids.RECORD_ACCESS_CONTROL_POINT, lambda b: sink(("racp", b)))
            await session.write(uuids.RECORD_ACCESS_CONTROL_POINT, sync.request())
        sampler = ContinuousSampler(o["continuous_seconds"], o["continuous_spo2_change"], o["continuous_pulse_change"])
        committed = unusable = fed = 0
        deleted = False
        while True:
            try:
                frame = await next_frame(session, sink.frames, opts.idle_timeout, "oximeter measurements")
            except BleTimeoutError:
                break  # quiet: nothing more to come
            if frame is None:
                break
            kind, data = frame
            source = f"{self.name}/{_SOURCES[kind]}"
            if kind == "continuous":
                unusable += await self._continuous(ctx, data, sampler, identity, offset, opts.simulated, source)
                continue
            fed += 1
            try:
                if kind == "spot":
                    sync.receive_spot_check(data)
                else:
                    sync.receive_racp(data)
            except DeviceProtocolError as exc:
                log.warning("plx_frame_rejected", source=kind, error=type(exc).__name__)
                await ctx.reject(data, exc, source=source)
            if sync.done or sink.frames.empty() or fed >= BATCH:
                committed += await self._commit(ctx, sync, identity, offset, opts.simulated)
                fed = 0
            if delete_after and not deleted and sync.state is PlxSyncState.COMPLETE and not sync.no_records:
                # Every record of the transfer is committed (the commit above ran with `done`): now, and only
                # now, may the oximeter forget them.
                await session.write(uuids.RECORD_ACCESS_CONTROL_POINT, sync.delete_request())
                deleted = True
        if streaming:
            await _stop_stream(session)
        committed += await self._commit(ctx, sync, identity, offset, opts.simulated)
        if sync.failure is not None:
            log.warning("plx_racp_failed", code=sync.failure.name)
        log.info(
            "plx_session_done",
            stored_state=sync.state.value if storage else "no-storage",
            committed=committed,
            duplicates=sync.duplicates,
            continuous_offered=sampler.offered,
            continuous_kept=sampler.kept,
            continuous_unusable=unusable,
            deleted=deleted,
        )

    async def _features(self, session: BleSession) -> plx.PlxFeatures | None:
        if not session.has(uuids.PLX_FEATURES):
            return None
        try:
            return plx.parse_features(await session.read(uuids.PLX_FEATURES))
        except (DeviceProtocolError, BleError) as exc:
            log.warning("plx_features_unreadable", error=type(exc).__name__)
            return None

    async def _continuous(
        self,
        ctx: DeviceContext,
        data: bytes,
        sampler: ContinuousSampler,
        identity: DeviceIdentity,
        offset: timedelta | None,
        simulated: bool,
        source: str,
    ) -> int:
        """Sample one continuous frame; returns 1 when it had no usable value (counted, not kept)."""
        try:
            reading = plx.to_reading(
                plx.parse_continuous(data), identity, received_now(), offset, data, simulated=simulated
            )
        except DeviceProtocolError as exc:
            log.warning("plx_frame_rejected", source="continuous", error=type(exc).__name__)
            await ctx.reject(data, exc, source=source)
            return 0
        spo2 = reading.measurements[0]
        if spo2.absent is not None:
            return 1  # finger out, sensor off: a stream of these is not worth a reading each
        pulse = reading.measurement(Metric.PULSE_RATE_OXIMETRY)
        pulse_value = pulse.reported_value if pulse is not None and pulse.absent is None else None
        if sampler.offer(spo2.reported_value, pulse_value, time.monotonic()):
            await ctx.submit([reading])
        return 0

    async def _commit(
        self,
        ctx: DeviceContext,
        sync: PlxRecordSync,
        identity: DeviceIdentity,
        offset: timedelta | None,
        simulated: bool,
    ) -> int:
        records = sync.take_records()
        if not records:
            return 0
        now = received_now()
        readings: list[Reading] = []
        for m, raw in records:
            try:
                readings.append(plx.to_reading(m, identity, now, offset, raw, simulated=simulated))
            except DeviceProtocolError as exc:
                await ctx.reject(raw, exc, source=f"{self.name}/2a5e")
        if readings:
            await ctx.submit(readings)
        # Only now, with the readings durable, may the checkpoint move on.
        if sync.checkpoint is not None:
            await ctx.set_checkpoint(checkpoint_name(identity), sync.checkpoint.isoformat())
        return len(readings)
