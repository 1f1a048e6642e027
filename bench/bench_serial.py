"""Serial download benchmark: a full meter memory through a pty into the real encrypted queue.

A pty has no baud rate, so this measures our side (transport, parsing, link handshake, commits); a real
meter at 9600 baud sends about 960 bytes/s (a 500-record Ultra 2 dump is ~33 kB, so ~35 s on the wire).
Also the pure parsers on their own.

    python -m bench.bench_serial [--records 500]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from bench.common import machine
from drivers.serial import onetouch_ultra2, tanita
from drivers.serial.session_ultra2 import OneTouchUltra2Driver
from drivers.serial.session_ultraeasy import OneTouchUltraEasyDriver
from gateway.config import DeviceConfig
from gateway.crypto import KeyRing, create_key_file
from gateway.daemon import QueueDeviceContext
from gateway.logging import configure_logging
from gateway.queue import ReadingQueue
from simulators.serial.records import glucose_records, weigh_ins
from simulators.serial.tanita import result_line
from simulators.serial.ultra2 import Ultra2Simulator, line, record_body
from simulators.serial.ultraeasy import UltraEasySimulator


async def download(kind: str, records: int, folder: Path) -> tuple[float, int]:
    create_key_file(folder / f"{kind}.key")
    async with await ReadingQueue.open(folder / f"{kind}.db", KeyRing.load(str(folder / f"{kind}.key"))) as q:
        stored = glucose_records(records)
        sim = (Ultra2Simulator if kind == "onetouch-ultra2" else UltraEasySimulator)(stored).start()
        try:
            ctx = QueueDeviceContext(q, DeviceConfig(kind, kind, {"port": sim.path}, "devices[0]"), timedelta(0))
            driver = OneTouchUltra2Driver() if kind == "onetouch-ultra2" else OneTouchUltraEasyDriver()
            start = time.perf_counter()
            await driver.run(ctx)
            elapsed = time.perf_counter() - start
            return elapsed, sum((await q.counts()).values())
        finally:
            sim.stop()


def parse_rate() -> tuple[float, float]:
    lines = [line(record_body(r)) for r in glucose_records(2000)]
    start = time.perf_counter()
    for raw in lines:
        onetouch_ultra2.parse_record(raw)
    ultra2 = len(lines) / (time.perf_counter() - start)
    scale = [result_line(w) for w in weigh_ins(2000)]
    start = time.perf_counter()
    for raw in scale:
        tanita.parse_line(raw)
    return ultra2, len(scale) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=500)
    args = parser.parse_args()
    configure_logging("warning", "console")
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("onetouch-ultra2", "onetouch-ultraeasy"):
            elapsed, rows = asyncio.run(download(kind, args.records, Path(tmp)))
            print(f"{kind:20} {rows} records downloaded and committed in {elapsed:.2f} s ({rows / elapsed:.0f}/s)")
    ultra2, scale = parse_rate()
    print(f"parser onetouch-ultra2 record lines: {ultra2:,.0f}/s; tanita result lines: {scale:,.0f}/s")


if __name__ == "__main__":
    main()
