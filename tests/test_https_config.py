"""`[output.https]` validation: every problem is a ConfigError naming the key."""
# ruff: noqa: F401, F811  (pytest fixtures imported from tests.https_support)

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from gateway.config import parse_config
from gateway.errors import ConfigError
from gateway.forwarders import ForwarderContext, build_forwarder
from gateway.forwarders.https import HttpsForwarder
from tests.https_support import Pki, pki

CTX = ForwarderContext(config_file="/etc/vitalgate/vitalgate.toml", gateway_id="gw", state_dir=Path("/tmp"))


def section(pki: Pki, **over: Any) -> dict[str, Any]:
    auth = {
        "method": "client_secret_basic",
        "token_url": "https://auth.example/token",
        "client_id": "gw-1",
        "client_secret_file": str(pki.secret_file),
        "scope": "system/Observation.write",
        "credential_expires": date(2027, 2, 1),
        "expiry_warning_days": 14,
    }
    auth.update(over.pop("auth", {}))
    base: dict[str, Any] = {"base_url": "https://fhir.example/r4", "ca_file": str(pki.ca.cert_file), "auth": auth}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def test_valid_section_builds_through_the_registry(pki: Pki) -> None:
    fwd = build_forwarder("https", section(pki, window=50, bundle_type="batch"), CTX)
    assert isinstance(fwd, HttpsForwarder)
    assert fwd.window == 50
    assert fwd.settings.bundle_type == "batch"
    assert fwd.settings.auth is not None and fwd.settings.auth.credential_expires == date(2027, 2, 1)


def test_from_toml_via_the_main_config(pki: Pki) -> None:
    doc = tomllib.loads(
        f"""
[gateway]
key_file = "/etc/vitalgate/data.key"
[output]
forwarder = "https"
[output.https]
base_url = "https://fhir.example/r4"
ca_file = "{pki.ca.cert_file}"
window = 25
[output.https.auth]
method = "private_key_jwt"
token_url = "https://auth.example/token"
client_id = "gw-1"
private_key_file = "{pki.ec_key_file}"
key_id = "gw-1-2026"
algorithm = "ES384"
credential_expires = 2027-02-01
"""
    )
    cfg = parse_config(doc, "/etc/vitalgate/vitalgate.toml")
    fwd = build_forwarder(cfg.forwarder, cfg.forwarder_options, CTX)
    assert isinstance(fwd, HttpsForwarder) and fwd.window == 25
    assert fwd.settings.auth is not None and fwd.settings.auth.algorithm == "ES384"


@pytest.mark.parametrize(
    ("over", "key", "problem"),
    [
        ({"base_url": "http://fhir.example/r4"}, "output.https.base_url", "must be an https:// URL"),
        ({"base_url": None}, "output.https.base_url", "is required"),
        ({"colour": "blue"}, "output.https.colour", "unknown key"),
        ({"window": 0}, "output.https.window", "must be a number from 1 to 1000"),
        ({"window": 2.5}, "output.https.window", "must be a whole number"),
        ({"bundle_type": "collection"}, "output.https.bundle_type", "must be one of 'transaction', 'batch'"),
        ({"ca_file": "/nonexistent/ca.pem"}, "output.https.ca_file", "/nonexistent/ca.pem: no such file"),
        ({"timeout_seconds": True}, "output.https.timeout_seconds", "must be a number"),
        ({"auth": {"method": "magic"}}, "output.https.auth.method", "must be one of"),
        ({"auth": {"token_url": "http://auth.example/token"}}, "output.https.auth.token_url", "https://"),
        ({"auth": {"client_id": ""}}, "output.https.auth.client_id", "non-empty string"),
        ({"auth": {"credential_expires": "2027-02-01"}}, "output.https.auth.credential_expires", "TOML date"),
        ({"auth": {"assertion_lifetime_seconds": 600}}, "output.https.auth.assertion_lifetime_seconds", "30 to 300"),
        ({"auth": {"private_key_file": "/x"}}, "output.https.auth.private_key_file", "does not apply"),
        ({"auth": {"algorithm": "HS256"}}, "output.https.auth.algorithm", "must be one of 'RS384', 'ES384'"),
    ],
)
def test_bad_values_name_the_key(pki: Pki, over: dict[str, Any], key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_forwarder("https", section(pki, **over), CTX)
    assert info.value.key == key
    assert problem in info.value.problem
    assert info.value.file == CTX.config_file


def test_auth_is_required_and_none_is_explicit(pki: Pki) -> None:
    data = section(pki)
    del data["auth"]
    with pytest.raises(ConfigError) as info:
        build_forwarder("https", data, CTX)
    assert info.value.key == "output.https.auth"
    data["auth"] = {"method": "none"}
    fwd = build_forwarder("https", data, CTX)
    assert isinstance(fwd, HttpsForwarder) and fwd.auth is None


def test_secret_file_permissions_checked_at_startup(pki: Pki) -> None:
    pki.secret_file.chmod(0o640)
    with pytest.raises(ConfigError) as info:
        build_forwarder("https", section(pki), CTX)
    assert info.value.key == "output.https.auth.client_secret_file"
    assert "group/others" in info.value.problem


def test_private_key_must_fit_algorithm(pki: Pki) -> None:
    auth = {"method": "private_key_jwt", "client_secret_file": None, "private_key_file": str(pki.rsa_key_file)}
    auth["key_id"] = "k1"
    data = section(pki, auth=auth)
    data["auth"] = {k: v for k, v in data["auth"].items() if v is not None} | {"algorithm": "ES384"}
    with pytest.raises(ConfigError) as info:
        build_forwarder("https", data, CTX)
    assert info.value.key == "output.https.auth.private_key_file"
    assert "ES384 needs an EC key on curve P-384" in info.value.problem


def test_mtls_needs_cert_and_key(pki: Pki) -> None:
    leaf = pki.ca.issue("client", server=False, hosts=())
    with pytest.raises(ConfigError) as info:
        build_forwarder("https", section(pki, client_cert_file=str(leaf.cert_file)), CTX)
    assert info.value.key == "output.https.client_key_file"
    fwd = build_forwarder(
        "https", section(pki, client_cert_file=str(leaf.cert_file), client_key_file=str(leaf.key_file)), CTX
    )
    assert isinstance(fwd, HttpsForwarder)


def test_client_secret_that_is_not_utf8_is_refused_at_startup(pki: Pki) -> None:
    """client_secret_basic needs text (RFC 6749 2.3.1); binary junk must stop start-up with the key named,
    not raise UnicodeDecodeError (an untyped error the drainer does not handle) at the first token fetch."""
    pki.secret_file.write_bytes(b"\xff\xfe-not-text")
    with pytest.raises(ConfigError) as info:
        build_forwarder("https", section(pki), CTX)
    assert info.value.key == "output.https.auth.client_secret_file"
    assert "UTF-8" in info.value.problem
