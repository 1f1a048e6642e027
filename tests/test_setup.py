"""`vitalgate setup` into a temporary root (the real systemd-sysusers and systemctl, with --root): what it
creates, that a second run changes nothing, that --dry-run changes nothing, that it keeps the operator's files."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.crypto import KeyRing
from gateway.setup import packaged_file

ROOT = Path(__file__).resolve().parent.parent
EXE = Path("/opt/vitalgate/.venv/bin/vitalgate")  # any absolute path: the unit must name it


def snapshot(root: Path) -> dict[str, tuple[int, int, int, str]]:
    """Every path under root: mode, owner, group and a digest of its content (or link target)."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        if p.is_symlink():
            body = os.readlink(p)
        elif p.is_file() and os.access(p, os.R_OK):  # as a normal user, /etc/shadow's copy is mode 0000
            body = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            body = ""
        out[str(p.relative_to(root))] = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, body)
    return out


def verbs(out: str) -> list[str]:
    """The first word of each step's line (done / ok / would), notes left out."""
    return [line.split()[0] for line in out.splitlines() if line.startswith("  ") and line.split()[0] != "note"]


def setup(root: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    assert main(["setup", "--root", str(root), "--executable", str(EXE), *extra]) == 0
    return capsys.readouterr().out


def test_packaged_files_are_the_trees_config_and_systemd_files() -> None:
    """The wheel's copies (gateway/data) are the visible config/ and systemd/ files, not a second version."""
    for name, source in [
        ("vitalgate.example.toml", "config/vitalgate.example.toml"),
        ("vitalgate.service", "systemd/vitalgate.service"),
        ("vitalgate.sysusers", "systemd/vitalgate.sysusers"),
    ]:
        assert packaged_file(name) == (ROOT / source).read_text(encoding="utf-8"), name


def test_dry_run_changes_nothing_and_names_every_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = setup(tmp_path, capsys, "--dry-run")
    assert list(tmp_path.iterdir()) == []
    steps = [line for line in out.splitlines() if line.startswith("  ") and not line.startswith("  note")]
    assert len(steps) == 9 and all(line.split()[0] == "would" for line in steps), out
    assert "9 steps would change this machine" in out


def test_setup_creates_user_folders_config_key_unit_then_a_second_run_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = setup(tmp_path, capsys)
    assert verbs(out) == ["done"] * 9, out

    passwd = (tmp_path / "etc/passwd").read_text()
    user = next(line.split(":") for line in passwd.splitlines() if line.startswith("vitalgate:"))
    uid, gid = int(user[2]), int(user[3])
    assert user[6] == "/usr/sbin/nologin"
    owner = {"root": (0, 0), "svc": (uid, gid), "root:svc": (0, gid)}
    expected = {
        "etc/vitalgate": (0o750, "root:svc"),
        "etc/vitalgate/vitalgate.toml": (0o640, "root:svc"),
        "etc/vitalgate/credentials": (0o700, "root"),
        "etc/vitalgate/credentials/data.key.cred": (0o600, "root"),
        "var/lib/vitalgate": (0o700, "svc"),
    }
    for rel, (mode, who) in expected.items():
        st = (tmp_path / rel).stat()
        assert stat.S_IMODE(st.st_mode) == mode, rel
        if os.geteuid() == 0:
            assert (st.st_uid, st.st_gid) == owner[who], rel

    for rel in ("etc", "etc/sysusers.d", "etc/systemd/system", "var", "var/lib"):  # folders it had to make
        assert stat.S_IMODE((tmp_path / rel).stat().st_mode) == 0o755, rel
    config = (tmp_path / "etc/vitalgate/vitalgate.toml").read_text()
    assert 'key_file = "credential:data.key"' in config
    assert (
        config.replace('key_file = "credential:data.key"', 'key_file = "/etc/vitalgate/data.key"')
        == (ROOT / "config/vitalgate.example.toml").read_text()
    )
    # The key is stored only sealed (systemd-creds); what systemd hands the service at start is a working key.
    sealed = tmp_path / "etc/vitalgate/credentials/data.key.cred"
    assert not (tmp_path / "etc/vitalgate/credentials/data.key").exists()
    opened = tmp_path / "opened"
    opened.mkdir(mode=0o700)
    subprocess.run(
        ["systemd-creds", "decrypt", "--name=data.key", str(sealed), str(opened / "data.key")], check=True, timeout=60
    )
    ring = KeyRing.load(str(opened / "data.key"))
    secret = (opened / "data.key").read_text().splitlines()[-1].split()[1]
    assert secret.encode() not in sealed.read_bytes() and len(ring.tag("x")) > 0
    shutil.rmtree(opened)
    unit = (tmp_path / "etc/systemd/system/vitalgate.service").read_text()
    assert f"ExecStart={EXE} run --config /etc/vitalgate/vitalgate.toml" in unit
    wants = tmp_path / "etc/systemd/system/multi-user.target.wants/vitalgate.service"
    assert os.readlink(wants) == "/etc/systemd/system/vitalgate.service"

    before = snapshot(tmp_path)
    again = setup(tmp_path, capsys)
    assert verbs(again) == ["ok"] * 9, again
    assert "Nothing to change: VitalGate is set up already." in again
    assert snapshot(tmp_path) == before


def test_setup_keeps_the_operators_files_and_corrects_a_loose_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    setup(tmp_path, capsys)
    config = tmp_path / "etc/vitalgate/vitalgate.toml"
    config.write_text("# edited by the operator\n")
    key = tmp_path / "etc/vitalgate/credentials/data.key.cred"
    key_before = key.read_bytes()
    os.chmod(tmp_path / "etc/vitalgate/credentials", 0o755)
    out = setup(tmp_path, capsys)
    changed = [line for line in out.splitlines() if line.startswith("  done")]
    assert len(changed) == 1 and "credentials" in changed[0], out
    assert stat.S_IMODE((tmp_path / "etc/vitalgate/credentials").stat().st_mode) == 0o700
    assert config.read_text() == "# edited by the operator\n"
    assert key.read_bytes() == key_before


def test_setup_on_this_machine_as_a_normal_user_refuses_with_a_sentence(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # As a normal user for real: drop to `nobody` when the suite runs as root (containers, CI).
    drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    probe = subprocess.run([*drop, sys.executable, "-c", "import gateway.setup"], cwd=ROOT, capture_output=True)
    if probe.returncode == 0:
        cmd = [*drop, sys.executable, "-m", "gateway", "setup", "--executable", str(EXE)]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
        code, err = proc.returncode, proc.stderr
    else:
        # `nobody` cannot read this tree (e.g. an unpacked sdist in a root-only temporary folder): the one fake
        # here then is the uid, so the check still runs without touching /.
        monkeypatch.setattr(os, "geteuid", lambda: 1000)
        code, err = main(["setup", "--executable", str(EXE)]), capsys.readouterr().err
    assert code == 1, err
    assert "run it as root (sudo), or --dry-run" in err
    assert "Traceback" not in err


def test_setup_names_a_missing_group_the_unit_needs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = setup(tmp_path, capsys)  # a fresh root: sysusers made `vitalgate`, nothing made `bluetooth`
    notes = [line for line in out.splitlines() if line.startswith("  note")]
    assert len(notes) == 2 and "`bluetooth` does not exist here" in notes[0] and "apt-get install bluez" in notes[0]
    with (tmp_path / "etc/group").open("a") as f:
        f.write("bluetooth:x:112:\ndialout:x:20:\n")
    assert "note" not in setup(tmp_path, capsys)
