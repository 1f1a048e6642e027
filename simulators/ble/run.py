"""Start the BLE simulators: in-process for tests and `vitalgate demo`, or served for another process.

`vitalgate simulate ble-cuff ble-glucose --port 7770` attaches the simulators to a Bumble `LocalLink` and
adds one more controller on that link whose HCI is served on `tcp-server:127.0.0.1:7770`. A gateway in
another process uses that controller as its adapter (HCI over TCP on loopback)::

    VITALGATE_BLE_HCI=tcp-client:127.0.0.1:7770 vitalgate scan

Only one gateway process at a time can hold the served controller (it is one adapter).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog
from bumble.controller import Controller
from bumble.link import LocalLink
from bumble.transport import open_transport
from bumble.transport.common import Transport

from simulators.ble.body_scale import BodyCompositionScale, BodyRecord
from simulators.ble.cuff import BloodPressureCuff
from simulators.ble.encoding import BpRecord, GlucoseRecord, WeightRecord
from simulators.ble.glucose import GlucoseMeter, make_records
from simulators.ble.mi_scale import MiScale
from simulators.ble.omron import OmronCuff, OmronReading
from simulators.ble.oximeter import ContinuousSample, PulseOximeter, SpotCheck
from simulators.ble.peripheral import SimulatedPeripheral
from simulators.ble.scale import WeightScale
from simulators.ble.thermometer import TemperatureRecord, Thermometer

__all__ = ["KINDS", "SimulatorSet", "make_simulator", "serve_hci"]

log = structlog.get_logger(__name__)

KINDS = (
    "ble-cuff",
    "ble-scale",
    "ble-glucose",
    "ble-thermometer",
    "ble-pulse-oximeter",
    "ble-body-scale",
    "xiaomi-scale",
    "omron-ble",
)
GLUCOSE_PASSKEY = 123456


def make_simulator(kind: str, *, records: int = 3, users: int = 2, seed: int = 7) -> SimulatedPeripheral:
    """A simulator with `records` stored readings spread over `users` user slots (cuff, scale)."""
    rng = random.Random(seed)
    now = datetime.now().replace(microsecond=0)
    if kind == "ble-cuff":
        bp = [
            BpRecord(
                rng.randint(105, 150),
                rng.randint(65, 95),
                rng.randint(80, 110),
                pulse=rng.randint(55, 90),
                time=now - timedelta(hours=records - i) if i % 2 == 0 else None,
                user=1 + i % users,
            )
            for i in range(records)
        ]
        return BloodPressureCuff(list(bp))
    if kind == "ble-scale":
        ws = [
            WeightRecord(
                round(rng.uniform(55, 95) / 0.005) * 0.005, time=now - timedelta(hours=records - i), user=1 + i % users
            )
            for i in range(records)
        ]
        return WeightScale(list(ws))
    if kind == "ble-glucose":
        # Sequence numbers grow from run to run (2-second ticks of the clock), as a real meter's do, so a gateway
        # that kept its checkpoint from an earlier demo run still sees this run's records as new.
        first = 1 + (int(time.time()) // 2) % 60000
        start = now - timedelta(hours=4 * records)
        return GlucoseMeter(make_records(records, start=start, first_sequence=first), passkey=GLUCOSE_PASSKEY)
    if kind == "ble-thermometer":
        temps = [
            TemperatureRecord(round(rng.uniform(36.1, 37.9), 1), time=now - timedelta(hours=records - i), site=6)
            for i in range(records)
        ]
        return Thermometer(list(temps))
    if kind == "ble-pulse-oximeter":
        stored = [
            SpotCheck(rng.randint(92, 99), rng.randint(55, 95), time=now - timedelta(hours=records - i))
            for i in range(records)
        ]
        # Stored spot-checks (RACP) plus a minute of continuous samples at 1 Hz, as while worn.
        wave = [ContinuousSample(96 + (i // 20) % 3, 68 + i % 5) for i in range(60)]
        return PulseOximeter(stored=list(stored), continuous=list(wave), period=1.0)
    if kind == "ble-body-scale":
        return BodyCompositionScale(
            [_body(rng, now - timedelta(hours=records - i), 1 + i % users) for i in range(records)]
        )
    if kind == "xiaomi-scale":
        return MiScale("v2")  # broadcasts a weigh-in on each `--every` tick
    if kind == "omron-ble":
        cuff = OmronCuff("HEM-7322T", pairing_mode=True)  # pair with: vitalgate pair ADDR --omron-model HEM-7322T
        for i in range(records):
            cuff.measure(1 + i % min(users, 2), _omron(rng, now - timedelta(hours=records - i)))
        return cuff
    raise ValueError(f"unknown simulator {kind!r}; choose from {', '.join(KINDS)}")


def _omron(rng: random.Random, at: datetime) -> OmronReading:
    return OmronReading(rng.randint(105, 150), rng.randint(65, 95), rng.randint(55, 90), at)


def _body(rng: random.Random, at: datetime, user: int) -> BodyRecord:
    weight = round(rng.uniform(55, 95) / 0.005) * 0.005
    return BodyRecord(
        weight, round(rng.uniform(15, 35), 1), time=at, user=user, impedance_ohm=round(rng.uniform(400, 600), 1)
    )


@dataclass
class SimulatorSet:
    """Simulators on one link, producing a new measurement now and then (like a person using them)."""

    link: LocalLink = field(default_factory=LocalLink)
    simulators: list[SimulatedPeripheral] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self, kinds: Sequence[str], *, records: int = 3, users: int = 2) -> None:
        for kind in kinds:
            sim = make_simulator(kind, records=records, users=users)
            await sim.start(self.link)
            self.simulators.append(sim)
            log.info("sim_started", kind=kind, address=sim.address, name=sim.name)

    def measure_every(self, seconds: float, seed: int = 11) -> None:
        """Add a fresh measurement to each simulator every `seconds` (users alternate)."""
        self._tasks.append(asyncio.create_task(self._measure(seconds, seed), name="sim-measure"))

    async def _measure(self, seconds: float, seed: int) -> None:
        rng = random.Random(seed)
        for n in itertools.count():
            await asyncio.sleep(seconds)
            for sim in self.simulators:
                now = sim.now()
                if isinstance(sim, BloodPressureCuff):
                    sim.add(
                        BpRecord(
                            rng.randint(105, 150),
                            rng.randint(65, 95),
                            rng.randint(80, 110),
                            pulse=rng.randint(55, 90),
                            time=now,
                            user=1 + n % 2,
                        )
                    )
                elif isinstance(sim, WeightScale):
                    sim.add(WeightRecord(round(rng.uniform(55, 95) / 0.005) * 0.005, time=now, user=1 + n % 2))
                elif isinstance(sim, GlucoseMeter):
                    sim.add(GlucoseRecord(sim.next_sequence(), now, rng.randint(70, 250)))
                elif isinstance(sim, BodyCompositionScale):
                    sim.add(_body(rng, now, 1 + n % 2))
                elif isinstance(sim, OmronCuff):
                    sim.measure(1 + n % 2, _omron(rng, now))
                elif isinstance(sim, MiScale):
                    weight = round(rng.uniform(55, 95) / 0.005) * 0.005
                    sim.spawn(sim.weigh(weight, impedance=rng.randint(400, 600), at=now))
                elif isinstance(sim, PulseOximeter):
                    sim.spot_checks.append(SpotCheck(rng.randint(92, 99), rng.randint(55, 95), time=now))
                elif isinstance(sim, Thermometer):
                    sim.add(TemperatureRecord(round(rng.uniform(36.1, 37.9), 1), time=now, site=6))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sim in self.simulators:
            await sim.stop()


async def serve_hci(link: LocalLink, spec: str) -> tuple[Controller, Transport]:
    """A controller on `link` whose HCI is served on `spec` (e.g. tcp-server:127.0.0.1:7770)."""
    transport = await open_transport(spec)
    controller = Controller("gateway-adapter", host_source=transport.source, host_sink=transport.sink, link=link)
    return controller, transport


async def simulate(
    kinds: Sequence[str], *, port: int, records: int, users: int, every: float | None, fail_after: int | None = None
) -> None:
    """Run until cancelled: `vitalgate simulate`."""
    sims = SimulatorSet()
    await sims.start(kinds, records=records, users=users)
    for sim in sims.simulators:
        if isinstance(sim, GlucoseMeter) and fail_after is not None:
            sim.fail_after = fail_after  # the meter's own fault injection, once
    _controller, transport = await serve_hci(sims.link, f"tcp-server:127.0.0.1:{port}")
    if every:
        sims.measure_every(every)
    print(f"BLE adapter served on tcp-server:127.0.0.1:{port}; in another shell:", flush=True)
    print(f"  export VITALGATE_BLE_HCI=tcp-client:127.0.0.1:{port}", flush=True)
    for sim in sims.simulators:
        passkey = f", passkey {sim.passkey:06d}" if sim.passkey is not None else ""
        print(f"  {sim.kind:12} {sim.name:12} {sim.address}{passkey}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await sims.stop()
        await transport.close()
