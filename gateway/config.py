"""One TOML file, checked completely at start-up.

Every error names the file, the key and what is wrong, because the person reading it is a clinic's IT
staff member at a console, not a Python developer. Unknown keys are errors too: a typo in a security
setting must not silently fall back to a default.
"""

from __future__ import annotations

import math
import os
import tomllib
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta, tzinfo
from pathlib import Path
from typing import Any

from gateway.console.settings import Surfaces, parse_surfaces
from gateway.errors import ConfigError, ConfigErrors

__all__ = ["DEFAULT_PATH", "Config", "DeviceConfig", "check_number", "load_config", "load_key_file", "parse_config"]

DEFAULT_PATH = Path("/etc/vitalgate/vitalgate.toml")
MAX_POLL_SECONDS = 86400


def check_number(value: object, minimum: float, maximum: float, *, integer: bool = False) -> float:
    """The one rule for numbers from config files and command lines: finite, in [minimum, maximum].

    NaN passes every `<` comparison and 1e300 seconds overflows datetime arithmetic, so both are refused here
    rather than deep inside the daemon. Raises ValueError with a sentence naming the allowed range.
    """
    span = f"between {minimum:g} and {maximum:g}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number {span}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be a finite number {span}, got {value!r}")
    if integer and not (isinstance(value, int) or float(value).is_integer()):
        raise ValueError(f"must be a whole number {span}, got {value!r}")
    if not minimum <= value <= maximum:  # compare before float(): a 10**400 int is not a float
        raise ValueError(f"must be {span}, got {value if abs(value) < 1e15 else 'a number that large'}")
    return float(value)


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
    clock_implausible: timedelta = timedelta(days=1)  # gateway.clockcheck: beyond this a reading is flagged
    test_data: bool = False
    queue_path: Path = Path("/var/lib/vitalgate/queue.db")
    retention: timedelta = timedelta(days=7)
    batch_size: int = 100
    retry_initial: float = 1.0
    retry_max: float = 300.0
    retry_permanent: float = 600.0
    min_free_bytes: int = 64 * 1024 * 1024
    send_timeout: float = 300.0
    forwarder: str = "file"
    forwarder_options: Mapping[str, Any] = field(default_factory=dict)
    log_level: str = "info"
    log_format: str = "auto"
    devices: tuple[DeviceConfig, ...] = ()
    surfaces: Surfaces = field(default_factory=Surfaces)  # [console], [metrics], [alarms]


class _Section:
    """Typed access to one table that remembers which keys were read, so leftovers can be reported."""

    def __init__(
        self, file: str, prefix: str, table: Mapping[str, Any], errors: list[ConfigError] | None = None
    ) -> None:
        self.file, self.prefix, self.table = file, prefix, table
        self.used: set[str] = set()
        self.errors = errors  # when given, problems are collected here (and defaults used) instead of raised

    def fail(self, key: str, problem: str) -> None:
        """Raise, or note the problem and let parsing go on so every problem is reported at once."""
        error = self.error(key, problem)
        if self.errors is None:
            raise error
        self.errors.append(error)

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
            self.fail(key, f"expected a number, got {value!r}")
            return default
        if not isinstance(value, kind):
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            self.fail(key, f"expected {names}, got {type(value).__name__} {value!r}")
            return default
        return value

    def number(self, key: str, default: float, *, minimum: float, maximum: float) -> float:
        value = self.get(key, (int, float), default)
        try:
            return check_number(value, minimum, maximum)
        except ValueError as exc:
            self.fail(key, str(exc))
            return float(default)

    def integer(self, key: str, default: int, *, minimum: int, maximum: int) -> int:
        """A count: 100.5 is refused, not silently cut to 100."""
        value = self.get(key, int, default)
        if not minimum <= value <= maximum:
            self.fail(key, f"must be a whole number between {minimum} and {maximum}, got {value}")
            return default
        return int(value)

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = str(self.get(key, str, default))
        if value not in choices:
            self.fail(key, f"must be one of {', '.join(choices)}; got {value!r}")
            return default
        return value

    def finish(self, allowed_tables: tuple[str, ...] = ()) -> None:
        for key in self.table:
            if key not in self.used and key not in allowed_tables:
                self.fail(key, "unknown key (typo?)")


def _table(file: str, doc: Mapping[str, Any], name: str, errors: list[ConfigError] | None = None) -> Mapping[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, Mapping):
        error = ConfigError(file, name, f"expected a table [{name}], got {type(value).__name__}")
        if errors is None:
            raise error
        errors.append(error)
        return {}
    return value


def parse_config(doc: Mapping[str, Any], file: str = "<config>", base: Path | None = None) -> Config:
    """`base` resolves a relative state_dir (the config file's folder), so examples run from a checkout."""
    errors: list[ConfigError] = []  # every problem in the file, reported together at the end
    top = _Section(file, "", doc, errors)
    top.finish(allowed_tables=("gateway", "queue", "output", "logging", "devices", "console", "metrics", "alarms"))

    g = _Section(file, "gateway", _table(file, doc, "gateway", errors), errors)
    gateway_id = g.get("id", str, "vitalgate")
    if not gateway_id or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in gateway_id):
        g.fail("id", "use ASCII letters, digits, '-', '_' or '.' (it appears in topics and FHIR ids)")
    state_dir = Path(g.get("state_dir", str, "/var/lib/vitalgate"))
    if not state_dir.is_absolute():
        state_dir = (base or Path.cwd()) / state_dir
    key_file = _key_file(g.get("key_file", str, "/etc/vitalgate/data.key"), base)
    tz_name = g.get("timezone", str, "local")
    tz: tzinfo | None = None
    try:
        tz = None if tz_name == "local" else zoneinfo.ZoneInfo(tz_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        g.fail("timezone", f"unknown time zone {tz_name!r} (use an IANA name such as America/Chicago)")
    tolerance = g.number("clock_tolerance_seconds", 60, minimum=1, maximum=86400)
    implausible = g.number("clock_implausible_seconds", 86400, minimum=60, maximum=10 * 365 * 86400)
    test_data = g.get("test_data", bool, False)
    g.finish()

    q = _Section(file, "queue", _table(file, doc, "queue", errors), errors)
    queue_path = Path(q.get("path", str, "queue.db"))
    retention_days = q.number("retention_days", 7, minimum=0, maximum=3650)
    batch_size = q.integer("batch_size", 100, minimum=1, maximum=10_000)
    seen = len(errors)
    retry_initial = q.number("retry_initial_seconds", 1, minimum=0.01, maximum=3600)
    # Judged against retry_initial only when that one was valid: one wrong number is one problem, not two.
    floor = retry_initial if len(errors) == seen else 0.01
    retry_max = q.number("retry_max_seconds", 300, minimum=floor, maximum=86400)
    retry_permanent = q.number("retry_permanent_seconds", 600, minimum=1, maximum=86400)
    min_free_mb = q.number("min_free_mb", 64, minimum=0, maximum=1_000_000)
    q.finish()

    o = _Section(file, "output", _table(file, doc, "output", errors), errors)
    from gateway.forwarders import FORWARDERS

    forwarder = o.choice("forwarder", "file", tuple(FORWARDERS))
    send_timeout = o.number("send_timeout_seconds", 300, minimum=1, maximum=3600)
    forwarder_options = o.get(forwarder, dict, {})
    o.finish(allowed_tables=tuple(FORWARDERS))

    lg = _Section(file, "logging", _table(file, doc, "logging", errors), errors)
    level = lg.choice("level", "info", ("debug", "info", "warning", "error"))
    fmt = lg.choice("format", "auto", ("auto", "json", "console"))
    lg.finish()

    devices = _devices(file, doc.get("devices", []), errors)
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)

    return Config(
        file=file,
        gateway_id=gateway_id,
        state_dir=state_dir,
        key_file=key_file,
        timezone=tz,
        clock_tolerance=timedelta(seconds=tolerance),
        clock_implausible=timedelta(seconds=implausible),
        test_data=test_data,
        queue_path=queue_path if queue_path.is_absolute() else state_dir / queue_path,
        retention=timedelta(days=retention_days),
        batch_size=batch_size,
        retry_initial=retry_initial,
        retry_max=retry_max,
        retry_permanent=retry_permanent,
        min_free_bytes=int(min_free_mb * 1024 * 1024),
        send_timeout=send_timeout,
        forwarder=forwarder,
        forwarder_options=forwarder_options,
        log_level=level,
        log_format=fmt,
        devices=devices,
        surfaces=parse_surfaces(file, doc, state_dir),
    )


def _devices(file: str, entries: Any, errors: list[ConfigError]) -> tuple[DeviceConfig, ...]:
    """Each entry checked on its own: one entry's first problem is collected and the next entry is checked."""
    if not isinstance(entries, list):
        errors.append(ConfigError(file, "devices", "expected an array of tables [[devices]]"))
        return ()
    out: list[DeviceConfig] = []
    names: set[str] = set()
    for i, entry in enumerate(entries):
        try:
            out.append(_device(file, i, entry, names))
        except ConfigError as exc:
            errors.append(exc)
    return tuple(out)


def _device(file: str, i: int, entry: Any, names: set[str]) -> DeviceConfig:
    from drivers import registry

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
    try:
        check_number(options.get("poll_seconds", 0), 0, MAX_POLL_SECONDS)
    except ValueError as exc:
        raise ConfigError(file, f"{where}.poll_seconds", f"must be seconds: {exc}") from None
    try:
        driver.validate(options, where)
    except ConfigError as exc:
        key = exc.key if exc.key.startswith(where) else f"{where}.{exc.key}"
        raise ConfigError(file, key, exc.problem) from None
    return DeviceConfig(driver_name, name, options, where)


def load_config(path: Path) -> Config:
    file = os.path.abspath(path)  # named absolutely in every message, whatever the working directory
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
    return parse_config(doc, file, Path(os.path.abspath(path)).parent)


def _key_file(spec: str, base: Path | None) -> str:
    """A relative key_file is next to the config file, like state_dir (not wherever the command ran)."""
    if spec.startswith("credential:") or Path(spec).is_absolute():
        return spec
    return str((base or Path.cwd()) / spec)


def load_key_file(path: Path) -> str:
    """Only `gateway.key_file` (resolved as in `load_config`): what `keys init` / `keys rotate` need.

    A typo in a device option must not stop an operator from creating the key; the rest of the file is
    checked by `check-config` and `run`.
    """
    file = os.path.abspath(path)  # named absolutely in every message, whatever the working directory
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(file, "-", "file not found (create it from config/vitalgate.example.toml)") from None
    except PermissionError:
        raise ConfigError(file, "-", "not readable by this user") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(file, "-", f"not valid TOML: {exc}") from None
    g = _Section(file, "gateway", _table(file, doc, "gateway"))
    return _key_file(g.get("key_file", str, "/etc/vitalgate/data.key"), Path(os.path.abspath(path)).parent)
