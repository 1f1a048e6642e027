"""Serial sessions end to end: simulator on a real pty -> driver session -> real encrypted queue.

Nothing is mocked: pyserial opens the pty slave, the simulator answers from a thread, readings are
committed to the SQLite queue on disk, rejects are kept encrypted.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from drivers.registry import load
from drivers.serial.session_ultra2 import OneTouchUltra2Driver
from drivers.serial.session_ultraeasy import OneTouchUltraEasyDriver
from drivers.serial.transport import PortLostError, PortSettings, PortUnavailableError, SerialPort
from gateway.errors import ConfigError
from gateway.queue import ReadingQueue, State
from gateway.reading import DeviceIdentity
from simulators.serial.base import Fault, PtyDevice
from simulators.serial.records import GlucoseRecord
from simulators.serial.ultra2 import Ultra2Simulator
from simulators.serial.ultraeasy import UltraEasySimulator
from tests.serial.conftest import METER_NOW, RECORDS, ctx_for, rows

GATEWAY_NOW = datetime(2026, 11, 24, 8, 58, 30)  # the meter is 90 s fast
OPTIONS = {"timeout_seconds": 0.3}


def meter(
    kind: str, faults: dict[int, Fault] | None = None, link: Path | None = None
) -> Ultra2Simulator | UltraEasySimulator:
    cls = Ultra2Simulator if kind == "onetouch-ultra2" else UltraEasySimulator
    return cls(RECORDS, faults=faults, link=link, now=lambda: METER_NOW)


def driver(kind: str) -> OneTouchUltra2Driver | OneTouchUltraEasyDriver:
    cls = OneTouchUltra2Driver if kind == "onetouch-ultra2" else OneTouchUltraEasyDriver
    return cls(clock=lambda: GATEWAY_NOW)


METERS = ["onetouch-ultra2", "onetouch-ultraeasy"]


@pytest.mark.parametrize("kind", METERS)
async def test_full_download_then_incremental(kind: str, queue: ReadingQueue, started: list[PtyDevice]) -> None:
    sim = meter(kind).start()
    started.append(sim)
    ctx = ctx_for(queue, kind, {"port": sim.path, **OPTIONS})
    await driver(kind).run(ctx)
    assert await rows(queue) == 8
    assert await queue.rejects() == []
    readings = sorted((x.reading for x in await queue.unassigned()), key=lambda r: r.device_time or METER_NOW)
    assert [(r.device_time, r.measurements[0].reported_value) for r in readings] == [
        (rec.time, float(rec.mg_dl)) for rec in reversed(RECORDS)
    ]
    first = readings[-1]
    model = "OneTouch Ultra 2" if kind == "onetouch-ultra2" else "OneTouch Ultra Easy"
    firmware = "P02.00.00 30/08/06" if kind == "onetouch-ultra2" else "03.04.03"
    identity = DeviceIdentity(kind, sim.path, SERIALS[kind], manufacturer="LifeScan", model=model, firmware=firmware)
    assert first.device == identity
    assert first.clock_offset == timedelta(seconds=90)
    assert await ctx.checkpoint(newest_key(kind)) == "2026-11-24T07:30:00|104"

    # 90 s off is more than the 60 s tolerance: after the clean download the meter's clock was set.
    assert sim.clock_sets == 1

    # Re-read: nothing new is even submitted (the checkpoint stops the dump at the newest known record).
    before = ctx.submitted
    await driver(kind).run(ctx)
    assert (await rows(queue), ctx.submitted) == (8, before)
    assert sim.clock_sets == 1  # now within tolerance: left alone

    # A new measurement on the meter: exactly one new row.
    sim.records.insert(0, GlucoseRecord(datetime(2026, 11, 24, 8, 45, 0), 99))
    await driver(kind).run(ctx)
    assert (await rows(queue), ctx.submitted) == (9, before + 1)
    newest = [x.reading for x in await queue.unassigned() if x.reading.measurements[0].reported_value == 99.0]
    assert [r.clock_offset for r in newest] == [timedelta(0)]


SERIALS = {"onetouch-ultra2": "AB123456Y", "onetouch-ultraeasy": "C3A123456"}


def newest_key(kind: str) -> str:
    """The download checkpoint is kept per meter (its serial number), not per port or config entry."""
    return f"newest:serial:LifeScan:{SERIALS[kind]}"


@pytest.mark.parametrize("kind", METERS)
async def test_clock_set_after_an_incremental_download(
    kind: str, queue: ReadingQueue, started: list[PtyDevice]
) -> None:
    """Issue 12: the dump stops at the checkpoint, but the meter keeps sending the older records.

    The session must drain them before `DMT`, or it reads a leftover record line as the clock reply
    (`not a clock reply`) and keeps a valid record as rejected input.
    """
    sim = meter(kind).start()
    started.append(sim)
    ctx = ctx_for(queue, kind, {"port": sim.path, "set_clock": False, **OPTIONS})
    await driver(kind).run(ctx)  # full download, clock left 90 s off, checkpoint at the newest record
    assert (await rows(queue), sim.clock_sets) == (8, 0)
    sim.records.insert(0, GlucoseRecord(datetime(2026, 11, 24, 8, 45, 0), 99))
    ctx = ctx_for(queue, kind, {"port": sim.path, **OPTIONS})
    await driver(kind).run(ctx)  # incremental: one new record, then the clock is set
    assert await queue.rejects() == []
    assert (await rows(queue), sim.clock_sets) == (9, 1)
    assert await ctx.checkpoint(newest_key(kind)) == "2026-11-24T08:45:00|99"
    await driver(kind).run(ctx)  # and the link is in a clean state for the next session
    assert (await rows(queue), sim.clock_sets, await queue.rejects()) == (9, 1, [])


@pytest.mark.parametrize("kind", METERS)
async def test_set_clock_false_leaves_the_meter_alone(kind: str, queue: ReadingQueue, started: list[PtyDevice]) -> None:
    sim = meter(kind).start()
    started.append(sim)
    await driver(kind).run(ctx_for(queue, kind, {"port": sim.path, "set_clock": False, **OPTIONS}))
    assert (await rows(queue), sim.clock_sets) == (8, 0)


@pytest.mark.parametrize("fault", [Fault.BAD_CHECKSUM, Fault.TRUNCATED, Fault.GARBAGE])
@pytest.mark.parametrize("kind", METERS)
async def test_line_faults_lose_nothing_duplicate_nothing(
    kind: str, fault: Fault, queue: ReadingQueue, started: list[PtyDevice]
) -> None:
    sim = meter(kind, {3: fault}).start()
    started.append(sim)
    ctx = ctx_for(queue, kind, {"port": sim.path, **OPTIONS})
    await driver(kind).run(ctx)
    rejects = await queue.rejects()
    assert rejects and all(raw for _, _, _, raw in rejects)
    expected_error = {
        Fault.BAD_CHECKSUM: "ChecksumError",
        Fault.TRUNCATED: "MalformedFrameError" if kind == "onetouch-ultra2" else "ReadTimeoutError",
        Fault.GARBAGE: "MalformedFrameError" if kind == "onetouch-ultra2" else "GarbageError",
    }[fault]
    assert expected_error in {error for _, _, error, _ in rejects}
    if kind == "onetouch-ultra2":
        # The ASCII meter has no retry: a damaged record is missing from this pass (noise between records
        # costs nothing), and after any reject the checkpoint is not advanced.
        assert await rows(queue) == (8 if fault is Fault.GARBAGE else 7)
        assert await ctx.checkpoint(newest_key(kind)) is None
        await driver(kind).run(ctx)
    # The binary link retried the record at once; the ASCII meter got it on the re-read. Either way: all 8, once.
    assert await rows(queue) == 8
    assert ctx.rejected == len(await queue.rejects())
    await driver(kind).run(ctx)
    assert await rows(queue) == 8


@pytest.mark.parametrize("kind", METERS)
async def test_port_closing_mid_dump_and_coming_back(
    kind: str, queue: ReadingQueue, started: list[PtyDevice], tmp_path: Path
) -> None:
    link = tmp_path / "usb-LifeScan_USB_Cable-if00-port0"  # a stable /dev/serial/by-id style path
    sim = meter(kind, {3: Fault.CLOSE}, link=link).start()
    started.append(sim)
    ctx = ctx_for(queue, kind, {"port": str(link), **OPTIONS})
    with pytest.raises(PortLostError):
        await driver(kind).run(ctx)
    assert await rows(queue) == 3  # what arrived before the cut was committed before the error surfaced
    [(_, _, error, partial)] = await queue.rejects()  # and the part-record on the wire is kept for review
    assert error == "PortLostError"
    assert partial == (b'P "MON","11/23/26","' if kind == "onetouch-ultra2" else b"\x02\x10\x01\x05")
    assert await ctx.checkpoint(newest_key(kind)) is None
    with pytest.raises(PortUnavailableError):
        await SerialPort.open(PortSettings(str(link)))  # cable still out
    sim.replug()  # same path, new pty behind it
    await driver(kind).run(ctx)
    assert await rows(queue) == 8
    await driver(kind).run(ctx)
    assert await rows(queue) == 8


async def test_control_solution_is_kept_but_withheld(queue: ReadingQueue, started: list[PtyDevice]) -> None:
    control = GlucoseRecord(datetime(2026, 11, 24, 8, 0, 0), 120, control=True)
    sim = Ultra2Simulator([control, *RECORDS], now=lambda: METER_NOW).start()
    started.append(sim)
    await queue.bind("AB123456Y", None, "Patient/p1")
    await driver("onetouch-ultra2").run(ctx_for(queue, "onetouch-ultra2", {"port": sim.path, **OPTIONS}))
    counts = await queue.counts()
    assert (counts[State.PENDING], counts[State.WITHHELD]) == (8, 1)


async def test_meter_not_answering_is_a_typed_error(queue: ReadingQueue, started: list[PtyDevice]) -> None:
    class Silent(Ultra2Simulator):
        def on_data(self, data: bytes) -> None:
            pass

    sim = Silent([], now=lambda: METER_NOW).start()
    started.append(sim)
    from drivers.serial.transport import ReadTimeoutError

    with pytest.raises(ReadTimeoutError):
        await driver("onetouch-ultra2").run(ctx_for(queue, "onetouch-ultra2", {"port": sim.path, **OPTIONS}))
    assert await rows(queue) == 0


async def test_port_absent() -> None:
    with pytest.raises(PortUnavailableError):
        await SerialPort.open(PortSettings("/dev/serial/by-id/does-not-exist"))


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({}, "devices[0].port"),
        ({"port": "ttyUSB0"}, "devices[0].port"),
        ({"port": "/dev/ttyUSB0", "baudrate": 9601}, "devices[0].baudrate"),
        ({"port": "/dev/ttyUSB0", "parity": "X"}, "devices[0].parity"),
        ({"port": "/dev/ttyUSB0", "stopbits": 3}, "devices[0].stopbits"),
        ({"port": "/dev/ttyUSB0", "timeout_seconds": 0}, "devices[0].timeout_seconds"),
        ({"port": "/dev/ttyUSB0", "simulated": "yes"}, "devices[0].simulated"),
        ({"port": "/dev/ttyUSB0", "baud": 9600}, "devices[0].baud"),
    ],
)
@pytest.mark.parametrize("name", ["onetouch-ultra2", "onetouch-ultraeasy", "tanita-bc"])
def test_validate(name: str, options: dict[str, object], key: str) -> None:
    cls = load(name)
    with pytest.raises(ConfigError) as info:
        cls.validate(options, "devices[0]")
    assert info.value.key == key
    cls.validate({"port": "/dev/serial/by-id/usb-x", "baudrate": 19200, "parity": "E", "simulated": True}, "devices[0]")


async def test_port_settings_from_driver_defaults_and_options() -> None:
    base = OneTouchUltra2Driver.defaults
    assert PortSettings.from_options({"port": "/dev/x"}, base) == PortSettings("/dev/x", 9600, "N", 1.0, 8, 3.0)
    assert PortSettings.from_options({"port": "/dev/x", "baudrate": 19200, "parity": "E"}, base) == PortSettings(
        "/dev/x", 19200, "E", 1.0, 8, 3.0
    )
    await asyncio.sleep(0)
