"""`vitalgate simulate ble-glucose --fail-after N` (issue 12): the meter's own fault injection through the
CLI. The link drops mid-transfer once; the gateway resumes from its checkpoint: every record once.
Separate processes, as a person runs them; the simulator's output is read unbuffered (-u)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.ble.test_scan_pair import _free_port, _glucose_values, _write_config

ROOT = Path(__file__).resolve().parents[2]


def test_fail_after_drops_the_link_once_and_the_gateway_resumes(tmp_path: Path) -> None:
    cfg = _write_config(tmp_path, "C3:00:00:00:00:03")
    port = _free_port()
    env = {
        **os.environ,
        "VITALGATE_BLE_HCI": f"tcp-client:127.0.0.1:{port}",
        "VITALGATE_BLE_KEYSTORE": str(tmp_path / "bonds.json"),
    }
    sim = subprocess.Popen(
        [sys.executable, "-u", "-m", "gateway", "simulate", "ble-glucose", "--records", "6", "--fail-after", "2",
         "--port", str(port)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert sim.stdout is not None
        deadline = time.monotonic() + 30
        while "served on" not in sim.stdout.readline():
            assert time.monotonic() < deadline and sim.poll() is None, "simulator did not start"
        pair = subprocess.run(
            [sys.executable, "-m", "gateway", "pair", "C3:00:00:00:00:03", "--passkey", "123456",
             "--patient", "p-77", "--config", str(cfg)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert pair.returncode == 0, pair.stderr
        log = tmp_path / "run.log"
        with log.open("wb") as out:
            run = subprocess.Popen(
                [sys.executable, "-m", "gateway", "run", "--config", str(cfg)],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
            try:
                deadline = time.monotonic() + 60
                while len(_glucose_values(tmp_path)) < 6 and time.monotonic() < deadline:
                    time.sleep(0.2)
            finally:
                run.send_signal(signal.SIGTERM)
                run.wait(timeout=15)
        values = sorted(_glucose_values(tmp_path))
        assert values == sorted(70 + (37 * i) % 180 for i in range(6)), log.read_text()[-2000:]  # each once
        syncs = [json.loads(x) for x in log.read_text().splitlines() if '"glucose_sync_done"' in x]
        # The link went after 2 records (transfer cut short); the next session resumed with the other 4.
        assert [(e["state"], e["committed"]) for e in syncs][:2] == [("transferring", 2), ("complete", 4)]
    finally:
        sim.terminate()
        sim.wait(timeout=10)
