"""Helpers for the fault suite: the real CLI and daemon as child processes, with deadlines on every wait."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson

from gateway.crypto import create_key_file

ROOT = Path(__file__).resolve().parents[2]


def vitalgate(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        env=env,
    )


def start(args: Sequence[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> tuple[int, bytes, bytes]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        raise AssertionError(f"did not stop within {timeout} s: {err.decode()[-2000:]}") from None
    return proc.returncode, out, err


def wait_for(predicate: Callable[[], object], seconds: float, what: str = "condition") -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {seconds} s")


def write_config(folder: Path, body: str = "", *, devices: str = "", key: Path | None = None) -> Path:
    key = key or folder / "data.key"
    if not key.exists():
        create_key_file(key)
    cfg = folder / "vitalgate.toml"
    if "[output" not in body:  # local NDJSON output is an explicit opt-in with a retention period
        body += "\n[output.file]\nallow_plaintext = true\nretention_days = 7\n"
    cfg.write_text(f"""
[gateway]
id = "gw-faults"
state_dir = "state"
key_file = "{key}"
[queue]
retry_initial_seconds = 0.05
retry_max_seconds = 0.5
[logging]
level = "info"
format = "json"
{body}
{devices}
""")
    return cfg


def simulated(name: str, serial: str, count: int, interval: float = 0.01, kind: str = "blood-pressure") -> str:
    return f"""
[[devices]]
driver = "simulated"
name = "{name}"
kind = "{kind}"
serial = "{serial}"
interval_seconds = {interval}
count = {count}
"""


def outbox(folder: Path) -> list[dict[str, object]]:
    return [
        orjson.loads(line)
        for f in sorted((folder / "state/outbox").glob("*.ndjson"))
        if f.is_file()
        for line in f.read_bytes().splitlines()
    ]


def identifiers(folder: Path) -> list[str]:
    """One identifier per delivered reading (bundle), repeats included: the first Observation's
    conditional-create identifier, which is deterministic per reading."""
    out = []
    for bundle in outbox(folder):
        for entry in bundle["entry"]:  # type: ignore[attr-defined]
            if entry["resource"]["resourceType"] == "Observation":
                out.append(entry["request"]["ifNoneExist"])
                break
    return out


def events(out: bytes) -> list[dict[str, object]]:
    found = []
    for line in out.splitlines():
        try:
            found.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue
    return found


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONUNBUFFERED", None)
    env.update(extra)
    return env


class Lines:
    """Collects a child's output lines on a thread, so a test can wait for one without blocking on a pipe."""

    def __init__(self, stream: object) -> None:
        import threading

        self.lines: list[bytes] = []
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: object) -> None:
        for line in iter(stream.readline, b""):  # type: ignore[attr-defined]
            self.lines.append(line)

    def has(self, needle: bytes) -> bool:
        return any(needle in line for line in list(self.lines))

    def count(self, needle: bytes) -> int:
        return sum(needle in line for line in list(self.lines))

    def text(self) -> bytes:
        return b"".join(self.lines)

    def join(self, seconds: float = 5) -> None:
        self._thread.join(seconds)
