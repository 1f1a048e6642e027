"""A real Mosquitto for tests: generated config, TLS certificates minted here, passwords, an ACL.

One broker process serves several listeners on ephemeral loopback ports so every TLS fault has its own
door: `tls` (valid certificate for localhost/127.0.0.1), `expired`, `wrong_host`, `mtls` (client
certificate required) and `plain` (no TLS, loopback only, for the test subscriber and the plaintext
opt-out). The broker can be killed and restarted on the same ports to simulate an outage.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"

GATEWAY_ID = "gw-test"
USER, PASSWORD = "gateway", "s3cret-gateway-pw"
READER, READER_PASSWORD = "reader", "s3cret-reader-pw"

ACL = f"""\
user {USER}
topic write vitalgate/{GATEWAY_ID}/bundles
topic readwrite vitalgate/{GATEWAY_ID}/status
topic readwrite vitalgate/vitalgate-demo/#
user {READER}
topic read vitalgate/#
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Pki:
    """CA + server/client certificates as PEM files in `directory`."""

    directory: Path
    ca: Path = field(init=False)
    other_ca: Path = field(init=False)

    def __post_init__(self) -> None:
        now = dt.datetime.now(dt.UTC)
        self._ca_key, self._ca_cert = _self_signed("VitalGate Test CA", now)
        _, other_cert = _self_signed("Some Other CA", now)
        self.ca = self._write("ca.pem", self._ca_cert)
        self.other_ca = self._write("other-ca.pem", other_cert)
        self.server = self._leaf("server", "localhost", ["localhost"], ["127.0.0.1", "::1"], now, server=True)
        self.expired = self._leaf(
            "expired", "localhost", ["localhost"], ["127.0.0.1"], now - dt.timedelta(days=30), server=True
        )
        self.wrong_host = self._leaf("wrong-host", "broker.example", ["broker.example"], [], now, server=True)
        self.client = self._leaf("client", GATEWAY_ID, [], [], now, server=False)

    def _write(self, name: str, cert: x509.Certificate) -> Path:
        path = self.directory / name
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    def _leaf(
        self, name: str, cn: str, dns: list[str], ips: list[str], start: dt.datetime, *, server: bool
    ) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self._ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start - dt.timedelta(days=1))
            .not_valid_after(start + dt.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH if server else x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._ca_key, hashes.SHA256())
        cert_path = self._write(f"{name}.pem", cert)
        key_path = self.directory / f"{name}.key"
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        key_path.chmod(0o600)
        return cert_path, key_path


def _self_signed(cn: str, now: dt.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=60))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


class Mosquitto:
    """One broker process with the listeners described in the module docstring."""

    LISTENERS = ("tls", "expired", "wrong_host", "mtls", "plain")

    def __init__(self, directory: Path, pki: Pki, *, nodelay: bool = False) -> None:
        self.directory = directory
        self.pki = pki
        self.ports = {name: free_port() for name in self.LISTENERS}
        self.proc: subprocess.Popen[bytes] | None = None
        self.passwd = directory / "passwd"
        self.acl = directory / "acl"
        self.log = directory / "mosquitto.log"
        self.conf = directory / "mosquitto.conf"
        self.nodelay = nodelay
        self._write_config()

    def _write_config(self) -> None:
        self.acl.write_text(ACL)
        self.passwd.write_text("")
        for user, password in ((USER, PASSWORD), (READER, READER_PASSWORD)):
            subprocess.run([MOSQUITTO_PASSWD, "-b", str(self.passwd), user, password], check=True)
        self.passwd.chmod(0o600)
        self.acl.chmod(0o600)
        p = self.pki

        def tls(name: str, cert: tuple[Path, Path], extra: str = "") -> str:
            return (
                f"listener {self.ports[name]} 127.0.0.1\n"
                f"cafile {p.ca}\ncertfile {cert[0]}\nkeyfile {cert[1]}\ntls_version tlsv1.2\n{extra}"
            )

        self.conf.write_text(
            ""
            # As root, mosquitto drops to user "mosquitto", who cannot read our tmp files; stay us.
            + ("user root\n" if os.geteuid() == 0 else "")
            + "per_listener_settings false\n"
            "allow_anonymous false\n"
            f"password_file {self.passwd}\n"
            f"acl_file {self.acl}\n"
            "persistence false\n"
            f"log_dest file {self.log}\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            f"set_tcp_nodelay {'true' if self.nodelay else 'false'}\n"
            "max_inflight_messages 0\nmax_queued_messages 0\n"
            + tls("tls", p.server)
            + tls("expired", p.expired)
            + tls("wrong_host", p.wrong_host)
            + tls("mtls", p.server, "require_certificate true\n")
            + f"listener {self.ports['plain']} 127.0.0.1\n"
        )

    def start(self) -> None:
        assert self.proc is None
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                log = self.log.read_text() if self.log.exists() else ""
                raise RuntimeError(f"mosquitto exited: {err}{log}")
            if all(_accepts(port) for port in self.ports.values()):
                return
            time.sleep(0.02)
        raise RuntimeError("mosquitto did not open its ports")

    def kill(self) -> None:
        """SIGKILL: an outage, not a polite shutdown."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.send_signal(signal.SIGCONT)  # a stopped process dies only once continued
            self.proc.wait()
            if self.proc.stderr:
                self.proc.stderr.close()
            self.proc = None

    def freeze(self, frozen: bool = True) -> None:
        """SIGSTOP / SIGCONT: the broker stops answering but keeps its sockets open."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP if frozen else signal.SIGCONT)

    def restart(self) -> None:
        self.kill()
        self.start()

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def write_secret(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    os.chmod(path, 0o600)
    return path
