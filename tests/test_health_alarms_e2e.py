"""Alarms from a real fault, as the operator sees them: the daemon against a real Mosquitto that refuses
its password, with a client certificate about to expire. `status` and the metrics scrape both show it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.crypto import create_key_file
from tests.certs import write_secret
from tests.console_support import free_port
from tests.mosquitto import USER, Mosquitto, Pki
from tests.test_daemon import ROOT, wait_for


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[Mosquitto, Pki]]:
    (tmp_path / "pki").mkdir()
    (tmp_path / "broker").mkdir()
    pki = Pki(tmp_path / "pki")
    with Mosquitto(tmp_path / "broker", pki) as b:
        yield b, pki


def test_refused_forwarder_and_expiring_certificate_raise_alarms(tmp_path: Path, broker: tuple[Mosquitto, Pki]) -> None:
    b, pki = broker
    create_key_file(tmp_path / "data.key")
    pw = write_secret(tmp_path / "mqtt.password", "not-the-password")
    mport = free_port()
    cfg = tmp_path / "vitalgate.toml"
    cfg.write_text(f"""
[gateway]
state_dir = "state"
key_file = "{tmp_path / "data.key"}"
[queue]
retry_permanent_seconds = 600
[logging]
format = "json"
[output]
forwarder = "mqtt"
[output.mqtt]
host = "localhost"
port = {b.ports["tls"]}
ca_file = "{pki.ca.cert_file}"
client_cert = "{pki.client.cert_file}"
client_key = "{pki.client.key_file}"
username = "{USER}"
password_file = "{pw}"
[alarms]
credential_expiry_days = 45
[metrics]
enabled = true
port = {mport}
[[devices]]
driver = "simulated"
name = "cuff"
kind = "blood-pressure"
serial = "SIM-ALARM"
users = [1]
interval_seconds = 0.05
count = 3
""")
    bind = [sys.executable, "-m", "gateway", "bind", "SIM-ALARM", "p-1", "--user", "1", "--config", str(cfg)]
    assert subprocess.run(bind, capture_output=True, cwd=ROOT, timeout=60).returncode == 0
    log = (tmp_path / "daemon.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--config", str(cfg)], cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT)  # fmt: skip
    doc: dict[str, object] = {}
    try:

        def refused() -> bool:
            nonlocal doc
            done = subprocess.run([sys.executable, "-m", "gateway", "status", "--json", "--config", str(cfg)],
                                  capture_output=True, text=True, cwd=ROOT, timeout=60)  # fmt: skip
            doc = json.loads(done.stdout)
            return any(a["code"] == "forwarder_refused" for a in doc["alarms"])  # type: ignore[attr-defined]

        assert wait_for(refused, 60), doc
        alarms = {a["code"]: a for a in doc["alarms"]}  # type: ignore[attr-defined]
        assert alarms["forwarder_refused"]["severity"] == "critical"
        assert (
            f"The backend (mqtts://localhost:{b.ports['tls']}) refuses this gateway"
            in (alarms["forwarder_refused"]["sentence"])
        )
        assert "expires in" in alarms["credential_expiring:output.mqtt.client_cert"]["sentence"]
        assert "output.mqtt.ca_file" not in str(alarms)  # the CA is valid for 60 days, beyond the 45-day policy
        health = doc["health"]
        assert health["forwarder"]["state"] == "refused" and health["forwarder"]["last_error"]  # type: ignore[index]
        text = subprocess.run([sys.executable, "-m", "gateway", "status", "--config", str(cfg)],
                              capture_output=True, text=True, cwd=ROOT, timeout=60).stdout  # fmt: skip
        # 2 alarms of this test; the machine's own NTP state may add `clock_unsynchronised`.
        listed = re.search(r"(?m)^alarms +(\d+)$", text)
        assert "  [critical] The backend" in text and listed and int(listed.group(1)) >= 2, text
        scrape = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10).read().decode()
        samples = {s.name: s.value for f in text_string_to_metric_families(scrape) for s in f.samples if not s.labels}
        assert samples["vitalgate_forwarder_connected"] == 0
        assert "vitalgate_last_delivery_timestamp_seconds" not in samples
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
