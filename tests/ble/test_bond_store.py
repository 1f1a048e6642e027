"""The BLE bond store sealed at rest (issue 11, Low: "BLE bond keys (LTK, IRK) are plaintext JSON").

A real Bumble pairing (LE Secure Connections, passkey entry) between the gateway's central and a simulated
glucose meter writes the bond file through the gateway's sealer (gateway.sealedfile); the tests then take
the file as a thief, a tamperer or another gateway would, and compare with the keys both stacks hold.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from bumble.link import LocalLink

from drivers.ble.bleak_transport import BleakTransport
from drivers.ble.glucose import GlucoseDriver
from drivers.ble.transport import BlePairingError
from gateway.crypto import KeyRing, create_key_file
from gateway.queue import ReadingQueue
from gateway.sealedfile import MAGIC, SealedFiles, bond_sealer, key_id
from simulators.ble.bleak_bumble import BleakClientBumble, BleakScannerBumble, BumbleHub, SafeJsonKeyStore
from simulators.ble.glucose import GlucoseMeter
from tests.ble.conftest import PASSKEY, make_ctx

ROOT = Path(__file__).resolve().parents[2]


async def _passkey() -> int:
    return PASSKEY


def _hub(link: LocalLink, path: Path, sealer: SealedFiles) -> BumbleHub:
    return BumbleHub(link=link, keystore_path=str(path), sealer=sealer, passkey=_passkey)


def _transport(hub: BumbleHub) -> BleakTransport:
    return BleakTransport(scanner_backend=BleakScannerBumble, client_backend=BleakClientBumble, hub=hub)


async def _store(hub: BumbleHub) -> SafeJsonKeyStore:
    store = (await hub.device()).keystore
    assert isinstance(store, SafeJsonKeyStore)
    return store


@pytest.fixture
async def meter(link: LocalLink) -> AsyncIterator[GlucoseMeter]:
    m = GlucoseMeter()
    await m.start(link)
    try:
        yield m
    finally:
        await m.stop()


async def _pair(link: LocalLink, path: Path, sealer: SealedFiles, meter: GlucoseMeter) -> None:
    """What `vitalgate pair` does: connect, pair (passkey entry), disconnect; the hub then closes."""
    hub = _hub(link, path, sealer)
    try:
        session = await _transport(hub).connect(meter.address, pair=True)
        await session.disconnect()
        await meter.disconnected.wait()
    finally:
        await hub.close()


async def _negotiated(meter: GlucoseMeter) -> dict[str, bytes]:
    """The keys the meter's own stack holds for its bond with the gateway (LE SC: the LTK is shared)."""
    assert meter.device is not None and meter.device.keystore is not None
    [(_, keys)] = await meter.device.keystore.get_all()
    assert keys.ltk is not None and keys.irk is not None
    return {"ltk": keys.ltk.value, "gateway irk": keys.irk.value}


def _forms(secret: bytes) -> list[bytes]:
    return [secret, secret[::-1], secret.hex().encode(), secret.hex().upper().encode(), secret[::-1].hex().encode()]


async def test_attack_stolen_card_bond_file_holds_no_ltk_or_irk(
    link: LocalLink, meter: GlucoseMeter, tmp_path: Path
) -> None:
    path = tmp_path / "state" / "ble-bonds.json"
    ring = KeyRing.generate()
    await _pair(link, path, bond_sealer(ring), meter)

    stolen = path.read_bytes()  # what a thief with the SD card reads
    assert stolen.startswith(MAGIC) and key_id(stolen) == ring.current_id
    assert path.stat().st_mode & 0o777 == 0o600
    # The file does hold the bond: opened with the gateway's key, it has the LTK the meter negotiated and
    # the meter's IRK (from the meter's own stack), so the comparison below is with the real keys.
    ours = json.loads(bond_sealer(ring).open(stolen))
    [(peer, keys)] = next(iter(ours.values())).items()
    assert peer.startswith(meter.address)
    negotiated = await _negotiated(meter)
    assert bytes.fromhex(keys["ltk"]["value"]) == negotiated["ltk"]
    assert meter.device is not None
    assert bytes.fromhex(keys["irk"]["value"]) == meter.device.irk
    secrets = {**negotiated, "meter irk": meter.device.irk}
    if "csrk" in keys:
        secrets["csrk"] = bytes.fromhex(keys["csrk"]["value"])
    for name, secret in secrets.items():
        assert not any(form in stolen for form in _forms(secret)), f"{name} readable in the stolen bond file"
    for text in (b"ltk", b"irk", meter.address.encode(), meter.address.lower().encode()):
        assert text not in stolen

    # And the gateway itself still finds the bond after a restart.
    hub = _hub(link, path, bond_sealer(ring))
    try:
        assert await hub.is_bonded_address(meter.address)
    finally:
        await hub.close()


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "header only", "garbage"])
async def test_attack_tampered_or_truncated_bond_file_says_re_pair_and_does_not_crash(
    link: LocalLink, meter: GlucoseMeter, tmp_path: Path, queue: ReadingQueue, damage: str
) -> None:
    path = tmp_path / "state" / "ble-bonds.json"
    ring = KeyRing.generate()
    await _pair(link, path, bond_sealer(ring), meter)
    blob = path.read_bytes()
    damaged = {
        "flipped byte": blob[:-20] + bytes([blob[-20] ^ 0x01]) + blob[-19:],
        "truncated": blob[: len(blob) // 2],
        "header only": blob[: len(MAGIC) + len(ring.current_id) + 1],
        "garbage": b"\x00\xff" * 40,
    }[damage]
    path.write_bytes(damaged)

    hub = _hub(link, path, bond_sealer(ring))
    try:
        with structlog.testing.capture_logs() as logs:
            assert not await hub.is_bonded_address(meter.address)  # opening the stack does not raise
        store = await _store(hub)
        assert store.problem is not None
        [entry] = [e for e in logs if e["event"] == "ble_bond_store_unreadable"]
        assert entry["log_level"] == "error" and "re-pair the device" in entry["action"]
        assert str(path) in entry["reason"]
        # Kept aside for investigation, never read again; the bonded meter now gives nothing.
        aside = path.with_name(path.name + ".unreadable")
        assert aside.read_bytes() == damaged and not path.exists()
        rec = make_ctx(queue, "ble-glucose", "meter", address=meter.address, idle_timeout=1.0)
        with pytest.raises(BlePairingError, match="not bonded"):
            await GlucoseDriver(_transport(hub)).run(rec.ctx)
        assert rec.readings == []
    finally:
        await hub.close()


async def test_unreadable_bond_store_is_a_critical_alarm_until_a_device_is_paired_again(
    link: LocalLink, meter: GlucoseMeter, tmp_path: Path
) -> None:
    """What the operator sees in `vitalgate status` (the daemon's alarm board) when the store did not open."""
    from gateway.config import Config
    from gateway.daemon import Gateway

    ring = KeyRing.generate()
    path = tmp_path / "state" / "ble-bonds.json"
    await _pair(link, path, bond_sealer(ring), meter)
    path.write_bytes(path.read_bytes()[:-1])  # truncated
    gw = Gateway(Config(file="<t>", state_dir=tmp_path / "state"), ring)

    hub = _hub(link, path, gw.bond_sealer)
    try:
        assert not await hub.is_bonded_address(meter.address)
        [alarm] = gw.alarms.active()
        assert alarm.code == "ble_bond_store_unreadable" and alarm.severity == "critical"
        assert "Re-pair each device" in alarm.sentence and "tampered or truncated" in alarm.sentence
        session = await _transport(hub).connect(meter.address, pair=True)  # the operator pairs again
        await session.disconnect()
        assert gw.alarms.active() == []
        assert await hub.is_bonded_address(meter.address)
    finally:
        await hub.close()


@pytest.mark.parametrize("other", ["another gateway's key", "same key id, other key"])
async def test_attack_bond_file_does_not_open_with_a_wrong_key(
    link: LocalLink, meter: GlucoseMeter, tmp_path: Path, other: str
) -> None:
    path = tmp_path / "state" / "ble-bonds.json"
    ring = KeyRing.generate()
    await _pair(link, path, bond_sealer(ring), meter)
    wrong = KeyRing.generate() if other == "another gateway's key" else KeyRing([(ring.current_id, os.urandom(32))])

    hub = _hub(link, path, bond_sealer(wrong))
    try:
        assert not await hub.is_bonded_address(meter.address)
        problem = (await _store(hub)).problem or ""
    finally:
        await hub.close()
    expected = "not in the key file" if other == "another gateway's key" else "tampered or truncated"
    assert expected in problem
    # The right key still opens what was moved aside: nothing of the bond was destroyed.
    aside = path.with_name(path.name + ".unreadable")
    assert json.loads(bond_sealer(ring).open(aside.read_bytes()))


async def test_attack_planted_plaintext_bond_store_is_not_trusted_and_its_plaintext_is_overwritten(
    link: LocalLink, meter: GlucoseMeter, tmp_path: Path
) -> None:
    """Someone who can write to the card replaces the sealed store with a plaintext one holding keys of their
    choosing (found by review: it was taken as an earlier release's store and sealed, bonds and all). An
    earlier release's store looks the same, so neither is trusted: no bond, a critical alarm until a device
    is paired again, the contents kept aside sealed, and the plaintext's blocks overwritten."""
    path = tmp_path / "state" / "ble-bonds.json"
    ring = KeyRing.generate()
    await _pair(link, path, bond_sealer(ring), meter)
    plain = bond_sealer(ring).open(path.read_bytes())
    # Bumble's JSON as an earlier release wrote it (indented), mode 0600: here the real bond, as a planted
    # store would hold the LTK the attacker's device uses.
    path.write_text(json.dumps(json.loads(plain), sort_keys=True, indent=4))
    old_inode = tmp_path / "state" / "old-inode"
    os.link(path, old_inode)  # a second name for the plaintext's blocks, to see them scrubbed
    ltk = (await _negotiated(meter))["ltk"].hex().encode()
    assert ltk in path.read_bytes()

    problems: list[str | None] = []
    hub = _hub(link, path, bond_sealer(ring, problems.append))
    try:
        with structlog.testing.capture_logs() as logs:
            assert not await hub.is_bonded_address(meter.address)
    finally:
        await hub.close()
    assert [e["log_level"] for e in logs if e["event"] == "ble_bond_store_unreadable"] == ["error"]
    assert problems and problems[0] is not None and "not sealed" in problems[0]
    sealed, aside = path.read_bytes(), (tmp_path / "state" / "ble-bonds.json.unreadable").read_bytes()
    assert sealed.startswith(MAGIC) and aside.startswith(MAGIC)
    assert ltk not in sealed and ltk not in aside
    assert json.loads(bond_sealer(ring).open(aside)) == json.loads(plain)  # kept for investigation
    assert set(old_inode.read_bytes()) == {0}  # the plaintext's old blocks overwritten (best effort on flash)


def _config(tmp_path: Path) -> tuple[Path, Path]:
    key = tmp_path / "data.key"
    create_key_file(key)
    cfg = tmp_path / "vg.toml"
    cfg.write_text(f'[gateway]\nstate_dir = "state"\nkey_file = "{key}"\n')
    (tmp_path / "state").mkdir(mode=0o700)
    return key, cfg


def _vitalgate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("VITALGATE_")}, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_keys_retire_seals_the_bond_store_again_before_the_old_key_goes(tmp_path: Path) -> None:
    key, cfg = _config(tmp_path)
    ring = KeyRing.load(str(key))
    old = ring.current_id
    path = tmp_path / "state" / "ble-bonds.json"  # the default name, in the state folder
    bonds: dict[str, Any] = {"gw": {"C3:00:00:00:00:03/P": {"ltk": {"value": "11" * 16, "authenticated": True}}}}
    bond_sealer(ring).write(path, json.dumps(bonds).encode())
    assert key_id(path.read_bytes()) == old

    done = _vitalgate("keys", "rotate", "--retire", old, "--config", str(cfg))
    assert done.returncode == 0, done.stderr
    assert "BLE bond store sealed again" in done.stdout
    after = KeyRing.load(str(key))
    assert old not in after.key_ids
    blob = path.read_bytes()
    assert key_id(blob) == after.current_id
    assert json.loads(bond_sealer(after).open(blob)) == bonds


def test_pair_without_the_gateway_key_refuses_rather_than_store_plaintext_bonds(tmp_path: Path) -> None:
    """With the Bumble backend the bond needs the data key; no configuration, no pairing (nothing stored)."""
    env = {"VITALGATE_BLE_HCI": "tcp-client:127.0.0.1:9", "VITALGATE_BLE_KEYSTORE": str(tmp_path / "b.json")}
    done = _vitalgate(
        "pair", "C3:00:00:00:00:03", "--passkey", "123456", "--config", str(tmp_path / "none.toml"), env=env
    )
    assert done.returncode == 2
    assert "sealed with the gateway's data key" in done.stderr and "--config" in done.stderr
    assert not (tmp_path / "b.json").exists()
