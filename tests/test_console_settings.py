"""`[console]`, `[metrics]`, `[alarms]`: defaults off and on loopback; every mistake named by file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import parse_config
from gateway.errors import ConfigError


def test_defaults_are_off_and_on_loopback() -> None:
    cfg = parse_config({}, "t.toml")
    c, m = cfg.surfaces.console, cfg.surfaces.metrics
    assert (c.enabled, c.listen, c.tls, m.enabled, m.listen) == (False, "127.0.0.1", False, False, "127.0.0.1")


def test_console_settings_parse_and_resolve_paths(tmp_path: Path) -> None:
    doc = {"gateway": {"state_dir": str(tmp_path)},
           "console": {"enabled": True, "listen": "0.0.0.0", "tls": True, "cert_file": "c.pem", "key_file": "/k.pem",
                       "session_idle_minutes": 5},
           "metrics": {"enabled": True, "listen": "::1", "port": 9100},
           "alarms": {"backlog_hours": 2, "device_silent_days": 0.5}}  # fmt: skip
    s = parse_config(doc, "t.toml").surfaces
    assert (s.console.cert_file, s.console.key_file, s.console.session_idle_minutes) == (
        tmp_path / "c.pem",
        Path("/k.pem"),
        5.0,
    )
    assert (s.metrics.listen, s.metrics.port) == ("::1", 9100)
    assert (s.alarms.backlog_hours, s.alarms.device_silent_days, s.alarms.key_rotation_days) == (2, 0.5, 365)


@pytest.mark.parametrize(
    ("doc", "key", "problem"),
    [
        ({"console": {"enabled": True, "listen": "192.168.1.5"}}, "console.tls", "set tls = true"),
        ({"console": {"listen": "gateway.local"}}, "console.listen", "use an IP address"),
        ({"console": {"cert_file": "a.pem"}}, "console.key_file", "both cert_file and key_file"),
        ({"console": {"port": 70000}}, "console.port", "between 0 and 65535"),
        ({"console": {"enabled": "yes"}}, "console.enabled", "expected true or false"),
        ({"console": {"sesion_idle_minutes": 3}}, "console.sesion_idle_minutes", "unknown key"),
        ({"metrics": {"listen": 5}}, "metrics.listen", "non-empty string"),
        ({"alarms": {"disk_free_percent": 100}}, "alarms.disk_free_percent", "between 0 and 99"),
        ({"console": []}, "console", "expected a table"),
    ],
)
def test_mistakes_name_the_key(doc: dict[str, object], key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(doc, "t.toml")
    assert err.value.key == key and problem in err.value.problem and err.value.file == "t.toml"
