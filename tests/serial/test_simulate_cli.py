"""`vitalgate simulate onetouch-ultra2 --records 5` prints a pty path a person (here: pyserial) can talk to."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import serial

from drivers.serial import onetouch_ultra2 as p
from tests.childio import ChildLines

ROOT = Path(__file__).resolve().parents[2]


def test_simulate_prints_a_working_port() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "simulate", "onetouch-ultra2", "--records", "5"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        path = ChildLines.of(proc, "vitalgate simulate").readline(60).decode().strip()
        assert path.startswith("/dev/pts/")
        with serial.Serial(path, 9600, timeout=5) as port:
            port.write(p.encode_command("DMP"))
            assert p.parse_dump_header(port.readline()).count == 5
            records = [p.parse_record(port.readline()) for _ in range(5)]
        assert all(r.value_mg_dl > 0 for r in records)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
