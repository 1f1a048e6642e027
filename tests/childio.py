"""Reading a child process's output with a deadline.

A plain `proc.stdout.readline()` blocks until the child writes a line or exits: a child that buffers its
output (no flush into a pipe) or hangs makes the test hang with it, past any deadline checked between reads.
`ChildLines` reads the pipe on a thread, so every wait here is bounded, and a timeout names what was seen.
"""

from __future__ import annotations

import queue
import re
import subprocess
import threading
import time
from collections.abc import Callable
from typing import IO, AnyStr, Generic

__all__ = ["ChildLines", "ChildOutputTimeout"]


class ChildOutputTimeout(AssertionError):
    """The child did not write the line awaited before the deadline (or exited first)."""


class ChildLines(Generic[AnyStr]):
    """The lines of one child pipe (text or bytes), each available once, in order."""

    def __init__(self, stream: IO[AnyStr] | None, name: str = "child") -> None:
        assert stream is not None, "start the child with stdout=subprocess.PIPE"
        self.name = name
        self.seen: list[AnyStr] = []
        self._lines: queue.Queue[AnyStr | None] = queue.Queue()
        self._eof = False
        self._thread = threading.Thread(target=self._pump, args=(stream,), name=f"{name}-reader", daemon=True)
        self._thread.start()

    @classmethod
    def of(cls, proc: subprocess.Popen[AnyStr], name: str = "child") -> ChildLines[AnyStr]:
        return cls(proc.stdout, name)

    def _pump(self, stream: IO[AnyStr]) -> None:
        try:
            for line in iter(stream.readline, stream.read(0)):
                self._lines.put(line)
        except (OSError, ValueError):
            pass  # the pipe was closed under us (the test is tearing the child down)
        finally:
            self._lines.put(None)

    def readline(self, timeout: float) -> AnyStr:
        """The next line; raises ChildOutputTimeout after `timeout` seconds or at end of output."""
        return self.wait_for(lambda _line: True, timeout, "any line")

    def wait_for(self, match: str | bytes | Callable[[AnyStr], object], timeout: float, what: str = "") -> AnyStr:
        """The first line (from here on) containing `match` (a substring or regex) or for which it is true."""
        if callable(match):
            test = match
            what = what or getattr(match, "__name__", "a matching line")
        else:
            pattern = re.compile(re.escape(match) if isinstance(match, str | bytes) else match)
            test = pattern.search  # type: ignore[assignment]
            what = what or repr(match)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if self._eof or left <= 0:
                break
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                self._eof = True
                break
            self.seen.append(line)
            if test(line):
                return line
        why = "exited" if self._eof else f"wrote nothing matching within {timeout:g} s"
        raise ChildOutputTimeout(f"{self.name} {why} (waiting for {what}); its output so far: {self.seen[-20:]!r}")

    def rest(self, timeout: float) -> list[AnyStr]:
        """Every remaining line up to end of output (the child exited or closed the pipe), within `timeout`."""
        deadline = time.monotonic() + timeout
        out: list[AnyStr] = []
        while not self._eof:
            left = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(left, 0))
            except queue.Empty:
                raise ChildOutputTimeout(
                    f"{self.name} did not close its output within {timeout:g} s; last lines: {out[-20:]!r}"
                ) from None
            if line is None:
                self._eof = True
            else:
                self.seen.append(line)
                out.append(line)
        return out
