"""The issue's Low items (issue 11), each performed: a downgraded TLS 1.2 suite, a proxy from the
environment, a `$SYS` topic, a Unicode gateway id, a JWT client key without `kid`, logs without the guard."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest

from gateway.config import parse_config
from gateway.errors import ConfigError
from gateway.tls import tls_client_context
from tests.certs import make_ca


def _handshake(tmp_path: Path, server_ciphers: str) -> str | None:
    """Our client against a TLS 1.2-only server offering just `server_ciphers`; the cipher, or None."""
    tmp_path.mkdir()
    ca = make_ca(tmp_path)
    leaf = ca.issue("server")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    server_ctx.set_ciphers(server_ciphers)
    server_ctx.load_cert_chain(str(leaf.cert_file), str(leaf.key_file))
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with socket.create_connection(listener.getsockname(), timeout=10) as raw:
            try:
                with tls_client_context(ca.cert_file).wrap_socket(raw, server_hostname="localhost") as tls:
                    cipher = tls.cipher()
                    return cipher[0] if cipher else None
            except ssl.SSLError:
                return None
    finally:
        thread.join(10)
        listener.close()


def test_attack_tls12_downgrade_to_cbc_or_dhe_is_refused(tmp_path: Path) -> None:
    assert _handshake(tmp_path / "a", "ECDHE-ECDSA-AES128-GCM-SHA256") == "ECDHE-ECDSA-AES128-GCM-SHA256"
    assert _handshake(tmp_path / "b", "ECDHE-ECDSA-AES128-SHA256") is None  # CBC
    assert _handshake(tmp_path / "c", "ECDHE-ECDSA-AES256-SHA") is None  # CBC, SHA-1 MAC
    offered = [c["name"] for c in tls_client_context().get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert offered and not [
        n for n in offered if "CBC" in n or n.startswith("DHE-") or ("GCM" not in n and "CHACHA" not in n)
    ]


def test_attack_https_proxy_in_the_environment_is_not_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import asyncio

    from structlog.testing import capture_logs

    from gateway.forwarders.https import HttpsForwarder, HttpsSettings

    monkeypatch.setenv("HTTPS_PROXY", "http://attacker.example:3128")
    fwd = HttpsForwarder(HttpsSettings(base_url="https://fhir.example/r4"))

    async def go() -> Any:
        with capture_logs() as logs:
            async with fwd:
                assert fwd._client is not None
                return fwd._client._mounts, logs  # httpx builds proxy mounts only when it trusts the environment

    mounts, logs = asyncio.run(go())
    assert not mounts
    assert any(e["event"] == "https_proxy_ignored" and e["variables"] == ["HTTPS_PROXY"] for e in logs)


@pytest.mark.parametrize("topic", ["$SYS/broker/x", "$share/g/{gateway_id}"])
def test_attack_topic_into_the_brokers_own_namespace_is_refused(topic: str, tmp_path: Path) -> None:
    from gateway.forwarders import ForwarderContext
    from gateway.forwarders.mqtt_config import parse_settings

    section = {"host": "broker.example", "topic": topic}
    with pytest.raises(ConfigError, match=r"\$"):
        parse_settings(section, ForwarderContext("<t>", "gw1", tmp_path))


def test_attack_unicode_lookalike_gateway_id_is_refused() -> None:
    with pytest.raises(ConfigError, match="ASCII"):
        parse_config({"gateway": {"id": "gw-\u0441linic"}})  # Cyrillic es, looks like "c"
    assert parse_config({"gateway": {"id": "gw-clinic.1"}}).gateway_id == "gw-clinic.1"


def test_private_key_jwt_without_kid_is_refused(tmp_path: Path) -> None:
    from tests.https_support import make_pki

    pki = make_pki(tmp_path)
    from gateway.forwarders.https import settings_from

    auth = {
        "method": "private_key_jwt",
        "token_url": "https://auth.example/token",
        "client_id": "gw-1",
        "private_key_file": str(pki.rsa_key_file),
    }
    with pytest.raises(ConfigError) as info:
        settings_from({"base_url": "https://fhir.example/r4", "auth": auth}, "<t>")
    assert info.value.key == "output.https.auth.key_id"
    assert settings_from({"base_url": "https://fhir.example/r4", "auth": {**auth, "key_id": "k1"}}, "<t>").auth


def test_every_command_logs_through_the_phi_guard() -> None:
    import structlog

    from gateway.cli import main
    from gateway.logging import scrub_phi

    structlog.reset_defaults()
    assert main(["drivers"]) == 0
    assert scrub_phi in structlog.get_config()["processors"]
    structlog.reset_defaults()
