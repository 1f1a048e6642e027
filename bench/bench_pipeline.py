"""Pipeline benchmark: put (encrypt + commit) -> lease -> FHIR -> file output (fsync) -> ack.

Prints readings/s for a steady pipeline, the drain rate of a backlog, the parts on their own for
comparison, and peak RSS. Figures depend on the machine and its disk; compare ratios across runs.

    python -m bench.bench_pipeline [--backlog 100000] [--steady 20000] [--no-gc-freeze]

As the daemon does once started (gateway.daemon), the set-up's objects are frozen out of the garbage
collector (`gc.freeze()`) before the pipeline runs; `--no-gc-freeze` measures without it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import tempfile
import time
from pathlib import Path

from bench.common import Latencies, machine, print_rows, reading
from gateway.crypto import KeyRing
from gateway.drainer import Drainer
from gateway.fhir import GatewayInfo, map_reading
from gateway.forwarders.file import FileForwarder
from gateway.logging import configure_logging
from gateway.queue import ReadingQueue, State
from gateway.reading import Reading

GW = GatewayInfo(id="bench", version="bench")


async def put_all(q: ReadingQueue, readings: list[Reading], batch: int = 50, concurrency: int = 8) -> float:
    """Concurrent producers, as many device sessions would be; returns seconds."""
    chunks = [readings[i : i + batch] for i in range(0, len(readings), batch)]
    sem = asyncio.Semaphore(concurrency)

    async def one(chunk: list[Reading]) -> None:
        async with sem:
            await q.put(chunk)

    t = time.perf_counter()
    await asyncio.gather(*(one(c) for c in chunks))
    return time.perf_counter() - t


async def drain_all(q: ReadingQueue, out: Path, batch: int) -> float:
    t = time.perf_counter()
    async with FileForwarder(out) as fwd:
        drainer = Drainer(q, fwd, GW, batch_size=batch)
        while await drainer.drain_once():
            pass
    return time.perf_counter() - t


async def steady(tmp: Path, ring: KeyRing, n: int) -> tuple[float, float, float]:
    """Producers and drainer at once; returns (readings/s, p50 ms, p99 ms) from put to file ack."""
    q = await ReadingQueue.open(tmp / "steady.db", ring)
    await q.bind("BENCH-1", 1, "Patient/bench")
    latencies = Latencies()
    readings = [reading(i) for i in range(n)]

    async with FileForwarder(tmp / "steady-out") as fwd:
        drainer = Drainer(q, fwd, GW, batch_size=200, on_delivered=latencies.delivered)

        async def produce() -> None:
            for i in range(0, n, 20):
                chunk = readings[i : i + 20]
                latencies.put(chunk)
                await q.put(chunk)
                await asyncio.sleep(0)

        t = time.perf_counter()
        await asyncio.gather(produce(), latencies.drain(drainer, n))
        elapsed = time.perf_counter() - t
    await q.close()
    return (n / elapsed, *latencies.p50_p99_ms())


def parts(n: int, ring: KeyRing) -> dict[str, float]:
    readings = [reading(i) for i in range(n)]
    t = time.perf_counter()
    for r in readings:
        map_reading(r, "Patient/bench", GW)
    fhir = n / (time.perf_counter() - t)
    t = time.perf_counter()
    for _ in range(n):
        ring.seal(b"x" * 400, b"readings|0123456789abcdef0123456789abcdef")
    aes = n / (time.perf_counter() - t)
    return {"FHIR map + serialize (readings/s)": fhir, "AES-GCM seal 400 B (ops/s)": aes}


async def main(backlog: int, steady_n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="vg-bench-", dir=os.environ.get("BENCH_DIR")) as d:
        tmp = Path(d)
        ring = KeyRing.generate()
        rows: list[tuple[str, str]] = []
        rate, p50, p99 = await steady(tmp, ring, steady_n)
        rows.append((f"steady pipeline, {steady_n} readings (readings/s)", f"{rate:,.0f}"))
        rows.append(("  latency put -> file fsync, p50 / p99 (ms)", f"{p50:.1f} / {p99:.1f}"))

        q = await ReadingQueue.open(tmp / "backlog.db", ring)
        await q.bind("BENCH-1", 1, "Patient/bench")
        put_s = await put_all(q, [reading(i) for i in range(backlog)])
        rows.append((f"put {backlog:,} (encrypt + group commit, readings/s)", f"{backlog / put_s:,.0f}"))
        drain_s = await drain_all(q, tmp / "backlog-out", batch=500)
        assert (await q.counts())[State.DELIVERED] == backlog
        rows.append((f"drain {backlog:,} backlog -> file (readings/s)", f"{backlog / drain_s:,.0f}"))
        await q.close()
        for name, value in parts(min(backlog, 20000), ring).items():
            rows.append((name, f"{value:,.0f}"))
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows.append(("peak RSS (MiB)", f"{rss:.0f}"))

    print_rows(f"VitalGate pipeline benchmark on {machine()}", rows, 14)


if __name__ == "__main__":
    configure_logging("warning", "console")
    ap = argparse.ArgumentParser()
    ap.add_argument("--backlog", type=int, default=100_000)
    ap.add_argument("--steady", type=int, default=20_000)
    ap.add_argument("--no-gc-freeze", action="store_true", help="leave start-up's objects to the collector")
    a = ap.parse_args()
    if not a.no_gc_freeze:
        gc.freeze()  # the daemon's start-up point (gateway.daemon): imports and config done, loop not started
    asyncio.run(main(a.backlog, a.steady))
