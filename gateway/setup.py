"""`vitalgate setup`: run VitalGate as a systemd service, from the installed package alone.

After `pip install` into a virtualenv, as root. Each step looks first and changes only what is missing, so a
second run changes nothing (and says so). A config, key or unit that exists is the operator's: never
overwritten. `--dry-run` says what would be done and changes nothing; `--root DIR` works on the tree under
DIR instead of / (as systemd's own `--root`), for tests and image builds.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from gateway.crypto import create_key_file
from gateway.errors import GatewayError

__all__ = ["SetupError", "add_subcommand", "packaged_file", "plan", "run_setup"]

USER = "vitalgate"
UNIT = "vitalgate.service"
# The executable named in systemd/vitalgate.service; replaced by the one this package is installed with.
UNIT_EXECUTABLE = "/opt/vitalgate/.venv/bin/vitalgate"
KEY_CREDENTIAL = 'key_file = "credential:data.key"'
CHECK_CREDENTIAL = "-p LoadCredentialEncrypted=data.key:/etc/vitalgate/credentials/data.key.cred"


class SetupError(GatewayError):
    """A step cannot be done here (not root, systemd tools missing); the message says what to do."""


def packaged_file(name: str) -> str:
    """The example config, unit or sysusers file shipped in the wheel (gateway/data, from config/ and systemd/)."""
    return resources.files("gateway").joinpath("data", name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Step:
    why: str  # one sentence for the operator: what this is for
    action: str  # what is done when it is missing
    done: Callable[[], bool]
    apply: Callable[[], None]


def _ids(root: Path) -> tuple[int, int] | None:
    """uid and gid of the service user in root's /etc/passwd (sysusers writes there), or None."""
    passwd = root / "etc/passwd"
    if not passwd.exists():
        return None
    for line in passwd.read_text(encoding="utf-8").splitlines():
        fields = line.split(":")
        if len(fields) > 3 and fields[0] == USER:
            return int(fields[2]), int(fields[3])
    return None


def _owner(root: Path, owner: str, group: str) -> tuple[int, int]:
    ids = _ids(root) or (-1, -1)
    return (ids[0] if owner == USER else 0), (ids[1] if group == USER else 0)


def _in_place(path: Path, mode: int, owner: tuple[int, int]) -> bool:
    if not path.exists():
        return False
    st = path.stat()
    right_owner = os.geteuid() != 0 or (st.st_uid, st.st_gid) == owner
    return (st.st_mode & 0o7777) == mode and right_owner


def _set_mode(path: Path, mode: int, owner: tuple[int, int]) -> None:
    os.chmod(path, mode)
    if os.geteuid() == 0:  # under --root as a normal user (tests) ownership stays as it is
        os.chown(path, *owner)


def _parents(path: Path) -> None:
    """Missing folders above `path` as the system's own are (0755), whatever the umask (vitalgate's is 077)."""
    missing = [p for p in path.parents if not p.exists()]
    for folder in reversed(missing):
        folder.mkdir(exist_ok=True)
        os.chmod(folder, 0o755)


def _run(*cmd: str) -> None:
    if shutil.which(cmd[0]) is None:
        raise SetupError(f"{cmd[0]} is not installed: this step needs systemd (Debian: apt-get install systemd)")
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    if result.returncode != 0:
        raise SetupError(f"`{' '.join(cmd)}` failed: {(result.stderr or result.stdout).strip()}")


def _config_text() -> str:
    """The example config, its data key read from the systemd credential the unit hands over."""
    text, n = re.subn(r'(?m)^key_file = ".*"$', KEY_CREDENTIAL, packaged_file("vitalgate.example.toml"), count=1)
    if n != 1:
        raise SetupError("the packaged example config has no key_file line to point at the credential")
    return text


def _unit_text(executable: Path) -> str:
    return packaged_file("vitalgate.service").replace(UNIT_EXECUTABLE, str(executable))


def plan(root: Path, executable: Path) -> list[Step]:
    """The steps, in order; each one's `done` is checked just before it would run."""
    etc = root / "etc/vitalgate"
    creds = etc / "credentials"
    state = root / "var/lib/vitalgate"
    sysusers = root / "etc/sysusers.d/vitalgate.conf"
    config = etc / "vitalgate.toml"
    key = creds / "data.key.cred"  # sealed by systemd-creds; the unit's LoadCredentialEncrypted= opens it
    plain_key = creds / "data.key"  # an operator's own (older) set-up: kept as it is
    unit = root / "etc/systemd/system" / UNIT
    wants = root / "etc/systemd/system/multi-user.target.wants" / UNIT
    on_host = root == Path("/")
    systemd_running = on_host and Path("/run/systemd/system").is_dir()
    root_opt = () if on_host else (f"--root={root}",)

    def write(path: Path, text: str, mode: int, owner: str, group: str) -> Callable[[], None]:
        def apply() -> None:
            _parents(path)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)  # never over an existing file
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            _set_mode(path, mode, _owner(root, owner, group))

        return apply

    def folder(path: Path, mode: int, owner: str, group: str, why: str) -> Step:
        def apply() -> None:
            _parents(path)
            path.mkdir(exist_ok=True)
            _set_mode(path, mode, _owner(root, owner, group))

        return Step(
            f"{path} {why}",
            f"create it (or correct it) as {owner}:{group}, mode {mode:04o}",
            lambda: _in_place(path, mode, _owner(root, owner, group)),
            apply,
        )

    def new_key() -> None:
        _parents(key)
        seal_new_key(key)
        _set_mode(key, 0o600, (0, 0))

    def enable() -> None:
        if systemd_running:
            _run("systemctl", "daemon-reload")
        _run("systemctl", *root_opt, "enable", UNIT)

    steps = [
        Step(
            f"{sysusers} declares the service's own system user `{USER}` (no login, no home of its own)",
            "install it from the package",
            sysusers.exists,
            write(sysusers, packaged_file("vitalgate.sysusers"), 0o644, "root", "root"),
        ),
        Step(
            f"the service runs as the unprivileged user `{USER}`, never as root",
            "create it with systemd-sysusers",
            lambda: _ids(root) is not None,
            lambda: _run("systemd-sysusers", *root_opt, sysusers.name),
        ),
    ]
    steps += [
        folder(etc, 0o750, "root", USER, "holds the configuration: the service may read it, only root may change it"),
        folder(creds, 0o700, "root", "root", "holds the data key and secrets, root's only; systemd hands them over"),
        folder(state, 0o700, USER, USER, "holds the encrypted queue and output, the service user's only"),
        Step(
            f"{config} is the configuration, from the documented example, its key read as credential:data.key",
            "write it (edit it afterwards: forwarder, devices)",
            config.exists,
            write(config, _config_text(), 0o640, "root", USER),
        ),
        Step(
            f"{key} is the AES-256 data key that seals every queued reading, itself encrypted by systemd-creds "
            "(bound to the TPM2 where the box has one, else to this machine's host key), never in the clear on disk",
            "create it (mode 0600, root's); back the key up off the box (README: Threat model)",
            lambda: key.exists() or plain_key.exists(),
            new_key,
        ),
        Step(
            f"{unit} runs `{executable} run` hardened, restarted on failure, under the systemd watchdog",
            "install it from the package, pointed at this installation",
            unit.exists,
            write(unit, _unit_text(executable), 0o644, "root", "root"),
        ),
        Step(
            "the service starts at boot",
            f"enable it (systemctl {' '.join((*root_opt, 'enable', UNIT))})",
            lambda: wants.exists() or wants.is_symlink(),
            enable,
        ),
    ]
    return steps


def seal_new_key(out: Path) -> None:
    """A new data key, sealed with `systemd-creds encrypt` into `out`; the plain key exists only on a tmpfs
    (/dev/shm or /run) for the moment it takes, so it never reaches the data disk."""
    if shutil.which("systemd-creds") is None:
        raise SetupError(
            "systemd-creds is missing (systemd 250 or newer, e.g. Debian 12 / Raspberry Pi OS bookworm): the data "
            "key is stored only encrypted; install systemd, or create and seal the key by hand (README: key custody)"
        )
    ram = next((d for d in ("/dev/shm", "/run") if os.access(d, os.W_OK)), None)
    with tempfile.TemporaryDirectory(prefix="vitalgate-key.", dir=ram) as tmp:
        plain = Path(tmp) / "data.key"
        create_key_file(plain)
        try:
            _run("systemd-creds", "encrypt", "--name=data.key", str(plain), str(out))
        finally:
            size = plain.stat().st_size
            with open(plain, "r+b") as f:  # overwrite before unlinking, in case the folder is not a tmpfs
                f.write(b"\0" * size)
                f.flush()
                os.fsync(f.fileno())


def notes(root: Path) -> list[str]:
    """What setup leaves to the operator but the service needs: the groups the unit's SupplementaryGroups= names."""
    group = root / "etc/group"
    lines = group.read_text(encoding="utf-8").splitlines() if group.exists() else []
    have = {line.split(":", 1)[0] for line in lines}
    found = re.search(r"(?m)^SupplementaryGroups=(.*)$", packaged_file("vitalgate.service"))
    wanted = found.group(1).split() if found else []
    package = {"bluetooth": "bluez", "dialout": "base-passwd"}
    return [
        f"the group `{g}` does not exist here, and systemd will not start a unit whose SupplementaryGroups= "
        f"names a missing group: install {package.get(g, 'the package that provides it')} "
        f"(sudo apt-get install {package.get(g, '...')}) or remove `{g}` from the unit."
        for g in wanted
        if g not in have
    ]


def installed_executable() -> Path:
    """`vitalgate` of this installation (the virtualenv it was pip-installed into)."""
    beside = Path(sys.prefix) / "bin" / "vitalgate"
    if beside.exists():
        return beside
    found = shutil.which("vitalgate")
    if found is None:
        raise SetupError("cannot find the installed `vitalgate` command; give it with --executable")
    return Path(found).resolve()


def run_setup(root: Path, executable: Path, *, dry_run: bool, out: Callable[[str], None] = print) -> int:
    if root == Path("/") and os.geteuid() != 0 and not dry_run:
        raise SetupError("setup creates a system user and writes under /etc: run it as root (sudo), or --dry-run")
    where = "" if root == Path("/") else f" under {root}"
    out(f"vitalgate setup{where}{' (dry run: nothing is changed)' if dry_run else ''}:")
    changed = 0
    for step in plan(root, executable):
        if step.done():
            out(f"  ok       {step.why}: in place already.")
        elif dry_run:
            out(f"  would    {step.why}: {step.action}.")
            changed += 1
        else:
            step.apply()
            out(f"  done     {step.why}: {step.action}.")
            changed += 1
    for note in notes(root):
        out(f"  note     {note}")
    if not changed:
        out("Nothing to change: VitalGate is set up already.")
    elif dry_run:
        out(f"{changed} steps would change this machine; run without --dry-run (as root) to do them.")
    else:
        etc = root / "etc/vitalgate"
        out(f"{changed} steps done. Next: edit {etc / 'vitalgate.toml'} (forwarder, devices); check it as the service")
        out(f"would see it: sudo systemd-run --pty --wait -p User={USER} {CHECK_CREDENTIAL} {executable} check-config")
        out("then: sudo systemctl start vitalgate; journalctl -u vitalgate -f")
    return 0


def add_subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "set this machine up to run VitalGate as a systemd service (as root; idempotent)"
    p = sub.add_parser("setup", help=text, description=text)
    p.add_argument("--dry-run", action="store_true", help="say what would be done, change nothing")
    p.add_argument("--root", type=Path, default=Path("/"), help="work on the tree under this folder (default /)")
    p.add_argument("--executable", type=Path, help="the vitalgate command the unit starts (default: this one)")

    def run(args: argparse.Namespace) -> int:
        try:
            executable = args.executable or installed_executable()
            return run_setup(args.root.resolve(), executable.absolute(), dry_run=args.dry_run)
        except (SetupError, OSError) as exc:
            print(f"vitalgate setup: {exc}", file=sys.stderr)
            return 1

    p.set_defaults(fn=run)
