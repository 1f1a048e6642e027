"""The new kinds (oximeter, thermometer, body composition) against an independent FHIR server engine
(Medplum's fhir-router, tests/fhir_server): accepted, created once, found by the searches an app makes."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.fhir import GatewayInfo, map_reading
from gateway.reading import DeviceIdentity, Kind, Measurement, Metric, Reading, Status, Unit
from tests.fhir_server import FhirServer

LOINC = "http://loinc.org"
MDC = "urn:iso:std:iso:11073:10101"
ASN1 = "http://terminology.hl7.org/CodeSystem/ASN1ToHL7"
POCD = "http://hl7.org/fhir/uv/pocd/CodeSystem/measurement-status"
DEVICE = DeviceIdentity("ble-pulse-oximeter", address="C5:00:00:00:00:05", system_id="001bdc0000000005")
GATEWAY = GatewayInfo(id="vitalgate-new-devices", version="0.1.0")
PATIENT = "Patient/new-devices-1"


def _reading(kind: Kind, *ms: tuple[Metric, float, Unit], status: frozenset[Status] = frozenset()) -> Reading:
    return Reading(
        kind=kind,
        measurements=tuple(Measurement(*m) for m in ms),
        device=DEVICE,
        received_at=datetime(2026, 11, 30, 7, 0, tzinfo=UTC),
        device_time=datetime(2026, 11, 30, 7, 59, 1),
        status=status,
    )


READINGS = [
    _reading(
        Kind.OXYGEN_SATURATION,
        (Metric.SPO2, 94.0, Unit.PERCENT),
        (Metric.PULSE_RATE_OXIMETRY, 88.0, Unit.PER_MIN),
        (Metric.PULSE_AMPLITUDE_INDEX, 3.1, Unit.PERCENT),
        # PLX Measurement Status bit 14 and Device and Sensor Status bits 5 and 4 (PLXS 1.0 §3.1.1.3-4)
        status=frozenset({Status.QUESTIONABLE_MEASUREMENT, Status.LOW_PERFUSION, Status.PLX_SIGNAL_POOR}),
    ),
    _reading(Kind.BODY_TEMPERATURE, (Metric.TEMPERATURE_TYMPANUM, 100.2, Unit.DEG_F)),
    _reading(
        Kind.BODY_COMPOSITION,
        (Metric.BODY_FAT, 24.9, Unit.PERCENT),
        (Metric.BODY_WATER_MASS, 38.5, Unit.KG),
        (Metric.IMPEDANCE, 480.0, Unit.OHM),
    ),
]


def test_new_kinds_are_created_once_and_searchable(medplum: FhirServer) -> None:
    bodies = [map_reading(r, PATIENT, GATEWAY).body for r in READINGS]
    for body in bodies:
        resp = medplum.post(body)
        assert resp.status_code == 200, resp.text[:300]
        assert {e["response"]["status"] for e in resp.json()["entry"]} <= {"200", "201"}
    for body in bodies:  # resent: every entry matches, nothing new
        assert {e["response"]["status"] for e in medplum.post(body).json()["entry"]} == {"200"}

    spo2 = medplum.search("Observation", code=f"{LOINC}|2708-6", patient=PATIENT)
    assert [o["valueQuantity"]["value"] for o in spo2] == [94.0]
    assert medplum.search("Observation", code=f"{MDC}|149530", patient=PATIENT)[0]["valueQuantity"]["value"] == 88.0
    status = medplum.search("Observation", code=f"{MDC}|150604", patient=PATIENT)
    assert [
        (c["code"]["coding"][0]["system"], c["code"]["coding"][0]["code"], c["valueBoolean"])
        for c in status[0]["component"]
    ] == [(ASN1, "150604.10", True), (ASN1, "150604.11", True)]  # PHD IG ASN1ToHL7: low perfusion, signal poor
    assert status[0]["meta"]["profile"] == [
        "http://hl7.org/fhir/uv/phd/StructureDefinition/PhdBitsEnumerationObservation"
    ]
    assert status[0]["derivedFrom"][0]["reference"].startswith("Observation/")  # the SpO2, resolved by the server
    questionable = medplum.search("Observation", code=f"{MDC}|150456", patient=PATIENT)[0]["interpretation"]
    assert [(c["system"], c["code"]) for i in questionable for c in i["coding"]] == [(POCD, "questionable")]
    temp = medplum.search("Observation", code=f"{LOINC}|8310-5", patient=PATIENT)
    assert [(o["valueQuantity"]["code"], o["bodySite"]["text"]) for o in temp] == [("[degF]", "Tympanic membrane")]
    fat = medplum.search("Observation", code=f"{LOINC}|41982-0", patient=PATIENT)
    assert [o["valueQuantity"]["value"] for o in fat] == [24.9]
    water = medplum.search("Observation", code=f"{MDC}|188764", patient=PATIENT)
    assert [o["valueQuantity"]["unit"] for o in water] == ["kg"]
