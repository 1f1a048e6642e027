"""Security costs on a backlog: opening the queue (row-state sweep, bindings manifest, audit check) and
`keys rotate --retire` (every row opened, sealed again and re-tagged in one transaction).

    python -m bench.bench_security [--readings 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from bench.common import machine, print_rows, reading
from gateway.crypto import KeyRing, create_key_file, rotate_key_file
from gateway.logging import configure_logging
from gateway.queue import ReadingQueue
from gateway.rekey import retire


async def run(n: int) -> list[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "data.key"
        old = create_key_file(key)
        path = Path(tmp) / "state" / "queue.db"
        async with await ReadingQueue.open(path, KeyRing.load(str(key))) as q:
            for start in range(0, n, 1000):
                await q.put([reading(i) for i in range(start, min(n, start + 1000))])
            await q.audit("bench (uid 0)", "bind", "x")
        started = time.perf_counter()
        q = await ReadingQueue.open(path, KeyRing.load(str(key)))
        opened = time.perf_counter() - started
        await q.close()
        rotate_key_file(key)
        q = await ReadingQueue.open(path, KeyRing.load(str(key)))
        started = time.perf_counter()
        report = await retire(q, old)
        retired = time.perf_counter() - started
        await q.close()
    return [
        ("readings in the queue", f"{n}"),
        ("open (sweep + manifest + audit schema)", f"{opened * 1000:.0f} ms"),
        ("keys rotate --retire (one transaction)", f"{retired:.2f} s ({report.resealed / retired:.0f} rows/s)"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--readings", type=int, default=20000)
    args = parser.parse_args()
    configure_logging("warning", "console")
    rows = asyncio.run(run(args.readings))
    print_rows(f"security costs ({machine()})", rows, 30)


if __name__ == "__main__":
    main()
