"""`vitalgate devices` (issue 12): unique readings, BLE devices by the address they were paired with, the
configured name. A real queue file and the real command, in process."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from gateway.cli import main
from gateway.crypto import KeyRing
from gateway.queue import ReadingQueue
from tests.conftest import bp


async def test_readings_are_counted_once_however_often_they_are_downloaded(queue: ReadingQueue) -> None:
    first = [bp(user=1, minute=m) for m in range(3)]
    await queue.put(first)
    await queue.put(first)  # a meter re-sends its memory on each download
    await queue.put([*first, bp(user=1, minute=3), bp(user=1, minute=3)])  # one new, sent twice in one batch
    assert [(d["user"], d["readings"]) for d in await queue.devices()] == [(1, 4)]
    assert sum((await queue.counts()).values()) == 4


async def test_devices_shows_address_name_system_id_and_unique_count(
    tmp_path: Path, key_file: Path, capsys: Any
) -> None:
    cfg = tmp_path / "vg.toml"
    cfg.write_text(
        f'[gateway]\nstate_dir = "{tmp_path}"\nkey_file = "{key_file}"\n'
        '[[devices]]\ndriver = "ble-blood-pressure"\nname = "bedroom-cuff"\naddress = "c0:ff:ee:00:00:01"\n'
    )
    q = await ReadingQueue.open(tmp_path / "queue.db", KeyRing.load(str(key_file)))
    try:
        for _ in range(5):
            await q.put([bp(user=1), bp(user=1, minute=1)])
        await q.bind("C0:FF:EE:00:00:01", 1, "Patient/p1")
    finally:
        await q.close()
    assert await asyncio.to_thread(main, ["devices", "--config", str(cfg)]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == [
        "DEVICE", "USER", "NAME", "DRIVER", "MODEL", "READINGS", "SYSTEM", "ID", "LAST", "SEEN", "PATIENT"
    ]  # fmt: skip
    cells = row.split()
    assert cells[:8] + cells[-1:] == [
        "C0:FF:EE:00:00:01", "1", "bedroom-cuff", "ble-blood-pressure", "Cuff", "9", "2", "0123456789abcdef",
        "Patient/p1",
    ]  # fmt: skip
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", " ".join(cells[8:-1]))  # last seen, UTC


async def test_devices_shows_the_quirks_that_apply(tmp_path: Path, key_file: Path, capsys: Any) -> None:
    """A BLE device whose Device Information matches a quirks row shows what the row changes; others nothing."""
    import json

    from gateway.reading import DeviceIdentity

    cfg = tmp_path / "vg.toml"
    cfg.write_text(f'[gateway]\nstate_dir = "{tmp_path}"\nkey_file = "{key_file}"\n')
    roche = DeviceIdentity("ble-glucose", address="C0:FF:EE:00:00:02", manufacturer="Roche", model="Accu-Chek Guide")
    serial = DeviceIdentity("onetouch-ultra2", serial_number="ROCHE-LOOKALIKE", manufacturer="Roche", model="X")
    q = await ReadingQueue.open(tmp_path / "queue.db", KeyRing.load(str(key_file)))
    try:
        await q.put([bp(user=None, device=roche), bp(user=1), bp(user=None, device=serial)])
    finally:
        await q.close()
    assert await asyncio.to_thread(main, ["devices", "--json", "--config", str(cfg)]) == 0
    shown = {d["device"]: d["quirks"] for d in json.loads(capsys.readouterr().out)["devices"]}
    assert shown["C0:FF:EE:00:00:02"] == ["clock at 0x2A08"]
    assert shown["ROCHE-LOOKALIKE"] == []  # a serial meter: the BLE table does not apply to its sessions
    assert sorted(map(len, shown.values())) == [0, 0, 1]  # the standard cuff: nothing
    assert await asyncio.to_thread(main, ["devices", "--config", str(cfg)]) == 0
    assert "quirks: clock at 0x2A08 (see `vitalgate drivers`)" in capsys.readouterr().out
