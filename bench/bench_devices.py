"""The issue-14 devices: whole transfers over Bumble into the real encrypted queue, and their pure parsers.

Bumble's in-process link has no radio timing, so this measures our side (sessions, reassembly, parsing,
commits). On air, a 2 x 100-record Omron memory is ~200 reads of 16..56 bytes, each a round trip of a few
connection intervals (typically 30-50 ms), i.e. seconds.

    python -m bench.bench_devices
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import machine
from drivers.adv import xiaomi_scale
from drivers.ble.bleak_transport import BleakTransport
from drivers.ble.omron import DEFAULT_KEY, OmronDriver
from drivers.ble.oximeter import PulseOximeterDriver
from drivers.gatt import health_thermometer, plx
from drivers.omron import protocol as om
from gateway.config import DeviceConfig
from gateway.crypto import KeyRing, create_key_file
from gateway.daemon import QueueDeviceContext
from gateway.logging import configure_logging
from gateway.queue import ReadingQueue
from simulators.ble.bleak_bumble import BleakClientBumble, BleakScannerBumble, BumbleHub
from simulators.ble.omron import OmronCuff, OmronReading
from simulators.ble.oximeter import PulseOximeter, SpotCheck, encode_spot_check
from simulators.ble.thermometer import TemperatureRecord, encode_temperature


async def transfer(folder: Path, name: str, device: Any, driver: Any, options: dict[str, Any]) -> tuple[float, int]:
    from bumble.link import LocalLink

    create_key_file(folder / f"{name}.key")
    async with await ReadingQueue.open(folder / f"{name}.db", KeyRing.load(str(folder / f"{name}.key"))) as q:
        link = LocalLink()  # type: ignore[no-untyped-call]
        hub = BumbleHub(link=link)
        ble = BleakTransport(scanner_backend=BleakScannerBumble, client_backend=BleakClientBumble, hub=hub)
        await device.start(link)
        try:
            dev = DeviceConfig(driver.name, name, {"address": device.address, "idle_timeout": 2.0, **options}, "d")
            committed = 0

            def count(_readings: Any, new: int) -> None:
                nonlocal committed
                committed += new

            ctx = QueueDeviceContext(q, dev, timedelta(seconds=60), count)
            start = time.perf_counter()
            await driver(ble).run(ctx)
            return time.perf_counter() - start, committed
        finally:
            await device.stop()
            await hub.close()


def rate(fn: Callable[[bytes], object], frames: list[bytes], seconds: float = 1.0) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for f in frames:
            fn(f)
        n += len(frames)
    return n / (time.perf_counter() - start)


async def main() -> None:
    configure_logging("error", "console")
    print(f"machine: {machine()}")
    t0 = datetime(2026, 1, 1, 8, 0)
    with tempfile.TemporaryDirectory() as tmp:
        cuff = OmronCuff("HEM-7322T", key=DEFAULT_KEY)
        for i in range(200):
            cuff.measure(1 + i % 2, OmronReading(110 + i % 40, 70 + i % 20, 60 + i % 30, t0 + timedelta(hours=i)))
        elapsed, n = await transfer(Path(tmp), "omron", cuff, OmronDriver, {"model": "HEM-7322T"})
        print(f"omron-ble HEM-7322T full memory (2 users x 100): {n} records in {elapsed:.2f} s ({n / elapsed:.0f}/s)")
        stored: list[SpotCheck | bytes] = [
            SpotCheck(90 + i % 10, 60 + i % 30, time=t0 + timedelta(minutes=i)) for i in range(200)
        ]
        oxi = PulseOximeter(stored=stored, linger=0.05)  # the transfer, not the linger before it hangs up
        elapsed, n = await transfer(Path(tmp), "plx", oxi, PulseOximeterDriver, {"continuous_seconds": 0})
        print(f"ble-pulse-oximeter RACP stored spot-checks: {n} records in {elapsed:.2f} s ({n / elapsed:.0f}/s)")
    spot = [encode_spot_check(SpotCheck(95, 70, time=t0, status=0x20, pai=3.5))]
    temp = [encode_temperature(TemperatureRecord(36.85, time=t0, site=6))]
    record = [cuff.eeprom[0x02AC : 0x02AC + 14]]
    payload = [bytes.fromhex("02a6b20701011201128c01a852")]
    model = om.MODELS["HEM-7322T"]
    print(
        "parsers (frames/s): "
        f"plx spot-check {rate(plx.parse_spot_check, spot):,.0f}; "
        f"temperature {rate(health_thermometer.parse_temperature_measurement, temp):,.0f}; "
        f"omron record {rate(lambda r: om.parse_record(model, r), record):,.0f}; "
        f"mi scale v2 {rate(xiaomi_scale.parse_v2, payload):,.0f}"
    )


if __name__ == "__main__":
    asyncio.run(main())
