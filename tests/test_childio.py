"""The deadline helper for reading child output: a silent or buffering child fails the test, never hangs it."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.childio import ChildLines, ChildOutputTimeout

# Writes a line without flushing (block-buffered into a pipe), then sleeps: the bug of issue 15.
BUFFERED = "import time; print('served on', end='\\n'); time.sleep(60)"


def _spawn(code: str) -> subprocess.Popen[str]:
    env = {"PATH": "/usr/bin:/bin"}  # no PYTHONUNBUFFERED, as on a fresh machine
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)


def test_a_child_that_does_not_flush_times_out_instead_of_hanging() -> None:
    proc = _spawn(BUFFERED)
    try:
        started = time.monotonic()
        with pytest.raises(ChildOutputTimeout, match="wrote nothing matching within 1 s"):
            ChildLines.of(proc).wait_for("served on", 1)
        assert time.monotonic() - started < 30  # bounded by the deadline, not by the child's 60 s sleep
    finally:
        proc.kill()
        proc.wait(10)


def test_lines_in_order_then_the_rest_then_exit_is_reported() -> None:
    proc = _spawn("import sys; [print(i, flush=True) for i in range(5)]; print('tail', end='')")
    lines = ChildLines.of(proc, "counter")
    assert lines.wait_for("2", 30) == "2\n"
    assert lines.rest(30) == ["3\n", "4\n", "tail"]
    with pytest.raises(ChildOutputTimeout, match="counter exited"):
        lines.readline(30)
    assert proc.wait(10) == 0
    assert lines.seen == ["0\n", "1\n", "2\n", "3\n", "4\n", "tail"]
