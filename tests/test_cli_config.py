"""Issue 12: a relative key_file, `keys init` with a typo elsewhere, and what `check-config` reports.

Real processes from another working directory, real files and permissions; nothing mocked.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from gateway.config import load_config, load_key_file

ROOT = Path(__file__).resolve().parent.parent


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
    cfg.write_text('[gateway]\nstate_dir = "state"\nkey_file = "data.key"\n')
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

    # A missing key is named by its absolute path, whatever the working directory.
    (folder / "data.key").unlink()
    check = vitalgate("check-config", "--config", "etc/vg.toml", cwd=tmp_path)
    assert (check.returncode, check.stderr.strip()) == (3, f"vitalgate: {folder / 'data.key'}: does not exist")


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
