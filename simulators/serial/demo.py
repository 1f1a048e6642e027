"""The hook `vitalgate demo` uses to put one serial glucose meter on a pty."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from simulators.serial.records import glucose_records
from simulators.serial.ultra2 import Ultra2Simulator

__all__ = ["DemoMeter", "start_demo_meter"]


@dataclass
class DemoMeter:
    """A running simulated meter. `driver`, `name` and `options` make its `[[devices]]` entry."""

    simulator: Ultra2Simulator
    name: str
    driver: str = "onetouch-ultra2"
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return self.simulator.path

    @property
    def serial_number(self) -> str:
        return self.simulator.serial_number

    def stop(self) -> None:
        self.simulator.stop()


def start_demo_meter(records: int = 6, *, name: str = "demo-serial-meter") -> DemoMeter:
    """A OneTouch Ultra 2 with `records` stored readings and its clock 90 s fast, served from a thread."""
    sim = Ultra2Simulator(glucose_records(records, seed=7), clock_offset=timedelta(seconds=90)).start()
    options = {"port": sim.path, "timeout_seconds": 2.0, "poll_seconds": 5.0, "simulated": True}
    return DemoMeter(sim, name, options=options)
