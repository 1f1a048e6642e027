"""`[console]`, `[metrics]` and `[alarms]`: the operator surfaces' settings, checked like the rest.

Both servers are off by default and listen on loopback unless configured; the console refuses to listen
off loopback without TLS, because its pages carry patient references and its forms pair devices.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError
from gateway.health.rules import Thresholds

__all__ = [
    "ConsoleSettings",
    "MetricsSettings",
    "Surfaces",
    "is_loopback",
    "parse_alarms",
    "parse_console",
    "parse_metrics",
    "parse_surfaces",
]


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    enabled: bool = False
    listen: str = "127.0.0.1"
    port: int = 8780
    tls: bool = False
    cert_file: Path | None = None  # None with tls: generated on first use in the state folder
    key_file: Path | None = None
    session_idle_minutes: float = 15.0
    max_failed_logins: int = 5
    lockout_minutes: float = 15.0


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    enabled: bool = False
    listen: str = "127.0.0.1"
    port: int = 9780


@dataclass(frozen=True, slots=True)
class Surfaces:
    console: ConsoleSettings = field(default_factory=ConsoleSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    alarms: Thresholds = field(default_factory=Thresholds)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Table:
    def __init__(self, file: str, name: str, doc: Mapping[str, Any]) -> None:
        value = doc.get(name, {})
        if not isinstance(value, Mapping):
            raise ConfigError(file, name, f"expected a table [{name}], got {type(value).__name__}")
        self.file, self.name, self.table = file, name, value
        unknown = set(value) - set(self.keys())
        if unknown:
            raise ConfigError(file, f"{name}.{sorted(unknown)[0]}", "unknown key (typo?)")

    def keys(self) -> tuple[str, ...]:
        return {
            "console": (
                "enabled", "listen", "port", "tls", "cert_file", "key_file",
                "session_idle_minutes", "max_failed_logins", "lockout_minutes",
            ),
            "metrics": ("enabled", "listen", "port"),
            "alarms": (
                "backlog_hours", "device_silent_days", "disk_free_percent", "key_rotation_days",
                "credential_expiry_days",
            ),
        }[self.name]  # fmt: skip

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.file, f"{self.name}.{key}", problem)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.table.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {value!r}") from None
        return value

    def text(self, key: str, default: str) -> str:
        value = self.table.get(key, default)
        if not isinstance(value, str) or not value:
            raise self.error(key, f"expected a non-empty string, got {value!r}") from None
        return value

    def number(self, key: str, default: float, low: float, high: float) -> float:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise self.error(key, f"must be a number between {low:g} and {high:g}, got {value!r}")
        return float(value)

    def host(self, key: str) -> str:
        value = self.text(key, "127.0.0.1")
        if value != "localhost":
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise self.error(key, f"use an IP address (127.0.0.1, ::1, 0.0.0.0), got {value!r}") from None
        return value


def _path(t: _Table, key: str, base: Path) -> Path | None:
    if key not in t.table:
        return None
    p = Path(t.text(key, ""))
    return p if p.is_absolute() else base / p


def parse_console(file: str, doc: Mapping[str, Any], base: Path) -> ConsoleSettings:
    t = _Table(file, "console", doc)
    listen = t.host("listen")
    tls = t.boolean("tls", False)
    enabled = t.boolean("enabled", False)
    if enabled and not tls and not is_loopback(listen):
        raise t.error("tls", f"the console listens on {listen}, off this machine: set tls = true (pages carry PHI)")
    cert, key = _path(t, "cert_file", base), _path(t, "key_file", base)
    if (cert is None) != (key is None):
        raise t.error("cert_file" if cert is None else "key_file", "give both cert_file and key_file, or neither")
    return ConsoleSettings(
        enabled=enabled,
        listen=listen,
        port=int(t.number("port", 8780, 0, 65535)),
        tls=tls,
        cert_file=cert,
        key_file=key,
        session_idle_minutes=t.number("session_idle_minutes", 15, 1, 24 * 60),
        max_failed_logins=int(t.number("max_failed_logins", 5, 1, 100)),
        lockout_minutes=t.number("lockout_minutes", 15, 1, 24 * 60),
    )


def parse_metrics(file: str, doc: Mapping[str, Any]) -> MetricsSettings:
    t = _Table(file, "metrics", doc)
    return MetricsSettings(
        enabled=t.boolean("enabled", False), listen=t.host("listen"), port=int(t.number("port", 9780, 0, 65535))
    )


def parse_alarms(file: str, doc: Mapping[str, Any]) -> Thresholds:
    t = _Table(file, "alarms", doc)
    return Thresholds(
        backlog_hours=t.number("backlog_hours", 6, 0.01, 24 * 365),
        device_silent_days=t.number("device_silent_days", 3, 0.01, 365),
        disk_free_percent=t.number("disk_free_percent", 10, 0, 99),
        key_rotation_days=t.number("key_rotation_days", 365, 1, 3650),
        credential_expiry_days=t.number("credential_expiry_days", 30, 0, 365),
    )


def parse_surfaces(file: str, doc: Mapping[str, Any], base: Path) -> Surfaces:
    return Surfaces(parse_console(file, doc, base), parse_metrics(file, doc), parse_alarms(file, doc))
