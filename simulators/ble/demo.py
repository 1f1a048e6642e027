"""BLE simulators for `vitalgate demo`: cuff (2 users), scale, glucose meter, thermometer and pulse oximeter
on an in-process link.

`start_demo_ble()` starts them, installs the Bumble-backed bleak transport as this process's BLE transport,
bonds the glucose meter (as `vitalgate pair` would) and returns what the demo needs: the `[[devices]]`
entries (driver + options) with their bindings. The gateway then reads them through the real stack:
our sessions, bleak's API layer, Bumble's link, GATT and SMP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from drivers.ble import runtime
from drivers.ble.bleak_transport import BleakTransport
from simulators.ble.bleak_bumble import BleakClientBumble, BleakScannerBumble, BumbleHub
from simulators.ble.cuff import BloodPressureCuff
from simulators.ble.glucose import GlucoseMeter
from simulators.ble.oximeter import PulseOximeter
from simulators.ble.peripheral import SimulatedPeripheral
from simulators.ble.run import GLUCOSE_PASSKEY, SimulatorSet
from simulators.ble.thermometer import Thermometer

__all__ = ["DemoBle", "start_demo_ble"]

# (name, driver, options, bindings as (user slot, patient)), the shape gateway.demo uses
DeviceEntry = tuple[str, str, dict[str, Any], list[tuple[int | None, str]]]


@dataclass
class DemoBle:
    sims: SimulatorSet
    hub: BumbleHub
    devices: list[DeviceEntry] = field(default_factory=list)

    async def stop(self) -> None:
        runtime.reset_transport()
        await self.sims.stop()
        await self.hub.close()


def _options(sim: SimulatedPeripheral) -> dict[str, Any]:
    return {"address": sim.address, "simulated": True, "connect_timeout": 2.0, "idle_timeout": 1.0, "poll_seconds": 0.5}


async def start_demo_ble(*, measure_every: float | None = 1.5, records: int = 2) -> DemoBle:
    sims = SimulatorSet()
    await sims.start(
        ("ble-cuff", "ble-scale", "ble-glucose", "ble-thermometer", "ble-pulse-oximeter"), records=records, users=2
    )

    async def passkey() -> int:
        return GLUCOSE_PASSKEY

    hub = BumbleHub(link=sims.link, passkey=passkey)
    transport = BleakTransport(scanner_backend=BleakScannerBumble, client_backend=BleakClientBumble, hub=hub)
    runtime.use_transport(transport)
    demo = DemoBle(sims, hub)
    for sim in sims.simulators:
        if isinstance(sim, GlucoseMeter):
            session = await transport.connect(sim.address, pair=True)  # bond, as `vitalgate pair` does
            await session.disconnect()
            demo.devices.append(("demo-glucose", "ble-glucose", _options(sim), [(None, "Patient/demo-patient-2")]))
        elif isinstance(sim, Thermometer):
            demo.devices.append(
                (
                    "demo-thermometer",
                    "ble-thermometer",
                    {**_options(sim), "allow_unbonded": True},
                    [(None, "Patient/demo-patient-1")],
                )
            )
        elif isinstance(sim, PulseOximeter):
            # Stored spot-checks over RACP, then continuous samples thinned to one every 5 s (and on change).
            options = {**_options(sim), "continuous_seconds": 5, "allow_unbonded": True}
            demo.devices.append(("demo-oximeter", "ble-pulse-oximeter", options, [(None, "Patient/demo-patient-2")]))
        elif isinstance(sim, BloodPressureCuff):
            bindings: list[tuple[int | None, str]] = [(1, "Patient/demo-patient-1"), (2, "Patient/demo-patient-2")]
            # The simulated cuff, scale, thermometer and oximeter, like many real ones, cannot bond: accepted
            # explicitly (allow_unbonded); the glucose meter bonds.
            demo.devices.append(
                ("demo-cuff", "ble-blood-pressure", {**_options(sim), "allow_unbonded": True}, bindings)
            )
        else:
            bindings = [(1, "Patient/demo-patient-1"), (2, "Patient/demo-patient-2")]
            demo.devices.append(("demo-scale", "ble-weight-scale", {**_options(sim), "allow_unbonded": True}, bindings))
    if measure_every:
        sims.measure_every(measure_every)
    return demo
