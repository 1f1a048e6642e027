"""Issue 12: a relative key_file, `keys init` with a typo elsewhere, and what `check-config` reports.

Real processes from another working directory, real files and permissions; nothing mocked.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import load_config, load_key_file
from gateway.crypto import create_key_file
from gateway.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


# Local NDJSON output is an explicit opt-in with a retention period (no plaintext PHI left behind by default).
FILE_OUTPUT = "[output.file]\nallow_plaintext = true\nretention_days = 7\n"


def vitalgate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=60
    )


def test_relative_key_file_is_next_to_the_config_like_state_dir(tmp_path: Path) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    cfg = folder / "vg.toml"
    cfg.write_text('[gateway]\nstate_dir = "state"\nkey_file = "data.key"\n' + FILE_OUTPUT)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert load_config(cfg).key_file == str(folder / "data.key")
    assert load_key_file(cfg) == str(folder / "data.key")

    # A relative --config from another folder: the key still lands next to the config, named absolutely.
    init = vitalgate("keys", "init", "--config", "../etc/vg.toml", cwd=elsewhere)
    assert init.returncode == 0, init.stderr
    assert f" to {folder / 'data.key'} (mode 0600)" in init.stdout
    assert (folder / "data.key").exists() and not (elsewhere / "data.key").exists()
    check = vitalgate("check-config", "--config", str(cfg), cwd=tmp_path)
    assert check.returncode == 0, check.stderr

    # A missing key is named by its absolute path, whatever the working directory; so is the config file.
    (folder / "data.key").unlink()
    check = vitalgate("check-config", "--config", "etc/vg.toml", cwd=tmp_path)
    assert (check.returncode, check.stderr.strip()) == (3, f"vitalgate: {folder / 'data.key'}: does not exist")
    cfg.write_text(cfg.read_text().replace('key_file = "data.key"\n', 'key_file = "data.key"\ntypo = 1\n'))
    check = vitalgate("check-config", "--config", "etc/vg.toml", cwd=tmp_path)
    expected = f"vitalgate: config error: {cfg}: gateway.typo: unknown key (typo?)"
    assert (check.returncode, check.stderr.strip()) == (2, expected)


def test_keys_init_needs_only_the_key_file(tmp_path: Path) -> None:
    cfg = tmp_path / "vg.toml"
    cfg.write_text(
        f'[gateway]\nkey_file = "{tmp_path}/data.key"\n'
        "[[devices]]\ndriver = 'simulated'\ncolour = 'red'\n"  # a typo in a device option
    )
    init = vitalgate("keys", "init", "--config", str(cfg), cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    assert (tmp_path / "data.key").exists()
    check = vitalgate("check-config", "--config", str(cfg), cwd=tmp_path)  # the typo is still reported there
    assert check.returncode == 2 and "devices[0].colour: unknown option" in check.stderr


def test_check_config_reports_every_problem_at_once(tmp_path: Path) -> None:
    cfg = tmp_path / "vg.toml"
    cfg.write_text(
        '[gateway]\nid = "bad id!"\ntimezone = "Mars/Olympus"\n'
        "[queue]\nbatch_size = 100.5\nbatchsize = 5\n"
        '[logging]\nlevel = "loud"\n'
        "[[devices]]\ndriver = 'nope'\n"
        "[[devices]]\ndriver = 'simulated'\ncolour = 'red'\n"
    )
    proc = vitalgate("check-config", "--config", str(cfg), cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert lines[6].startswith("  devices[0].driver: unknown driver 'nope'; available: ")  # the list grows
    assert lines[:6] + lines[7:] == [
        f"vitalgate: config error: {cfg}: 7 problems:",
        "  gateway.id: use ASCII letters, digits, '-', '_' or '.' (it appears in topics and FHIR ids)",
        "  gateway.timezone: unknown time zone 'Mars/Olympus' (use an IANA name such as America/Chicago)",
        "  queue.batch_size: expected int, got float 100.5",
        "  queue.batchsize: unknown key (typo?)",
        "  logging.level: must be one of debug, info, warning, error; got 'loud'",
        "  devices[1].colour: unknown option for driver 'simulated'",
    ]


def test_batch_size_must_be_a_whole_number(tmp_path: Path) -> None:
    cfg = tmp_path / "vg.toml"
    for text, problem in [
        ("batch_size = 100.5", "expected int, got float 100.5"),
        ("batch_size = 100.0", "expected int, got float 100.0"),
        ("batch_size = 0", "must be a whole number between 1 and 10000, got 0"),
    ]:
        cfg.write_text(f"[queue]\n{text}\n")
        try:
            load_config(cfg)
        except ConfigError as exc:
            assert (exc.key, exc.problem) == ("queue.batch_size", problem)
        else:
            raise AssertionError(text)
    cfg.write_text("[queue]\nbatch_size = 250\n")
    assert load_config(cfg).batch_size == 250


def key_and_config(tmp_path: Path, body: str) -> Path:
    create_key_file(tmp_path / "data.key")
    cfg = tmp_path / "vg.toml"
    cfg.write_text(f'[gateway]\nkey_file = "data.key"\n{body}\n{FILE_OUTPUT}')
    return cfg


def test_check_config_warns_about_no_devices(tmp_path: Path) -> None:
    cfg = key_and_config(tmp_path, 'state_dir = "state"\n')
    proc = vitalgate("check-config", "--config", str(cfg), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith(f"vitalgate: warning: {cfg}: no [[devices]] configured;")
    assert proc.stdout.startswith(f"{cfg}: ok (0 devices")
    cfg.write_text(cfg.read_text() + "[[devices]]\ndriver = 'simulated'\n")
    proc = vitalgate("check-config", "--config", str(cfg), cwd=tmp_path)
    assert (proc.returncode, proc.stderr) == (0, "")


def test_check_config_refuses_a_state_dir_that_cannot_be_created(tmp_path: Path) -> None:
    cfg = key_and_config(tmp_path, 'state_dir = "/proc/vitalgate-nonexist"\n[[devices]]\ndriver = "simulated"\n')
    proc = vitalgate("check-config", "--config", str(cfg), cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout
    assert proc.stderr.startswith(
        f"vitalgate: config error: {cfg}: gateway.state_dir: /proc/vitalgate-nonexist: cannot be created in /proc ("
    )
    assert not Path("/proc/vitalgate-nonexist").exists()
    # Nothing is left behind by the probe in a folder where it can create.
    cfg.write_text(cfg.read_text().replace("/proc/vitalgate-nonexist", f"{tmp_path}/new/state"))
    assert vitalgate("check-config", "--config", str(cfg), cwd=tmp_path).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.key", "vg.toml"]


def as_nobody(state_dir: str, tmp_path: Path) -> str:
    """`check-config`'s creatability check run in a forked child that dropped to uid/gid 65534 (nobody)."""
    from gateway.cli import _check_state_creatable
    from gateway.config import Config

    cfg = Config(file=str(tmp_path / "vg.toml"), state_dir=Path(state_dir), queue_path=Path(state_dir) / "queue.db")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop privileges for real, check, report, exit without running pytest's teardown
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                _check_state_creatable(cfg)
                os.write(write, b"ok")
            except ConfigError as exc:
                os.write(write, str(exc).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        answer = f.read().decode()
    os.waitpid(pid, 0)
    return answer


def test_state_dir_for_systemd_to_create_is_not_judged_by_its_parent(tmp_path: Path) -> None:
    """StateDirectory= creates /var/lib/NAME as root before the service starts: the service user cannot
    create it in /var/lib, and need not. Checked as an unprivileged user (as the service would be)."""
    if os.getuid() != 0:
        pytest.skip("needs root to drop to another user")
    assert as_nobody("/var/lib/vitalgate-test-never-made", tmp_path) == "ok"
    # The same user is refused a folder outside /var/lib that it cannot create.
    assert as_nobody("/etc/vitalgate-test-never-made", tmp_path).endswith(
        "gateway.state_dir: /etc/vitalgate-test-never-made: cannot be created in /etc (Permission denied)"
    )
