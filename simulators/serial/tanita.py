"""A Tanita body-composition scale on a pty: prints one result line per weigh-in, as the scale does.

The line layout and the CS rule are written here from the public sample lines (see
drivers/serial/tanita.py), independently of the parser.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

from simulators.serial.base import Fault, PtyDevice
from simulators.serial.records import WeighIn

__all__ = ["TanitaSimulator", "result_line"]


def result_line(w: WeighIn, *, model: str = "SC-330", serial_number: str = "00000001") -> bytes:
    bmi = w.weight_kg / (w.height_cm / 100) ** 2
    fat_mass = w.weight_kg * w.body_fat / 100
    text = (
        f'{{0,16,~0,1,~1,1,~2,1,MO,"{model}",SN,"{serial_number}",ID,"0000000000",'
        f'Da,"{w.time:%d/%m/%Y}",TI,"{w.time:%H:%M}",Bt,0,GE,1,AG,40,Hm,{w.height_cm:.1f},Pt,0.0,'
        f"Wk,{w.weight_kg:.1f},FW,{w.body_fat:.1f},fW,{fat_mass:.1f},MI,{bmi:.1f},"
    )
    total = 0
    for ch in text.encode("ascii"):
        total += ch
    return (text + f"CS,{total % 256:02X}\r\n").encode("ascii")


class TanitaSimulator(PtyDevice):
    """Sends its weigh-ins once a gateway has the port open (`send_all`), or one by one (`weigh`)."""

    def __init__(
        self,
        weigh_ins: list[WeighIn],
        *,
        model: str = "SC-330",
        serial_number: str = "00000001",
        faults: Mapping[int, Fault] | None = None,
        link: str | Path | None = None,
    ) -> None:
        super().__init__(link=link)
        self.weigh_ins = list(weigh_ins)
        self.model = model
        self.serial_number = serial_number
        self.faults = dict(faults or {})
        self.sent = 0
        self._go = threading.Event()

    def send_all(self) -> None:
        """Ask the serving thread to print every stored weigh-in (call once the gateway listens)."""
        self._go.set()

    def on_data(self, data: bytes) -> None:
        pass  # the scale does not listen

    def on_idle(self) -> None:
        if not self._go.is_set():
            return
        self._go.clear()
        for index, w in enumerate(self.weigh_ins):
            data = result_line(w, model=self.model, serial_number=self.serial_number)
            fault = self.faults.pop(index, None)
            if fault is Fault.BAD_CHECKSUM:
                data = _break_cs(data)
            elif fault is Fault.TRUNCATED:
                data = data[: len(data) // 2]
            elif fault is Fault.GARBAGE:
                data = b"\x00\x13\xffnoise\r\n" + data
            elif fault is Fault.CLOSE:
                self.write(data[:10])
                self.unplug()
                return
            self.write(data)
            self.sent += 1


def _break_cs(data: bytes) -> bytes:
    body, _, rest = data.rpartition(b",CS,")
    wrong = (int(rest[:2], 16) + 1) % 256
    return body + b",CS," + f"{wrong:02X}".encode() + b"\r\n"
