"""The drainer over a real queue and the real file forwarder; backend faults through a scripted forwarder.

The scripted forwarder is a test double on purpose: it stands for a backend that confirms some items,
rejects others or is down, faults the real MQTT and HTTPS tests produce with real servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Self

import orjson
import pytest

from gateway.drainer import Backoff, Drainer
from gateway.fhir import GatewayInfo, validate_bundle
from gateway.forwarders.base import Outgoing, PermanentError, RetryableError, SendReport
from gateway.forwarders.file import FileForwarder
from gateway.queue import ReadingQueue, State
from gateway.reading import Kind, Measurement, Metric, Unit
from tests.conftest import bp

GW = GatewayInfo(id="gw-test", version="0.1.0")


def read_bundles(directory: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for f in sorted(directory.glob("*.ndjson")) for line in f.read_bytes().splitlines()]


async def test_bound_readings_reach_the_file_as_valid_fhir_once(queue: ReadingQueue, tmp_path: Path) -> None:
    await queue.bind("BP123456", 1, "Patient/p1")
    await queue.put([bp(minute=m) for m in range(7)] + [bp(user=2)])
    out = tmp_path / "out"
    async with FileForwarder(out) as fwd:
        drainer = Drainer(queue, fwd, GW, batch_size=3)
        while await drainer.drain_once():
            pass
    bundles = read_bundles(out)
    assert len(bundles) == 7
    for b in bundles:
        validate_bundle(b)
    counts = await queue.counts()
    assert (counts[State.DELIVERED], counts[State.UNASSIGNED], counts[State.PENDING]) == (7, 1, 0)
    assert drainer.stats.delivered == 7 and drainer.stats.by_kind == {"blood-pressure": 7}


async def test_redelivery_after_crash_leaves_no_duplicate_line(queue: ReadingQueue, tmp_path: Path) -> None:
    """Written and fsynced but not acked (the process died): sending again must not add a line."""
    await queue.bind("BP123456", 1, "Patient/p1")
    await queue.put([bp(minute=m) for m in range(4)])
    out = tmp_path / "out"
    leased, _ = await queue.lease(10)
    async with FileForwarder(out) as fwd:
        mapped = [Drainer(queue, fwd, GW)]  # only to share the mapping path below
        batch, _ = await mapped[0]._map(leased)
        await fwd.send(batch)  # crash here: no ack
    async with FileForwarder(out) as fwd:  # restart: the forwarder rescans its newest file
        drainer = Drainer(queue, fwd, GW)
        while await drainer.drain_once():
            pass
    assert len(read_bundles(out)) == 4
    assert (await queue.counts())[State.DELIVERED] == 4


class Scripted:
    """Backend double: answers each send from a script of reports or exceptions."""

    name = "scripted"

    def __init__(self, script: list[object]) -> None:
        self.script = script
        self.sent: list[list[int]] = []

    @property
    def window(self) -> int:
        return 100

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        return None

    async def send(self, batch: Sequence[Outgoing]) -> SendReport:
        self.sent.append([o.item_id for o in batch])
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        assert callable(step)
        report: SendReport = step(batch)
        return report


async def test_partial_confirmation_rejection_and_retry(queue: ReadingQueue) -> None:
    await queue.bind("BP123456", 1, "Patient/p1")
    await queue.put([bp(minute=m) for m in range(3)])
    fwd = Scripted(
        [
            lambda b: SendReport(confirmed=frozenset({b[0].item_id}), rejected={b[1].item_id: "HTTP 422: invalid"}),
            lambda b: SendReport(confirmed=frozenset(o.item_id for o in b)),
        ]
    )
    drainer = Drainer(queue, fwd, GW, backoff=Backoff(0.001, 0.002))
    assert await drainer.drain_once() == 3
    counts = await queue.counts()
    assert (counts[State.DELIVERED], counts[State.QUARANTINED], counts[State.PENDING]) == (1, 1, 1)
    assert await queue.quarantined() == [(2, "HTTP 422: invalid")]
    import asyncio

    await asyncio.sleep(0.01)
    assert await drainer.drain_once() == 1
    assert fwd.sent == [[1, 2, 3], [3]]
    assert (await queue.counts())[State.DELIVERED] == 2


@pytest.mark.parametrize("error", [RetryableError("broker down", retry_after=30), PermanentError("not authorized")])
async def test_failed_send_keeps_everything_queued(queue: ReadingQueue, error: Exception) -> None:
    await queue.bind("BP123456", 1, "Patient/p1")
    await queue.put([bp(minute=m) for m in range(3)])
    drainer = Drainer(queue, Scripted([error]), GW, backoff=Backoff(10, 20))
    with pytest.raises(type(error)):
        await drainer.drain_once()
    assert (await queue.counts())[State.PENDING] == 3
    assert (await queue.lease(10))[0] == []  # released with a delay, not hammered again at once


async def test_unmappable_reading_is_quarantined_with_reason(queue: ReadingQueue) -> None:
    await queue.bind("BP123456", 1, "Patient/p1")
    odd = replace(bp(), kind=Kind.BODY_WEIGHT, measurements=(Measurement(Metric.SYSTOLIC, 120, Unit.MMHG),))
    await queue.put([odd, bp(minute=9)])
    fwd = Scripted([lambda b: SendReport(confirmed=frozenset(o.item_id for o in b))])
    drainer = Drainer(queue, fwd, GW)
    await drainer.drain_once()
    counts = await queue.counts()
    assert (counts[State.QUARANTINED], counts[State.DELIVERED]) == (1, 1)
    ((_item, reason),) = await queue.quarantined()
    assert reason.startswith("mapping: ")


def test_backoff_is_capped_and_jittered() -> None:
    b = Backoff(1.0, 60.0)
    rng = random.Random(7)
    delays = [b.delay(n, rng) for n in range(12)]
    assert all(0.5 <= d <= 60.0 for d in delays)
    assert 0.5 <= delays[0] <= 1.0 and 30.0 <= delays[-1] <= 60.0
    assert len({round(b.delay(5, rng), 6) for _ in range(20)}) > 1


class Stalled:
    """A backend that takes a batch and never answers until told: stands for a PUBACK or HTTP reply in
    flight when the daemon is stopped (a real broker cannot be paused at that exact instant)."""

    name = "stalled"
    window = 100

    def __init__(self) -> None:
        self.offered = asyncio.Event()
        self.answer = asyncio.Event()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        return None

    async def send(self, batch: Sequence[Outgoing]) -> SendReport:
        self.offered.set()
        await self.answer.wait()
        return SendReport(confirmed=frozenset(o.item_id for o in batch))


@pytest.mark.parametrize("entry", ["drain_once", "run"])
async def test_cancel_mid_send_leaves_the_batch_pending_and_due(queue: ReadingQueue, entry: str) -> None:
    """Shutdown cancels the drainer while a batch awaits its confirmation: nothing acked, nothing delayed."""
    await queue.bind("BP123456", 1, "Patient/p1")
    await queue.put([bp(minute=m) for m in range(5)])
    fwd = Stalled()
    drainer = Drainer(queue, fwd, GW, backoff=Backoff(10, 20))
    task = asyncio.create_task(drainer.drain_once() if entry == "drain_once" else drainer.run())
    await fwd.offered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    fwd.answer.set()  # a late answer reaches nobody
    counts = await queue.counts()
    assert (counts[State.PENDING], counts[State.DELIVERED]) == (5, 0)
    leased, _ = await queue.lease(10)  # not released with a backoff: due again at once, attempt count unchanged
    assert [(item.item_id, item.attempts) for item in leased] == [(i, 0) for i in range(1, 6)]
    assert drainer.stats.delivered == 0 and drainer.stats.retried == 0


class Gated(Scripted):
    """Backend double whose answer waits for the test: a slow server, or (never opened) a hung one."""

    def __init__(self) -> None:
        super().__init__([])
        self.gate = asyncio.Event()

    async def send(self, batch: Sequence[Outgoing]) -> SendReport:
        self.sent.append([o.item_id for o in batch])
        await self.gate.wait()
        return SendReport(confirmed=frozenset(o.item_id for o in batch))


async def test_slow_send_keeps_the_heartbeat_going(queue: ReadingQueue) -> None:
    await queue.bind("BP123456", 1, "Patient/p1")
    await queue.put([bp()])
    beats: list[float] = []
    fwd = Gated()
    drainer = Drainer(queue, fwd, GW, heartbeat=lambda: beats.append(0.0), send_timeout=60)
    task = asyncio.create_task(drainer.drain_once())
    async with asyncio.timeout(15):
        while len(beats) < 3:  # noqa: ASYNC110 - polling a plain list
            await asyncio.sleep(0.05)
    assert not task.done()  # still waiting for the backend, yet alive for the watchdog
    fwd.gate.set()
    assert await task == 1
    assert (await queue.counts())[State.DELIVERED] == 1


async def test_hung_send_is_cut_off_and_its_batch_retried(queue: ReadingQueue) -> None:
    await queue.bind("BP123456", 1, "Patient/p1")
    await queue.put([bp(minute=m) for m in range(3)])
    drainer = Drainer(queue, Gated(), GW, backoff=Backoff(30, 60), send_timeout=0.2)
    with pytest.raises(RetryableError, match=r"did not finish within 0\.2 s"):
        await drainer.drain_once()
    assert (await queue.counts())[State.PENDING] == 3
    assert (await queue.lease(10))[0] == []  # backing off


async def test_unexpected_error_does_not_stop_the_drainer(queue: ReadingQueue) -> None:
    await queue.bind("BP123456", 1, "Patient/p1")
    await queue.put([bp(minute=m) for m in range(2)])
    def confirm(b: Sequence[Outgoing]) -> SendReport:
        return SendReport(confirmed=frozenset(o.item_id for o in b))

    # After the failure the two rows get their own jittered retry times, so they may come back together or
    # one by one: confirm as many sends as that takes.
    fwd = Scripted([ValueError("a forwarder bug"), confirm, confirm])
    drainer = Drainer(queue, fwd, GW, backoff=Backoff(0.01, 0.02))
    task = asyncio.create_task(drainer.run())
    try:
        async with asyncio.timeout(15):
            while drainer.stats.delivered < 2:  # noqa: ASYNC110 - polling a counter
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert fwd.sent[0] == [1, 2]  # the send that failed
    assert sorted(i for batch in fwd.sent[1:] for i in batch) == [1, 2]  # then each delivered exactly once
    assert (await queue.counts())[State.DELIVERED] == 2


async def test_drainer_purges_withheld_rows_past_retention_and_keeps_quarantined(
    queue: ReadingQueue, tmp_path: Path
) -> None:
    """The daemon's purge point (the drainer, hourly): withheld rows past `retention_days` go, as
    delivered ones do; a quarantined row as old stays for the operator."""
    import sqlite3

    from structlog.testing import capture_logs

    from gateway.reading import Status

    await queue.bind("BP123456", 1, "Patient/p1")
    await queue.put([replace(bp(minute=m), status=frozenset({Status.CONTROL_SOLUTION})) for m in range(3)])
    await queue.put([bp(minute=9)])
    leased, _ = await queue.lease(10)
    await queue.set_state({leased[0].item_id: "HTTP 422"}, State.QUARANTINED)
    with sqlite3.connect(tmp_path / "queue.db") as db:  # all set aside 3 days ago (no MAC covers done_at)
        db.execute("UPDATE readings SET done_at = done_at - 3 * 86400")
    db.close()
    async with FileForwarder(tmp_path / "out") as fwd:
        drainer = Drainer(queue, fwd, GW, retention_seconds=86400)
        with capture_logs() as logs:
            task = asyncio.create_task(drainer.run())
            try:
                async with asyncio.timeout(15):
                    while (await queue.counts())[State.WITHHELD]:  # noqa: ASYNC110 - polling the queue
                        await asyncio.sleep(0.05)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    assert {s: n for s, n in (await queue.counts()).items() if n} == {State.QUARANTINED: 1}
    assert [e["rows"] for e in logs if e["event"] == "withheld_purged"] == [3]
