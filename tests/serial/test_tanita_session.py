"""Tanita scale session: a simulated scale prints result lines on a real pty into the real queue."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime

import pytest

from drivers.serial.session_tanita import TanitaDriver
from drivers.serial.transport import PortLostError
from gateway.queue import ReadingQueue
from gateway.reading import Kind, Measurement, Metric, Unit
from simulators.serial.base import Fault, PtyDevice
from simulators.serial.records import WeighIn
from simulators.serial.tanita import TanitaSimulator
from tests.serial.conftest import ctx_for, rows

WEIGH_INS = [
    WeighIn(datetime(2026, 11, 24, 7, 0), 81.4, 180.0, 22.5),
    WeighIn(datetime(2026, 11, 24, 7, 5), 64.9, 165.0, 28.0),
    WeighIn(datetime(2026, 11, 24, 7, 9), 101.3, 190.0, 31.1),
    WeighIn(datetime(2026, 11, 24, 7, 12), 55.0, 158.0, 25.4),
]


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait for a condition (a safety cap only; not a timing assertion)."""
    for _ in range(1000):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def listen(queue: ReadingQueue, sim: TanitaSimulator) -> asyncio.Task[None]:
    task = asyncio.create_task(
        TanitaDriver().run(ctx_for(queue, "tanita-bc", {"port": sim.path, "timeout_seconds": 0.3}))
    )

    async def opened() -> bool:
        return sim.opened_elsewhere()

    await until(opened, "gateway opened the port")
    sim.send_all()
    return task


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_weigh_ins_become_readings(queue: ReadingQueue, started: list[PtyDevice]) -> None:
    sim = TanitaSimulator(WEIGH_INS, model="BC-418", serial_number="BC418-0007").start()
    started.append(sim)
    task = await listen(queue, sim)

    async def four() -> bool:
        return await rows(queue) == 4

    await until(four, "four rows")
    await stop(task)
    readings = sorted((x.reading for x in await queue.unassigned()), key=lambda r: r.device_time or datetime.min)
    first = readings[0]
    assert (first.kind, first.device_time, first.measurements) == (
        Kind.BODY_WEIGHT,
        datetime(2026, 11, 24, 7, 0),
        (
            Measurement(Metric.BODY_WEIGHT, 81.4, Unit.KG),
            Measurement(Metric.BODY_HEIGHT, 1.8, Unit.M),
            Measurement(Metric.BMI, 25.1, Unit.KG_PER_M2),  # 81.4 / 1.8^2 = 25.12, printed to one decimal
        ),
    )
    assert (first.device.serial_number, first.device.model, first.device.manufacturer) == (
        "BC418-0007",
        "BC-418",
        "Tanita",
    )
    assert [r.measurements[0].reported_value for r in readings] == [81.4, 64.9, 101.3, 55.0]


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.BAD_CHECKSUM, "ChecksumError"),
        (Fault.TRUNCATED, "MalformedFrameError"),
        (Fault.GARBAGE, "MalformedFrameError"),
    ],
)
async def test_bad_line_is_kept_and_the_rest_goes_on(
    fault: Fault, error: str, queue: ReadingQueue, started: list[PtyDevice]
) -> None:
    sim = TanitaSimulator(WEIGH_INS, faults={1: fault}).start()
    started.append(sim)
    task = await listen(queue, sim)
    good = 4 if fault is Fault.GARBAGE else 3  # noise before a line costs nothing; a damaged line is rejected

    async def settled() -> bool:
        return await rows(queue) == good and len(await queue.rejects()) == 1

    await until(settled, f"{good} rows and one reject")
    await stop(task)
    [(_, source, kind, raw)] = await queue.rejects()
    assert (source, kind) == ("meter:tanita-bc:line", error)
    assert raw  # the bad bytes are kept (encrypted) for review
    # The scale resends nothing by itself; the same weigh-ins printed again add no rows.
    sim2 = TanitaSimulator(WEIGH_INS).start()
    started.append(sim2)
    task = await listen(queue, sim2)

    async def four() -> bool:
        return await rows(queue) == 4

    await until(four, "the damaged weigh-in arrived on the second print")
    await stop(task)
    assert await rows(queue) == 4


async def test_cable_pulled(queue: ReadingQueue, started: list[PtyDevice]) -> None:
    sim = TanitaSimulator(WEIGH_INS, faults={2: Fault.CLOSE}).start()
    started.append(sim)
    task = await listen(queue, sim)
    with pytest.raises(PortLostError):
        await task
    assert await rows(queue) == 2
    [(_, _, error, raw)] = await queue.rejects()  # the half line that was on the wire is kept
    assert (error, raw) == ("PortLostError", b"{0,16,~0,1")  # the simulator cuts after 10 bytes
