"""Serial test helpers: a real queue-backed DeviceContext and simulators on real ptys."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

import pytest

from gateway.config import DeviceConfig
from gateway.daemon import QueueDeviceContext
from gateway.queue import ReadingQueue
from simulators.serial.base import PtyDevice
from simulators.serial.records import GlucoseRecord

# Stored on the simulated meters, newest first; literal so expected values are not derived from code.
RECORDS = [
    GlucoseRecord(datetime(2026, 11, 24, 7, 30, 0), 104, meal="B"),
    GlucoseRecord(datetime(2026, 11, 23, 21, 5, 12), 187, meal="A", comment=2),
    GlucoseRecord(datetime(2026, 11, 23, 12, 44, 59), 92),
    GlucoseRecord(datetime(2026, 11, 23, 7, 2, 3), 131, meal="B"),
    GlucoseRecord(datetime(2026, 11, 22, 22, 15, 0), 244, meal="A", comment=11),
    GlucoseRecord(datetime(2026, 11, 22, 13, 0, 1), 71),
    GlucoseRecord(datetime(2026, 11, 22, 6, 59, 59), 118),
    GlucoseRecord(datetime(2026, 11, 21, 19, 20, 30), 156, meal="A"),
]
METER_NOW = datetime(2026, 11, 24, 9, 0, 0)  # what the simulated meter's clock says (before its offset)


def ctx_for(queue: ReadingQueue, driver: str, options: Mapping[str, Any], name: str = "meter") -> QueueDeviceContext:
    return QueueDeviceContext(queue, DeviceConfig(driver, name, dict(options), "devices[0]"), timedelta(seconds=60))


async def rows(queue: ReadingQueue) -> int:
    return sum((await queue.counts()).values())


@pytest.fixture
def started() -> Iterator[list[PtyDevice]]:
    """Simulators a test starts; all stopped at the end, whatever happened."""
    sims: list[PtyDevice] = []
    yield sims
    for sim in sims:
        sim.stop()
