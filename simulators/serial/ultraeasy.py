"""A OneTouch Ultra Easy on a pty: LifeScan binary frames, link-control handshake, stored records.

Frame building, the CRC (bit-by-bit here, table-driven in the driver) and the meter's half of the
handshake are written here independently of drivers/serial/lifescan_binary.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from simulators.serial.base import Fault, MeterSimulator
from simulators.serial.records import GlucoseRecord

__all__ = ["UltraEasySimulator", "frame"]

_EPOCH = datetime(1970, 1, 1)
MORE, DISCONNECT, ACK, EXPECT, SEQ = 0x10, 0x08, 0x04, 0x02, 0x01


def _crc(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        for bit in range(7, -1, -1):
            top = bool(crc & 0x8000) ^ bool(byte >> bit & 1)
            crc = (crc << 1) & 0xFFFF
            if top:
                crc ^= 0x1021
    return crc


def frame(message: bytes, control: int) -> bytes:
    head = bytes([0x02, len(message) + 6, control]) + message + b"\x03"
    crc = _crc(head)
    return head + bytes([crc & 0xFF, crc >> 8])


def _le(value: int, size: int) -> bytes:
    return value.to_bytes(size, "little")


class UltraEasySimulator(MeterSimulator):
    default_serial_number = "C3A123456"
    default_firmware = "03.04.03"

    def __init__(self, records: list[GlucoseRecord], **kwargs: Any) -> None:
        super().__init__(records, **kwargs)  # record 0 = newest
        self._inbox = b""
        self._my_seq = 0
        self.record_requests: list[int] = []

    def on_data(self, data: bytes) -> None:
        self._inbox += data
        while len(self._inbox) >= 2:
            start = self._inbox.find(b"\x02")
            if start < 0:
                self._inbox = b""
                return
            self._inbox = self._inbox[start:]
            size = self._inbox[1]
            if size < 6 or len(self._inbox) < size:
                if size < 6:
                    self._inbox = self._inbox[1:]
                    continue
                return
            packet, self._inbox = self._inbox[:size], self._inbox[size:]
            if packet[-3] != 0x03 or _crc(packet[:-2]) != packet[-2] | packet[-1] << 8:
                continue  # a real meter ignores a corrupt frame; the host times out and retries
            self._on_frame(packet[2], packet[3:-3])
            if self.unplugged.is_set():
                return

    def _on_frame(self, control: int, message: bytes) -> None:
        if control & DISCONNECT:
            self._my_seq = 0
            self.write(frame(b"", DISCONNECT | ACK))
            return
        if control & ACK:
            return  # the host acknowledged our answer
        host_seq = control & SEQ
        self.write(frame(b"", ACK | ((host_seq ^ 1) * EXPECT)))
        answer, fault = self._answer(message)
        if answer is None:
            return
        data = frame(answer, self._my_seq * SEQ | ((host_seq ^ 1) * EXPECT))
        self._my_seq ^= 1
        if fault is Fault.BAD_CHECKSUM:
            data = data[:-2] + bytes([data[-2] ^ 0x5A, data[-1]])
        elif fault is Fault.TRUNCATED:
            data = data[: len(data) - 4]
        elif fault is Fault.GARBAGE:
            data = b"\xfe\xfe\x00garbage" + data
        elif fault is Fault.CLOSE:
            self.write(data[:4])
            self.unplug()
            return
        self.write(data)

    def _answer(self, message: bytes) -> tuple[bytes | None, Fault | None]:
        ok = b"\x05\x06"
        if message == b"\x05\x0d\x02":
            text = self.firmware.encode()
            return ok + bytes([len(text)]) + text, None
        if message[:3] == b"\x05\x0b\x02":
            return ok + self.serial_number.encode(), None
        if message[:3] == b"\x05\x20\x02":
            return ok + _le(int((self.meter_now() - _EPOCH).total_seconds()), 4), None
        if message[:3] == b"\x05\x20\x01" and len(message) == 7:
            wanted = _EPOCH + timedelta(seconds=int.from_bytes(message[3:], "little"))
            self.set_clock(wanted)
            return ok + message[3:], None
        if message == b"\x05\x09\x02\x09\x00\x00\x00\x00":
            return ok + b"\x00\x00\x00\x00", None
        if message[:2] == b"\x05\x1f" and len(message) == 4:
            index = message[2] | message[3] << 8
            if index == 501:
                return b"\x05\x0f" + _le(len(self.records), 2), None
            if index >= len(self.records):
                return b"\x05\x06", None
            self.record_requests.append(index)
            r = self.records[index]
            seconds = int((r.time - _EPOCH).total_seconds())
            return ok + _le(seconds, 4) + _le(r.mg_dl, 4), self.faults.pop(index, None)
        return None, None
