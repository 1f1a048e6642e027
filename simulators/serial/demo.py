"""The hook `vitalgate demo` uses to put one serial glucose meter on a pty."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from simulators.serial.base import PtyDevice
from simulators.serial.records import glucose_records
from simulators.serial.ultra2 import Ultra2Simulator

__all__ = ["DemoMeter", "start_demo_meter"]


@dataclass
class DemoMeter:
    """A running simulated meter: `device` is the `[[devices]]` table to add; call `stop()` at the end."""

    simulator: PtyDevice
    device: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return self.simulator.path

    def stop(self) -> None:
        self.simulator.stop()


def start_demo_meter(records: int = 10, *, name: str = "demo-glucose-meter") -> DemoMeter:
    """A OneTouch Ultra 2 with `records` stored readings, its clock 90 s fast, served from a thread."""
    from datetime import timedelta

    sim = Ultra2Simulator(glucose_records(records), clock_offset=timedelta(seconds=90)).start()
    device = {
        "driver": "onetouch-ultra2",
        "name": name,
        "port": sim.path,
        "timeout_seconds": 2.0,
        "simulated": True,
    }
    return DemoMeter(sim, device)
