"""A daemon with the console on, accounts made through the CLI, and a TOTP code maker for the tests."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from gateway.console import totp
from tests.test_daemon import ROOT

PASSWORD = "correct horse battery staple"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Accounts:
    secrets: dict[str, str] = field(default_factory=dict)
    used: dict[str, int] = field(default_factory=dict)

    def code(self, name: str) -> str:
        """A fresh code: a counter already used is refused (replay), so wait for the next step if needed."""
        key = totp.decode_secret(self.secrets[name])
        while int(time.time() // 30) <= self.used.get(name, -1):
            time.sleep(0.5)
        self.used[name] = int(time.time() // 30)
        return totp.totp(key, time.time())


def add_accounts(cfg: Path, roles: dict[str, str], env: dict[str, str] | None = None) -> Accounts:
    accounts = Accounts()
    for name, role in roles.items():
        done = subprocess.run(
            [sys.executable, "-m", "gateway", "users", "add", name, "--role", role, "--password-stdin", "--json",
             "--config", str(cfg)],
            input=PASSWORD + "\n", capture_output=True, text=True, cwd=ROOT, timeout=60, env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        accounts.secrets[name] = json.loads(done.stdout)["totp_secret"]
    return accounts


@contextmanager
def daemon(
    cfg: Path, port: int, env: dict[str, str] | None = None, scheme: str = "http"
) -> Iterator[subprocess.Popen[bytes]]:
    log = (cfg.parent / "daemon.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--config", str(cfg)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while b"console_listening" not in (cfg.parent / "daemon.log").read_bytes():
            assert proc.poll() is None, (cfg.parent / "daemon.log").read_text()
            assert time.monotonic() < deadline, "console did not start"
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
