"""SIGTERM always ends the daemon within 2 s (issue 10, must-have 7), also mid-connect and with the broker
stopped: a real Mosquitto over TLS, frozen with SIGSTOP (it keeps its sockets open and answers nothing).

The 2 s is the requirement itself (systemd's stop, a clinic's reboot), so it is asserted as a deadline
on the real process; the code's own shutdown budget is about 1 s."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.crypto import create_key_file
from tests.certs import write_secret
from tests.faults.common import ROOT, Lines, child_env, vitalgate, wait_for
from tests.mosquitto import GATEWAY_ID, MOSQUITTO, PASSWORD, USER, Mosquitto, Pki

pytestmark = pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="mosquitto is not installed")

STOP_DEADLINE = 2.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def broker(tmp_path: Path, pki: Pki) -> Iterator[Mosquitto]:
    (tmp_path / "broker").mkdir()
    with Mosquitto(tmp_path / "broker", pki) as b:
        yield b
        b.freeze(False)


def _config(tmp: Path, broker: Mosquitto, pki: Pki) -> Path:
    key = tmp / "data.key"
    create_key_file(key)
    pw = write_secret(tmp / "mqtt.password", PASSWORD)
    cfg = tmp / "vitalgate.toml"
    cfg.write_text(f"""
[gateway]
id = "{GATEWAY_ID}"
state_dir = "state"
key_file = "{key}"
test_data = true
[queue]
retry_initial_seconds = 0.05
retry_max_seconds = 0.3
[logging]
level = "info"
format = "json"
[output]
forwarder = "mqtt"
[output.mqtt]
host = "localhost"
port = {broker.ports["tls"]}
ca_file = "{pki.ca.cert_file}"
username = "{USER}"
password_file = "{pw}"
client_id = "faults-sigterm"
[[devices]]
driver = "simulated"
name = "cuff"
kind = "blood-pressure"
serial = "SIM-SIGTERM"
interval_seconds = 0.01
count = 0
""")
    assert vitalgate("bind", "SIM-SIGTERM", "p1", "--config", str(cfg)).returncode == 0
    return cfg


def _spawn(cfg: Path) -> tuple[subprocess.Popen[bytes], Lines]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "--config", str(cfg)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=child_env(),
    )
    return proc, Lines(proc.stdout)


def _terminate(proc: subprocess.Popen[bytes], out: Lines) -> float:
    """SIGTERM; seconds until the process has exited (it must exit cleanly, code 0)."""
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_DEADLINE + 10)
    finally:
        if proc.poll() is None:
            proc.kill()
    took = time.monotonic() - start
    print(f"SIGTERM to exit: {took:.2f} s")  # the figure for the report (pytest -s)
    out.join()
    assert proc.returncode == 0, out.text()[-3000:]
    assert b"Traceback" not in out.text()
    return took


def test_sigterm_right_after_connecting(tmp_path: Path, broker: Mosquitto, pki: Pki) -> None:
    """The campaign's slow case: a stop landing just after `mqtt_connected` took 10 s in 2 of 8 stops."""
    cfg = _config(tmp_path, broker, pki)
    took = []
    for _ in range(3):
        proc, out = _spawn(cfg)
        wait_for(lambda: out.has(b'"mqtt_connected"') or proc.poll() is not None, 30, "connecting")  # noqa: B023
        assert proc.poll() is None, out.text()
        took.append(_terminate(proc, out))
    assert max(took) < STOP_DEADLINE, took


def test_sigterm_with_the_broker_frozen_while_sending(tmp_path: Path, broker: Mosquitto, pki: Pki) -> None:
    cfg = _config(tmp_path, broker, pki)
    proc, out = _spawn(cfg)
    wait_for(lambda: out.count(b'"mqtt_connected"') >= 1, 30, "the daemon connecting")
    broker.freeze()
    time.sleep(0.5)  # readings keep coming and wait for PUBACKs that will not come: the state under test
    took = _terminate(proc, out)
    assert took < STOP_DEADLINE, took


def test_sigterm_mid_connect_to_a_frozen_broker(tmp_path: Path, broker: Mosquitto, pki: Pki) -> None:
    """Frozen before the daemon starts: TCP connects (the kernel accepts), the TLS handshake hangs."""
    cfg = _config(tmp_path, broker, pki)
    broker.freeze()
    proc, out = _spawn(cfg)
    wait_for(lambda: out.has(b'"gateway_started"'), 30, "the daemon starting")
    time.sleep(0.5)  # inside the connect attempt
    took = _terminate(proc, out)
    assert took < STOP_DEADLINE, took


def test_sigterm_mid_https_handshake_with_a_server_that_never_answers(tmp_path: Path, pki: Pki) -> None:
    """The FHIR REST output: TCP is accepted by the kernel (listen backlog), TLS never answers."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # never accept(): the handshake hangs
    try:
        key = tmp_path / "data.key"
        create_key_file(key)
        cfg = tmp_path / "vitalgate.toml"
        cfg.write_text(f"""
[gateway]
state_dir = "state"
key_file = "{key}"
[logging]
format = "json"
[output]
forwarder = "https"
[output.https]
base_url = "https://localhost:{silent.getsockname()[1]}/fhir"
ca_file = "{pki.ca.cert_file}"
[output.https.auth]
method = "none"
[[devices]]
driver = "simulated"
name = "cuff"
kind = "blood-pressure"
serial = "SIM-HTTPS"
interval_seconds = 0.05
count = 0
""")
        assert vitalgate("bind", "SIM-HTTPS", "p1", "--config", str(cfg)).returncode == 0
        proc, out = _spawn(cfg)
        wait_for(lambda: out.has(b'"gateway_started"') or proc.poll() is not None, 30, "the daemon starting")
        assert proc.poll() is None, out.text()
        time.sleep(1.0)  # a send is waiting on the handshake
        took = _terminate(proc, out)
    finally:
        silent.close()
    assert took < STOP_DEADLINE, took
