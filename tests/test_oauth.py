"""OAuth2 token source against the reference token endpoint over real TLS."""
# ruff: noqa: F401, F811  (pytest fixtures imported from tests.https_support)

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import date
from pathlib import Path

import httpx
import pytest
from structlog.testing import capture_logs

from gateway.errors import GatewayError
from gateway.forwarders.base import RetryableError
from gateway.https_tls import client_context
from gateway.oauth import AuthRefusedError, OAuthSettings, TokenSource
from simulators.fhir_receiver import Receiver
from tests.certs import write_private
from tests.https_support import CLIENT_SECRET, Pki, basic_auth, forwarder, item, pki, receiver


def jwt_auth(pki: Pki, port: int, algorithm: str) -> OAuthSettings:
    return OAuthSettings(
        method="private_key_jwt",
        token_url=f"https://localhost:{port}/token",
        client_id="gw-rsa" if algorithm == "RS384" else "gw-ec",
        secret=str(pki.rsa_key_file if algorithm == "RS384" else pki.ec_key_file),
        scope="system/Observation.write",
        algorithm="RS384" if algorithm == "RS384" else "ES384",
        key_id="k1",
    )


def client(pki: Pki) -> httpx.AsyncClient:
    return httpx.AsyncClient(verify=client_context(pki.ca.cert_file))


@pytest.mark.parametrize("algorithm", ["RS384", "ES384"])
async def test_private_key_jwt_end_to_end(pki: Pki, receiver: Receiver, algorithm: str) -> None:
    auth = jwt_auth(pki, receiver.port, algorithm)
    async with forwarder(pki, receiver.port, auth=auth) as fwd:
        assert (await fwd.send([item(1)])).confirmed == {1}
        assert fwd.auth is not None
        async with client(pki) as c:
            assert await fwd.auth.refresh(c, stale="not-the-current-one") == await fwd.auth.bearer(c)
            await fwd.auth.refresh(c, stale=await fwd.auth.bearer(c))  # a second assertion
    assert len(receiver.assertions) == 2
    (h1, c1), (_, c2) = receiver.assertions
    assert h1 == {"alg": algorithm, "typ": "JWT", "kid": "k1"}
    assert c1["iss"] == c1["sub"] == auth.client_id
    assert c1["aud"] == f"https://localhost:{receiver.port}/token"
    assert 0 < c1["exp"] - c1["iat"] <= 300
    assert c1["jti"] != c2["jti"]
    assert receiver.token_requests == [auth.client_id, auth.client_id]


async def test_assertion_signed_with_wrong_key_is_invalid_client(pki: Pki, receiver: Receiver) -> None:
    auth = jwt_auth(pki, receiver.port, "RS384")
    other = jwt_auth(pki, receiver.port, "ES384")
    # gw-rsa's id with the EC key: signature check against the registered RSA key fails
    src = TokenSource(
        OAuthSettings(
            method="private_key_jwt",
            token_url=auth.token_url,
            client_id="gw-rsa",
            secret=other.secret,
            algorithm="ES384",
        )
    )
    async with client(pki) as c:
        with capture_logs() as logs, pytest.raises(AuthRefusedError):
            await src.bearer(c)
    assert [e["event"] for e in logs if e["log_level"] == "critical"] == ["oauth_invalid_client"]


def test_key_must_fit_algorithm(pki: Pki) -> None:
    with pytest.raises(GatewayError, match="RS384 needs an RSA key"):
        TokenSource(OAuthSettings("private_key_jwt", "https://x/token", "c", str(pki.ec_key_file), algorithm="RS384"))
    with pytest.raises(GatewayError, match="ES384 needs an EC key on curve P-384"):
        TokenSource(OAuthSettings("private_key_jwt", "https://x/token", "c", str(pki.rsa_key_file), algorithm="ES384"))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_token_cached_until_expiry_minus_skew(pki: Pki, receiver: Receiver) -> None:
    receiver.faults.token_lifetime = 120
    clock = Clock()
    src = TokenSource(basic_auth(pki, receiver.port, skew_seconds=60), monotonic=clock)
    async with client(pki) as c:
        first = await src.bearer(c)
        clock.now += 59
        assert await src.bearer(c) == first
        clock.now += 2  # 61 s: inside the skew window -> renewed before the server's expiry
        second = await src.bearer(c)
    assert second != first
    assert receiver.tokens_issued == 2


async def test_one_refresh_in_flight(pki: Pki, receiver: Receiver) -> None:
    src = TokenSource(basic_auth(pki, receiver.port))
    async with client(pki) as c:
        tokens = await asyncio.gather(*(src.bearer(c) for _ in range(8)))
        assert len(set(tokens)) == 1
        # several callers hitting 401 with the same stale token: still one refresh
        fresh = await asyncio.gather(*(src.refresh(c, stale=tokens[0]) for _ in range(5)))
    assert len(set(fresh)) == 1 and fresh[0] != tokens[0]
    assert receiver.tokens_issued == 2


async def test_token_endpoint_busy_is_retryable(pki: Pki, receiver: Receiver) -> None:
    receiver.faults.token_statuses.append((503, 30))
    src = TokenSource(basic_auth(pki, receiver.port))
    async with client(pki) as c:
        with pytest.raises(RetryableError) as info:
            await src.bearer(c)
        assert info.value.retry_after == 30.0
        assert await src.bearer(c)


async def test_reload_picks_up_rotated_secret(pki: Pki, receiver: Receiver, tmp_path: Path) -> None:
    secret_file = write_private(tmp_path / "rotating.secret", CLIENT_SECRET.encode())
    settings = replace(basic_auth(pki, receiver.port), secret=str(secret_file))
    src = TokenSource(settings)
    receiver.clients["gw-basic"].secret = "rotated-NEW-secret-0001"  # the backend rotated it
    async with client(pki) as c:
        with capture_logs(), pytest.raises(AuthRefusedError):
            await src.bearer(c)
        write_private(secret_file, b"rotated-NEW-secret-0001\n")  # the operator installs the new one
        src.reload()  # SIGHUP
        assert await src.bearer(c)
        secret_file.unlink()  # a broken rotation: keep going with what we have
        with capture_logs() as logs:
            src.reload()
        assert [e["event"] for e in logs] == ["oauth_secret_reload_failed"]
        assert await src.bearer(c)
    assert "rotated-NEW-secret-0001" not in repr(logs)


async def test_client_secret_basic_sends_rfc6749_form(pki: Pki, receiver: Receiver, tmp_path: Path) -> None:
    """Id and secret are form-urlencoded before Basic encoding (RFC 6749 2.3.1): ':' and '+' survive."""
    odd = "a:b+c d/é"
    write_private(tmp_path / "odd.secret", odd.encode())
    receiver.clients["gw-basic"].secret = odd
    settings = replace(basic_auth(pki, receiver.port), secret=str(tmp_path / "odd.secret"))
    async with client(pki) as c:
        assert await TokenSource(settings).bearer(c)


def test_credential_expiry_warning(pki: Pki) -> None:
    today = [date(2027, 1, 10)]
    settings = replace(basic_auth(pki, 1), credential_expires=date(2027, 2, 1), expiry_warning_days=14)
    src = TokenSource(settings, today=lambda: today[0])
    with capture_logs() as logs:
        src.check_expiry()  # 22 days left: quiet
        today[0] = date(2027, 1, 18)
        src.check_expiry()  # 14 days left: warn
        src.check_expiry()  # same day: once
        today[0] = date(2027, 1, 19)
        src.check_expiry()
        today[0] = date(2027, 2, 2)
        src.check_expiry()
    assert [(e["event"], e["log_level"], e.get("days_left", e.get("days_ago"))) for e in logs] == [
        ("oauth_credential_expiry_near", "warning", 14),
        ("oauth_credential_expiry_near", "warning", 13),
        ("oauth_credential_expired", "critical", 1),
    ]
