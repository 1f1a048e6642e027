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
    """Sends its weigh-ins all at once (`send_all`, for tests and the demo), or one by one (`weigh_next`).

    The scale has no memory to download: it prints one result line when someone steps off it. So
    `vitalgate simulate tanita-bc --interval N` sends the next weigh-in every N seconds, each once.
    """

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
        self._next = 0  # the weigh-in `weigh_next` sends next
        self._asked = 0  # weigh-ins asked for by `weigh_next` and not yet printed
        self._asked_lock = threading.Lock()

    def weigh_next(self) -> bool:
        """Print the next stored weigh-in (from the serving thread); False once all have been asked for."""
        with self._asked_lock:
            if self._next + self._asked >= len(self.weigh_ins):
                return False
            self._asked += 1
            return True

    def send_all(self) -> None:
        """Ask the serving thread to print every stored weigh-in (call once the gateway listens)."""
        self._go.set()

    def on_data(self, data: bytes) -> None:
        pass  # the scale does not listen

    def on_idle(self) -> None:
        while True:
            with self._asked_lock:
                if not self._asked:
                    break
                self._asked -= 1
                index, self._next = self._next, self._next + 1
            if not self._send(index, self.weigh_ins[index]):
                return
        if not self._go.is_set():
            return
        self._go.clear()
        for index, w in enumerate(self.weigh_ins):
            if not self._send(index, w):
                return

    def _send(self, index: int, w: WeighIn) -> bool:
        """One result line, with the fault set for this index (once); False when the port went away."""
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
            return False
        self.write(data)
        self.sent += 1
        return True


def _break_cs(data: bytes) -> bytes:
    body, _, rest = data.rpartition(b",CS,")
    wrong = (int(rest[:2], 16) + 1) % 256
    return body + b",CS," + f"{wrong:02X}".encode() + b"\r\n"
