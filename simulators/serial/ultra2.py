"""A OneTouch Ultra 2 on a pty: answers DM@, DM?, DMF, DMSU?, DMP like the meter, byte for byte.

Encoding is written here from the protocol description (see drivers/serial/onetouch_ultra2.py for the
sources), deliberately not imported from the driver.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from simulators.serial.base import Fault, MeterSimulator
from simulators.serial.records import GlucoseRecord

__all__ = ["Ultra2Simulator", "line"]


def _sum16(text: str) -> int:
    total = 0
    for ch in text.encode("ascii"):
        total = (total + ch) % 65536
    return total


def line(body: str) -> bytes:
    """A reply line: body, space, 4-digit upper-case hex byte sum, CR LF."""
    return f"{body} {_sum16(body):04X}\r\n".encode("ascii")


def _stamp(t: datetime) -> str:
    return f'"{t.strftime("%a").upper()}","{t:%m/%d/%y}","{t:%H:%M:%S}   "'


def record_body(r: GlucoseRecord) -> str:
    control = "C" if r.control else " "
    return f'P {_stamp(r.time)},"{control} {r.mg_dl:03d} ","{r.meal}","{r.comment:02d}", 00'


class Ultra2Simulator(MeterSimulator):
    default_serial_number = "AB123456Y"
    default_firmware = "P02.00.00 30/08/06"

    def __init__(self, records: list[GlucoseRecord], **kwargs: Any) -> None:
        super().__init__(records, **kwargs)
        self._pending = b""
        self.dumps = 0

    def on_data(self, data: bytes) -> None:
        self._pending += data
        while b"\r" in self._pending:
            raw, _, self._pending = self._pending.partition(b"\r")
            command = raw.replace(b"\x11", b"").decode("ascii", "replace").strip()
            if command:
                self._answer(command)
            if self.unplugged.is_set():
                return

    def _answer(self, command: str) -> None:
        if command == "DM@":
            self.write(line(f'@ "{self.serial_number}"'))
        elif command == "DM?":
            self.write(line(f"?{self.firmware}"))
        elif command == "DMF":
            self.write(line(f"F {_stamp(self.meter_now())}"))
        elif command.startswith("DMT") and len(command) == 20:
            try:
                wanted = datetime.strptime(command[3:], "%m/%d/%y %H:%M:%S")
            except ValueError:
                return
            self.set_clock(wanted)
            self.write(line(f"T {_stamp(wanted)}"))
        elif command == "DMSU?":
            self.write(line('SU?,"MG/DL "'))
        elif command == "DMP":
            self._dump()
        # anything else: the real meter stays silent too

    def _dump(self) -> None:
        self.dumps += 1
        self.write(line(f'P {len(self.records):03d},"{self.serial_number}","MG/DL "'))
        for index, record in enumerate(self.records):
            data = line(record_body(record))
            fault = self.faults.pop(index, None)
            if fault is Fault.BAD_CHECKSUM:
                data = data[:-6] + (b"0000" if data[-6:-2] != b"0000" else b"FFFF") + b"\r\n"
            elif fault is Fault.TRUNCATED:
                data = data[: len(data) // 2]  # the rest never comes; no line end either
            elif fault is Fault.GARBAGE:
                data = b"\x00\xff~~noise~~\r\n" + data
            elif fault is Fault.CLOSE:
                self.write(data[: len(data) // 3])
                self.unplug()
                return
            self.write(data)
