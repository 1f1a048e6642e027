"""A OneTouch Ultra 2 on a pty: answers DM@, DM?, DMF, DMSU?, DMP like the meter, byte for byte.

Encoding is written here from the protocol description (see drivers/serial/onetouch_ultra2.py for the
sources), deliberately not imported from the driver.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path

from simulators.serial.base import Fault, PtyDevice
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


class Ultra2Simulator(PtyDevice):
    def __init__(
        self,
        records: list[GlucoseRecord],
        *,
        serial_number: str = "AB123456Y",
        firmware: str = "P02.00.00 30/08/06",
        clock_offset: timedelta = timedelta(0),
        faults: Mapping[int, Fault] | None = None,
        link: str | Path | None = None,
        now: Callable[[], datetime] = datetime.now,
    ) -> None:
        super().__init__(link=link)
        self.records = list(records)  # newest first, as the meter keeps them
        self.serial_number = serial_number
        self.firmware = firmware
        self.clock_offset = clock_offset
        self.faults = dict(faults or {})
        self._now = now
        self._pending = b""
        self.dumps = 0
        self.clock_sets = 0

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
            now = (self._now() + self.clock_offset).replace(microsecond=0)
            self.write(line(f"F {_stamp(now)}"))
        elif command.startswith("DMT") and len(command) == 20:
            try:
                wanted = datetime.strptime(command[3:], "%m/%d/%y %H:%M:%S")
            except ValueError:
                return
            self.clock_offset = wanted - self._now().replace(microsecond=0)
            self.clock_sets += 1
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
