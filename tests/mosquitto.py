"""A real Mosquitto for tests: generated config, TLS certificates from `tests.certs`, passwords, an ACL.

One broker process serves several listeners on ephemeral loopback ports so every TLS fault has its own
door: `tls` (valid certificate for localhost/127.0.0.1), `expired`, `wrong_host`, `mtls` (client
certificate required) and `plain` (no TLS, loopback only, for the test subscriber and the plaintext
opt-out). The broker can be killed and restarted on the same ports to simulate an outage.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.certs import Leaf, make_ca

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


class Pki:
    """The broker's certificates (from `tests.certs`): a CA, a leaf per TLS listener, a client leaf
    for mTLS, and an unrelated CA for the "wrong CA" fault."""

    def __init__(self, directory: Path) -> None:
        now = dt.datetime.now(dt.UTC)
        self.directory = directory
        self.ca = make_ca(directory, "vitalgate-test-ca")
        self.other_ca = make_ca(directory, "other-ca")
        self.server = self.ca.issue("server", hosts=("localhost", "127.0.0.1", "::1"))
        self.expired = self.ca.issue(
            "expired", not_before=now - dt.timedelta(days=31), not_after=now - dt.timedelta(days=23)
        )
        self.wrong_host = self.ca.issue("wrong-host", hosts=("broker.example",))
        self.client = self.ca.issue("client", server=False, hosts=(), common_name=GATEWAY_ID)


class PortTaken(RuntimeError):
    """A port chosen for a listener was taken by another process before mosquitto could bind it."""


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
            subprocess.run([MOSQUITTO_PASSWD, "-b", str(self.passwd), user, password], check=True, timeout=60)
        self.passwd.chmod(0o600)
        self.acl.chmod(0o600)
        p = self.pki

        def tls(name: str, leaf: Leaf, extra: str = "") -> str:
            return (
                f"listener {self.ports[name]} 127.0.0.1\n"
                f"cafile {p.ca.cert_file}\ncertfile {leaf.cert_file}\nkeyfile {leaf.key_file}\n"
                f"tls_version tlsv1.2\n{extra}"
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
        deadline = time.monotonic() + 60  # bounds a hang; a slow machine takes a few seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                log = self.log.read_text() if self.log.exists() else ""
                self.proc = None
                kind = PortTaken if "Address already in use" in err + log else RuntimeError
                raise kind(f"mosquitto exited: {err}{log}")
            if all(_accepts(port) for port in self.ports.values()):
                return
            time.sleep(0.02)
        raise RuntimeError("mosquitto did not open its ports")

    def kill(self) -> None:
        """SIGKILL: an outage, not a polite shutdown."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.send_signal(signal.SIGCONT)  # a stopped process dies only once continued
            self.proc.wait(timeout=60)
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
        for _ in range(3):
            try:
                self.start()
                return self
            except PortTaken:
                # free_port() found it free, then something else on the machine bound it before mosquitto
                # did (another test's server, a parallel run): new ports, new config, start again.
                self.ports = {name: free_port() for name in self.LISTENERS}
                self._write_config()
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
