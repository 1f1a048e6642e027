"""The neutral Reading: canonical units, idempotency keys, effective time."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from gateway.reading import DeviceIdentity, Measurement, Metric, Unit
from tests.conftest import CUFF, bp


def test_canonical_units_convert_reported_values() -> None:
    assert Measurement(Metric.SYSTOLIC, 16.0, Unit.KPA).value == pytest.approx(120.01, abs=0.01)
    assert Measurement(Metric.BODY_WEIGHT, 150.0, Unit.LB).value == pytest.approx(68.0389, abs=1e-4)
    assert Measurement(Metric.GLUCOSE, 5.5, Unit.MMOL_L).value == pytest.approx(99.09, abs=0.01)
    assert Measurement(Metric.GLUCOSE, 5.5, Unit.MMOL_L).unit is Unit.MG_DL
    with pytest.raises(ValueError, match="not a unit of"):
        _ = Measurement(Metric.GLUCOSE, 5.5, Unit.KG).value


def test_idempotency_key_is_stable_across_receive_times_when_device_time_known() -> None:
    a = bp()
    b = replace(a, received_at=a.received_at + timedelta(hours=3))
    assert a.idempotency_key == b.idempotency_key
    assert len(a.idempotency_key) == 64


@pytest.mark.parametrize(
    "change",
    [
        {"user_slot": 2},
        {"device_time": datetime(2026, 11, 24, 7, 1, 0)},
        {"sequence": 7},
        {"device": replace(CUFF, system_id="fedcba9876543210")},
    ],
)
def test_idempotency_key_changes_with_identity_fields(change: dict[str, object]) -> None:
    a = bp()
    assert replace(a, **change).idempotency_key != a.idempotency_key  # type: ignore[arg-type]


def test_idempotency_key_changes_with_values() -> None:
    assert bp(systolic=128).idempotency_key != bp(systolic=129).idempotency_key


def test_without_device_time_or_sequence_receive_time_separates_equal_readings() -> None:
    a = replace(bp(), device_time=None)
    b = replace(a, received_at=a.received_at + timedelta(seconds=40))
    assert a.idempotency_key != b.idempotency_key


def test_device_key_prefers_system_id_then_serial_then_address() -> None:
    assert CUFF.key == "eui64:0123456789abcdef"
    assert replace(CUFF, system_id=None).key == "serial:Acme:BP123456"
    assert replace(CUFF, system_id=None, serial_number=None).key == "addr:C0:FF:EE:00:00:01"
    with pytest.raises(ValueError):
        _ = DeviceIdentity("x").key


def test_effective_time_applies_zone_and_clock_offset() -> None:
    est = timezone(timedelta(hours=-5))
    r = replace(bp(), clock_offset=timedelta(minutes=2))  # device clock 2 minutes fast
    assert r.effective_time(est) == datetime(2026, 11, 24, 6, 58, 0, tzinfo=est)
    assert replace(r, device_time=None).effective_time(est) == r.received_at


def test_reading_needs_aware_receive_time_and_a_measurement() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        replace(bp(), received_at=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="at least one"):
        replace(bp(), measurements=())
    assert bp().received_at.tzinfo is UTC


def test_idempotency_key_survives_the_queue_codec_for_whole_number_values() -> None:
    """A meter's 104 mg/dL (int) comes back from the queue as 104.0: same key, or duplicate look-up and the
    re-tagging of `keys rotate --retire` would miss it."""
    from gateway.codec import decode_reading, encode_reading

    r = bp(systolic=128, diastolic=82, pulse=71)
    assert decode_reading(encode_reading(r)).idempotency_key == r.idempotency_key
