"""TLS for outgoing HTTPS, and what a failed connection means for the drainer.

One explicit `ssl.SSLContext` from `gateway.tls` (verification and hostname check always on, TLS 1.2 as
the floor, an optional private CA bundle and an optional client certificate for mTLS), with the client
key's file permissions checked. Transport failures are sorted into "try again later" (timeouts,
resets, a server that went away) and "refused as configured" (certificate not trusted, expired, protocol
too old), because only the second needs an operator.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx

from gateway.forwarders.base import ForwarderError, PermanentError, RetryableError
from gateway.secrets import check_private
from gateway.tls import tls_client_context

__all__ = ["TlsRefusedError", "client_context", "transport_error"]


class TlsRefusedError(PermanentError):
    """The TLS handshake failed for a reason retrying cannot fix (trust, expiry, protocol version)."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def client_context(
    ca_file: Path | None = None, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext:
    """A client context: system trust or `ca_file`, TLS >= 1.2, optional client certificate whose key
    file must be private (`gateway.secrets.check_private`)."""
    if cert_file is not None and key_file is not None:
        check_private(key_file)
    return tls_client_context(ca_file, cert_file, key_file)


# SSL errors that say the link broke, not that the peer is unacceptable.
_TRANSIENT_SSL = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError, ssl.SSLWantReadError)


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLError):
            return cur
        cur = cur.__cause__ or cur.__context__
    return None


def transport_error(exc: httpx.TransportError, what: str) -> ForwarderError:
    """The typed forwarder error for a failed request to `what` ("fhir" or "token")."""
    ssl_exc = _ssl_cause(exc)
    if ssl_exc is not None and not isinstance(ssl_exc, _TRANSIENT_SSL):
        if isinstance(ssl_exc, ssl.SSLCertVerificationError):
            reason = ssl_exc.verify_message or "certificate verify failed"
        else:
            reason = ssl_exc.reason or type(ssl_exc).__name__
        return TlsRefusedError(f"{what}: TLS handshake refused: {reason}", reason=str(reason))
    if isinstance(exc, httpx.TimeoutException):
        return RetryableError(f"{what}: timed out ({type(exc).__name__})")
    return RetryableError(f"{what}: connection failed ({type(exc).__name__})")
