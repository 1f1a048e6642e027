"""Config: every error names the file, the key and what is wrong."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gateway.config import Config, load_config, parse_config
from gateway.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_example_config_documents_every_key_and_parses() -> None:
    doc = tomllib.loads((ROOT / "config/vitalgate.example.toml").read_text())
    cfg = parse_config(doc, "example.toml")
    # The example shows the defaults: parsing it gives what an empty file gives.
    assert cfg == Config(file="example.toml", forwarder_options={"directory": "outbox", "window": 500})
    assert parse_config({}, "example.toml") == Config(file="example.toml")
    text = (ROOT / "config/vitalgate.example.toml").read_text()
    documented = {k for section in doc.values() if isinstance(section, dict) for k in section}
    for key in (
        "id",
        "state_dir",
        "key_file",
        "timezone",
        "clock_tolerance_seconds",
        "test_data",
        "path",
        "retention_days",
        "batch_size",
        "retry_initial_seconds",
        "retry_max_seconds",
        "retry_permanent_seconds",
        "min_free_mb",
        "forwarder",
        "send_timeout_seconds",
        "level",
        "format",
    ):
        assert key in documented, key
    assert "[[devices]]" in text


@pytest.mark.parametrize(
    ("toml", "key", "problem"),
    [
        ('[gateway]\nid = "bad id!"', "gateway.id", "use ASCII letters"),
        ("[gateway]\nclock_tolerance_seconds = 0", "gateway.clock_tolerance_seconds", "between 1 and 86400"),
        # Issue 10: NaN passed every comparison, 1e300 overflowed timedelta, inf crashed later.
        ("[gateway]\nclock_tolerance_seconds = nan", "gateway.clock_tolerance_seconds", "finite number"),
        ("[gateway]\nclock_tolerance_seconds = 1e300", "gateway.clock_tolerance_seconds", "between 1 and 86400"),
        ("[queue]\nretention_days = 1e9", "queue.retention_days", "between 0 and 3650"),
        ("[queue]\nretention_days = inf", "queue.retention_days", "finite number"),
        ("[queue]\nretention_days = nan", "queue.retention_days", "finite number"),
        ("[queue]\nretry_initial_seconds = nan", "queue.retry_initial_seconds", "finite number"),
        ("[queue]\nretry_max_seconds = -inf", "queue.retry_max_seconds", "finite number"),
        ("[queue]\nretry_permanent_seconds = 1e300", "queue.retry_permanent_seconds", "between 1 and 86400"),
        ("[queue]\nbatch_size = nan", "queue.batch_size", "expected int"),
        ("[output]\nsend_timeout_seconds = nan", "output.send_timeout_seconds", "finite number"),
        ('[gateway]\ntimezone = "Mars/Olympus"', "gateway.timezone", "unknown time zone"),
        ("[gateway]\ntest_data = 1", "gateway.test_data", "expected bool"),
        ("[queue]\nbatch_size = true", "queue.batch_size", "expected a number"),
        ("[queue]\nbatchsize = 5", "queue.batchsize", "unknown key"),
        ('[output]\nforwarder = "ftp"', "output.forwarder", "must be one of"),
        ('[logging]\nlevel = "loud"', "logging.level", "must be one of"),
        ("[[devices]]\nname = 'x'", "devices[0].driver", "missing"),
        ("[[devices]]\ndriver = 'nope'", "devices[0].driver", "unknown driver 'nope'"),
        ("[[devices]]\ndriver = 'simulated'\nkind = 'ecg'", "devices[0].kind", "must be"),
        ("[[devices]]\ndriver = 'simulated'\ncolour = 'red'", "devices[0].colour", "unknown option"),
        ("surprise = 1", "surprise", "unknown key"),
        # poll_seconds is read by the core for every driver: a typo must stop start-up, not loop a session.
        (
            "[[devices]]\ndriver = 'ble-glucose'\naddress = 'C3:00:00:00:00:03'\npoll_seconds = '5m'",
            "devices[0].poll_seconds",
            "must be seconds",
        ),
        ("[[devices]]\ndriver = 'simulated'\npoll_seconds = -1", "devices[0].poll_seconds", "must be seconds"),
        ("[[devices]]\ndriver = 'simulated'\npoll_seconds = true", "devices[0].poll_seconds", "must be seconds"),
        # The simulated driver's own options: a typo must not pass check-config and then fail every session.
        ("[[devices]]\ndriver = 'simulated'\ncount = 'ten'", "devices[0].count", "whole number"),
        ("[[devices]]\ndriver = 'simulated'\ninterval_seconds = 0", "devices[0].interval_seconds", "seconds"),
        ("[[devices]]\ndriver = 'simulated'\nserial = 7", "devices[0].serial", "non-empty string"),
        ("[[devices]]\ndriver = 'simulated'\nseed = 'x'", "devices[0].seed", "whole number"),
    ],
)
def test_errors_name_file_key_and_problem(tmp_path: Path, toml: str, key: str, problem: str) -> None:
    path = tmp_path / "vg.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.file, info.value.key) == (str(path), key)
    assert problem in info.value.problem
    assert str(info.value).startswith(f"{path}: {key}: ")


def test_relative_state_dir_is_taken_from_the_config_folder(tmp_path: Path) -> None:
    path = tmp_path / "vg.toml"
    path.write_text('[gateway]\nstate_dir = "state"\n[queue]\npath = "q.db"\n')
    cfg = load_config(path)
    assert cfg.state_dir == tmp_path / "state" and cfg.queue_path == tmp_path / "state" / "q.db"


def test_unparsable_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "none.toml")


def test_cli_reports_config_error_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "vg.toml"
    path.write_text("[queue]\nretention_days = -3\n")
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2
    problem = "queue.retention_days: must be between 0 and 3650, got -3"
    assert proc.stderr.strip() == f"vitalgate: config error: {path}: {problem}"
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("command", ["check-config", "run", "status"])
def test_unusable_state_dir_is_a_config_error_not_a_traceback(tmp_path: Path, command: str) -> None:
    """A state_dir that cannot be created (here: under a regular file) is named, with exit status 2."""
    from gateway.crypto import create_key_file

    create_key_file(tmp_path / "data.key")
    (tmp_path / "blocker").write_text("a file, not a folder\n")
    path = tmp_path / "vg.toml"
    path.write_text(f'[gateway]\nstate_dir = "{tmp_path}/blocker/state"\nkey_file = "{tmp_path}/data.key"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", command, "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"vitalgate: config error: {path}: gateway.state_dir: {tmp_path}/blocker/state")
    assert "Traceback" not in proc.stderr


def test_example_config_documents_every_device_option() -> None:
    """Each option a built-in driver accepts is explained in the example (the README points there)."""
    import re

    from drivers.ble import common as ble_common
    from drivers.serial import common as serial_common
    from drivers.serial import transport as serial_transport
    from simulators import simple

    text = (ROOT / "config/vitalgate.example.toml").read_text()
    documented = set(re.findall(r"\b([a-z_][a-z0-9_]*)\b", text))
    from drivers.ble import adv_scale, omron, oximeter

    options = {
        "serial": {*serial_transport.PORT_KEYS, *serial_common.COMMON_KEYS},
        "ble": ble_common._KNOWN,
        "simulated": simple._OPTIONS,
        "ble-pulse-oximeter": {*oximeter.OPTIONS, "delete_after_sync"},
        "xiaomi-scale": set(adv_scale._EXTRA) | {"slot", "min_kg", "max_kg"},
        "omron-ble": set(omron._EXTRA),
    }
    missing = {family: sorted(keys - documented) for family, keys in options.items() if keys - documented}
    assert not missing


def test_check_config_validates_the_forwarder_section(tmp_path: Path) -> None:
    """`check-config` must catch what `run` would refuse: the forwarder's own section is checked too."""
    from gateway.crypto import create_key_file

    create_key_file(tmp_path / "data.key")
    path = tmp_path / "vg.toml"
    path.write_text(
        f'[gateway]\nstate_dir = "{tmp_path}/state"\nkey_file = "{tmp_path}/data.key"\n'
        '[output]\nforwarder = "mqtt"\n[output.mqtt]\nhots = "broker.example"\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    expected = f"vitalgate: config error: {path}: output.mqtt.hots: unknown key"
    assert (proc.returncode, proc.stderr.strip()) == (2, expected)
