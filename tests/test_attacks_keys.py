"""Key custody (issue 11, must-have 1): retiring a compromised key survives a kill at any point; the key
held as a systemd encrypted credential or a Clevis/Tang JWE, never in the clear on the data disk."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.crypto import KeyRing, create_key_file
from gateway.errors import KeyFileError
from gateway.queue import ReadingQueue
from gateway.reading import Reading
from gateway.rekey import KILL_ENV
from tests.conftest import CUFF, bp

ROOT = Path(__file__).resolve().parents[1]
N = 60
OTHER = "AA:BB:CC:DD:EE:01"


def _readings() -> list[Reading]:
    # Whole-number values (as serial meters report them): the retire computes each look-up tag again from
    # the decoded reading, which must give the tag `put` gave it.
    return [bp(128, 82, 71, minute=i % 60, user=1 + i // 60) for i in range(N)]


def _key_ids(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines() if line and not line.startswith("#")]


def _setup(tmp_path: Path) -> tuple[Path, Path, str]:
    key = tmp_path / "data.key"
    first = create_key_file(key)
    cfg = tmp_path / "vg.toml"
    cfg.write_text(f'[gateway]\nstate_dir = "state"\nkey_file = "{key}"\n')

    async def fill() -> None:
        async with await ReadingQueue.open(tmp_path / "state/queue.db", KeyRing.load(str(key))) as q:
            await q.put(_readings())  # unbound: all unassigned
            await q.bind(OTHER, None, "Patient/p-1")
            await q.set_checkpoint(CUFF.key, "racp", "41")
            await q.reject(b"\x01garbage", ValueError("bad frame"), source="cuff:0x2A35")
            await q.audit("tester (uid 1)", "bind", "binding x")

    (tmp_path / "state").mkdir(mode=0o700)
    asyncio.run(fill())
    return key, cfg, first


def _all_readable(tmp_path: Path, key: Path) -> dict[str, object]:
    async def check() -> dict[str, object]:
        async with await ReadingQueue.open(tmp_path / "state/queue.db", KeyRing.load(str(key))) as q:
            unassigned = await q.unassigned()
            again = await q.put(_readings())
            return {
                "readings": len(unassigned),
                "duplicates_found": again.duplicates,
                "bindings": [(b.device, b.patient) for b in await q.reload_bindings()],
                "devices": len(await q.devices()),
                "checkpoint": await q.checkpoint(CUFF.key, "racp"),
                "rejects": [raw for _, _, _, raw in await q.rejects()],
                "audit": await q.verify_audit(),
            }

    return asyncio.run(check())


EXPECTED = {
    "readings": N,
    "duplicates_found": N,  # look-up tags still find the same readings
    "bindings": [(OTHER, "Patient/p-1")],
    "devices": 1,
    "checkpoint": "41",
    "rejects": [b"\x01garbage"],
    "audit": [],
}


def _retire(cfg: Path, old: str, kill: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    if kill:
        env[KILL_ENV] = kill
    return subprocess.run(
        [sys.executable, "-m", "gateway", "keys", "rotate", "--retire", old, "--config", str(cfg)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )


@pytest.mark.parametrize("kill", ["rows:1", "rows:30", "committed", "written"])
def test_attack_kill_during_keys_retire_leaves_every_row_readable(tmp_path: Path, kill: str) -> None:
    key, cfg, old = _setup(tmp_path)
    killed = _retire(cfg, old, kill)
    assert killed.returncode == -9, killed.stderr
    assert _all_readable(tmp_path, key) == EXPECTED
    done = _retire(cfg, old)
    if kill == "written":  # the key was already gone: the second run says so
        assert done.returncode == 3 and f"holds no key {old}" in done.stderr
    else:
        assert done.returncode == 0, done.stderr
    assert old not in _key_ids(key)
    assert _all_readable(tmp_path, key) == EXPECTED
    db = sqlite3.connect(tmp_path / "state/queue.db")
    used = {kid for (kid,) in db.execute("SELECT key_id FROM readings UNION SELECT key_id FROM bindings")}
    index = db.execute("SELECT v FROM meta WHERE k = 'index_key'").fetchone()[0]
    db.close()
    assert used == {_key_ids(key)[-1]} and index == _key_ids(key)[-1]


def test_retire_without_a_kill_records_itself_and_refuses_an_unknown_key(tmp_path: Path) -> None:
    key, cfg, old = _setup(tmp_path)
    done = _retire(cfg, old)
    assert done.returncode == 0 and f"key {old} retired" in done.stdout and "start the gateway again" in done.stdout
    assert _key_ids(key) != [old] and old not in _key_ids(key)
    trail = subprocess.run(
        [sys.executable, "-m", "gateway", "audit", "--config", str(cfg)], capture_output=True, text=True, cwd=ROOT
    )
    assert f"key {old} retired" in trail.stdout
    assert _retire(cfg, "nosuchkey").returncode == 3


def test_retire_refuses_to_re_sign_a_tampered_audit_trail(tmp_path: Path) -> None:
    _key, cfg, old = _setup(tmp_path)
    db = sqlite3.connect(tmp_path / "state/queue.db")
    db.execute("UPDATE audit SET actor = 'nobody' WHERE id = 1")
    db.commit()
    db.close()
    done = _retire(cfg, old)
    assert done.returncode == 3 and "audit trail is broken" in done.stderr
    assert "Traceback" not in done.stderr


# ---------------------------------------------------------------- systemd encrypted credentials


def _systemd_creds_works() -> bool:
    exe = shutil.which("systemd-creds")
    if exe is None:
        return False
    probe = subprocess.run(
        [exe, "encrypt", "--with-key=host", "--name=probe", "-", "-"], input=b"x", capture_output=True, timeout=30
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _systemd_creds_works(), reason="systemd-creds cannot encrypt with the host key here")
def test_data_key_as_systemd_encrypted_credential_is_not_in_the_clear_and_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `LoadCredentialEncrypted=data.key:...` does at start, done by hand: systemd-creds encrypts the
    key file with the host key (and a TPM2 where present); systemd decrypts it into $CREDENTIALS_DIRECTORY;
    the gateway reads it from there as `credential:data.key`."""
    plain = tmp_path / "data.key"
    create_key_file(plain)
    sealed = tmp_path / "data.key.cred"
    enc = subprocess.run(
        ["systemd-creds", "encrypt", "--with-key=host", "--name=data.key", str(plain), str(sealed)],
        capture_output=True,
        timeout=30,
    )
    assert enc.returncode == 0, enc.stderr
    secret = plain.read_text().splitlines()[-1].split()[1]
    assert secret.encode() not in sealed.read_bytes()  # the file on the data disk does not hold the key
    creds = tmp_path / "credentials"
    creds.mkdir(mode=0o700)
    dec = subprocess.run(
        ["systemd-creds", "decrypt", "--name=data.key", str(sealed), str(creds / "data.key")],
        capture_output=True,
        timeout=30,
    )
    assert dec.returncode == 0, dec.stderr
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    ring = KeyRing.load("credential:data.key")
    assert ring.current_id == _key_ids(plain)[-1]
    # A rotation cannot write into systemd's copy: the operator is told what to do instead.
    from gateway.crypto import rotate_key_source

    with pytest.raises(KeyFileError, match="copy systemd decrypted at start"):
        rotate_key_source("credential:data.key")


# ---------------------------------------------------------------- Clevis + Tang


@pytest.fixture
def tang(tmp_path: Path) -> Iterator[str]:
    """A real Tang server (Debian `tang`) on loopback; tangd is inetd-style, so each connection gets one."""
    tangd = Path("/usr/libexec/tangd")
    if not tangd.exists() or shutil.which("clevis") is None:
        pytest.skip("clevis and tang are not installed (apt-get install clevis tang)")
    db = tmp_path / "tang-db"
    db.mkdir()
    subprocess.run(["/usr/libexec/tangd-keygen", str(db)], check=True, timeout=30)
    server = socket.create_server(("127.0.0.1", 0))
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                subprocess.run(
                    [str(tangd), str(db)], stdin=conn.fileno(), stdout=conn.fileno(), stderr=subprocess.DEVNULL
                )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stopping.set()
    server.close()
    thread.join(5)


def _tang_thumbprint(db: Path) -> str:
    for jwk in sorted(db.glob("*.jwk")):
        if b'"verify"' in jwk.read_bytes():
            return subprocess.run(["jose", "jwk", "thp", "-i", str(jwk)], capture_output=True, text=True).stdout.strip()
    raise AssertionError("no signing key")


def test_data_key_bound_to_tang_is_opened_only_while_tang_answers(tmp_path: Path, tang: str) -> None:
    plain = tmp_path / "plain.key"
    create_key_file(plain)
    thp = _tang_thumbprint(tmp_path / "tang-db")
    jwe = subprocess.run(
        ["clevis", "encrypt", "tang", f'{{"url": "{tang}", "thp": "{thp}"}}'],
        input=plain.read_bytes(),
        capture_output=True,
        timeout=60,
    )
    assert jwe.returncode == 0, jwe.stderr
    bound = tmp_path / "data.key.jwe"
    bound.write_bytes(jwe.stdout)
    bound.chmod(0o600)
    secret = plain.read_text().splitlines()[-1].split()[1]
    assert secret.encode() not in bound.read_bytes()
    ring = KeyRing.load(f"clevis:{bound}")
    assert ring.current_id == _key_ids(plain)[-1]

    from gateway.crypto import rotate_key_source

    new = rotate_key_source(f"clevis:{bound}")  # decrypted, extended, bound to the same Tang again
    assert secret.encode() not in bound.read_bytes()
    assert KeyRing.load(f"clevis:{bound}").current_id == new


def test_data_key_bound_to_tang_refuses_to_open_when_tang_is_away(tmp_path: Path, tang: str) -> None:
    """The box taken off the clinic's network (or the card read elsewhere): the key cannot be recovered."""
    plain = tmp_path / "plain.key"
    create_key_file(plain)
    thp = _tang_thumbprint(tmp_path / "tang-db")
    jwe = subprocess.run(
        ["clevis", "encrypt", "tang", f'{{"url": "{tang}", "thp": "{thp}"}}'],
        input=plain.read_bytes(),
        capture_output=True,
        timeout=60,
    )
    bound = tmp_path / "data.key.jwe"
    bound.write_bytes(jwe.stdout)
    bound.chmod(0o600)
    for key in (tmp_path / "tang-db").glob("*.jwk"):
        key.unlink()  # the Tang server no longer holds the key (as good as unreachable, without waiting on timeouts)
    with pytest.raises(KeyFileError, match="clevis decrypt failed"):
        KeyRing.load(f"clevis:{bound}")


def test_sighup_with_a_credential_key_says_restart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key rotated while the key is a systemd credential is not in systemd's copy: the daemon says so."""
    from structlog.testing import capture_logs

    from gateway.config import Config
    from gateway.daemon import Gateway

    creds = tmp_path / "creds"
    creds.mkdir(mode=0o700)
    create_key_file(creds / "data.key")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    gw = Gateway(Config(file="<t>", state_dir=tmp_path), KeyRing.load("credential:data.key"))
    with capture_logs() as logs:
        gw.reload_secrets()
    warning = next(e for e in logs if e["event"] == "data_key_reload_needs_restart")
    assert "systemctl restart vitalgate" in warning["detail"]


def test_retire_refuses_while_the_gateway_runs(tmp_path: Path) -> None:
    """The running daemon holds the old look-up key in memory: a retire beside it is refused."""
    from gateway.statelock import StateLock

    _key, cfg, old = _setup(tmp_path)
    with StateLock(tmp_path / "state"):  # what `vitalgate run` holds for the daemon's whole life
        busy = _retire(cfg, old)
    assert busy.returncode == 3 and "the gateway is running" in busy.stderr
    assert old in _key_ids(_key)
    assert _retire(cfg, old).returncode == 0
