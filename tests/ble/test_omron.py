"""Omron cuffs over Omron's own protocol: bleak + our Bumble backend + a Bumble cuff with an EEPROM."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
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
    cuff = OmronCuff(key=DEFAULT_KEY)
    cuff.measure(1, OmronReading(128, 88, 67, _at(7)))
    await cuff.start(link)
    try:
        rec = make_ctx(queue, OmronDriver.name, "omron", address=cuff.address, model=cuff.model, idle_timeout=2.0)
        with pytest.raises(RuntimeError):
            await OmronDriver(ble).run(_CrashingContext(rec.ctx))  # type: ignore[arg-type]
        assert cuff.unread_counters() == [1, NO_NEW]  # still unread on the cuff
        assert not [c for c in cuff.commands if c[1:3] == b"\x01\xc0"]  # no write was sent
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
    cuff.corrupt = {2}  # answers: 0 start, 1 settings read, 2 the first record read -> bad XOR once
    await cuff.start(link)
    try:
        rec = await _sync(ble, queue, cuff)
    finally:
        await cuff.stop()
    assert [r.device_time for r in rec.readings] == [_at(7)]
    assert [(source, error) for _id, source, error, _raw in await queue.rejects()] == [
        ("omron:omron-ble/answer", "ChecksumError")
    ]
