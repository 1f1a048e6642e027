"""Child process for the crash test: puts readings as fast as it can until it is SIGKILLed.

Prints `try <key>` before a put and `ok <key>` once the put returned (committed), flushing each line,
so the parent knows exactly which puts had returned when the kill landed.
"""

from __future__ import annotations

import asyncio
import random
import sys
from dataclasses import replace
from pathlib import Path

from gateway.crypto import KeyRing
from gateway.queue import ReadingQueue
from tests.conftest import bp


async def main(db: Path, key: str, seed: int) -> None:
    rng = random.Random(seed)
    q = await ReadingQueue.open(db, KeyRing.load(key))
    print("ready", flush=True)
    n = 0
    while True:
        # Concurrent puts of 1-20 readings; some repeat readings of earlier runs (seeds) to exercise dedup.
        batches = []
        for _ in range(rng.randint(1, 8)):
            size = rng.randint(1, 20)
            old_seed = rng.randint(0, seed) if rng.random() < 0.2 else seed
            batches.append(
                [replace(bp(), sequence=old_seed * 1_000_000 + (n + i if old_seed == seed else i)) for i in range(size)]
            )
            n += size

        async def put(batch: list) -> None:  # type: ignore[type-arg]
            for r in batch:
                print("try", r.idempotency_key, flush=True)
            await q.put(batch)
            for r in batch:
                print("ok", r.idempotency_key, flush=True)

        await asyncio.gather(*(put(b) for b in batches))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
