"""What the benchmarks share: the reading they push, put-to-delivery latency, the machine line, the table.

One definition so the pipeline, MQTT and HTTPS figures are measured on the same payload and can be
compared with each other.
"""

from __future__ import annotations

import asyncio
import os
import platform
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from gateway.drainer import Drainer
from gateway.reading import DeviceIdentity, Kind, Measurement, Metric, Reading, Unit

__all__ = ["DEVICE", "Latencies", "machine", "print_rows", "reading"]

DEVICE = DeviceIdentity("bench", address="C0:FF:EE:00:00:01", serial_number="BENCH-1", manufacturer="Bench")


def reading(i: int) -> Reading:
    """Blood pressure with pulse, values varying with `i`; `i` is the sequence number (distinct identifiers)."""
    return Reading(
        kind=Kind.BLOOD_PRESSURE,
        measurements=(
            Measurement(Metric.SYSTOLIC, 100 + i % 60, Unit.MMHG),
            Measurement(Metric.DIASTOLIC, 60 + i % 30, Unit.MMHG),
            Measurement(Metric.PULSE_RATE, 50 + i % 40, Unit.PER_MIN),
        ),
        device=DEVICE,
        received_at=datetime.now(UTC),
        device_time=datetime(2026, 1, 1),
        sequence=i,
        user_slot=1,
    )


class Latencies:
    """Seconds from `queue.put` to the drainer's delivery callback, keyed by the reading's sequence."""

    def __init__(self) -> None:
        self._put_at: dict[int, float] = {}
        self.samples: list[float] = []

    def put(self, chunk: Sequence[Reading]) -> None:
        """Call right before the chunk is put."""
        now = time.perf_counter()
        for r in chunk:
            self._put_at[r.sequence or 0] = now

    def delivered(self, r: Reading, _identifier: str) -> None:
        """The drainer's `on_delivered`."""
        self.samples.append(time.perf_counter() - self._put_at[r.sequence or 0])

    async def drain(self, drainer: Drainer, n: int) -> None:
        """Run the drainer until `n` readings were delivered, idling briefly while the queue is empty."""
        while len(self.samples) < n:
            if not await drainer.drain_once():
                await asyncio.sleep(0.001)

    def p50_p99_ms(self) -> tuple[float, float]:
        s = sorted(self.samples)
        return s[len(s) // 2] * 1000, s[int(len(s) * 0.99)] * 1000


def machine() -> str:
    """Which machine produced the figures (they mean little without it)."""
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.platform()}"
    )


def print_rows(title: str, rows: Sequence[tuple[str, str]], value_width: int) -> None:
    """A titled two-column table: names left-aligned, values right-aligned."""
    width = max(len(name) for name, _ in rows)
    print(title)
    for name, value in rows:
        print(f"  {name:<{width}}  {value:>{value_width}}")
