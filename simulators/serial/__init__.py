"""Serial device simulators on real pseudo-terminals.

Each simulator encodes the protocol with its own code (never the parser's), so a parser bug cannot
hide behind a simulator that shares it.
"""

from simulators.serial.base import Fault, PtyDevice
from simulators.serial.demo import DemoMeter, start_demo_meter
from simulators.serial.registry import SIMULATORS, create

__all__ = ["SIMULATORS", "DemoMeter", "Fault", "PtyDevice", "create", "start_demo_meter"]
