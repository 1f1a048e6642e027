"""Through the whole gateway: BLE cuff simulator -> our stack -> encrypted queue -> FHIR -> file output."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from bumble.link import LocalLink

from drivers.ble import runtime
from drivers.ble.bleak_transport import BleakTransport
from gateway.config import Config, DeviceConfig
from gateway.crypto import KeyRing
from gateway.daemon import Gateway
from gateway.queue import ReadingQueue
from gateway.reading import Reading
from simulators.ble.cuff import BloodPressureCuff
from simulators.ble.encoding import BpRecord

LOINC_BP_PANEL = "85354-9"
LOINC_SYSTOLIC = "8480-6"
LOINC_DIASTOLIC = "8462-4"
LOINC_HEART_RATE = "8867-4"


@pytest.fixture
def installed(ble: BleakTransport) -> Iterator[BleakTransport]:
    runtime.use_transport(ble)
    yield ble
    runtime.reset_transport()


def _observations(outbox: Path) -> list[dict[str, Any]]:
    return [
        e["resource"]
        for f in sorted(outbox.glob("*.ndjson"))
        for line in f.read_bytes().splitlines()
        for e in orjson.loads(line)["entry"]
        if e["resource"]["resourceType"] == "Observation"
    ]


def _loinc(obs: dict[str, Any]) -> set[str]:
    return {c["code"] for c in obs["code"]["coding"] if c["system"] == "http://loinc.org"}


def _component(obs: dict[str, Any], code: str) -> float:
    for comp in obs["component"]:
        if any(c["code"] == code for c in comp["code"]["coding"]):
            return float(comp["valueQuantity"]["value"])
    raise KeyError(code)


async def test_cuff_two_users_exactly_the_right_observations_once(
    tmp_path: Path, link: LocalLink, installed: BleakTransport, keyring: KeyRing, key_file: Path
) -> None:
    t1 = datetime(2026, 11, 20, 7, 30)
    cuff = BloodPressureCuff(
        [
            BpRecord(121, 79, 93, pulse=64, time=t1, user=1),
            BpRecord(135, 88, 104, pulse=71, time=t1 + timedelta(hours=12), user=2),
            BpRecord(118, 76, 90, time=None, user=1),
            BpRecord(142, 91, 108, pulse=77, time=None, user=2),
        ]
    )
    await cuff.start(link)
    options = {
        "driver": "ble-blood-pressure",
        "address": cuff.address,
        "idle_timeout": 1.0,
        "connect_timeout": 1.0,
        "poll_seconds": 0.1,
    }
    cfg = Config(
        file="<test>",
        gateway_id="gw-ble",
        state_dir=tmp_path,
        key_file=str(key_file),
        queue_path=tmp_path / "queue.db",
        forwarder="file",
        forwarder_options={"directory": str(tmp_path / "outbox")},
        retry_initial=0.05,
        retry_max=0.5,
        devices=(DeviceConfig("ble-blood-pressure", "cuff", options, "devices[0]"),),
    )
    async with await ReadingQueue.open(cfg.queue_path, keyring) as q:
        await q.bind(cuff.address, 1, "Patient/p-one")
        await q.bind(cuff.address, 2, "Patient/p-two")

    delivered: list[Reading] = []
    all_four = asyncio.Event()

    def on_delivered(reading: Reading, _forwarder: str) -> None:
        delivered.append(reading)
        if len(delivered) >= 4:
            all_four.set()

    gw = Gateway(cfg, keyring, on_delivered=on_delivered)
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    try:
        async with asyncio.timeout(30):
            await all_four.wait()
            # Let the supervisor run more sessions against the (now empty) cuff: nothing may repeat.
            await cuff.wait_connections(cuff.connections + 3)
    finally:
        stop.set()
        await task
        await cuff.stop()

    observations = _observations(tmp_path / "outbox")
    panels = [o for o in observations if LOINC_BP_PANEL in _loinc(o)]
    assert sorted(
        (o["subject"]["reference"], _component(o, LOINC_SYSTOLIC), _component(o, LOINC_DIASTOLIC)) for o in panels
    ) == [
        ("Patient/p-one", 118, 76),
        ("Patient/p-one", 121, 79),
        ("Patient/p-two", 135, 88),
        ("Patient/p-two", 142, 91),
    ]
    heart = [o for o in observations if LOINC_HEART_RATE in _loinc(o)]
    assert sorted((o["subject"]["reference"], o["valueQuantity"]["value"]) for o in heart) == [
        ("Patient/p-one", 64),
        ("Patient/p-two", 71),
        ("Patient/p-two", 77),
    ]
    assert len({o["identifier"][0]["value"] for o in observations}) == len(observations)  # once each
    assert len(delivered) == 4
