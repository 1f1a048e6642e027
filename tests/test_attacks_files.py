"""Attacks by a local user on the files that hold keys and PHI: planted symlinks, loose folders.

Each test plants the link or loosens the folder for real (issue 11, "no plaintext left behind") and checks
the gateway refuses with a sentence and writes nothing through the link.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.crypto import KeyRing, create_key_file, rotate_key_file
from gateway.errors import ConfigError, KeyFileError
from gateway.forwarders.base import Outgoing, PermanentError, RetryableError
from gateway.forwarders.file import FileForwarder
from gateway.queue import ReadingQueue
from gateway.safefiles import UnsafeFileError, write_atomic

ROOT = Path(__file__).resolve().parents[1]


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched\n")
    return victim


def test_attack_symlinked_key_file_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real.key"
    create_key_file(real)
    (tmp_path / "data.key").symlink_to(real)
    with pytest.raises(KeyFileError, match="symbolic link"):
        KeyRing.load(str(tmp_path / "data.key"))


def test_attack_planted_tmp_symlink_during_keys_rotate_writes_nothing_through_it(tmp_path: Path) -> None:
    key = tmp_path / "data.key"
    create_key_file(key)
    victim = _victim(tmp_path)
    (tmp_path / "data.key.tmp").symlink_to(victim)  # the fixed temp name the old rotate wrote through
    rotate_key_file(key)
    assert victim.read_text() == "untouched\n"
    assert not key.is_symlink() and key.stat().st_mode & 0o777 == 0o600
    assert len(KeyRing.load(str(key))._aead) == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".data.key")] == []  # no temp left


def test_attack_keys_rotate_refuses_a_symlinked_key_file(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere.key"
    create_key_file(real)
    (tmp_path / "data.key").symlink_to(real)
    with pytest.raises(KeyFileError, match="symbolic link"):
        rotate_key_file(tmp_path / "data.key")


def test_attack_key_file_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown to another uid needs root")
    key = tmp_path / "data.key"
    create_key_file(key)
    os.chown(key, 4242, 4242)
    with pytest.raises(KeyFileError, match="owned by uid 4242"):
        KeyRing.load(str(key))


def _outgoing() -> Outgoing:
    return Outgoing(item_id=1, identifier="id-1", bundle={}, body=b'{"resourceType":"Bundle"}', entries=())


def test_attack_symlinked_outbox_folder_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "world-readable"
    elsewhere.mkdir(mode=0o700)
    (tmp_path / "outbox").symlink_to(elsewhere)

    async def go() -> None:
        async with FileForwarder(tmp_path / "outbox"):
            pass

    with pytest.raises(PermanentError, match="symbolic link"):
        asyncio.run(go())


def test_attack_symlinked_outbox_day_file_gets_no_phi(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    out = tmp_path / "outbox"
    out.mkdir(mode=0o700)
    victim = _victim(tmp_path)
    (out / f"bundles-{datetime.now(UTC):%Y%m%d}.ndjson").symlink_to(victim)

    async def go() -> None:
        async with FileForwarder(out) as fwd:
            await fwd.send([_outgoing()])

    with pytest.raises(PermanentError, match="symbolic link"):
        asyncio.run(go())
    assert victim.read_text() == "untouched\n"


def test_a_folder_where_the_day_file_goes_is_retried_not_refused(tmp_path: Path) -> None:
    """A folder cannot redirect PHI anywhere: the write fails with EISDIR and is retried like any failed write
    (tests/faults/test_clock.py relies on it), not held for `retry_permanent` as a planted link is."""
    out = tmp_path / "outbox"
    out.mkdir(mode=0o700)
    (out / f"bundles-{datetime.now(UTC):%Y%m%d}.ndjson").mkdir(mode=0o700)
    (out / "bundles-20000101.ndjson").mkdir(mode=0o700)  # past retention: a folder is not purged either

    async def go() -> None:
        async with FileForwarder(out, retention_days=1) as fwd:
            await fwd.send([_outgoing()])

    with pytest.raises(RetryableError, match="Is a directory") as raised:
        asyncio.run(go())
    assert not isinstance(raised.value, PermanentError)
    assert (out / "bundles-20000101.ndjson").is_dir()


def test_attack_loose_mode_outbox_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "outbox"
    out.mkdir()
    out.chmod(0o755)

    async def go() -> None:
        async with FileForwarder(out):
            pass

    with pytest.raises(PermanentError, match="folder mode 0755"):
        asyncio.run(go())


def test_file_forwarder_purges_day_files_past_retention(tmp_path: Path) -> None:
    out = tmp_path / "outbox"
    out.mkdir(mode=0o700)
    for day in ("20200101", "20200102"):
        (out / f"bundles-{day}.ndjson").write_text("{}\n")
    (out / "notes.txt").write_text("not ours\n")

    async def go() -> int:
        async with FileForwarder(out, retention_days=3) as fwd:
            await fwd.send([_outgoing()])
            return fwd.purged

    assert asyncio.run(go()) == 2
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 2 and names[1] == "notes.txt" and names[0] > "bundles-2020"


def test_file_forwarder_never_purges_on_an_implausible_clock(tmp_path: Path) -> None:
    """A clock set to 2040 (gateway.clock: more than ten years after the release) must not make every day
    file look past its retention; nor may one before the release."""
    out = tmp_path / "outbox"
    out.mkdir(mode=0o700)
    day = out / f"bundles-{time.strftime('%Y%m%d', time.gmtime(time.time() - 5 * 86400))}.ndjson"
    day.write_text("{}\n")
    day.chmod(0o600)

    async def go(now: float) -> int:
        async with FileForwarder(out, retention_days=30) as fwd:
            return fwd.purge(now)

    in_2040 = datetime(2040, 1, 1, tzinfo=UTC).timestamp()
    in_2001 = datetime(2001, 1, 1, tzinfo=UTC).timestamp()
    assert asyncio.run(go(in_2040)) == 0 and asyncio.run(go(in_2001)) == 0
    assert day.exists()
    assert asyncio.run(go(time.time() + 60 * 86400)) == 1  # a plausible clock: retention applies
    assert not day.exists()


def test_run_with_file_forwarder_needs_opt_in_and_retention(tmp_path: Path) -> None:
    create_key_file(tmp_path / "data.key")
    cfg = tmp_path / "vg.toml"
    base = f'[gateway]\nstate_dir = "state"\nkey_file = "{tmp_path}/data.key"\n'
    cases = [
        ("", "output.file.allow_plaintext"),
        ("[output.file]\nallow_plaintext = true\n", "output.file.retention_days"),
    ]
    for extra, key in cases:
        cfg.write_text(base + extra)
        proc = subprocess.run(
            [sys.executable, "-m", "gateway", "check-config", "--config", str(cfg)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        assert proc.returncode == 2 and f"{key}:" in proc.stderr, proc.stderr
    cfg.write_text(base + "[output.file]\nallow_plaintext = true\nretention_days = 7\n")
    from gateway.cli import _check_plaintext_output
    from gateway.config import load_config

    _check_plaintext_output(load_config(cfg))  # accepted
    cfg.write_text(base)
    with pytest.raises(ConfigError):
        _check_plaintext_output(load_config(cfg))


def test_attack_symlinked_queue_file_is_refused(tmp_path: Path) -> None:
    """The queue file also holds the audit trail: a link there would move both elsewhere."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "queue.db").symlink_to(tmp_path / "elsewhere.db")
    with pytest.raises(UnsafeFileError, match="symbolic link"):
        asyncio.run(ReadingQueue.open(state / "queue.db", KeyRing.generate()))
    assert not (tmp_path / "elsewhere.db").exists()


def test_attack_symlinked_queue_journal_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "queue.db-wal").symlink_to(tmp_path / "elsewhere-wal")
    with pytest.raises(UnsafeFileError, match="symbolic link"):
        asyncio.run(ReadingQueue.open(state / "queue.db", KeyRing.generate()))


def test_attack_loose_mode_queue_folder_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o775)
    with pytest.raises(UnsafeFileError, match="folder mode 0775"):
        asyncio.run(ReadingQueue.open(state / "queue.db", KeyRing.generate()))


def test_attack_symlinked_queue_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "state").symlink_to(tmp_path / "real")
    with pytest.raises(UnsafeFileError, match="symbolic link"):
        asyncio.run(ReadingQueue.open(tmp_path / "state" / "queue.db", KeyRing.generate()))


def test_attack_symlinked_ble_bond_store_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("bumble")
    from gateway.sealedfile import bond_sealer
    from simulators.ble.bleak_bumble import SafeJsonKeyStore

    victim = _victim(tmp_path)
    bonds = tmp_path / "bonds.json"
    bonds.symlink_to(victim)
    store = SafeJsonKeyStore(namespace="gw", filename=str(bonds), sealer=bond_sealer(KeyRing.generate()))
    with pytest.raises(UnsafeFileError, match="symbolic link"):
        asyncio.run(store.load())
    bonds.unlink()
    # Bumble's own store writes through `<name>.tmp`; ours never does.
    (tmp_path / "bonds.json.tmp").symlink_to(victim)
    asyncio.run(store.save({"gw": {"AA:BB:CC:DD:EE:FF/P": {"ltk": {"value": "00"}}}}))
    assert victim.read_text() == "untouched\n"
    assert bonds.stat().st_mode & 0o777 == 0o600 and b"ltk" not in bonds.read_bytes()  # sealed


def test_ble_bond_store_resolves_against_the_state_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from drivers.ble import runtime

    monkeypatch.setenv(runtime.KEYSTORE_ENV, "bonds.json")
    monkeypatch.chdir(tmp_path)
    runtime.set_state_dir(tmp_path / "state")
    try:
        assert runtime.keystore_path() == tmp_path / "state" / "bonds.json"
    finally:
        runtime._state_dir = None


def test_write_atomic_replaces_a_symlink_instead_of_writing_through_it(tmp_path: Path) -> None:
    victim = _victim(tmp_path)
    target = tmp_path / "file"
    target.symlink_to(victim)
    write_atomic(target, b"new\n")
    assert victim.read_text() == "untouched\n" and not target.is_symlink() and target.read_text() == "new\n"
