"""What the console and metrics cost a Pi: RSS added, idle CPU, start-to-READY time, RSS after use.

Starts the daemon (file forwarder, one idle simulated device) three ways: plain, with [metrics], with
[metrics] + [console]; each reports READY=1 over a real NOTIFY_SOCKET. Figures are medians over --runs.
"Used" means after one login (argon2id: 64 MiB while hashing, freed after), 20 dashboard loads and 20
scrapes. Target (issue 13): console + metrics add at most 15 MiB RSS and no measurable idle CPU.

    python -m bench.bench_console [--runs 3] [--idle 20]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path
from urllib.parse import urlencode

from bench.common import machine, print_rows
from gateway.console import totp
from gateway.crypto import create_key_file

PASSWORD = "bench password 1234"
TICKS = os.sysconf("SC_CLK_TCK")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status(pid: int, key: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) * 1024 if m else 0


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _config(folder: Path, metrics: bool, console: bool) -> tuple[Path, int, int]:
    mport, cport = _port(), _port()
    cfg = folder / "vitalgate.toml"
    cfg.write_text(f"""
[gateway]
state_dir = "state"
key_file = "{folder / "data.key"}"
[logging]
format = "json"
level = "warning"
[metrics]
enabled = {str(metrics).lower()}
port = {mport}
[console]
enabled = {str(console).lower()}
port = {cport}
[[devices]]
driver = "simulated"
name = "cuff"
kind = "blood-pressure"
serial = "BENCH"
interval_seconds = 3600
count = 1
""")
    return cfg, mport, cport


def run_once(metrics: bool, console: bool, idle: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        create_key_file(folder / "data.key")
        cfg, mport, cport = _config(folder, metrics, console)
        secret = ""
        if console:
            done = subprocess.run(
                [sys.executable, "-m", "gateway", "users", "add", "bench", "--role", "admin", "--password-stdin",
                 "--json", "--config", str(cfg)], input=PASSWORD + "\n", capture_output=True, text=True, check=True,
            )  # fmt: skip
            secret = re.search(r'"totp_secret": "([A-Z2-7]+)"', done.stdout).group(1)  # type: ignore[union-attr]
        sock_path = folder / "notify"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(sock_path))
        sock.settimeout(60)
        env = {**os.environ, "NOTIFY_SOCKET": str(sock_path)}
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--config", str(cfg)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            while b"READY=1" not in sock.recv(4096):
                pass
            ready = time.monotonic() - started
            time.sleep(3)  # let start-up settle (first snapshot, first device session)
            rss_idle = _status(proc.pid, "VmRSS")
            cpu0, t0 = _cpu(proc.pid), time.monotonic()
            time.sleep(idle)
            cpu_pct = 100 * (_cpu(proc.pid) - cpu0) / (time.monotonic() - t0)
            if metrics:
                for _ in range(20):
                    urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10).read()
            if console:
                opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
                base = f"http://127.0.0.1:{cport}"
                page = opener.open(f"{base}/login", timeout=10).read().decode()
                token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
                code = totp.totp(totp.decode_secret(secret), time.time())
                form = urlencode({"csrf": token, "name": "bench", "password": PASSWORD, "code": code}).encode()
                assert "Dashboard" in opener.open(f"{base}/login", data=form, timeout=30).read().decode()
                for _ in range(20):
                    opener.open(f"{base}/", timeout=10).read()
            time.sleep(1)
            return {"ready": ready, "rss": rss_idle, "cpu": cpu_pct, "rss_used": _status(proc.pid, "VmRSS"),
                    "hwm": _status(proc.pid, "VmHWM")}  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(timeout=20)
            sock.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--idle", type=float, default=20.0, help="seconds of idle CPU measurement")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    results: dict[str, dict[str, float]] = {}
    for label, metrics, console in (("plain", False, False), ("metrics", True, False), ("metrics+console", True, True)):
        runs = [run_once(metrics, console, args.idle) for _ in range(args.runs)]
        results[label] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    mib = 1024 * 1024
    rows: list[tuple[str, str]] = []
    for label, r in results.items():
        rows += [
            (f"{label}: start to READY", f"{r['ready'] * 1000:.0f} ms"),
            (f"{label}: RSS idle", f"{r['rss'] / mib:.1f} MiB"),
            (f"{label}: idle CPU", f"{r['cpu']:.2f} %"),
            (f"{label}: RSS after use", f"{r['rss_used'] / mib:.1f} MiB"),
            (f"{label}: peak RSS (VmHWM)", f"{r['hwm'] / mib:.1f} MiB"),
        ]
    base = results["plain"]
    for label in ("metrics", "metrics+console"):
        rows.append((f"added by {label} (idle)", f"{(results[label]['rss'] - base['rss']) / mib:+.1f} MiB"))
        rows.append(
            (f"added by {label} (after use)", f"{(results[label]['rss_used'] - base['rss_used']) / mib:+.1f} MiB")
        )
    print_rows(f"console and metrics footprint (median of {args.runs} runs, {args.idle:g} s idle)", rows, 12)


if __name__ == "__main__":
    main()
