"""BLE fixtures: simulators and the gateway's central on one in-process Bumble link, the real queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from bumble.link import LocalLink

from drivers.ble.bleak_transport import BleakTransport
from gateway.config import DeviceConfig
from gateway.daemon import QueueDeviceContext
from gateway.queue import ReadingQueue
from gateway.reading import Reading
from simulators.ble.bleak_bumble import BleakClientBumble, BleakScannerBumble, BumbleHub

PASSKEY = 123456


@pytest.fixture
def link() -> LocalLink:
    return LocalLink()  # type: ignore[no-untyped-call]


@pytest.fixture
async def hub(link: LocalLink) -> AsyncIterator[BumbleHub]:
    async def passkey() -> int:
        return PASSKEY

    h = BumbleHub(link=link, passkey=passkey)
    try:
        yield h
    finally:
        await h.close()


@pytest.fixture
def ble(hub: BumbleHub) -> BleakTransport:
    """The production transport class over bleak's API, with our Bumble backend plugged in."""
    return BleakTransport(scanner_backend=BleakScannerBumble, client_backend=BleakClientBumble, hub=hub)


@dataclass
class Recorded:
    ctx: QueueDeviceContext
    readings: list[Reading] = field(default_factory=list)
    new: int = 0


def make_ctx(
    queue: ReadingQueue,
    driver: str,
    name: str,
    tolerance: float = 30.0,
    reached: tuple[int, asyncio.Event] | None = None,
    **options: Any,
) -> Recorded:
    """The core's real DeviceContext on the real encrypted queue, recording what was submitted;
    `reached=(n, event)` sets the event once n readings were submitted."""
    rec: Recorded | None = None

    def on_submitted(readings: Any, new: int) -> None:
        assert rec is not None
        rec.readings.extend(readings)
        rec.new += new
        if reached is not None and len(rec.readings) >= reached[0]:
            reached[1].set()

    # The cuff and scale simulators do not bond: accepted explicitly (tests/ble/test_device_auth.py checks
    # the refusal); the glucose meter is bonded by its fixtures and checked as production does.
    if driver != "ble-glucose":
        options.setdefault("allow_unbonded", True)
    dev = DeviceConfig(driver, name, {"driver": driver, **options}, "devices[0]")
    ctx = QueueDeviceContext(queue, dev, timedelta(seconds=tolerance), on_submitted)
    rec = Recorded(ctx)
    return rec
