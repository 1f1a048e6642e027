"""The one TLS client policy for every outgoing connection (MQTT broker, FHIR server, token endpoint).

Verification and hostname check always on (no switch exists to turn them off), TLS 1.2 as the floor
whatever the system OpenSSL config says, system trust or a private CA bundle, an optional client
certificate for mTLS. Kept in one place so the forwarders cannot drift apart on it.
"""

from __future__ import annotations

import ssl
from pathlib import Path

__all__ = ["TLS12_CIPHERS", "tls_client_context"]

TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"


def tls_client_context(
    ca_file: Path | None = None, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext:
    """A verifying client context, TLS >= 1.2; `cert_file` (+ `key_file`) for a client certificate."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file) if ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # TLS 1.2 suites: forward-secret ECDHE with AEAD only (no CBC, no finite-field DHE); TLS 1.3's are all AEAD.
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    if cert_file is not None:
        ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    return ctx
