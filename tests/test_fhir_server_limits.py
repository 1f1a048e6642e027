"""Server limits: Bundles as large as the server takes, never one reading at a time, nothing quarantined.

Against the real engine (Medplum refuses a transaction with conditional creates over 8 entries: "too
many entries") and, for the generic path (HTTP 413 naming a maximum), the reference receiver's fault.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from gateway.errors import ConfigError
from gateway.fhir import GatewayInfo, map_reading
from gateway.forwarders.base import Outgoing, PermanentError
from gateway.forwarders.fhir_bundle import pack
from gateway.forwarders.https import HttpsForwarder, HttpsSettings, settings_from
from gateway.reading import DeviceIdentity, Kind, Measurement, Metric, Reading, Unit
from simulators.fhir_receiver import Receiver
from tests.fhir_server import FhirServer
from tests.https_support import Pki, forwarder, item, pki, receiver

__all__ = ["pki", "receiver"]  # fixtures, imported for pytest

GATEWAY = GatewayInfo(id="limits-gw", version="0.1.0")
DEVICE = DeviceIdentity("ble-hr", address="00:1B:DC:00:00:01", system_id="001bdcfffe000001", manufacturer="Acme")
START = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def pulses(patient: str, first: int, n: int) -> list[Outgoing]:
    """`n` pulse-rate readings (2 Devices + 1 Observation each; 2 + n entries once merged)."""
    out = []
    for i in range(first, first + n):
        r = Reading(
            kind=Kind.PULSE_RATE,
            measurements=(Measurement(Metric.PULSE_RATE, 60.0 + i % 30, Unit.PER_MIN),),
            device=DEVICE,
            received_at=START + timedelta(minutes=i),
            device_time=(START + timedelta(minutes=i)).replace(tzinfo=None),
            sequence=i,
        )
        m = map_reading(r, patient, GATEWAY)
        out.append(Outgoing(i, m.identifier, m.bundle, m.body, m.entries))
    return out


def sent(logs: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return [(e["items"], e["entries"]) for e in logs if e["event"] == "fhir_batch_sent"]


def medplum_forwarder(server: FhirServer, **kw: Any) -> HttpsForwarder:
    return HttpsForwarder(HttpsSettings(base_url=server.base_url, ca_file=server.ca_file, auth=None, **kw))


async def test_refused_size_halves_and_is_remembered(medplum: FhirServer) -> None:
    async with medplum_forwarder(medplum) as fwd:
        with capture_logs() as logs:
            report = await fwd.send(pulses("Patient/limits-learn", 0, 12))  # 14 entries: refused
        assert report.confirmed == frozenset(range(12)) and not report.rejected
        assert fwd.max_entries == 7  # 14 halved, and Medplum took it
        assert [e["max_entries"] for e in logs if e["event"] == "fhir_bundle_too_large_shrinking"] == [7]
        assert sent(logs) == [(5, 7), (5, 7), (2, 4)]  # full Bundles, not one reading at a time
        with capture_logs() as logs:
            report = await fwd.send(pulses("Patient/limits-learn", 12, 10))
        assert report.confirmed == frozenset(range(12, 22))
        assert sent(logs) == [(5, 7), (5, 7)]  # the size that worked, without asking again
    stored = medplum.search("Observation", patient="Patient/limits-learn")
    assert len(stored) == 22


async def test_configured_max_entries_fills_each_bundle(medplum: FhirServer) -> None:
    async with medplum_forwarder(medplum, max_entries=8) as fwd:
        with capture_logs() as logs:
            report = await fwd.send(pulses("Patient/limits-8", 100, 20))
    assert report.confirmed == frozenset(range(100, 120)) and not report.rejected
    assert sent(logs) == [(6, 8), (6, 8), (6, 8), (2, 4)]
    assert not [e for e in logs if e["event"] == "fhir_bundle_too_large_shrinking"]
    assert len(medplum.search("Observation", patient="Patient/limits-8")) == 20


async def test_generic_413_naming_a_maximum_shrinks(pki: Pki, receiver: Receiver) -> None:
    receiver.faults.max_entries = 5
    async with forwarder(pki, receiver.port) as fwd:
        with capture_logs() as logs:
            report = await fwd.send([item(i) for i in range(10)])  # one Device + 10 Observations
    assert report.confirmed == frozenset(range(10)) and not report.rejected
    assert fwd.max_entries == 5
    assert sent(logs) == [(4, 5), (4, 5), (2, 3)]
    assert len(receiver.of_type("Observation")) == 10


async def test_one_reading_over_the_limit_is_kept_not_quarantined(pki: Pki, receiver: Receiver) -> None:
    receiver.faults.max_entries = 1
    async with forwarder(pki, receiver.port) as fwd:
        with pytest.raises(PermanentError, match="one reading"):
            await fwd.send([item(1)])  # Device + Observation: no Bundle small enough exists
    assert receiver.of_type("Observation") == []


def test_max_entries_config(tmp_path: Path) -> None:
    base = {"base_url": "https://fhir.example/r4", "auth": {"method": "none"}}
    assert settings_from(base, "gw.toml").max_entries is None
    assert settings_from({**base, "max_entries": 8}, "gw.toml").max_entries == 8
    for bad in (0, 2.5, "8", True):
        with pytest.raises(ConfigError, match="max_entries"):
            settings_from({**base, "max_entries": bad}, "gw.toml")


async def test_batch_references_by_identifier_and_drops_phd_claims(medplum: FhirServer) -> None:
    """Batch entries cannot refer to each other: logical references, and no PhdBaseObservation claim."""
    items = pulses("Patient/limits-batch", 200, 3)
    packed = orjson.loads(pack(items, "batch").body)
    obs = [e["resource"] for e in packed["entry"] if e["resource"]["resourceType"] == "Observation"]
    assert len(obs) == 3
    for o in obs:
        assert "reference" not in o["device"]
        assert o["device"]["identifier"]["system"] == "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680"
        assert not [p for p in o["meta"]["profile"] if "/uv/phd/" in p]
        assert o["meta"]["profile"][0] == "http://hl7.org/fhir/StructureDefinition/vitalsigns"
    async with medplum_forwarder(medplum, bundle_type="batch") as fwd:
        report = await fwd.send(items)
    assert report.confirmed == frozenset(range(200, 203))
    stored = medplum.search("Observation", patient="Patient/limits-batch")
    assert len(stored) == 3 and all("identifier" in o["device"] for o in stored)


async def test_shrunk_bundle_size_shows_in_status_json_and_metrics(
    pki: Pki, receiver: Receiver, tmp_path: Path
) -> None:
    """The operator sees the Bundle size in use, not only the log line: the daemon's health model (so
    `status`, `status --json`, the console) and the Prometheus gauge follow the forwarder's shrink."""
    from prometheus_client import generate_latest

    from gateway.config import parse_config
    from gateway.crypto import KeyRing
    from gateway.daemon import Gateway
    from gateway.health import snapshot
    from gateway.health.report import render_status, status_document
    from gateway.metrics import registry_for

    receiver.faults.max_entries = 5
    cfg = parse_config(
        {
            "gateway": {"state_dir": str(tmp_path / "state")},
            "output": {
                "forwarder": "https",
                "https": {
                    "base_url": f"https://localhost:{receiver.port}/fhir",
                    "ca_file": str(pki.ca.cert_file),
                    "max_entries": 8,
                    "auth": {
                        "method": "client_secret_basic",
                        "token_url": f"https://localhost:{receiver.port}/token",
                        "client_id": "gw-basic",
                        "client_secret_file": str(pki.secret_file),
                        "scope": "system/Observation.write system/Device.write",
                    },
                },
            },
        }
    )
    gw = Gateway(cfg, KeyRing.generate())
    before = gw.model.as_dict()["forwarder"]
    assert (before["max_entries"], before["max_entries_configured"]) == (8, 8)
    async with gw.forwarder:
        report = await gw.forwarder.send([item(i) for i in range(10)])  # 8 entries refused: halved to 4
    assert report.confirmed == frozenset(range(10))
    health = gw.model.as_dict()["forwarder"]
    assert (health["max_entries"], health["max_entries_configured"]) == (4, 8)
    (tmp_path / "state").mkdir(exist_ok=True)
    snapshot.write(tmp_path / "state" / snapshot.SNAPSHOT_NAME, gw.model.as_dict())
    text = render_status(status_document(tmp_path / "state", {"pending": 0}, [], 0))
    assert (
        "bundle size      at most 4 entries per Bundle (8 configured): the FHIR server refused a larger one; "
        "set output.https.max_entries to match it"
    ) in text.splitlines()
    assert b"vitalgate_forwarder_bundle_max_entries 4.0" in generate_latest(registry_for(gw.model))
