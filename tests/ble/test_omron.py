"""Omron cuffs over Omron's own protocol: bleak + our Bumble backend + a Bumble cuff with an EEPROM."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from bumble.link import LocalLink

from drivers.ble.bleak_transport import BleakTransport
from drivers.ble.omron import DEFAULT_KEY, OmronDriver, program_key
from gateway.queue import ReadingQueue
from gateway.reading import Kind, Measurement, Metric, Reading, Status, Unit
from simulators.ble.omron import OmronCuff, OmronReading
from tests.ble.conftest import Recorded, make_ctx

T = datetime(2026, 11, 29, 8, 30, 15)
NO_NEW = 0x8000


def _at(hour: int) -> datetime:
    return T.replace(hour=hour)


async def _sync(ble: BleakTransport, queue: ReadingQueue, cuff: OmronCuff, **options: Any) -> Recorded:
    rec = make_ctx(
        queue, OmronDriver.name, "omron", address=cuff.address, model=cuff.model, idle_timeout=2.0, **options
    )
    await OmronDriver(ble).run(rec.ctx)
    return rec


async def test_pairing_stores_our_key(link: LocalLink, ble: BleakTransport) -> None:
    cuff = OmronCuff(pairing_mode=True)
    await cuff.start(link)
    try:
        session = await ble.connect(cuff.address, timeout=5)
        try:
            await program_key(session)
        finally:
            await session.disconnect()
    finally:
        await cuff.stop()
    assert cuff.key == DEFAULT_KEY and not cuff.pairing_mode


@pytest.mark.parametrize("model", ["HEM-7322T", "HEM-7361T"])
async def test_two_users_then_incremental_and_counters_reset_after_commit(
    link: LocalLink, ble: BleakTransport, queue: ReadingQueue, model: str
) -> None:
    cuff = OmronCuff(model, key=DEFAULT_KEY)
    cuff.measure(1, OmronReading(128, 88, 67, _at(7)))
    cuff.measure(1, OmronReading(135, 90, 72, _at(8), irregular=True))
    cuff.measure(2, OmronReading(118, 76, 61, _at(9), movement=True))
    await cuff.start(link)
    try:
        first = await _sync(ble, queue, cuff)
        assert [(r.user_slot, r.device_time) for r in first.readings] == [(1, _at(7)), (1, _at(8)), (2, _at(9))]
        assert first.readings[0].measurements == (
            Measurement(Metric.SYSTOLIC, 128.0, Unit.MMHG),
            Measurement(Metric.DIASTOLIC, 88.0, Unit.MMHG),
            Measurement(Metric.PULSE_RATE, 67.0, Unit.PER_MIN),
        )
        assert {r.kind for r in first.readings} == {Kind.BLOOD_PRESSURE}
        assert [r.status for r in first.readings] == [
            frozenset(),
            frozenset({Status.IRREGULAR_PULSE}),
            frozenset({Status.BODY_MOVEMENT}),
        ]
        assert cuff.unread_counters() == [NO_NEW, NO_NEW]  # reset, after the commit
        cuff.measure(1, OmronReading(122, 80, 65, _at(10)))
        second = await _sync(ble, queue, cuff)
        assert [(r.user_slot, r.device_time) for r in second.readings] == [(1, _at(10))]
    finally:
        await cuff.stop()


class _CrashingContext:
    """The real context, except that committing fails: a fake for a crash in the middle of a commit (a
    power cut cannot be produced here); everything else is the real queue."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def submit(self, readings: Sequence[Reading]) -> int:
        raise RuntimeError("power cut")


async def test_counters_untouched_when_the_commit_fails(
    link: LocalLink, ble: BleakTransport, queue: ReadingQueue
) -> None:
    cuff = OmronCuff(key=DEFAULT_KEY, clock_skew=timedelta(hours=2))  # off: would be set after a commit
    cuff.measure(1, OmronReading(128, 88, 67, _at(7)))
    await cuff.start(link)
    try:
        rec = make_ctx(queue, OmronDriver.name, "omron", address=cuff.address, model=cuff.model, idle_timeout=2.0)
        with pytest.raises(RuntimeError):
            await OmronDriver(ble).run(_CrashingContext(rec.ctx))  # type: ignore[arg-type]
        assert cuff.unread_counters() == [1, NO_NEW]  # still unread on the cuff
        assert not [c for c in cuff.commands if c[1:3] == b"\x01\xc0"]  # no write was sent (nor the clock)
        assert cuff.clock_sets == []
        again = await _sync(ble, queue, cuff)  # next time: read again, nothing lost
        assert [r.device_time for r in again.readings] == [_at(7)]
    finally:
        await cuff.stop()


async def test_wrong_key_is_rejected_and_reported(link: LocalLink, ble: BleakTransport, queue: ReadingQueue) -> None:
    cuff = OmronCuff(key=bytes(16))
    cuff.measure(1, OmronReading(128, 88, 67, _at(7)))
    await cuff.start(link)
    try:
        rec = await _sync(ble, queue, cuff)
    finally:
        await cuff.stop()
    assert rec.readings == []
    assert [(source, error) for _id, source, error, _raw in await queue.rejects()] == [
        ("omron:omron-ble/unlock", "OmronKeyError")
    ]
    assert cuff.unread_counters() == [1, NO_NEW]


def test_simulate_offers_every_ble_simulator() -> None:
    """`vitalgate simulate` can start each simulator the BLE package knows (one list, two places)."""
    from drivers.ble.cli import BLE_SIMULATORS
    from simulators.ble.run import KINDS, make_simulator

    assert set(BLE_SIMULATORS) == set(KINDS)
    for kind in KINDS:
        assert make_simulator(kind, records=2).kind == kind


async def test_a_corrupt_answer_is_kept_and_the_read_repeated(
    link: LocalLink, ble: BleakTransport, queue: ReadingQueue
) -> None:
    cuff = OmronCuff(key=DEFAULT_KEY)
    cuff.measure(1, OmronReading(128, 88, 67, _at(7)))
    cuff.corrupt = {3}  # answers: 0 start, 1 clock read, 2 settings read, 3 the first record read -> bad XOR once
    await cuff.start(link)
    try:
        rec = await _sync(ble, queue, cuff)
    finally:
        await cuff.stop()
    assert [r.device_time for r in rec.readings] == [_at(7)]
    assert [(source, error) for _id, source, error, _raw in await queue.rejects()] == [
        ("omron:omron-ble/answer", "ChecksumError")
    ]


CLOCK_WRITE = {"HEM-7322T": 0x0286 + 0x14, "HEM-7361T": 0x0054 + 0x2C}  # settings write window + clock offset
WRITE = b"\x01\xc0"


def _writes(cuff: OmronCuff) -> list[int]:
    """The EEPROM addresses the gateway wrote, in order."""
    return [int.from_bytes(c[3:5], "big") for c in cuff.commands if c[1:3] == WRITE]


def _near(offset: timedelta | None, expected: timedelta) -> bool:
    """Equal to the second the clocks were read at (the two reads may straddle a second boundary)."""
    return offset is not None and abs(offset - expected) <= timedelta(seconds=2)


@pytest.mark.parametrize("model", ["HEM-7322T", "HEM-7361T"])
async def test_clock_offset_recorded_then_the_clock_set_after_the_commit(
    link: LocalLink, ble: BleakTransport, queue: ReadingQueue, model: str
) -> None:
    """A cuff two hours fast: its readings carry +2 h (the clock that stamped them), the operator's health view
    shows it, and the cuff's clock is set last: after the records were committed and the counters written."""
    from gateway.health.model import HealthModel

    cuff = OmronCuff(model, key=DEFAULT_KEY, clock_skew=timedelta(hours=2))
    cuff.measure(1, OmronReading(128, 88, 67, _at(7)))
    await cuff.start(link)
    try:
        rec = make_ctx(queue, OmronDriver.name, "omron", address=cuff.address, model=model, idle_timeout=2.0)
        rec.ctx.health = HealthModel(
            version="t", gateway_id="g", forwarder="file", target="t", devices=[("omron", "omron-ble")]
        )
        await OmronDriver(ble).run(rec.ctx)
        assert [r.device_time for r in rec.readings] == [_at(7)]
        assert _near(rec.readings[0].clock_offset, timedelta(hours=2))
        shown = rec.ctx.health.device("omron").clock_offset
        assert shown is not None and abs(shown - 7200) <= 2  # `vitalgate status` shows the cuff's offset
        assert len(cuff.clock_sets) == 1 and abs(cuff.clock_skew) <= timedelta(seconds=2)
        unread_write = {"HEM-7322T": 0x0286, "HEM-7361T": 0x0054}[model]
        assert _writes(cuff) == [unread_write, CLOCK_WRITE[model]]  # counters first, the clock last
        assert cuff.unread_counters()[0] == NO_NEW
        again = await _sync(ble, queue, cuff)  # now in step: nothing to set
        assert len(cuff.clock_sets) == 1 and _writes(cuff) == [unread_write, CLOCK_WRITE[model]]
        assert again.readings == []
    finally:
        await cuff.stop()


async def test_clock_within_tolerance_or_set_clock_false_is_left_alone(
    link: LocalLink, ble: BleakTransport, queue: ReadingQueue
) -> None:
    cuff = OmronCuff(key=DEFAULT_KEY, clock_skew=timedelta(seconds=-10))  # tolerance 30 s (make_ctx)
    cuff.measure(1, OmronReading(128, 88, 67, _at(7)))
    await cuff.start(link)
    try:
        first = await _sync(ble, queue, cuff)
        assert _near(first.readings[0].clock_offset, timedelta(seconds=-10))
        assert cuff.clock_sets == []
        cuff.clock_skew = timedelta(hours=-3)
        cuff.measure(1, OmronReading(122, 80, 65, _at(8)))
        second = await _sync(ble, queue, cuff, set_clock=False)
        assert _near(second.readings[0].clock_offset, timedelta(hours=-3))  # still recorded
        assert cuff.clock_sets == [] and CLOCK_WRITE["HEM-7322T"] not in _writes(cuff)
    finally:
        await cuff.stop()


async def test_a_refused_clock_write_costs_no_record(link: LocalLink, ble: BleakTransport, queue: ReadingQueue) -> None:
    """The cuff does not answer the clock write (timeout): the records are committed and the counters reset
    already; the session ends with a warning, nothing is lost, nothing read twice."""
    cuff = OmronCuff(key=DEFAULT_KEY, clock_skew=timedelta(hours=1))
    cuff.refuse_clock = True
    cuff.measure(1, OmronReading(128, 88, 67, _at(7)))
    await cuff.start(link)
    try:
        rec = await _sync(ble, queue, cuff)
        assert [r.device_time for r in rec.readings] == [_at(7)] and rec.new == 1
        assert cuff.unread_counters() == [NO_NEW, NO_NEW] and cuff.clock_sets == []
        again = await _sync(ble, queue, cuff)
        assert again.readings == []
    finally:
        await cuff.stop()


async def test_an_invalid_clock_is_set_and_readings_have_no_offset(
    link: LocalLink, ble: BleakTransport, queue: ReadingQueue
) -> None:
    """omblepy issue #7: a cuff whose clock block reads all 0xFF. No offset is claimed for its readings (the
    device time is kept as it is); the clock is then set."""
    cuff = OmronCuff("HEM-7361T", key=DEFAULT_KEY)
    cuff.clock_garbage = True
    cuff.measure(1, OmronReading(128, 88, 67, _at(7)))
    await cuff.start(link)
    try:
        rec = await _sync(ble, queue, cuff)
        assert [(r.device_time, r.clock_offset) for r in rec.readings] == [(_at(7), None)]
        assert len(cuff.clock_sets) == 1
    finally:
        await cuff.stop()


def test_the_simulated_clock_blocks_are_the_captured_ones() -> None:
    """The simulator's own clock encoder against the captured blocks (tests/test_omron_protocol.py)."""
    from simulators.ble.omron import CLOCK, decode_clock, encode_clock

    order_a, order_b = CLOCK["HEM-7322T"][2], CLOCK["HEM-7361T"][2]
    a = encode_clock(datetime(2025, 9, 18, 18, 27, 44), 10, order_a, bytes.fromhex("08c8"))
    assert a == bytes.fromhex("08c8091912122c1b855d")  # omblepy #57
    b = encode_clock(datetime(2026, 9, 9, 11, 31, 7), 16, order_b, bytes.fromhex("c2a0000000000000"))
    assert b == bytes.fromhex("c2a00000000000001a09090b1f07bf00")  # hass-omron #92
    assert decode_clock(bytes.fromhex("08c80b1a091e07050028"), order_a) == datetime(2026, 11, 30, 9, 5, 7)
    assert decode_clock(bytes.fromhex("08c80b1a091e07050029"), order_a) is None  # bad sum: the cuff shows Err
