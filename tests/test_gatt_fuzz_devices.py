"""Hypothesis fuzzing of the parsers added for more devices (thermometer, pulse oximeter, advertisement
scales): any bytes give a value or a DriverError, and a session's frame handling commits or rejects each
frame exactly once (as tests/test_gatt_fuzz.py and tests/ble/test_frame_fuzz.py do for the first profiles)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.adv import xiaomi_scale as mi
from drivers.ble.common import handle_frame
from drivers.errors import DeviceProtocolError, DriverError
from drivers.gatt import health_thermometer as hts
from drivers.gatt import plx
from drivers.gatt.plx_records import PlxRecordSync
from gateway.reading import DeviceIdentity
from tests.ble.test_frame_fuzz import Recorder

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DEVICE = DeviceIdentity(driver="fuzz", address="00:00:00:00:00:00")
NOW = datetime(2026, 11, 30, tzinfo=UTC)


def _temperature(data: bytes) -> object:
    return hts.to_reading(hts.parse_temperature_measurement(data), DEVICE, NOW, raw=data)


def _spot(data: bytes) -> object:
    return plx.to_reading(plx.parse_spot_check(data), DEVICE, NOW, raw=data)


def _continuous(data: bytes) -> object:
    return plx.to_reading(plx.parse_continuous(data), DEVICE, NOW, raw=data)


PARSERS: dict[str, Callable[[bytes], Any]] = {
    "temperature_measurement": _temperature,
    "temperature_type": hts.parse_temperature_type,
    "plx_spot_check": _spot,
    "plx_continuous": _continuous,
    "plx_features": plx.parse_features,
    "mi_scale_v1": mi.parse_v1,
    "mi_scale_v2": mi.parse_v2,
}

frames = st.one_of(
    st.binary(max_size=40),
    st.tuples(st.integers(0, 0x1F), st.binary(max_size=30)).map(lambda t: bytes([t[0]]) + t[1]),
)


@pytest.mark.parametrize("name", sorted(PARSERS))
@FUZZ
@given(data=frames)
def test_parser_never_raises_anything_else(name: str, data: bytes) -> None:
    with contextlib.suppress(DriverError):
        PARSERS[name](data)


SESSION_DECODERS: dict[str, Callable[[bytes], Any]] = {
    "temperature": _temperature,
    "plx_spot_check": _spot,
    "plx_continuous": _continuous,
}


@pytest.mark.parametrize("name", sorted(SESSION_DECODERS))
@FUZZ
@given(batch=st.lists(frames, min_size=1, max_size=8))
def test_session_frames_commit_or_reject(name: str, batch: list[bytes]) -> None:
    ctx = Recorder()

    async def run() -> None:
        for raw in batch:
            await handle_frame(ctx, raw, SESSION_DECODERS[name], "fuzz")  # type: ignore[arg-type]

    asyncio.run(run())
    assert Counter([r.raw for r in ctx.readings] + [raw for raw, _, _ in ctx.rejected]) == Counter(batch)
    assert all(isinstance(e, DeviceProtocolError) for _, e, _ in ctx.rejected)


@FUZZ
@given(events=st.lists(st.tuples(st.sampled_from(["spot", "racp", "take"]), frames), max_size=30))
def test_plx_record_sync_hands_each_record_out_once(events: list[tuple[str, bytes]]) -> None:
    sync = PlxRecordSync(None)
    sync.request()
    fed: list[bytes] = []
    handed: list[bytes] = []
    for channel, data in events:
        try:
            if channel == "spot":
                sync.receive_spot_check(data)
                fed.append(data)
            elif channel == "racp":
                sync.receive_racp(data)
            else:
                handed += [raw for _, raw in sync.take_records()]
        except DriverError:
            pass
    handed += [raw for _, raw in sync.take_records()]
    assert handed == fed  # a first sync drops nothing it parsed and hands nothing out twice


@FUZZ
@given(packets=st.lists(frames, max_size=10), weight_here=st.booleans())
def test_body_composition_assembly_raises_only_typed_errors(packets: list[bytes], weight_here: bool) -> None:
    from drivers.ble.scale import composition_readings
    from drivers.gatt.body_composition import BodyCompositionAssembler, parse_body_composition

    assembler = BodyCompositionAssembler()
    for raw in packets:
        try:
            whole = assembler.add(parse_body_composition(raw))
            if whole is not None:
                readings = composition_readings(whole, DEVICE, None, raw, weight_here=weight_here, simulated=False)
                assert readings[0].measurements  # body fat is always there
        except DriverError:
            pass


@FUZZ
@given(payloads=st.lists(st.tuples(st.binary(min_size=10, max_size=13), st.floats(0, 5)), max_size=20))
def test_weigh_in_tracker_reports_each_weigh_in_once(payloads: list[tuple[bytes, float]]) -> None:
    tracker = mi.WeighInTracker(settle=3, repeat=60)
    now = 0.0
    out: list[mi.MiScaleFrame] = []
    for payload, step in payloads:
        now += step
        try:
            frame = mi.parse_v2(payload) if len(payload) == 13 else mi.parse_v1(payload)
        except DriverError:
            continue
        out += tracker.feed(frame, now)
        if out:
            mi.to_readings(out[-1], DEVICE, NOW, mi.assign_user(out[-1].weight_kg, (mi.UserRange(1, 1, 500),)))
    out += tracker.flush(now, force=True)
    assert all(f.stabilized for f in out)
    # No weigh-in is reported twice within the repeat window (all of this run is within it).
    assert len({f.weigh_in for f in out}) == len(out) or now >= 60


@FUZZ
@given(
    pieces=st.lists(st.tuples(st.integers(0, 3), st.binary(max_size=16)), max_size=12),
    raw=st.binary(min_size=14, max_size=16),
)
def test_omron_assembly_and_records_raise_only_typed_errors(pieces: list[tuple[int, bytes]], raw: bytes) -> None:
    from drivers.omron import protocol as om

    rx = om.RxAssembler()
    for channel, piece in pieces:
        with contextlib.suppress(DriverError):
            rx.feed(channel, piece)
    for model in om.MODELS.values():
        with contextlib.suppress(DriverError):
            om.parse_record(model, raw[: model.record_size])


@FUZZ
@given(block=st.binary(min_size=10, max_size=16), now=st.datetimes())
def test_omron_clock_block_reads_as_a_time_or_none_and_writes_back_as_set(block: bytes, now: datetime) -> None:
    """Any bytes a cuff may hold in its clock block: a datetime or None (never an exception); any gateway time
    the cuff can hold is written so that it reads back as that time, the kept bytes untouched."""
    from drivers.omron import protocol as om

    now = now.replace(microsecond=0)
    for model in om.MODELS.values():
        if model.clock is None:
            continue
        size = model.clock[1] - model.clock[0]
        if len(block) < size:
            continue
        mine = block[:size]
        assert om.parse_clock(model, mine) is None or isinstance(om.parse_clock(model, mine), datetime)
        if not 2000 <= now.year <= 2255:
            with pytest.raises(DriverError):
                om.encode_clock(model, mine, now)
            continue
        written = om.encode_clock(model, mine, now)
        assert om.parse_clock(model, written) == now
        kept = 2 if size == 10 else 8
        assert written[:kept] == mine[:kept]
