"""`vitalgate simulate onetouch-ultra2 --records 5` prints a pty path a person (here: pyserial) can talk to."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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


def test_simulate_tanita_sends_one_new_weigh_in_per_interval() -> None:
    """Issue 12: `--interval` is the time between weigh-ins; each is printed once (a scale has no memory dump)."""
    from drivers.serial.tanita import parse_line
    from simulators.serial.records import weigh_ins
    from simulators.serial.tanita import result_line

    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "simulate", "tanita-bc", "--records", "3", "--interval", "0.2"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        path = proc.stdout.readline().decode().strip()
        with serial.Serial(path, 9600, timeout=10) as port:
            lines = [port.readline() for _ in range(3)]
            assert lines == [result_line(w) for w in weigh_ins(3)]  # each one once, in order
            assert len({parse_line(x).weight_kg for x in lines}) == 3
            assert line_within(proc.stderr, 10).startswith(b"# tanita-bc with 3 records")
            assert line_within(proc.stderr, 10) == b"# all 3 weigh-ins sent; Ctrl-C to stop\n"  # nothing more after
            port.timeout = 0
            assert port.read(4096) == b""
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0


def line_within(stream: Any, seconds: float) -> bytes:
    """One line from a child's pipe, or b"" when none is complete by the deadline."""
    deadline = time.monotonic() + seconds
    data = b""
    while not data.endswith(b"\n") and (left := deadline - time.monotonic()) > 0:
        if not select.select([stream], [], [], left)[0]:
            break
        byte = os.read(stream.fileno(), 1)
        if not byte:
            break
        data += byte
    return data


def test_simulate_exposes_the_simulators_fault_injection() -> None:
    """`--fault RECORD:KIND` reaches the simulator: the record is damaged the first time only."""
    from drivers.errors import ChecksumError

    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "simulate", "onetouch-ultra2", "--records", "4", "--fault", "2:bad-checksum"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        path = line_within(proc.stdout, 30).decode().strip()
        with serial.Serial(path, 9600, timeout=5) as port:
            port.write(p.encode_command("DMP"))
            assert p.parse_dump_header(port.readline()).count == 4
            lines = [port.readline() for _ in range(4)]
            p.parse_record(lines[0]), p.parse_record(lines[1]), p.parse_record(lines[3])
            try:
                p.parse_record(lines[2])
            except ChecksumError as exc:
                assert exc.raw == lines[2]
            else:
                raise AssertionError("record 2 was not damaged")
            port.write(p.encode_command("DMP"))  # the fault fires once: the next dump is clean
            port.readline()
            assert p.parse_record(port.readline()) and [p.parse_record(port.readline()) for _ in range(3)]
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0


def test_simulate_refuses_a_wrong_fault() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "simulate", "onetouch-ultra2", "--fault", "2:gremlins"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "vitalgate: config error: <command line>: --fault: use RECORD:KIND, RECORD >= 0, "
        "KIND one of bad-checksum, truncated, garbage, close"
    )
