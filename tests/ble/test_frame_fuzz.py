"""Whatever bytes a device sends, a session either commits a reading or rejects the frame (kept) and goes
on: no other exception may escape, because that would end the session and drop the rest of the transfer.

Pure parts of the session (frame handling, the RACP feed) driven with hypothesis; the BLE link itself is
exercised by the simulator tests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.ble.common import handle_frame
from drivers.ble.glucose import GlucoseDriver
from drivers.ble.indicating import BloodPressureDriver, WeightScaleDriver
from drivers.errors import DeviceProtocolError
from drivers.gatt import racp
from gateway.reading import DeviceIdentity, Reading

DEVICE = DeviceIdentity("ble-blood-pressure", address="C1:00:00:00:00:01")
AT = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


class Recorder:
    """A DeviceContext that records (the BLE tests use the real queue; here only the call pattern matters)."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.rejected: list[tuple[bytes, Exception, str]] = []

    @property
    def options(self) -> dict[str, Any]:
        return {}

    @property
    def clock_tolerance(self) -> timedelta:
        return timedelta(seconds=60)

    async def submit(self, readings: Sequence[Reading]) -> int:
        self.readings.extend(readings)
        return len(readings)

    async def reject(self, raw: bytes, error: Exception, *, source: str) -> None:
        self.rejected.append((raw, error, source))

    async def checkpoint(self, name: str) -> str | None:
        return None

    async def set_checkpoint(self, name: str, value: str) -> None:
        pass


# Frames near the real shapes (a valid-looking flags byte, then anything) and plain noise.
frames = st.one_of(
    st.binary(max_size=24),
    st.tuples(st.integers(0, 0x1F), st.binary(max_size=22)).map(lambda t: bytes([t[0]]) + t[1]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(frames, min_size=1, max_size=8))
def test_indicated_frames_commit_or_reject(batch: list[bytes]) -> None:
    for decode in (BloodPressureDriver.decode, WeightScaleDriver.decode):
        ctx = Recorder()

        async def run(ctx: Recorder = ctx, decode: Any = decode) -> None:
            for raw in batch:
                await handle_frame(ctx, raw, lambda b: decode(b, DEVICE, AT, None, False), "fuzz")

        asyncio.run(run())
        # Every frame is accounted for exactly once: committed (raw kept on the reading) or rejected (kept).
        assert Counter([r.raw for r in ctx.readings] + [raw for raw, _, _ in ctx.rejected]) == Counter(batch)
        assert all(isinstance(e, DeviceProtocolError) and raw in batch for raw, e, _ in ctx.rejected)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["measurement", "context", "racp"]), st.binary(max_size=20)), max_size=12))
def test_glucose_feed_raises_only_typed_errors(feed: list[tuple[str, bytes]]) -> None:
    sync = racp.RacpSync(None)
    sync.request()
    for kind, data in feed:
        with contextlib.suppress(DeviceProtocolError):  # the session rejects it and goes on
            GlucoseDriver._feed(sync, kind, data)
        sync.take_records()
