"""sd_notify without libsystemd, and a health record that decides whether the watchdog gets fed.

systemd's notify protocol is one AF_UNIX datagram of `KEY=value` lines to `$NOTIFY_SOCKET` (a path, or
`@name` for the abstract namespace). Writing it ourselves spares a C dependency on the Pi. Nothing here
raises when not run under systemd: every call is then a no-op, so the daemon runs the same by hand.

The watchdog must mean "the gateway works", not "the event loop turns": `Health` collects heartbeats from
named components (queue writer, drainer) and the supervisor sends WATCHDOG=1 only while all are fresh.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping

import structlog

__all__ = ["Health", "Notifier", "watchdog_interval"]

log = structlog.get_logger(__name__)


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between required WATCHDOG=1 pings, or None when the watchdog is off or meant for another pid.

    `$WATCHDOG_PID`, when set, names the process the watchdog is for (sd_watchdog_enabled(3)).
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1_000_000 if value > 0 else None


class Notifier:
    """Sends state changes to the service manager; inert when `$NOTIFY_SOCKET` is unset."""

    def __init__(self, address: str | None, interval: float | None = None) -> None:
        self.address = address
        self._interval = interval
        self._sock: socket.socket | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET") or None, watchdog_interval(env))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def watchdog_interval(self) -> float | None:
        return self._interval

    def notify(self, *lines: str) -> bool:
        """Send one datagram; False (and a log event) if it could not be delivered. Never raises."""
        if self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(lines).encode(), target)
        except OSError as exc:
            log.warning("sd_notify_failed", error=exc.strerror or type(exc).__name__)
            return False
        return True

    def ready(self) -> bool:
        return self.notify("READY=1", f"MAINPID={os.getpid()}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """Free text for `systemctl status`; one line, no PHI."""
        return self.notify("STATUS=" + text.replace("\n", " ")[:200])

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class Health:
    """Named components beat(); healthy() while every registered one beat within its deadline.

    A component that was registered but never beat is unhealthy: a task that hangs during start-up must
    starve the watchdog just like one that hangs later.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._deadline: dict[str, float] = {}
        self._last: dict[str, float] = {}

    def register(self, name: str, deadline: float) -> None:
        if deadline <= 0:
            raise ValueError("deadline must be positive")
        self._deadline[name] = deadline

    def beat(self, name: str) -> None:
        if name not in self._deadline:
            raise KeyError(f"unknown component {name!r}; register it first")
        self._last[name] = self._clock()

    def stale(self) -> list[str]:
        """Components overdue (or never seen), for the log event that explains a starved watchdog."""
        now = self._clock()
        return sorted(
            name
            for name, deadline in self._deadline.items()
            if name not in self._last or now - self._last[name] > deadline
        )

    def healthy(self) -> bool:
        return bool(self._deadline) and not self.stale()
