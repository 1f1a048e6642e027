"""Shared pieces of the HTTPS forwarder tests: a PKI, a running reference receiver, sample items.

The sample items are hand-written, valid FHIR R4 transaction entries (a PHD-style Device plus a
blood-pressure Observation referencing it by `urn:uuid`, both by conditional create on identifier),
standing in for `gateway.fhir` output so these tests do not depend on the mapping's details.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.forwarders.base import Outgoing
from gateway.forwarders.https import HttpsForwarder, HttpsSettings
from gateway.oauth import OAuthSettings
from simulators.fhir_receiver import Client, Receiver, server_context
from tests.certs import CA, Leaf, make_ca, private_pem, write_private, write_secret

SYSTEM = "urn:ietf:rfc:3986"
DEVICE_SYSTEM = "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680"
CLIENT_SECRET = "s3cr3t-Do-Not-Log-4711"


def device_entry(eui64: str) -> dict[str, Any]:
    return {
        "fullUrl": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'device/' + eui64)}",
        "resource": {
            "resourceType": "Device",
            "identifier": [{"system": DEVICE_SYSTEM, "value": eui64}],
            "manufacturer": "Acme",
            "modelNumber": "BP-1",
        },
        "request": {"method": "POST", "url": "Device", "ifNoneExist": f"identifier={DEVICE_SYSTEM}|{eui64}"},
    }


def observation_entry(n: int, eui64: str, systolic: float = 120.0) -> dict[str, Any]:
    ident = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'obs/{eui64}/{n}')}"
    return {
        "fullUrl": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'obs-entry/{eui64}/{n}')}",
        "resource": {
            "resourceType": "Observation",
            "identifier": [{"system": SYSTEM, "value": ident}],
            "status": "final",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "vital-signs",
                        }
                    ]
                }
            ],
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "effectiveDateTime": f"2026-11-24T08:{n // 60 % 60:02d}:{n % 60:02d}Z",
            "device": {"reference": device_entry(eui64)["fullUrl"]},
            "component": [
                {
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                    "valueQuantity": {
                        "value": systolic,
                        "unit": "mmHg",
                        "system": "http://unitsofmeasure.org",
                        "code": "mm[Hg]",
                    },
                },
                {
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                    "valueQuantity": {
                        "value": 80.0,
                        "unit": "mmHg",
                        "system": "http://unitsofmeasure.org",
                        "code": "mm[Hg]",
                    },
                },
            ],
        },
        "request": {"method": "POST", "url": "Observation", "ifNoneExist": f"identifier={SYSTEM}|{ident}"},
    }


def item(item_id: int, n: int | None = None, eui64: str = "0011223344556677", **kw: Any) -> Outgoing:
    """One queue item = one reading = Device entry + Observation entry."""
    entries = [device_entry(eui64), observation_entry(item_id if n is None else n, eui64, **kw)]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    identifier = entries[1]["resource"]["identifier"][0]["value"]
    return Outgoing(item_id, identifier, bundle, orjson.dumps(bundle), entries)


@dataclass
class Pki:
    ca: CA
    server: Leaf
    directory: Path
    secret_file: Path
    rsa_key_file: Path
    ec_key_file: Path
    rsa_public: bytes
    ec_public: bytes


def make_pki(directory: Path) -> Pki:
    ca = make_ca(directory)
    server = ca.issue("server")
    secret_file = write_secret(directory / "client.secret", CLIENT_SECRET)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP384R1())

    def pub(k: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
        return k.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    return Pki(
        ca,
        server,
        directory,
        secret_file,
        write_private(directory / "rsa.pem", private_pem(rsa_key)),
        write_private(directory / "ec.pem", private_pem(ec_key)),
        pub(rsa_key),
        pub(ec_key),
    )


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path)


@pytest.fixture
async def receiver(pki: Pki) -> AsyncIterator[Receiver]:
    rx = Receiver(
        [
            Client("gw-basic", secret=CLIENT_SECRET),
            Client("gw-rsa", public_key_pem=pki.rsa_public),
            Client("gw-ec", public_key_pem=pki.ec_public),
        ]
    )
    await rx.start(server_context(pki.server.cert_file, pki.server.key_file))
    yield rx
    await rx.stop()


def basic_auth(pki: Pki, port: int, **kw: Any) -> OAuthSettings:
    return OAuthSettings(
        method="client_secret_basic",
        token_url=f"https://localhost:{port}/token",
        client_id="gw-basic",
        secret=str(pki.secret_file),
        scope="system/Observation.write system/Device.write",
        **kw,
    )


def settings(pki: Pki, port: int, auth: OAuthSettings | str | None = "basic", **kw: Any) -> HttpsSettings:
    """Forwarder settings against the test receiver; `auth="basic"` = client_secret_basic as gw-basic."""
    return HttpsSettings(
        base_url=f"https://localhost:{port}/fhir",
        ca_file=pki.ca.cert_file,
        auth=basic_auth(pki, port) if auth == "basic" else auth,  # type: ignore[arg-type]
        **kw,
    )


def forwarder(pki: Pki, port: int, auth: OAuthSettings | str | None = "basic", **kw: Any) -> HttpsForwarder:
    return HttpsForwarder(settings(pki, port, auth, **kw))
