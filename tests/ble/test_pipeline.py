"""Through the whole gateway: BLE cuff simulator -> our stack -> encrypted queue -> FHIR -> file output."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
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
from gateway.queue import ReadingQueue, State
from gateway.reading import Reading
from simulators.ble.cuff import BloodPressureCuff
from simulators.ble.demo import start_demo_ble
from simulators.ble.encoding import BpRecord
from simulators.ble.glucose import GlucoseMeter, make_records

LOINC_BP_PANEL = "85354-9"
LOINC_SYSTOLIC = "8480-6"
LOINC_DIASTOLIC = "8462-4"
LOINC_HEART_RATE = "8867-4"
LOINC_GLUCOSE_MASS = "41653-7"


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


def _config(tmp_path: Path, key_file: Path, devices: tuple[DeviceConfig, ...]) -> Config:
    return Config(
        file="<test>",
        gateway_id="gw-ble",
        state_dir=tmp_path,
        key_file=str(key_file),
        queue_path=tmp_path / "queue.db",
        forwarder="file",
        forwarder_options={"directory": str(tmp_path / "outbox")},
        retry_initial=0.05,
        retry_max=0.5,
        devices=devices,
    )


def _ble_device(driver: str, name: str, address: str) -> DeviceConfig:
    options = {"driver": driver, "address": address, "idle_timeout": 1.0, "connect_timeout": 1.0, "poll_seconds": 0.1}
    if driver != "ble-glucose":
        options["allow_unbonded"] = True  # the cuff and scale simulators do not bond; the meter is bonded
    return DeviceConfig(driver, name, options, "devices[0]")


async def _run_gateway(
    cfg: Config,
    keyring: KeyRing,
    count: int | Callable[[list[Reading]], bool],
    then: Callable[[], Awaitable[object]] | None = None,
) -> list[Reading]:
    """Run the whole gateway until `count` readings were delivered (or `count(delivered)` holds) and `then`
    returned; every reading delivered."""
    delivered: list[Reading] = []
    enough = asyncio.Event()

    def on_delivered(reading: Reading, _forwarder: str) -> None:
        delivered.append(reading)
        if count(delivered) if callable(count) else len(delivered) >= count:
            enough.set()

    gw = Gateway(cfg, keyring, on_delivered=on_delivered)
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    try:
        async with asyncio.timeout(30):
            await enough.wait()
            if then is not None:
                await then()
    finally:
        stop.set()
        await task
    return delivered


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
            BpRecord(128, 84, 99, pulse=69, time=t1, user=3),  # a slot nobody bound: kept, not sent
        ]
    )
    await cuff.start(link)
    cfg = _config(tmp_path, key_file, (_ble_device("ble-blood-pressure", "cuff", cuff.address),))
    async with await ReadingQueue.open(cfg.queue_path, keyring) as q:
        await q.bind(cuff.address, 1, "Patient/p-one")
        await q.bind(cuff.address, 2, "Patient/p-two")
    try:
        # After the four, let the supervisor run more sessions against the (now empty) cuff: nothing may repeat.
        delivered = await _run_gateway(cfg, keyring, 4, then=lambda: cuff.wait_connections(cuff.connections + 3))
    finally:
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
    async with await ReadingQueue.open(cfg.queue_path, keyring) as q:
        counts = await q.counts()
    assert (counts[State.DELIVERED], counts[State.UNASSIGNED]) == (4, 1)


async def test_supervisor_resumes_glucose_after_link_loss_no_loss_no_duplicate(
    tmp_path: Path, link: LocalLink, installed: BleakTransport, keyring: KeyRing, key_file: Path
) -> None:
    meter = GlucoseMeter(make_records(150, start=datetime(2026, 3, 1, 6, 0)), fail_after=40)
    await meter.start(link)
    session = await installed.connect(meter.address, pair=True)  # `vitalgate pair`
    await session.disconnect()
    cfg = _config(tmp_path, key_file, (_ble_device("ble-glucose", "meter", meter.address),))
    async with await ReadingQueue.open(cfg.queue_path, keyring) as q:
        await q.bind(meter.address, None, "Patient/p-three")
    try:
        # After the 150, one more sync: nothing new arrives.
        delivered = await _run_gateway(cfg, keyring, 150, then=lambda: meter.wait_connections(meter.connections + 1))
    finally:
        await meter.stop()
    assert meter.connections >= 3  # pair, the interrupted sync, the resumed one (and idle ones)
    assert sorted(r.sequence or 0 for r in delivered) == list(range(1, 151))
    glucose = [o for o in _observations(tmp_path / "outbox") if LOINC_GLUCOSE_MASS in _loinc(o)]
    assert sorted(o["valueQuantity"]["value"] for o in glucose) == sorted(70 + (i * 37) % 180 for i in range(150))
    assert len({o["identifier"][0]["value"] for o in glucose}) == 150
    assert {o["subject"]["reference"] for o in glucose} == {"Patient/p-three"}


async def test_demo_devices_all_at_once(tmp_path: Path, keyring: KeyRing, key_file: Path) -> None:
    """The demo's cuff, scale, glucose meter, thermometer and oximeter, each in its own supervisor task, over
    one adapter."""
    ble = await start_demo_ble(measure_every=None, records=2)
    try:
        devices = tuple(
            DeviceConfig(driver, name, {"driver": driver, **options}, f"devices[{i}]")
            for i, (name, driver, options, _) in enumerate(ble.devices)
        )
        cfg = _config(tmp_path, key_file, devices)
        async with await ReadingQueue.open(cfg.queue_path, keyring) as q:
            for _, _, options, bindings in ble.devices:
                for user, patient in bindings:
                    await q.bind(options["address"], user, patient)
        fixed = ["blood-pressure", "body-weight", "blood-glucose", "body-temperature"]

        def complete(got: list[Reading]) -> bool:
            kinds = Counter(r.kind.value for r in got)
            return all(kinds[k] >= 2 for k in fixed) and kinds["oxygen-saturation"] >= 3

        delivered = await _run_gateway(cfg, keyring, complete)
    finally:
        await ble.stop()
    kinds = Counter(r.kind.value for r in delivered)
    assert {k: kinds[k] for k in fixed} == dict.fromkeys(fixed, 2)  # two stored records each, once
    # the oximeter: its two stored spot-checks (RACP) and at least one sampled continuous reading
    oximeter = [r for r in delivered if r.kind.value == "oxygen-saturation"]
    assert sum(r.device_time is not None for r in oximeter) == 2 and len(oximeter) >= 3
