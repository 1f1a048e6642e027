"""Against a real, independent FHIR server engine (Medplum's fhir-router, see tests/fhir_server).

What a backend sees: resends create nothing (conditional create matches the PHD IG identifier and the
Devices' identifiers across Bundles), `vitalgate demo --fhir` delivers every committed reading exactly
once, and the usual searches (patient, code, date, component-code) find the data.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog

from gateway.cli import main
from gateway.crypto import KeyRing
from gateway.fhir import GatewayInfo, map_reading, validate_bundle
from gateway.queue import ReadingQueue, State
from gateway.reading import DeviceIdentity, Kind, Measurement, Metric, Reading, Unit
from tests.fhir_server import FhirServer

PHD_ID = "http://hl7.org/fhir/uv/phd/StructureDefinition/PhdBaseObservation"
LOINC = "http://loinc.org"
MDC = "urn:iso:std:iso:11073:10101"
# MDC codes of the Observation each reading yields first (BP panel, body weight, capillary glucose, SpO2,
# oral body temperature: the demo thermometer's site)
PRIMARY = {"150020", "188736", "160184", "150456", "188424"}


@pytest.fixture
def restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()  # the demo pointed structlog at pytest's captured stderr, closed after the test


def count(server: FhirServer, resource_type: str, **params: str) -> int:
    with server.client() as http:
        resp = http.get(resource_type, params={**params, "_summary": "count"})
        resp.raise_for_status()
        return int(resp.json()["total"])


def statuses(response: Any) -> list[str]:
    return [e["response"]["status"] for e in response["entry"]]


def mdc(resource: dict[str, Any]) -> str:
    return next(c["code"] for c in resource["code"]["coding"] if c["system"] == MDC)


def queue_counts(folder: Path) -> dict[State, int]:
    async def read() -> dict[State, int]:
        async with await ReadingQueue.open(folder / "queue.db", KeyRing.load(str(folder / "data.key"))) as q:
            return await q.counts()

    return asyncio.run(read())


@pytest.fixture(scope="module")
def demo_bundles(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """The demo's own output (file forwarder): one transaction Bundle per reading, as a backend gets them."""
    out = tmp_path_factory.mktemp("demo-file")
    try:
        assert main(["demo", "--seconds", "4", "--out", str(out)]) == 0
    finally:
        structlog.reset_defaults()
    lines = [line for f in sorted((out / "outbox").glob("*.ndjson")) for line in f.read_bytes().splitlines()]
    assert len(lines) >= 10
    return lines


def test_demo_fhir_delivers_every_committed_reading_once(
    medplum: FhirServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    """First in this module: the serial demo meter holds the same records in every run, so after another
    demo's Bundles they would (rightly) match instead of being created, and not count as created here."""
    start = (datetime.now(UTC) - timedelta(seconds=1)).isoformat(timespec="seconds")
    # A date search from the day before: the simulated cuffs hold records from the hours before the demo, so
    # soon after midnight some are yesterday's (the arm64 check ran then). Their clocks are local time.
    first_day = (datetime.now() - timedelta(days=1)).date().isoformat()
    out = tmp_path / "demo"
    # Until every device has had 2 readings delivered, not a fixed time: on a slow CPU a few seconds are not
    # enough (and the demo then, rightly, exits non-zero for what is still queued).
    args = ["demo", "--until-each-device", "2", "--out", str(out)]
    args += ["--fhir", medplum.base_url, "--fhir-ca", str(medplum.ca_file)]
    assert main(args) == 0
    capsys.readouterr()
    counts = queue_counts(out)
    delivered = counts[State.DELIVERED]
    assert delivered >= 10
    assert counts[State.PENDING] == 0 and counts[State.QUARANTINED] == 0 and counts[State.UNASSIGNED] == 0

    created = [  # this run's, not another test's written just before `start`
        o
        for o in medplum.search("Observation", _lastUpdated=f"ge{start}")
        if o["subject"]["reference"].startswith(("Patient/demo-", "Device/"))
    ]
    primary = [o for o in created if mdc(o) in PRIMARY]
    assert len(primary) == delivered  # every committed (and sendable) reading, once
    ids = Counter(i["value"] for o in created for i in o["identifier"] if i["system"] == PHD_ID)
    assert ids and max(ids.values()) == 1  # no duplicates
    for o in created:
        assert o["device"]["reference"].startswith("Device/")  # the placeholder was resolved
        gateway_ref = o.get("extension", [{}])[0].get("valueReference", {}).get("reference", "")
        assert o["code"]["coding"][0]["code"] == "67975" or gateway_ref.startswith("Device/")
    devices = medplum.search("Device")
    matched = Counter(i["value"] for d in devices for i in d["identifier"] if i.get("system"))
    assert max(matched.values()) == 1  # no Device twice, across every Bundle of both tests

    # the searches a clinician's app makes
    patient1 = medplum.search("Observation", patient="Patient/demo-patient-1", _lastUpdated=f"ge{start}")
    assert patient1 and all(o["subject"]["reference"] == "Patient/demo-patient-1" for o in patient1)
    bp = medplum.search("Observation", code=f"{LOINC}|85354-9", _lastUpdated=f"ge{start}")
    assert bp and all(mdc(o) == "150020" for o in bp)
    systolic = medplum.search("Observation", **{"component-code": f"{LOINC}|8480-6", "_lastUpdated": f"ge{start}"})
    assert {o["id"] for o in systolic} == {o["id"] for o in bp}
    dated = medplum.search("Observation", date=f"ge{first_day}", code=f"{LOINC}|85354-9", _lastUpdated=f"ge{start}")
    assert {o["id"] for o in dated} == {o["id"] for o in bp}
    phd_category = medplum.search(
        "Observation", category="http://hl7.org/fhir/uv/phd/CodeSystem/PhdObservationCategories|phd"
    )
    assert {o["id"] for o in primary} <= {o["id"] for o in phd_category}


def test_demo_bundles_posted_twice_create_nothing_the_second_time(
    medplum: FhirServer, demo_bundles: list[bytes]
) -> None:
    before = {t: count(medplum, t) for t in ("Observation", "Device")}
    for body in demo_bundles:
        validate_bundle(orjson.loads(body))
        resp = medplum.post(body)
        assert resp.status_code == 200, resp.text[:300]
        assert set(statuses(resp.json())) <= {"200", "201"}
    after_first = {t: count(medplum, t) for t in ("Observation", "Device")}
    assert after_first["Observation"] > before["Observation"]

    for body in demo_bundles:
        resp = medplum.post(body)
        assert resp.status_code == 200
        assert set(statuses(resp.json())) == {"200"}  # every entry matched: nothing created
    assert {t: count(medplum, t) for t in ("Observation", "Device")} == after_first
    # and the identifiers came through as sent (a server rewrites strings equal to a placeholder fullUrl)
    stored = medplum.search("Observation", identifier=f"{PHD_ID}|")
    assert len({i["value"] for o in stored for i in o["identifier"] if i["system"] == PHD_ID}) == len(stored)


def test_the_server_rewrites_placeholders_so_identifiers_must_not_equal_them(medplum: FhirServer) -> None:
    """Why the identifiers changed: the shape of earlier releases (identifier == fullUrl) duplicates here."""
    url = "urn:uuid:0b3f3a4e-5c1d-4e8f-9a7b-2c6d8e0f1a2b"
    entry = {
        "fullUrl": url,
        "resource": {
            "resourceType": "Observation",
            "identifier": [{"system": "urn:ietf:rfc:3986", "value": url}],
            "status": "final",
            "code": {"text": "old shape"},
        },
        "request": {"method": "POST", "url": "Observation", "ifNoneExist": f"identifier=urn:ietf:rfc:3986|{url}"},
    }
    body = orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [entry]})
    for _ in range(2):
        assert medplum.post(body).status_code == 200
    found = medplum.search("Observation", **{"code:text": "old shape"})
    assert len(found) == 2  # the stored identifier became "Observation/<id>", so the resend matched nothing
    assert all(o["identifier"][0]["value"].startswith("Observation/") for o in found)


def test_identifiers_with_search_syntax_characters_still_match(medplum: FhirServer) -> None:
    """A patient identifier holding `,` `&` `+` `%` `#` `$` and a space: escaped (FHIR search) and URL-encoded
    in ifNoneExist, so the resend matches instead of creating a second resource."""
    reading = Reading(
        kind=Kind.BODY_WEIGHT,
        measurements=(Measurement(Metric.BODY_WEIGHT, 71.5, Unit.KG),),
        device=DeviceIdentity("ble-scale", address="00:1B:DC:00:00:03"),
        received_at=datetime(2026, 11, 30, 10, 0, tzinfo=UTC),
        device_time=datetime(2026, 11, 30, 11, 0),
    )
    patient = "urn:oid:2.999.7|A,B&C+D%20#E$F G"
    mapped = map_reading(reading, patient, GatewayInfo(id="escape-gw", version="0.1.0"))
    validate_bundle(mapped.bundle)
    for expected in ("201", "200"):
        again = map_reading(reading, patient, GatewayInfo(id="escape-gw", version="0.1.0"))
        resp = medplum.post(again.body)
        assert resp.status_code == 200, resp.text[:300]
        assert statuses(resp.json())[2] == expected
    stored = medplum.search("Observation", identifier=f"{PHD_ID}|{mapped.identifier.replace(',', chr(92) + ',')}")
    assert len(stored) == 1
    # device (Bluetooth address) - patient (value-system) - MDC body weight - 2026-11-30T11:00:00 in s since 2000
    assert stored[0]["identifier"][0]["value"] == "001BDC000003-A,B&C+D%20#E$F G-urn:oid:2.999.7-188736-849351600"
