"""The daemon end to end as a process: CLI, config, key, queue, FHIR, file output, signals, logs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

from gateway.crypto import create_key_file

ROOT = Path(__file__).resolve().parent.parent
PATIENTS = {1: "phi-needle-patient-one", 2: "phi-needle-patient-two"}


def vitalgate(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout
    )


def write_config(tmp_path: Path, count: int, extra: str = "") -> Path:
    key = tmp_path / "data.key"
    if not key.exists():
        create_key_file(key)
    cfg = tmp_path / "vitalgate.toml"
    cfg.write_text(f"""
[gateway]
id = "gw-e2e"
state_dir = "state"
key_file = "{key}"
[output.file]
allow_plaintext = true
retention_days = 1
[queue]
retry_initial_seconds = 0.05
retry_max_seconds = 0.5
[logging]
level = "debug"
format = "json"
[[devices]]
driver = "simulated"
name = "cuff"
kind = "blood-pressure"
serial = "SERIAL-NEEDLE-BP"
users = [1, 2]
interval_seconds = 0.02
count = {count}
[[devices]]
driver = "simulated"
name = "meter"
kind = "blood-glucose"
serial = "SERIAL-NEEDLE-GL"
interval_seconds = 0.03
count = {count}
{extra}
""")
    return cfg


def bundles(tmp_path: Path) -> list[dict[str, object]]:
    return [
        orjson.loads(line)
        for f in sorted((tmp_path / "state/outbox").glob("*.ndjson"))
        for line in f.read_bytes().splitlines()
    ]


def wait_for(predicate: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_run_forwards_bound_readings_holds_unbound_and_keeps_phi_out_of_logs(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, count=20)
    assert vitalgate("check-config", "--config", str(cfg)).returncode == 0
    for user, patient in PATIENTS.items():
        assert vitalgate("bind", "SERIAL-NEEDLE-BP", patient, "--user", str(user), "--config", str(cfg)).returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "--config", str(cfg)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert wait_for(lambda: len(bundles(tmp_path)) >= 20, 300), "cuff readings did not arrive"
        # The meter is not bound: its 20 readings wait as unassigned. Bind it while running: they flow.
        assert vitalgate("bind", "SERIAL-NEEDLE-GL", "phi-needle-patient-three", "--config", str(cfg)).returncode == 0
        assert wait_for(lambda: len(bundles(tmp_path)) >= 40, 300), "meter readings did not flow after binding"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)  # the bound for a graceful stop
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()
    assert len(bundles(tmp_path)) == 40
    subjects = {
        e["resource"]["subject"]["reference"]
        for b in bundles(tmp_path)
        for e in b["entry"]  # type: ignore[index]
        if e["resource"]["resourceType"] == "Observation"
    }  # type: ignore[index]
    assert subjects == {f"Patient/{p}" for p in [*PATIENTS.values(), "phi-needle-patient-three"]}

    events = [orjson.loads(line) for line in out.splitlines()]
    assert {"gateway_started", "forwarder_connected", "delivered", "gateway_stopped"} <= {e["event"] for e in events}
    # Once started, the daemon froze start-up's objects out of the collector (gateway.daemon, bench_pipeline).
    assert [e["objects"] > 10_000 for e in events if e["event"] == "gc_frozen"] == [True]
    logs = out + err
    for needle in (b"phi-needle", b"SERIAL-NEEDLE", b"mm[Hg]", b"mg/dL", b"resourceType", b"Patient/"):
        assert needle not in logs, needle

    status = vitalgate("status", "--config", str(cfg))
    assert "delivered    40" in status.stdout
    devices = vitalgate("devices", "--config", str(cfg)).stdout
    assert devices.count("SERIAL-NEEDLE-BP") == 2 and "Patient/phi-needle-patient-three" in devices


def test_run_refuses_loose_key_and_missing_key(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, count=1)
    os.chmod(tmp_path / "data.key", 0o644)
    proc = vitalgate("run", "--config", str(cfg))
    assert proc.returncode == 3 and "mode 0644" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "data.key").unlink()
    proc = vitalgate("run", "--config", str(cfg))
    assert proc.returncode == 3 and "does not exist" in proc.stderr


def test_keys_init_and_rotate_via_cli(tmp_path: Path) -> None:
    key = tmp_path / "k" / "data.key"
    assert vitalgate("keys", "init", "--path", str(key)).returncode == 0
    assert key.stat().st_mode & 0o777 == 0o600
    assert vitalgate("keys", "init", "--path", str(key)).returncode == 3
    assert vitalgate("keys", "rotate", "--path", str(key)).returncode == 0
    assert len([line for line in key.read_text().splitlines() if not line.startswith("#")]) == 2


def test_demo_runs_the_whole_pipeline(tmp_path: Path) -> None:
    # Until every device reported; --seconds only bounds a hang, below the per-test limit so the demo says why.
    args = ["demo", "--until-each-device", "1", "--seconds", "300", "--out", str(tmp_path / "demo")]
    proc = vitalgate(*args, timeout=400)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in (tmp_path / "demo/outbox").glob("*.ndjson").__next__().read_text().splitlines()]
    total = proc.stdout.splitlines()[-3].split()
    assert total[0] == "total" and int(total[3]) == len(lines) > 0
    assert proc.stdout.count("  -> file ") == len(lines)
    assert all(b'"HTEST"' in line.encode() for line in lines)


def test_operator_commands_leave_an_audit_trail_without_phi(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, count=1)
    assert vitalgate("bind", "SERIAL-NEEDLE-BP", "phi-needle-9", "--user", "1", "--config", str(cfg)).returncode == 0
    assert vitalgate("devices", "--config", str(cfg)).returncode == 0
    assert vitalgate("unbind", "SERIAL-NEEDLE-BP", "--user", "1", "--config", str(cfg)).returncode == 0
    # The JSON, not the text columns: the actor's width varies (`sudo claims X` when run under sudo).
    trail = orjson.loads(vitalgate("audit", "--json", "--config", str(cfg)).stdout)["audit"]
    text = "\n".join(vitalgate("audit", "--config", str(cfg)).stdout.splitlines()[:3])
    assert [e["action"] for e in trail] == ["bind", "devices", "unbind"]
    assert trail[0]["detail"].split()[-1] == trail[2]["detail"].split()[-1]  # the same binding, by its keyed tag
    assert "needle" not in (text + orjson.dumps(trail).decode()).lower()
    assert len(text.splitlines()) == 3 and all("(uid " in e["actor"] for e in trail)


def test_requeue_command(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, count=1)
    proc = vitalgate("requeue", "--config", str(cfg))
    assert proc.returncode == 2 and "--all" in proc.stderr
    proc = vitalgate("requeue", "--all", "--config", str(cfg))
    assert proc.returncode == 0 and proc.stdout.strip() == "0 quarantined readings queued again"
    assert "requeue" in vitalgate("audit", "--config", str(cfg)).stdout


def test_demo_until_each_device_says_when_the_limit_ran_out_first(tmp_path: Path) -> None:
    # No simulated device yields 10,000 readings in 2 seconds: the run ends at the limit, exit 1 with a sentence.
    args = ["demo", "--until-each-device", "10000", "--seconds", "2", "--out", str(tmp_path / "d")]
    proc = vitalgate(*args, timeout=600)
    assert proc.returncode == 1, proc.stderr
    assert "not every device had 10000 readings forwarded within 2 s" in proc.stderr
    assert "Traceback" not in proc.stderr
