"""An Omron cuff the way a person sets one up: `vitalgate simulate omron-ble` in one process (a HEM-7322T in
pairing mode), `vitalgate pair --omron-model` (bond + store the pairing key) and `vitalgate run` in others,
over HCI on loopback TCP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

from gateway.crypto import create_key_file
from tests.ble.test_scan_pair import ROOT, _free_port

ADDRESS = "C8:00:00:00:00:08"


def _config(tmp_path: Path) -> Path:
    key = tmp_path / "data.key"
    create_key_file(key)
    cfg = tmp_path / "vitalgate.toml"
    cfg.write_text(f"""
[gateway]
id = "gw-omron"
state_dir = "state"
key_file = "{key}"
[output.file]
allow_plaintext = true
retention_days = 7
[logging]
format = "json"
[[devices]]
driver = "omron-ble"
name = "omron"
model = "HEM-7322T"
address = "{ADDRESS}"
connect_timeout = 2
idle_timeout = 2
poll_seconds = 0.5
""")
    return cfg


def _systolic_values(tmp_path: Path) -> list[float]:
    values = []
    for f in sorted((tmp_path / "state" / "outbox").glob("*.ndjson")):
        for line in f.read_bytes().splitlines():
            for e in orjson.loads(line)["entry"]:
                r = e["resource"]
                if r["resourceType"] == "Observation" and r["subject"].get("reference") == "Patient/p-omron":
                    values += [c["valueQuantity"]["value"] for c in r.get("component", []) if "valueQuantity" in c][:1]
    return values


def test_pair_with_the_omron_key_then_run(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    port = _free_port()
    env = {
        **os.environ,
        "VITALGATE_BLE_HCI": f"tcp-client:127.0.0.1:{port}",
        "VITALGATE_BLE_KEYSTORE": str(tmp_path / "bonds.json"),
    }
    sim = subprocess.Popen(
        [sys.executable, "-m", "gateway", "simulate", "omron-ble", "--records", "4", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert sim.stdout is not None
        deadline = time.monotonic() + 20
        while "served on" not in sim.stdout.readline():
            assert time.monotonic() < deadline and sim.poll() is None, "simulator did not start"
        args = ["pair", ADDRESS, "--omron-model", "HEM-7322T", "--patient", "p-omron", "--user", "1"]
        pair = subprocess.run(
            [sys.executable, "-m", "gateway", *args, "--config", str(cfg)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert pair.returncode == 0, pair.stderr
        assert f"bonded with {ADDRESS}" in pair.stdout
        run = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "--config", str(cfg)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 40
            while len(_systolic_values(tmp_path)) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(1.5)  # a few more sessions: the cuff's records must not come again
        finally:
            run.send_signal(signal.SIGTERM)
            run.wait(timeout=15)
        assert run.returncode == 0
        # --records 4 over 2 users: user 1 holds records 0 and 2, bound to the patient, each delivered once
        assert len(_systolic_values(tmp_path)) == 2
    finally:
        sim.terminate()
        sim.wait(timeout=10)
