"""Scanning, pairing (LE Secure Connections, passkey entry) and the CLI against simulators.

The cross-process test runs `vitalgate simulate` in one process and `vitalgate scan` / `vitalgate pair`
in others, talking HCI over loopback TCP to the adapter the simulator process serves.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from bumble.link import LocalLink

from drivers.ble.bleak_transport import BleakTransport
from drivers.ble.cli import format_adverts
from drivers.ble.transport import Advert, BlePairingError, ScanFilter, normalize_uuid
from gateway.crypto import create_key_file
from gateway.sealedfile import MAGIC
from simulators.ble.bleak_bumble import BleakClientBumble, BleakScannerBumble, BumbleHub
from simulators.ble.cuff import BloodPressureCuff
from simulators.ble.glucose import GlucoseMeter
from simulators.ble.scale import WeightScale
from tests.childio import ChildLines

ROOT = Path(__file__).resolve().parents[2]


async def test_scan_lists_health_devices_with_filters(link: LocalLink, ble: BleakTransport) -> None:
    sims = [BloodPressureCuff(), WeightScale(), GlucoseMeter()]
    for sim in sims:
        await sim.start(link)
    try:
        everything = await ble.scan(0.5)
        glucose_only = await ble.scan(0.5, ScanFilter(services=(normalize_uuid(0x1808),)))
        by_name = await ble.scan(0.5, ScanFilter(name="VG-Scale"))
    finally:
        for sim in sims:
            await sim.stop()
    assert sorted((a.address, a.address_type, a.name, a.services) for a in everything) == [
        ("C1:00:00:00:00:01", "random", "VG-Cuff", (normalize_uuid(0x1810),)),
        ("C2:00:00:00:00:02", "random", "VG-Scale", (normalize_uuid(0x181D),)),
        ("C3:00:00:00:00:03", "random", "VG-Glucose", (normalize_uuid(0x1808),)),
    ]
    assert all(isinstance(a.rssi, int) for a in everything)
    assert all(dict(a.manufacturer_data) == {0xFFFF: b"VG"} for a in everything)
    assert [a.name for a in glucose_only] == ["VG-Glucose"]
    assert [a.name for a in by_name] == ["VG-Scale"]
    table = format_adverts(sorted(everything, key=lambda a: a.address))
    assert table.splitlines()[1].split()[:4] == ["C1:00:00:00:00:01", "(R)", "-50", "VG-Cuff"]
    assert "Blood Pressure" in table and "Glucose" in table


async def test_wrong_passkey_fails_pairing(link: LocalLink) -> None:
    meter = GlucoseMeter()
    await meter.start(link)

    async def wrong() -> int:
        return 654321

    hub = BumbleHub(link=link, passkey=wrong)
    ble = BleakTransport(scanner_backend=BleakScannerBumble, client_backend=BleakClientBumble, hub=hub)
    try:
        with pytest.raises(BlePairingError):
            await ble.connect(meter.address, pair=True)
        assert not await hub.is_bonded_address(meter.address)
    finally:
        await meter.stop()
        await hub.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_config(tmp_path: Path, glucose_address: str) -> Path:
    key = tmp_path / "data.key"
    create_key_file(key)
    cfg = tmp_path / "vitalgate.toml"
    cfg.write_text(f"""
[gateway]
id = "gw-ble-cli"
state_dir = "state"
key_file = "{key}"
[output.file]
allow_plaintext = true
retention_days = 1
[logging]
format = "json"
[[devices]]
driver = "ble-glucose"
name = "meter"
address = "{glucose_address}"
connect_timeout = 2
idle_timeout = 2
poll_seconds = 0.5
""")
    return cfg


def test_cli_simulate_scan_pair_run_across_processes(tmp_path: Path) -> None:
    """What a person does: simulate in one shell; scan, pair + bind, run in another."""
    cfg = _write_config(tmp_path, "C3:00:00:00:00:03")
    port = _free_port()
    env = {
        **os.environ,
        "VITALGATE_BLE_HCI": f"tcp-client:127.0.0.1:{port}",
        "VITALGATE_BLE_KEYSTORE": str(tmp_path / "bonds.json"),
    }
    sim = subprocess.Popen(
        [sys.executable, "-m", "gateway", "simulate", "ble-cuff", "ble-glucose", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        ChildLines.of(sim, "vitalgate simulate").wait_for("served on", 60)

        def vitalgate(*args: str) -> subprocess.CompletedProcess[str]:
            cmd = [sys.executable, "-m", "gateway", *args]
            # As a person's shell would: a permissive umask, which must not leak the bond keys.
            return subprocess.run(
                cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, preexec_fn=lambda: os.umask(0o022)
            )

        scan = vitalgate("scan", "--seconds", "3")
        assert scan.returncode == 0, scan.stderr
        rows = [line.split()[:4] for line in scan.stdout.splitlines() if line.startswith("C")]
        assert sorted(rows) == [
            ["C1:00:00:00:00:01", "(R)", "-50", "VG-Cuff"],
            ["C3:00:00:00:00:03", "(R)", "-50", "VG-Glucose"],
        ]
        pair = vitalgate("pair", "C3:00:00:00:00:03", "--passkey", "123456", "--patient", "p-77", "--config", str(cfg))
        assert pair.returncode == 0, pair.stderr
        assert "bonded with C3:00:00:00:00:03" in pair.stdout
        assert "bound C3:00:00:00:00:03" in pair.stdout
        bonds = (tmp_path / "bonds.json").read_bytes()
        assert bonds.startswith(MAGIC) and b"C3:00:00:00:00:03" not in bonds  # sealed with the data key
        assert (tmp_path / "bonds.json").stat().st_mode & 0o077 == 0  # pairing keys are secrets
        bad = vitalgate("pair", "C1:00:00:00:00:99", "--timeout", "1", "--config", str(cfg))
        assert bad.returncode == 1
        assert "did not advertise" in bad.stderr

        run = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "--config", str(cfg)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 300  # bounds a hang; the loop ends when the readings are in
            while len(_glucose_values(tmp_path)) < 3 and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            run.send_signal(signal.SIGTERM)
            run.wait(timeout=15)
        assert run.returncode == 0
        # The simulator's 3 stored records (make_simulator: 70 + 37 i mg/dL), bound to the patient, once each.
        assert sorted(_glucose_values(tmp_path)) == [70, 107, 144]
    finally:
        sim.terminate()
        sim.wait(timeout=10)


def _glucose_values(tmp_path: Path) -> list[float]:
    values = []
    for f in sorted((tmp_path / "state" / "outbox").glob("*.ndjson")):
        for line in f.read_bytes().splitlines():
            for e in orjson.loads(line)["entry"]:
                r = e["resource"]
                if (
                    r["resourceType"] == "Observation"
                    and "valueQuantity" in r
                    and r["subject"]["reference"] == "Patient/p-77"
                ):
                    values.append(float(r["valueQuantity"]["value"]))
    return values


def test_normalize_uuid_and_filter() -> None:
    full = "00001810-0000-1000-8000-00805f9b34fb"
    assert [normalize_uuid(u) for u in (0x1810, "1810", "2A35", full.upper())] == [
        full,
        full,
        "00002a35-0000-1000-8000-00805f9b34fb",
        full,
    ]
    a = Advert("C1:00:00:00:00:01", "random", "VG-Cuff", (full,), -50)
    assert ScanFilter(services=(full,)).matches(a)
    assert ScanFilter(address="c1:00:00:00:00:01").matches(a)
    assert not ScanFilter(services=(normalize_uuid(0x1808),)).matches(a)
    assert not ScanFilter(name="VG-Scale").matches(a)
    omron = Advert("C1:00:00:00:00:02", "public", None, (), -70, manufacturer_data={0x020E: b"\x01"})
    assert ScanFilter(manufacturer_id=0x020E).matches(omron)
    assert not ScanFilter(manufacturer_id=0x020E).matches(a)
