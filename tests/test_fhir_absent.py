"""No number from the device -> FHIR `dataAbsentReason`, from literal frame bytes to the stored resource.

Frames are written from the Bluetooth specifications (Blood Pressure Service 1.1 / BLS 1.0 §3.1, Glucose
Service 1.0 §3.1.1, Weight Scale Service 1.0 §3.2) with the IEEE 11073-20601 §F.8 special SFLOAT values
(exponent 0: NaN 0x07FF, NRes 0x0800, +INF 0x07FE, -INF 0x0802, reserved 0x0801). The codes are the
HL7 PHD IG's (PhdNumericObservation.dataAbsentReason: not-a-number, positive-infinity, negative-infinity,
and `error` for NRes and reserved; its Measurement Status table: an invalid measurement is `error`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from drivers.gatt.blood_pressure import parse_bp_measurement
from drivers.gatt.blood_pressure import to_reading as bp_reading
from drivers.gatt.glucose import GlucoseRecord, parse_glucose_measurement
from drivers.gatt.glucose import to_reading as glucose_reading
from drivers.gatt.weight_scale import parse_weight_measurement
from drivers.gatt.weight_scale import to_reading as weight_reading
from gateway.codec import decode_reading, encode_reading
from gateway.fhir import GatewayInfo, MappedReading, map_reading, validate_bundle
from gateway.reading import DeviceIdentity, Reading
from tests.fhir_server import FhirServer

GATEWAY = GatewayInfo(id="absent-gw", version="0.1.0")
DEVICE = DeviceIdentity("ble", address="00:1B:DC:00:00:02", system_id="001bdcfffe000002")
RECEIVED = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
DAR = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
LOINC = "http://loinc.org"


def absent(code: str) -> dict[str, Any]:
    display = {
        "not-a-number": "Not a Number (NaN)",
        "positive-infinity": "Positive Infinity (PINF)",
        "negative-infinity": "Negative Infinity (NINF)",
        "error": "Error",
    }[code]
    return {"coding": [{"system": DAR, "code": code, "display": display}]}


def positional(mapped: MappedReading) -> bytes:
    body = mapped.body.decode()
    for i, entry in enumerate(mapped.entries):
        body = body.replace(entry["fullUrl"], f"urn:uuid:entry-{i}")
    return body.encode()


def observations(r: Reading) -> dict[str, dict[str, Any]]:
    """Mapped and validated; Observations by their LOINC code."""
    mapped = map_reading(r, "Patient/absent-1", GATEWAY)
    validate_bundle(mapped.bundle)
    again = map_reading(decode_reading(encode_reading(r)), "Patient/absent-1", GATEWAY)  # through the queue
    assert positional(again) == positional(mapped)
    out = {}
    for e in mapped.entries:
        res = e["resource"]
        if res["resourceType"] == "Observation":
            loinc = next(c["code"] for c in res["code"]["coding"] if c["system"] == LOINC)
            out[loinc] = res
    return out


def component(panel: dict[str, Any], loinc: str) -> dict[str, Any]:
    return next(c for c in panel["component"] if any(cd["code"] == loinc for cd in c["code"]["coding"]))


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("00FF0750006000", "not-a-number"),  # systolic 0x07FF
        ("00FE0750006000", "positive-infinity"),  # systolic 0x07FE
        ("00020850006000", "negative-infinity"),  # systolic 0x0802
        ("00000850006000", "error"),  # systolic 0x0800 NRes
        ("00010850006000", "error"),  # systolic 0x0801 reserved
    ],
)
def test_blood_pressure_component_without_a_number(frame: str, code: str) -> None:
    raw = bytes.fromhex(frame)  # flags 0 (mmHg), systolic special, diastolic 80, MAP 96
    obs = observations(bp_reading(parse_bp_measurement(raw), DEVICE, RECEIVED, raw=raw))
    systolic = component(obs["85354-9"], "8480-6")
    assert systolic["dataAbsentReason"] == absent(code) and "valueQuantity" not in systolic
    assert component(obs["85354-9"], "8462-4")["valueQuantity"]["value"] == 80.0
    assert component(obs["85354-9"], "8478-0")["valueQuantity"]["value"] == 96.0


def test_pulse_rate_nan_is_an_observation_without_a_number() -> None:
    raw = bytes.fromhex("04780050006000FF07")  # flags: pulse rate present; pulse 0x07FF NaN
    obs = observations(bp_reading(parse_bp_measurement(raw), DEVICE, RECEIVED, raw=raw))
    pulse = obs["8867-4"]
    assert pulse["dataAbsentReason"] == absent("not-a-number") and "valueQuantity" not in pulse


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("020100EA070B14072D00FE0711", "positive-infinity"),
        ("020100EA070B14072D00020811", "negative-infinity"),
        ("020100EA070B14072D00FF0711", "not-a-number"),
        ("020100EA070B14072D00000811", "error"),
    ],
)
def test_glucose_concentration_without_a_number(frame: str, code: str) -> None:
    raw = bytes.fromhex(frame)  # flags 0x02: concentration (kg/L) + type/location; seq 1; 2026-11-20 07:45:00
    r = glucose_reading(GlucoseRecord(parse_glucose_measurement(raw), raw_measurement=raw), DEVICE, RECEIVED)
    glucose = observations(r)["41653-7"]
    assert glucose["dataAbsentReason"] == absent(code) and "valueQuantity" not in glucose


def test_weight_measurement_unsuccessful() -> None:
    raw = bytes.fromhex("04FFFF03")  # weight 0xFFFF = measurement unsuccessful; user 3
    r = weight_reading(parse_weight_measurement(raw), DEVICE, RECEIVED, raw=raw)
    weight = observations(r)["29463-7"]
    assert weight["dataAbsentReason"] == absent("error") and "valueQuantity" not in weight


def test_the_real_server_stores_it(medplum: FhirServer) -> None:
    raw = bytes.fromhex("00FF0750006000")
    r = bp_reading(parse_bp_measurement(raw), DEVICE, RECEIVED, raw=raw)
    mapped = map_reading(r, "Patient/absent-2", GATEWAY)
    resp = medplum.post(mapped.body)
    assert resp.status_code == 200, resp.text[:300]
    (stored,) = medplum.search("Observation", patient="Patient/absent-2", code=f"{LOINC}|85354-9")
    assert component(stored, "8480-6")["dataAbsentReason"]["coding"][0]["code"] == "not-a-number"
    assert orjson.loads(mapped.body)["entry"][2]["resource"]["component"] == stored["component"]
