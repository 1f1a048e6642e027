"""OAuth2 client-credentials bearer tokens for the HTTPS forwarder.

Two ways to prove who we are at the token endpoint:

- `client_secret_basic` (RFC 6749 2.3.1, CMS BCDA style): client id and secret in HTTP Basic auth.
- `private_key_jwt` (RFC 7523, SMART Backend Services): a short-lived RS384/ES384 JWT assertion signed
  with our private key, `aud` = the token endpoint, unique `jti`, `exp` at most five minutes ahead.

The token is cached until its expiry minus a skew; concurrent callers share one refresh (a lock, checked
again inside). `invalid_client` means revoked or expired credentials: that is logged at critical level
(alerting) and raised as `PermanentError`, so the core retries only slowly until an operator rotates the
secret; `reload()` (called on SIGHUP) re-reads it without a restart. Secrets and tokens never reach a log
event or an exception message.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal
from urllib.parse import quote_plus

import httpx
import jwt
import structlog
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from gateway.errors import GatewayError
from gateway.forwarders.base import PermanentError, RetryableError
from gateway.https_tls import transport_error
from gateway.retry_after import parse_retry_after
from gateway.secrets import read_secret

__all__ = ["AuthRefusedError", "OAuthSettings", "TokenSource"]

log = structlog.get_logger(__name__)

Method = Literal["client_secret_basic", "private_key_jwt"]
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME = 300  # SMART Backend Services: exp no more than five minutes in the future
DEFAULT_EXPIRES_IN = 300  # when a token response omits expires_in


class AuthRefusedError(PermanentError):
    """The token endpoint refused our credentials; `error` is the OAuth error code (never a secret)."""

    def __init__(self, message: str, *, error: str) -> None:
        super().__init__(message)
        self.error = error


@dataclass(frozen=True, slots=True)
class OAuthSettings:
    method: Method
    token_url: str
    client_id: str
    secret: str  # a read_secret spec: client secret file, or private key PEM file for private_key_jwt
    scope: str | None = None
    algorithm: Literal["RS384", "ES384"] = "RS384"
    key_id: str | None = None
    skew_seconds: float = 60.0
    assertion_lifetime: int = MAX_ASSERTION_LIFETIME
    credential_expires: date | None = None
    expiry_warning_days: int = 14


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    good_until: float  # monotonic


def load_signing_key(pem: bytes, algorithm: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    """The private key, checked to fit the algorithm (RS384 needs RSA >= 2048 bits, ES384 needs P-384)."""
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise GatewayError("private key: not an unencrypted PEM private key") from None
    if algorithm == "RS384":
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
            raise GatewayError("private key: RS384 needs an RSA key of at least 2048 bits")
        return key
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP384R1):
        raise GatewayError("private key: ES384 needs an EC key on curve P-384")
    return key


class TokenSource:
    """Bearer tokens for one client at one token endpoint, cached and refreshed one at a time."""

    def __init__(
        self,
        settings: OAuthSettings,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        today: Callable[[], date] = date.today,
    ) -> None:
        self.settings = settings
        self._monotonic = monotonic
        self._wall = wall
        self._today = today
        self._lock = asyncio.Lock()
        self._token: _Token | None = None
        self._warned_on: date | None = None
        self._secret = b""
        self._key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None = None
        self._load()  # fail at startup, not at the first reading

    def _load(self) -> None:
        secret = read_secret(self.settings.secret)
        if self.settings.method == "private_key_jwt":
            self._key = load_signing_key(secret, self.settings.algorithm)
        elif not secret:
            raise GatewayError("client secret file is empty")
        else:
            try:
                secret.decode("utf-8")  # sent form-encoded in HTTP Basic (RFC 6749 2.3.1): must be text
            except UnicodeDecodeError:
                raise GatewayError("client secret is not UTF-8 text") from None
        self._secret = secret

    def reload(self) -> None:
        """Re-read the secret (SIGHUP after rotation) and forget the cached token.

        A failed re-read keeps the old secret: a half-written rotation must not stop forwarding.
        """
        try:
            self._load()
        except GatewayError as exc:
            log.error("oauth_secret_reload_failed", problem=str(exc))
            return
        self._token = None
        log.info("oauth_secret_reloaded", client_id=self.settings.client_id)

    def check_expiry(self) -> None:
        """Warn (once a day) when the configured credential expiry date is near or past."""
        expires = self.settings.credential_expires
        today = self._today()
        if expires is None or self._warned_on == today:
            return
        days_left = (expires - today).days
        if days_left < 0:
            self._warned_on = today
            log.critical("oauth_credential_expired", expired_on=expires.isoformat(), days_ago=-days_left)
        elif days_left <= self.settings.expiry_warning_days:
            self._warned_on = today
            log.warning("oauth_credential_expiry_near", expires_on=expires.isoformat(), days_left=days_left)

    def _current(self) -> str | None:
        tok = self._token
        if tok is not None and self._monotonic() < tok.good_until:
            return tok.value
        return None

    async def bearer(self, client: httpx.AsyncClient) -> str:
        """A token valid for at least the skew; fetched only when the cached one is (nearly) expired."""
        value = self._current()
        if value is not None:
            return value
        async with self._lock:
            value = self._current()
            if value is not None:
                return value
            return await self._fetch(client)

    async def refresh(self, client: httpx.AsyncClient, stale: str) -> str:
        """After a 401 with `stale`: a new token, unless another caller already replaced it."""
        async with self._lock:
            value = self._current()
            if value is not None and value != stale:
                return value
            self._token = None
            return await self._fetch(client)

    def _assertion(self) -> str:
        now = int(self._wall())
        claims: dict[str, Any] = {
            "iss": self.settings.client_id,
            "sub": self.settings.client_id,
            "aud": self.settings.token_url,
            "iat": now,
            "exp": now + min(self.settings.assertion_lifetime, MAX_ASSERTION_LIFETIME),
            "jti": uuid.uuid4().hex,
        }
        headers = {"kid": self.settings.key_id} if self.settings.key_id else None
        assert self._key is not None, "private_key_jwt loads its key in _load()"
        return jwt.encode(claims, self._key, algorithm=self.settings.algorithm, headers=headers)

    def _request(self) -> tuple[dict[str, str], httpx.BasicAuth | None]:
        form = {"grant_type": "client_credentials"}
        if self.settings.scope:
            form["scope"] = self.settings.scope
        if self.settings.method == "private_key_jwt":
            form["client_assertion_type"] = ASSERTION_TYPE
            form["client_assertion"] = self._assertion()
            return form, None
        # RFC 6749 2.3.1: both parts form-urlencoded before Basic encoding.
        user = quote_plus(self.settings.client_id)
        password = quote_plus(self._secret.decode("utf-8"))
        return form, httpx.BasicAuth(user, password)

    async def _fetch(self, client: httpx.AsyncClient) -> str:
        self.check_expiry()
        form, basic = self._request()
        try:
            resp = await client.post(
                self.settings.token_url,
                data=form,
                auth=basic if basic is not None else httpx.USE_CLIENT_DEFAULT,
                headers={"Accept": "application/json"},
            )
        except httpx.TransportError as exc:
            raise transport_error(exc, "token") from None
        if resp.status_code == 200:
            return self._accept(resp)
        self._refuse(resp)
        raise AssertionError("unreachable")  # _refuse always raises

    def _accept(self, resp: httpx.Response) -> str:
        try:
            body = resp.json()
            value = body["access_token"]
            token_type = str(body.get("token_type", "bearer"))
            expires_in = float(body.get("expires_in", DEFAULT_EXPIRES_IN))
        except (ValueError, KeyError, TypeError):
            raise RetryableError("token: malformed token response") from None
        if not isinstance(value, str) or not value or token_type.lower() != "bearer":
            raise RetryableError("token: response has no bearer access_token")
        # Renew `skew` seconds early, but never cache a short-lived token for less than half its life.
        lifetime = max(expires_in - self.settings.skew_seconds, expires_in / 2)
        self._token = _Token(value, self._monotonic() + lifetime)
        log.info("oauth_token_issued", expires_in=int(expires_in))
        return value

    def _refuse(self, resp: httpx.Response) -> None:
        status = resp.status_code
        if status == 429 or status == 503:
            raise RetryableError(
                f"token: HTTP {status}", retry_after=parse_retry_after(resp.headers.get("retry-after"))
            )
        if status >= 500:
            raise RetryableError(f"token: HTTP {status}")
        try:
            error = str(resp.json().get("error", ""))[:64]
        except (ValueError, AttributeError):
            error = ""
        error = error or f"http_{status}"
        if error == "invalid_client" or status == 401:
            log.critical(
                "oauth_invalid_client",
                alert=True,
                client_id=self.settings.client_id,
                status=status,
                error=error,
            )
        else:
            log.error("oauth_token_refused", client_id=self.settings.client_id, status=status, error=error)
        raise AuthRefusedError(f"token endpoint refused the client: {error}", error=error)
