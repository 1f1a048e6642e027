"""The operator's view of a running daemon: STATUS=, journald priorities, `status` (text and --json),
`requeue` naming ids it left alone, `devices` with last seen, and `status | head` without a traceback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.test_daemon import ROOT, vitalgate, wait_for, write_config


def test_running_daemon_as_the_operator_sees_it(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, count=6)
    assert vitalgate("bind", "SERIAL-NEEDLE-BP", "p-1", "--user", "1", "--json", "--config", str(cfg)).returncode == 0
    notify = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify))
    listener.settimeout(0.2)
    out = (tmp_path / "stdout").open("w+b")
    st = os.fstat(out.fileno())
    env = {**os.environ, "NOTIFY_SOCKET": str(notify), "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--config", str(cfg)], cwd=ROOT, env=env,
                            stdout=out, stderr=subprocess.PIPE)  # fmt: skip
    statuses: list[str] = []

    def status_seen(text: str) -> bool:
        try:
            while True:
                msg = listener.recv(4096).decode()
                statuses.extend(line[7:] for line in msg.splitlines() if line.startswith("STATUS="))
        except TimeoutError:
            pass
        return any(text in s for s in statuses)

    try:
        assert wait_for(lambda: status_seen("forwarding to file:outbox"), 30), statuses
        doc: dict[str, object] = {}

        def delivered() -> bool:
            nonlocal doc
            doc = json.loads(vitalgate("status", "--json", "--config", str(cfg)).stdout)
            h = doc["health"]
            return doc["queue"]["counts"]["delivered"] == 3 and h is not None and h["forwarder"]["state"] == "connected"  # type: ignore

        assert wait_for(delivered, 60), doc
        assert doc["daemon"]["state"] == "running"  # type: ignore[index]
        health = doc["health"]
        assert health["pid"] == proc.pid and health["forwarder"]["state"] == "connected"  # type: ignore[index]
        text = vitalgate("status", "--config", str(cfg)).stdout.splitlines()
        assert text[0].startswith(f"daemon           running (pid {proc.pid}")
        assert text[1].startswith("forwarder        connected: file to file:outbox")
        # 9 unassigned (user 2 and the meter), 3 delivered: the snapshot catches up within a few seconds.
        assert wait_for(lambda: status_seen("; 0 pending; 2 devices"), 30), statuses
        head = subprocess.run(f"{sys.executable} -m gateway status --config {cfg} | head -1", shell=True, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert head.stdout.startswith("daemon") and "Traceback" not in head.stderr and "Broken" not in head.stderr
        devices = json.loads(vitalgate("devices", "--json", "--config", str(cfg)).stdout)["devices"]
        assert {(d["device"], d["user"], d["patient"]) for d in devices} >= {("SERIAL-NEEDLE-BP", 1, "Patient/p-1")}
        assert all(isinstance(d["last_seen"], float) for d in devices)
        table = vitalgate("devices", "--config", str(cfg)).stdout.splitlines()
        assert "LAST SEEN" in table[0] and time.strftime("%Y-%m-%d", time.gmtime()) in table[1]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
        listener.close()
    assert proc.returncode == 0, err.decode()
    out.seek(0)
    lines = out.read().decode().splitlines()
    assert lines and all(line[:3] in ("<3>", "<4>", "<6>", "<7>") for line in lines)
    events = [json.loads(line[3:]) for line in lines]
    delivered_lines = [e for e in events if e["event"] == "delivered" and e["level"] == "info"]
    assert delivered_lines and delivered_lines[0]["kinds"].startswith("blood-pressure=")
    gone = json.loads(vitalgate("status", "--json", "--config", str(cfg)).stdout)
    assert gone["daemon"]["state"] == "not running"
    requeue = json.loads(vitalgate("requeue", "1", "99", "--json", "--config", str(cfg)).stdout)
    assert requeue == {"requeued": 0, "not_quarantined": [1, 99]}
    said = vitalgate("requeue", "99", "--config", str(cfg)).stdout
    assert "not quarantined (left as they are): #99" in said
    audit = json.loads(vitalgate("audit", "--json", "--config", str(cfg)).stdout)["audit"]
    assert {"at", "actor", "action", "detail"} == set(audit[0]) and audit[-1]["action"] == "requeue"
    drivers = json.loads(vitalgate("drivers", "--json").stdout)["drivers"]
    assert any(d["name"] == "simulated" and d["error"] is None for d in drivers)
    unbind = json.loads(vitalgate("unbind", "SERIAL-NEEDLE-BP", "--user", "1", "--json", "--config", str(cfg)).stdout)
    assert unbind == {"unbound": True, "device": "SERIAL-NEEDLE-BP", "user": 1}


def test_start_up_errors_carry_the_error_priority_on_the_journal(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, count=1)
    (tmp_path / "data.key").chmod(0o644)
    err = (tmp_path / "stderr").open("w+b")
    st = os.fstat(err.fileno())
    env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
    done = subprocess.run([sys.executable, "-m", "gateway", "run", "--config", str(cfg)], cwd=ROOT, env=env,
                          stdout=subprocess.DEVNULL, stderr=err, timeout=60)  # fmt: skip
    err.seek(0)
    assert done.returncode == 3 and err.read().decode().startswith("<3>vitalgate: ")
