"""Hypothesis fuzzing: every GATT parser and mapper turns any bytes into a value or a DriverError."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.errors import DriverError
from drivers.gatt import (
    battery,
    blood_pressure,
    body_composition,
    current_time,
    device_info,
    glucose,
    racp,
    weight_scale,
)
from drivers.gatt.date_time import parse_date_time
from drivers.gatt.sfloat import SpecialValue, decode_float, decode_sfloat
from gateway.reading import DeviceIdentity

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DEVICE = DeviceIdentity(driver="fuzz", address="00:00:00:00:00:00")
NOW = datetime(2026, 11, 24, tzinfo=UTC)


def _bp(data: bytes) -> object:
    return blood_pressure.to_reading(blood_pressure.parse_bp_measurement(data), DEVICE, NOW, raw=data)


def _weight(data: bytes) -> object:
    return weight_scale.to_reading(weight_scale.parse_weight_measurement(data), DEVICE, NOW, raw=data)


def _body(data: bytes) -> object:
    return body_composition.to_reading(body_composition.parse_body_composition(data), DEVICE, NOW, raw=data)


def _glucose(data: bytes) -> object:
    record = glucose.GlucoseRecord(glucose.parse_glucose_measurement(data), raw_measurement=data)
    return glucose.to_reading(record, DEVICE, NOW)


PARSERS: dict[str, Callable[[bytes], Any]] = {
    "bp_measurement": _bp,
    "bp_feature": blood_pressure.parse_bp_feature,
    "weight_measurement": _weight,
    "weight_feature": weight_scale.parse_weight_feature,
    "body_composition": _body,
    "glucose_measurement": _glucose,
    "glucose_context": glucose.parse_glucose_context,
    "glucose_feature": glucose.parse_glucose_feature,
    "racp": racp.parse_racp,
    "current_time": current_time.parse_current_time,
    "battery": battery.parse_battery_level,
    "system_id": device_info.parse_system_id,
    "string": device_info.parse_string,
    "date_time": parse_date_time,
}

# Frames whose first byte(s) are flags: bias towards lengths that match some flag combination.
frames = st.one_of(st.binary(max_size=40), st.binary(min_size=5, max_size=30))


@pytest.mark.parametrize("name", sorted(PARSERS))
@FUZZ
@given(data=frames)
def test_parser_never_raises_anything_else(name: str, data: bytes) -> None:
    with contextlib.suppress(DriverError):
        PARSERS[name](data)


@FUZZ
@given(raw=st.integers(0, 0xFFFF), scale=st.integers(-8, 8))
def test_sfloat_total(raw: int, scale: int) -> None:
    value = decode_sfloat(raw, scale)
    assert isinstance(value, SpecialValue) or value == value  # a number, never a float NaN


@FUZZ
@given(raw=st.integers(0, 0xFFFFFFFF))
def test_float_total(raw: int) -> None:
    value = decode_float(raw)
    assert isinstance(value, SpecialValue) or value == value


@FUZZ
@given(
    events=st.lists(
        st.tuples(st.sampled_from(["measurement", "context", "racp", "take"]), st.binary(max_size=20)),
        max_size=30,
    ),
    checkpoint=st.one_of(st.none(), st.integers(0, 0xFFFF)),
)
def test_racp_sync_never_raises_anything_else(events: list[tuple[str, bytes]], checkpoint: int | None) -> None:
    sync = racp.RacpSync(checkpoint)
    sync.request()
    handed: list[int] = []
    for channel, data in events:
        try:
            if channel == "measurement":
                sync.receive_measurement(data)
            elif channel == "context":
                sync.receive_context(data)
            elif channel == "racp":
                sync.receive_racp(data)
            else:
                handed += [r.sequence for r in sync.take_records()]
        except DriverError:
            pass
    handed += [r.sequence for r in sync.take_records()]
    # Whatever the meter sends, records come out once each, increasing, above the starting checkpoint.
    assert handed == sorted(set(handed))
    assert all(seq > (-1 if checkpoint is None else checkpoint) for seq in handed)


# ---- RacpSync against a well-behaved meter, cut at a random point: nothing lost, nothing twice ----

_MEAS = struct.Struct("<BH7sHB")  # GLS 1.0 §3.1: flags, sequence, base time, concentration, type/location
_CTX = struct.Struct("<BHB")  # GLS 1.0 §3.2: flags (meal present), sequence, meal


def _serve(records: list[tuple[int, bool]], first: int | None) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for seq, has_context in records:
        if first is not None and seq < first:
            continue
        flags = 0x02 | (0x10 if has_context else 0)
        out.append(("measurement", _MEAS.pack(flags, seq, bytes.fromhex("EA070B14072D00"), 0xB064, 0x11)))
        if has_context:
            out.append(("context", _CTX.pack(0x02, seq, 0x01)))
    out.append(("racp", bytes.fromhex("06000101") if out else bytes.fromhex("06000106")))
    return out


@FUZZ
@given(
    # Meters number records consecutively; gaps appear where records were deleted.
    seqs=st.tuples(st.integers(0, 0xFF00), st.lists(st.sampled_from([1, 1, 1, 2, 7]), max_size=25)).map(
        lambda t: [t[0] + sum(t[1][:i]) for i in range(len(t[1]))]
    ),
    contexts=st.lists(st.booleans(), min_size=25, max_size=25),
    cut=st.integers(0, 60),
    take_every=st.integers(1, 5),
)
def test_racp_sync_resumes_after_any_disconnect(
    seqs: list[int], contexts: list[bool], cut: int, take_every: int
) -> None:
    records = list(zip(seqs, contexts, strict=False))
    committed: list[int] = []
    stored: str | None = None  # the durable checkpoint as the core stores it
    for session in range(2):
        sync = racp.RacpSync(racp.parse_checkpoint(stored))
        request = sync.request()
        first = None if request == racp.report_all() else struct.unpack_from("<H", request, 3)[0]
        frames = _serve(records, first)
        if session == 0:
            frames = frames[:cut]  # the link drops after `cut` indications
        for i, (channel, data) in enumerate(frames):
            getattr(sync, f"receive_{channel}")(data)
            if i % take_every == 0:
                committed += [r.sequence for r in sync.take_records()]
                if sync.checkpoint is not None:
                    stored = str(sync.checkpoint)
        if session == 1:
            assert sync.done
        committed += [r.sequence for r in sync.take_records()]
        if sync.checkpoint is not None:
            stored = str(sync.checkpoint)
    assert committed == seqs
