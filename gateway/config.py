"""One TOML file, checked completely at start-up.

Every error names the file, the key and what is wrong, because the person reading it is a clinic's IT
staff member at a console, not a Python developer. Unknown keys are errors too: a typo in a security
setting must not silently fall back to a default.
"""

from __future__ import annotations

import tomllib
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta, tzinfo
from pathlib import Path
from typing import Any

from gateway.console.settings import Surfaces, parse_surfaces
from gateway.errors import ConfigError

__all__ = ["DEFAULT_PATH", "Config", "DeviceConfig", "load_config", "parse_config"]

DEFAULT_PATH = Path("/etc/vitalgate/vitalgate.toml")
MAX_POLL_SECONDS = 86400


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    driver: str
    name: str
    options: Mapping[str, Any]
    where: str  # "devices[0]", for error messages


@dataclass(frozen=True, slots=True)
class Config:
    file: str
    gateway_id: str = "vitalgate"
    state_dir: Path = Path("/var/lib/vitalgate")
    key_file: str = "/etc/vitalgate/data.key"
    timezone: tzinfo | None = None  # None: the system's zone
    clock_tolerance: timedelta = timedelta(seconds=60)
    test_data: bool = False
    queue_path: Path = Path("/var/lib/vitalgate/queue.db")
    retention: timedelta = timedelta(days=7)
    batch_size: int = 100
    retry_initial: float = 1.0
    retry_max: float = 300.0
    retry_permanent: float = 600.0
    send_timeout: float = 300.0
    forwarder: str = "file"
    forwarder_options: Mapping[str, Any] = field(default_factory=dict)
    log_level: str = "info"
    log_format: str = "auto"
    devices: tuple[DeviceConfig, ...] = ()
    surfaces: Surfaces = field(default_factory=Surfaces)  # [console], [metrics], [alarms]


class _Section:
    """Typed access to one table that remembers which keys were read, so leftovers can be reported."""

    def __init__(self, file: str, prefix: str, table: Mapping[str, Any]) -> None:
        self.file, self.prefix, self.table = file, prefix, table
        self.used: set[str] = set()

    def _key(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.file, self._key(key), problem)

    def get(self, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        self.used.add(key)
        if key not in self.table:
            return default
        value = self.table[key]
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            raise self.error(key, f"expected a number, got {value!r}")
        if not isinstance(value, kind):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise self.error(key, f"expected {names}, got {type(value).__name__} {value!r}")
        return value

    def number(self, key: str, default: float, *, minimum: float, maximum: float | None = None) -> float:
        value = float(self.get(key, (int, float), default))
        if value < minimum or (maximum is not None and value > maximum):
            span = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
            raise self.error(key, f"must be {span}, got {value}")
        return value

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = str(self.get(key, str, default))
        if value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def finish(self, allowed_tables: tuple[str, ...] = ()) -> None:
        for key in self.table:
            if key not in self.used and key not in allowed_tables:
                raise self.error(key, "unknown key (typo?)")


def _table(file: str, doc: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, Mapping):
        raise ConfigError(file, name, f"expected a table [{name}], got {type(value).__name__}")
    return value


def parse_config(doc: Mapping[str, Any], file: str = "<config>", base: Path | None = None) -> Config:
    """`base` resolves a relative state_dir (the config file's folder), so examples run from a checkout."""
    top = _Section(file, "", doc)
    top.finish(allowed_tables=("gateway", "queue", "output", "logging", "devices", "console", "metrics", "alarms"))

    g = _Section(file, "gateway", _table(file, doc, "gateway"))
    gateway_id = g.get("id", str, "vitalgate")
    if not gateway_id or not all(c.isalnum() or c in "-_." for c in gateway_id):
        raise g.error("id", "use letters, digits, '-', '_' or '.' (it appears in topics and FHIR ids)")
    state_dir = Path(g.get("state_dir", str, "/var/lib/vitalgate"))
    if not state_dir.is_absolute():
        state_dir = (base or Path.cwd()) / state_dir
    key_file = g.get("key_file", str, "/etc/vitalgate/data.key")
    tz_name = g.get("timezone", str, "local")
    try:
        tz = None if tz_name == "local" else zoneinfo.ZoneInfo(tz_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise g.error("timezone", f"unknown time zone {tz_name!r} (use an IANA name such as America/Chicago)") from None
    tolerance = g.number("clock_tolerance_seconds", 60, minimum=1)
    test_data = g.get("test_data", bool, False)
    g.finish()

    q = _Section(file, "queue", _table(file, doc, "queue"))
    queue_path = Path(q.get("path", str, "queue.db"))
    retention_days = q.number("retention_days", 7, minimum=0)
    batch_size = int(q.number("batch_size", 100, minimum=1, maximum=10_000))
    retry_initial = q.number("retry_initial_seconds", 1, minimum=0.01)
    retry_max = q.number("retry_max_seconds", 300, minimum=retry_initial)
    retry_permanent = q.number("retry_permanent_seconds", 600, minimum=1)
    q.finish()

    o = _Section(file, "output", _table(file, doc, "output"))
    from gateway.forwarders import FORWARDERS

    forwarder = o.choice("forwarder", "file", tuple(FORWARDERS))
    send_timeout = o.number("send_timeout_seconds", 300, minimum=1, maximum=3600)
    forwarder_options = o.get(forwarder, dict, {})
    o.finish(allowed_tables=tuple(FORWARDERS))

    lg = _Section(file, "logging", _table(file, doc, "logging"))
    level = lg.choice("level", "info", ("debug", "info", "warning", "error"))
    fmt = lg.choice("format", "auto", ("auto", "json", "console"))
    lg.finish()

    devices = _devices(file, doc.get("devices", []))

    return Config(
        file=file,
        gateway_id=gateway_id,
        state_dir=state_dir,
        key_file=key_file,
        timezone=tz,
        clock_tolerance=timedelta(seconds=tolerance),
        test_data=test_data,
        queue_path=queue_path if queue_path.is_absolute() else state_dir / queue_path,
        retention=timedelta(days=retention_days),
        batch_size=batch_size,
        retry_initial=retry_initial,
        retry_max=retry_max,
        retry_permanent=retry_permanent,
        send_timeout=send_timeout,
        forwarder=forwarder,
        forwarder_options=forwarder_options,
        log_level=level,
        log_format=fmt,
        devices=devices,
        surfaces=parse_surfaces(file, doc, state_dir),
    )


def _devices(file: str, entries: Any) -> tuple[DeviceConfig, ...]:
    from drivers import registry

    if not isinstance(entries, list):
        raise ConfigError(file, "devices", "expected an array of tables [[devices]]")
    out: list[DeviceConfig] = []
    names: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"devices[{i}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(file, where, "expected a table")
        driver_name = entry.get("driver")
        if not isinstance(driver_name, str):
            raise ConfigError(file, f"{where}.driver", "missing: name the driver (see `vitalgate drivers`)")
        try:
            driver = registry.load(driver_name)
        except registry.UnknownDriverError as exc:
            raise ConfigError(file, f"{where}.driver", str(exc)) from None
        name = entry.get("name", f"{driver_name}-{i}")
        if not isinstance(name, str) or name in names:
            raise ConfigError(file, f"{where}.name", "must be a unique string")
        names.add(name)
        options = {k: v for k, v in entry.items() if k not in ("driver", "name")}
        # The core, not the driver, reads poll_seconds (gateway.daemon), so the core checks it for every driver.
        poll = options.get("poll_seconds", 0)
        if isinstance(poll, bool) or not isinstance(poll, int | float) or not 0 <= poll <= MAX_POLL_SECONDS:
            raise ConfigError(file, f"{where}.poll_seconds", f"must be seconds between 0 and {MAX_POLL_SECONDS}")
        try:
            driver.validate(options, where)
        except ConfigError as exc:
            key = exc.key if exc.key.startswith(where) else f"{where}.{exc.key}"
            raise ConfigError(file, key, exc.problem) from None
        out.append(DeviceConfig(driver_name, name, options, where))
    return tuple(out)


def load_config(path: Path) -> Config:
    file = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(file, "-", "file not found (create it from config/vitalgate.example.toml)") from None
    except PermissionError:
        raise ConfigError(file, "-", "not readable by this user") from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(file, "-", "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "-", f"not valid TOML: {exc}") from None
    return parse_config(doc, file, path.parent)
