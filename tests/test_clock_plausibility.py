"""A device clock far from plausible flags the reading (issue 11, must-have 5), from literal GATT bytes
through the FHIR mapping, every Bundle validated with fhir.resources.

Frames: Blood Pressure Measurement 0x2A35 (BLS 1.0 §3.1: flags, three SFLOATs, Date Time 0x2A08 as
year uint16 LE, month, day, hours, minutes, seconds, pulse SFLOAT) and Current Time 0x2A2B (CTS 1.1 §3.1:
Date Time, day of week, Fractions256, adjust reason). The expected FHIR follows the HL7 PHD IG STU 2
(2.0.0): Coincident Time Stamp notes, "Logic to Report Coincident Timestamps" Cases 2 and 3, and the
example coin-example-timefault (dataAbsentReason `unknown` for a time fault); see gateway.fhir.clockflag.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from drivers.gatt.blood_pressure import parse_bp_measurement, to_reading
from drivers.gatt.current_time import clock_offset, parse_current_time
from gateway.clockcheck import ClockVerdict, judge
from gateway.fhir import GatewayInfo, MappedReading, map_reading, validate_bundle
from gateway.reading import DeviceIdentity, Reading

GATEWAY = GatewayInfo(id="vitalgate-01", version="0.1.0")
PLUS_ONE = timezone(timedelta(hours=1))
RECEIVED = datetime(2026, 11, 24, 7, 31, tzinfo=UTC)  # 08:31 at the gateway (+01:00)
CUFF = DeviceIdentity(driver="ble-blood-pressure", address="C0:FF:EE:00:00:01", system_id="123456FFFE9ABCDE")
MDC = "urn:iso:std:iso:11073:10101"
COIN_PROFILE = "http://hl7.org/fhir/uv/phd/StructureDefinition/PhdCoincidentTimeStampObservation"
COIN_EXT = "http://hl7.org/fhir/uv/phd/StructureDefinition/CoincidentTimeStampReference"

# A cuff whose clock went back to its factory default (2000-01-01 00:00) at a battery change.
RESET_CLOCK_BP = bytes.fromhex(
    "06"  # flags: mmHg, time stamp (bit 1), pulse rate (bit 2)
    "7800"  # systolic 120
    "5000"  # diastolic 80
    "5D00"  # mean arterial 93
    "D0070101000500"  # time stamp 2000-01-01 00:05:00 (0x07D0 = 2000)
    "4800"  # pulse 72
)
# Its Current Time read at the session: 2000-01-03 10:00:00, Monday (1), no fractions, no adjust reason.
RESET_CLOCK_NOW = bytes.fromhex("D00701030A0000" "01" "00" "00")
# A cuff whose clock runs months ahead: 2027-06-01 12:00:00.
FUTURE_BP = bytes.fromhex("06" "7800" "5000" "5D00" "EB0706010C0000" "4800")
# A good one: 2026-11-24 08:30:15, its clock read 3 minutes behind.
GOOD_BP = bytes.fromhex("06" "7800" "5000" "5D00" "EA070B18081E0F" "4800")


def _map(r: Reading, **kw: Any) -> MappedReading:
    mapped = map_reading(r, "Patient/123", GATEWAY, local_tz=PLUS_ONE, **kw)
    validate_bundle(mapped.bundle)
    return mapped


def _observations(mapped: MappedReading) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    obs = [e["resource"] for e in mapped.entries if e["resource"]["resourceType"] == "Observation"]
    coin = [o for o in obs if o["code"]["coding"][0]["code"] == "67975"]
    return coin, [o for o in obs if o not in coin]


def _reset_clock_reading(with_current_time: bool) -> Reading:
    offset = None
    if with_current_time:
        device_now = parse_current_time(RESET_CLOCK_NOW).time
        assert device_now is not None
        offset = clock_offset(device_now, RECEIVED.astimezone(PLUS_ONE).replace(tzinfo=None))
    return to_reading(parse_bp_measurement(RESET_CLOCK_BP), CUFF, RECEIVED, offset, RESET_CLOCK_BP)


def test_clock_read_far_off_is_corrected_by_the_offset_and_noted() -> None:
    """IG Case 3: the PHD's current time was read; the PHG moves its stamps by the difference."""
    r = _reset_clock_reading(with_current_time=True)
    assert r.clock_offset == datetime(2000, 1, 3, 10) - datetime(2026, 11, 24, 8, 31)
    verdict = judge(r, local_tz=PLUS_ONE)
    assert verdict == ClockVerdict("offset", "the device clock was 9821.9 days behind the gateway's", True)
    (coin,), measured = _observations(_map(r))
    assert coin["effectiveDateTime"] == "2026-11-24T07:31:00+00:00"
    assert coin["valueDateTime"] == "2000-01-03T10:00:00+01:00"  # what the cuff's clock read then
    assert "dataAbsentReason" not in coin
    # 00:05 on the cuff's clock was 2 days 9 h 55 min before it read 2000-01-03 10:00.
    assert [o["effectiveDateTime"] for o in measured] == ["2026-11-21T22:36:00+01:00"] * 2  # BP panel, pulse
    assert [o["note"] for o in measured] == [
        [
            {
                "text": "Device clock implausible: the device clock was 9821.9 days behind the gateway's; the time "
                "was corrected by that difference (PHD coincident time stamp). Set the device's clock."
            }
        ]
    ] * 2


def test_factory_default_stamp_without_a_clock_read_is_a_time_fault() -> None:
    """IG Case 2: the stamp is not on a timeline the gateway knows: no meaningful time, a time fault."""
    r = _reset_clock_reading(with_current_time=False)
    assert judge(r, local_tz=PLUS_ONE) == ClockVerdict(
        "before-2010", "the device time stamp is before 2010 (a default or reset clock)", False
    )
    mapped = _map(r)
    (coin,), measured = _observations(mapped)
    coin_url = next(e["fullUrl"] for e in mapped.entries if e["resource"] is coin)
    assert {k: v for k, v in coin.items() if k not in ("identifier", "subject", "device")} == {
        "resourceType": "Observation",
        "meta": {"profile": [COIN_PROFILE]},
        "status": "final",
        "code": {"coding": [{"system": MDC, "code": "67975", "display": "MDC_ATTR_TIME_ABS"}], "text": "Absolute time"},
        "effectiveDateTime": "2026-11-24T07:31:00+00:00",
        "dataAbsentReason": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                    "code": "unknown",
                    "display": "Unknown",
                }
            ],
            "text": "Time fault: device clock implausible",
        },
        "component": [
            {
                "code": {
                    "coding": [{"system": MDC, "code": "68220", "display": "MDC_TIME_SYNC_PROTOCOL"}],
                    "text": "Clock synchronization method",
                },
                "valueCodeableConcept": {
                    "coding": [{"system": MDC, "code": "532224", "display": "MDC_TIME_SYNC_NONE"}]
                },
            }
        ],
    }
    for o in measured:
        assert "effectiveDateTime" not in o
        assert o["effectivePeriod"] == {"end": "2026-11-24T07:31:00+00:00"}  # received by then; start unknown
        assert o["issued"] == "2026-11-24T07:31:00+00:00"
        assert {"url": COIN_EXT, "valueReference": {"reference": coin_url}} in o["extension"]
        assert o["note"] == [
            {
                "text": "Device clock implausible: the device time stamp is before 2010 (a default or reset clock). "
                "The measurement time cannot be trusted (PHD time fault); effectivePeriod.end is when the gateway "
                "received it. Set the device's clock."
            }
        ]
    # The IG's identifier still uses the device's own stamp: a resend finds the same resource.
    assert measured[0]["identifier"][0]["value"].endswith("-300")  # 2000-01-01 00:05 = 300 s after 2000


def test_stamp_months_ahead_is_a_time_fault() -> None:
    r = to_reading(parse_bp_measurement(FUTURE_BP), CUFF, RECEIVED, None, FUTURE_BP)
    verdict = judge(r, local_tz=PLUS_ONE)
    assert verdict is not None and verdict.problem == "future"
    (coin,), measured = _observations(_map(r))
    assert "valueDateTime" not in coin and coin["dataAbsentReason"]["coding"][0]["code"] == "unknown"
    assert all(o["effectivePeriod"] == {"end": "2026-11-24T07:31:00+00:00"} for o in measured)


def test_plausible_clock_is_not_flagged() -> None:
    r = to_reading(parse_bp_measurement(GOOD_BP), CUFF, RECEIVED, timedelta(minutes=-3), GOOD_BP)
    assert judge(r, local_tz=PLUS_ONE) is None
    (coin,), measured = _observations(_map(r))
    assert coin["valueDateTime"] == "2026-11-24T08:28:00+01:00"
    assert all("note" not in o and o["effectiveDateTime"] == "2026-11-24T08:33:15+01:00" for o in measured)


@pytest.mark.parametrize(("limit", "flagged"), [(timedelta(hours=1), True), (timedelta(days=1), False)])
def test_the_limit_is_configurable(limit: timedelta, flagged: bool) -> None:
    """A cuff two hours behind: flagged under a one-hour limit, within the default of a day."""
    r = to_reading(parse_bp_measurement(GOOD_BP), CUFF, RECEIVED, timedelta(hours=-2), GOOD_BP)
    assert (judge(r, limit, PLUS_ONE) is not None) == flagged
    _, measured = _observations(_map(r, clock_limit=limit))
    assert all(("note" in o) == flagged and "effectiveDateTime" in o for o in measured)


async def test_flagged_readings_counted_per_device_warned_once_and_alarmed(tmp_path: Any, queue: Any) -> None:
    """The daemon's side: the device context counts flagged readings into the health model (status,
    --json, alarms), and the log warns once per device, naming the configured device only."""
    from dataclasses import replace

    from structlog.testing import capture_logs

    from gateway.alarms import AlarmBoard
    from gateway.config import DeviceConfig
    from gateway.daemon import QueueDeviceContext
    from gateway.health import HealthModel, snapshot
    from gateway.health.report import render_status, status_document
    from gateway.health.rules import Facts, Thresholds, evaluate

    model = HealthModel(version="9", gateway_id="gw", forwarder="file", target="outbox", devices=[("cuff", "ble")])
    dev = DeviceConfig("ble-blood-pressure", "cuff", {}, "devices[0]")
    ctx = QueueDeviceContext(queue, dev, timedelta(seconds=60), local_tz=PLUS_ONE, health=model)
    reset = _reset_clock_reading(with_current_time=False)
    with capture_logs() as logs:
        await ctx.submit([reset, replace(reset, device_time=datetime(2000, 1, 1, 0, 6))])
        await ctx.submit([replace(reset, device_time=datetime(2000, 1, 1, 9))])
    warnings = [e for e in logs if e["event"] == "device_clock_implausible"]
    assert len(warnings) == 1 and warnings[0]["device"] == "cuff" and warnings[0]["problem"] == "before-2010"
    assert "Set the device's clock" in warnings[0]["sentence"]
    assert "C0:FF:EE" not in str(logs) and "123456" not in str(logs)
    health = model.as_dict()["devices"][0]
    assert (health["clock_flagged_readings"], health["clock_problem"]) == (
        3,
        "the device time stamp is before 2010 (a default or reset clock)",
    )
    board = AlarmBoard(tmp_path / "alarms.json")
    evaluate(model, board, Thresholds(), Facts())
    (alarm,) = [a for a in board.active() if a.code == "device_clock:cuff"]
    assert "3 readings" in alarm.sentence and "Set the device's clock" in alarm.sentence
    snapshot.write(tmp_path / snapshot.SNAPSHOT_NAME, model.as_dict())
    text = render_status(status_document(tmp_path, {"pending": 3}, [], 0))
    assert "3 readings: set the device's clock" in text
    # The clock set right: the next reading is plausible, the alarm clears, the count stays.
    good = to_reading(parse_bp_measurement(GOOD_BP), CUFF, RECEIVED, timedelta(minutes=-3), GOOD_BP)
    await ctx.submit([good])
    evaluate(model, board, Thresholds(), Facts())
    assert not [a for a in board.active() if a.code == "device_clock:cuff"]
    assert model.as_dict()["devices"][0]["clock_flagged_readings"] == 3


def test_clock_implausible_seconds_is_read_and_bounded(tmp_path: Any) -> None:
    from gateway.config import parse_config
    from gateway.errors import ConfigError

    cfg = parse_config({"gateway": {"clock_implausible_seconds": 3600}, "output": {"forwarder": "file"}})
    assert cfg.clock_implausible == timedelta(hours=1)
    assert parse_config({}).clock_implausible == timedelta(days=1)
    with pytest.raises(ConfigError, match="clock_implausible_seconds"):
        parse_config({"gateway": {"clock_implausible_seconds": 1}})


def test_a_real_fhir_server_stores_a_time_fault_once(medplum: Any) -> None:
    """Medplum's engine (tests/fhir_server) accepts the time-fault shape (effectivePeriod with only `end`,
    a Coincident Time Stamp without value) and a resend creates nothing."""
    r = _reset_clock_reading(with_current_time=False)
    for expected in ("201", "200"):
        mapped = map_reading(r, "Patient/clock-fault-1", GATEWAY, local_tz=PLUS_ONE)
        resp = medplum.post(mapped.body)
        assert resp.status_code == 200, resp.text[:300]
        observations = [e for e in resp.json()["entry"] if e["response"]["location"].startswith("Observation/")]
        assert {e["response"]["status"].split()[0] for e in observations} == {expected}
    stored = medplum.search("Observation", subject="Patient/clock-fault-1")
    assert len(stored) == 2  # BP panel and pulse, once each
    assert all(o["effectivePeriod"] == {"end": "2026-11-24T07:31:00+00:00"} and o["note"] for o in stored)


# A cuff stamping the last second of the calendar: 9999-12-31 23:59:59 (0x270F = 9999; GATT Date Time
# allows years 1582-9999), its Current Time read an hour behind the gateway's.
EDGE_OF_CALENDAR_BP = bytes.fromhex("06" "7800" "5000" "5D00" "0F270C1F173B3B" "4800")


def test_time_stamp_at_the_edge_of_the_calendar_is_flagged_not_an_overflow() -> None:
    """Correcting 9999-12-31 23:59:59 by the clock's offset leaves the calendar (review: OverflowError in
    the health update after the commit, so every session of that device ended in an error, and in the clock
    judgement). It is flagged as a clock far ahead and maps to a valid Observation instead."""
    r = to_reading(parse_bp_measurement(EDGE_OF_CALENDAR_BP), CUFF, RECEIVED, timedelta(hours=-1), EDGE_OF_CALENDAR_BP)
    assert r.effective_time(PLUS_ONE) == datetime(9999, 12, 31, 23, 59, 59, tzinfo=PLUS_ONE)  # uncorrected
    verdict = judge(r, local_tz=PLUS_ONE)
    assert verdict is not None and verdict.problem == "future"
    _, measured = _observations(_map(r))  # validated as a Bundle in _map
    assert [o["note"][0]["text"].startswith("Device clock implausible") for o in measured] == [True, True]
