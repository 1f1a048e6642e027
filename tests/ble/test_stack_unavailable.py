"""No Bluetooth stack (issue 12): one sentence with what to check, never a traceback; `run` says it once.

Real faults, not fakes: a D-Bus system bus address whose socket does not exist (what bleak meets on a host
without BlueZ/D-Bus), and a Bumble HCI transport pointed at a loopback port nobody listens on (a simulator
that is not running).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.crypto import create_key_file
from tests.mosquitto import free_port

ROOT = Path(__file__).resolve().parents[2]


def env(hci: str | None) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in ("VITALGATE_BLE_HCI", "PYTHONUNBUFFERED")}
    e["DBUS_SYSTEM_BUS_ADDRESS"] = "unix:path=/nonexistent/vitalgate-test/system_bus_socket"
    if hci is not None:
        e["VITALGATE_BLE_HCI"] = hci
    return e


def vitalgate(*args: str, hci: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], capture_output=True, text=True, cwd=ROOT, env=env(hci), timeout=60
    )


BLUEZ = ("bluetooth.service", "group bluetooth", "D-Bus", "VITALGATE_BLE_HCI")


@pytest.mark.parametrize(
    "args", [("scan", "--seconds", "1"), ("pair", "C1:00:00:00:00:01", "--timeout", "2")], ids=["scan", "pair"]
)
def test_no_bluez_is_one_sentence_with_the_hint(args: tuple[str, ...]) -> None:
    proc = vitalgate(*args)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    [line] = proc.stderr.splitlines()
    assert line.startswith("vitalgate: ") and "Bluetooth is not available" in line
    assert all(word in line for word in BLUEZ), line


@pytest.mark.parametrize(
    "args", [("scan", "--seconds", "1"), ("pair", "C1:00:00:00:00:01", "--timeout", "2")], ids=["scan", "pair"]
)
def test_dead_simulator_is_one_sentence_naming_the_transport(args: tuple[str, ...], tmp_path: Path) -> None:
    hci = f"tcp-client:127.0.0.1:{free_port()}"
    if args[0] == "pair":  # the Bumble backend's bond store is sealed with the data key: pair needs the config
        create_key_file(tmp_path / "data.key")
        (tmp_path / "vg.toml").write_text(f'[gateway]\nstate_dir = "state"\nkey_file = "{tmp_path}/data.key"\n')
        args = (*args, "--config", str(tmp_path / "vg.toml"))
    proc = vitalgate(*args, hci=hci)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    [line] = proc.stderr.splitlines()
    assert "Bluetooth is not available" in line and "ConnectionRefusedError" in line
    assert f"VITALGATE_BLE_HCI={hci} did not open" in line and "vitalgate simulate" in line


def test_run_logs_the_hint_once_then_retries_quietly(tmp_path: Path) -> None:
    create_key_file(tmp_path / "data.key")
    cfg = tmp_path / "vitalgate.toml"
    cfg.write_text(f"""
[gateway]
id = "gw-nostack"
state_dir = "state"
key_file = "{tmp_path / "data.key"}"
[output.file]
allow_plaintext = true
retention_days = 7
[logging]
level = "debug"
format = "json"
[[devices]]
driver = "ble-blood-pressure"
name = "cuff"
address = "C1:00:00:00:00:01"
""")
    log = tmp_path / "out.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "--config", str(cfg)],
            cwd=ROOT, env=env(None), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            events: list[dict[str, object]] = []
            while time.monotonic() < deadline:  # wait for the first failure and at least two quiet retries
                events = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
                if sum(e["event"] == "device_session_failed" for e in events) >= 2:
                    break
                time.sleep(0.2)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    failures = [e for e in events if "device" in str(e["event"]) and e.get("device_name") == "cuff"]
    loud = [e for e in failures if e["level"] in ("warning", "error")]
    assert [e["event"] for e in loud] == ["device_host_unavailable"], failures
    assert loud[0]["level"] == "error" and all(word in str(loud[0]["hint"]) for word in BLUEZ)
    quiet = [e for e in failures if e["event"] == "device_session_failed"]
    assert len(quiet) >= 2 and {e["level"] for e in quiet} == {"debug"}
    assert "Traceback" not in log.read_text()
