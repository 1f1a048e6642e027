"""The console's TLS certificate: the configured one, or a self-signed one made on first use.

An operator checks the generated certificate's SHA-256 fingerprint (`vitalgate console fingerprint`)
against what the browser shows the first time, instead of clicking through a warning blind.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import socket
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.console.settings import ConsoleSettings

__all__ = ["CERT_NAME", "KEY_NAME", "certificate_paths", "ensure_certificate", "fingerprint", "server_context"]

CERT_NAME = "console-cert.pem"
KEY_NAME = "console-key.pem"


def certificate_paths(settings: ConsoleSettings, state_dir: Path) -> tuple[Path, Path]:
    if settings.cert_file is not None and settings.key_file is not None:
        return settings.cert_file, settings.key_file
    return state_dir / CERT_NAME, state_dir / KEY_NAME


def ensure_certificate(settings: ConsoleSettings, state_dir: Path) -> tuple[Path, Path]:
    """The certificate and key to serve; generated (ECDSA P-256, 2 years) when none is configured or made."""
    cert, key = certificate_paths(settings, state_dir)
    if settings.cert_file is not None or (cert.exists() and key.exists()):
        return cert, key
    private = ec.generate_private_key(ec.SECP256R1())
    host = socket.gethostname()
    names: list[x509.GeneralName] = [x509.DNSName(host), x509.DNSName("localhost")]
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    with contextlib.suppress(ValueError):
        names.append(x509.IPAddress(ipaddress.ip_address(settings.listen)))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"VitalGate console on {host}")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=730))
        .add_extension(x509.SubjectAlternativeName(list(dict.fromkeys(names))), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert, key


def fingerprint(cert: Path) -> str:
    """SHA-256 over the DER certificate, as browsers show it (AA:BB:...)."""
    der = x509.load_pem_x509_certificate(cert.read_bytes()).fingerprint(hashes.SHA256())
    return ":".join(f"{b:02X}" for b in der)


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx
