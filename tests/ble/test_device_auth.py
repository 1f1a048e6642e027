"""Device authentication (issue 11, must-have 5): a device that answers at a bound address but holds no
bond with this gateway gives no readings, unless the operator said `allow_unbonded = true` for it.
Real Bumble peripherals and stack; the check is the production one (BleDriver.run)."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from bumble.link import LocalLink

from drivers.ble.bleak_transport import BleakTransport
from drivers.ble.glucose import GlucoseDriver
from drivers.ble.indicating import BloodPressureDriver
from drivers.ble.transport import BlePairingError
from gateway.queue import ReadingQueue
from simulators.ble.cuff import BloodPressureCuff
from simulators.ble.encoding import BpRecord
from simulators.ble.glucose import GlucoseMeter, make_records
from tests.ble.conftest import make_ctx


async def test_attack_spoofed_cuff_at_a_bound_address_gives_no_readings(
    link: LocalLink, ble: BleakTransport, queue: ReadingQueue
) -> None:
    """Anyone can advertise a bound cuff's address; without the bond's keys nothing is taken from it."""
    spoof = BloodPressureCuff([BpRecord(190, 120, 140, user=1)])
    await spoof.start(link)
    await queue.bind(spoof.address, 1, "Patient/p1")
    rec = make_ctx(
        queue, BloodPressureDriver.name, "cuff", address=spoof.address, idle_timeout=1.0, allow_unbonded=False
    )
    try:
        with pytest.raises(BlePairingError, match="not bonded"):
            await BloodPressureDriver(ble).run(rec.ctx)
    finally:
        await spoof.stop()
    assert rec.readings == [] and sum((await queue.counts()).values()) == 0
    assert len(spoof.pending) == 1  # not even read off the device


async def test_attack_unbonded_glucose_meter_gives_no_readings(
    link: LocalLink, ble: BleakTransport, queue: ReadingQueue
) -> None:
    meter = GlucoseMeter(make_records(3, start=datetime(2026, 6, 1, 8, 0, 0)))
    await meter.start(link)
    rec = make_ctx(queue, "ble-glucose", "meter", address=meter.address, idle_timeout=1.0)
    try:
        with pytest.raises(BlePairingError, match="not bonded"):
            await GlucoseDriver(ble).run(rec.ctx)
    finally:
        await meter.stop()
    assert rec.readings == []


async def test_allow_unbonded_takes_readings_from_a_device_that_cannot_bond(
    link: LocalLink, ble: BleakTransport, queue: ReadingQueue
) -> None:
    cuff = BloodPressureCuff([BpRecord(120, 80, 93, user=1)])
    await cuff.start(link)
    rec = make_ctx(queue, BloodPressureDriver.name, "cuff", address=cuff.address, idle_timeout=1.0, allow_unbonded=True)
    try:
        await BloodPressureDriver(ble).run(rec.ctx)
    finally:
        await cuff.stop()
    assert len(rec.readings) == 1


def test_check_config_states_devices_taking_unbonded_readings(tmp_path: Path) -> None:
    from gateway.crypto import create_key_file

    create_key_file(tmp_path / "data.key")
    cfg = tmp_path / "vg.toml"
    cfg.write_text(
        f'[gateway]\nstate_dir = "state"\nkey_file = "{tmp_path}/data.key"\n'
        "[output.file]\nallow_plaintext = true\nretention_days = 1\n"
        '[[devices]]\ndriver = "ble-blood-pressure"\nname = "old-cuff"\naddress = "C1:00:00:00:00:01"\n'
        "allow_unbonded = true\n"
        '[[devices]]\ndriver = "ble-glucose"\nname = "meter"\naddress = "C3:00:00:00:00:03"\n'
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "--config", str(cfg)],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    # Line 0: "ok"; then the queue summary (issue-10); then one line per device taking unbonded readings.
    assert lines[0].endswith(": ok (2 devices, forwarder file, queue " + str(tmp_path / "state" / "queue.db") + ")")
    assert any("queue not created yet" in line for line in lines[1:])
    unbonded = [line for line in lines if "allow_unbonded" in line]
    assert len(unbonded) == 1 and "devices[0] (old-cuff): allow_unbonded = true" in unbonded[0], lines
    assert not any("meter" in line for line in lines), lines
    assert len(lines) == 3, lines
