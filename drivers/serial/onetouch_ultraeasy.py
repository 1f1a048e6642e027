"""LifeScan OneTouch Ultra Easy / Ultra Mini messages (inside `lifescan_binary` frames). Pure, no I/O.

Devices: OneTouch Ultra Easy and OneTouch Ultra Mini (the same meter sold under two names).
Features: software version, serial number, meter clock, display unit, record count, records by index.
Port: 9600 baud 8N1 (LifeScan's PL2303 cable, USB 067b:2303), e.g. /dev/serial/by-id/usb-Prolific...

Message facts from glucometerutils by Diego Elio Pettenò (MIT), `glucometerutils/drivers/otultraeasy.py`
(repository glucometers-tech/glucometerutils). A reply to any request starts with 05 06 ("success"):

    version      05 0D 02                      -> 05 06 <len> <ascii>      (a length-prefixed string)
    serial       05 0B 02 00*9                 -> 05 06 <ascii...>
    read clock   05 20 02 00 00 00 00          -> 05 06 <u32 LE seconds since 1970, meter wall time>
    set clock    05 20 01 <u32 LE seconds>     -> 05 06 <u32 LE seconds>
    unit         05 09 02 09 00 00 00 00       -> 05 06 <0 mg/dL | 1 mmol/L> 00 00 00
    count        05 1F F5 01 (record 501)      -> 05 0F <u16 LE count>
    record i     05 1F <u16 LE i>              -> 05 06 <u32 LE time> <u32 LE mg/dL>

Record 0 is the most recent. The count reply differs between glucometerutils versions (`05 0F nn nn` in
most, a bare `0F nn nn` in the newest); both are accepted. Times are the meter's wall clock encoded as if
it were UTC, so they decode to naive datetimes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime, timedelta

from drivers.errors import MalformedFrameError

__all__ = [
    "BAUDRATE",
    "COUNT_RECORD_ID",
    "READ_CLOCK",
    "READ_SERIAL",
    "READ_UNIT",
    "READ_VERSION",
    "UltraEasyRecord",
    "parse_clock",
    "parse_count",
    "parse_record",
    "parse_serial_number",
    "parse_unit",
    "parse_version",
    "read_record",
    "write_clock",
]

BAUDRATE = 9600
SUCCESS = b"\x05\x06"
COUNT_RECORD_ID = 501
READ_VERSION = b"\x05\x0d\x02"
READ_SERIAL = b"\x05\x0b\x02" + bytes(9)
READ_CLOCK = b"\x05\x20\x02" + bytes(4)
READ_UNIT = b"\x05\x09\x02\x09" + bytes(4)
_READ_RECORD = struct.Struct("<2sH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_RECORD = struct.Struct("<2sII")
_EPOCH = datetime(1970, 1, 1)
_UNITS = {0: "mg/dL", 1: "mmol/L"}


@dataclass(frozen=True, slots=True)
class UltraEasyRecord:
    index: int  # 0 = most recent; shifts as new readings arrive, so not a stable record number
    device_time: datetime
    value_mg_dl: int
    raw: bytes


def write_clock(when: datetime) -> bytes:
    """05 20 01 <u32 LE seconds>: set the meter's clock; it answers like a clock read."""
    seconds = int((when - _EPOCH).total_seconds())
    if not 0 <= seconds <= 0xFFFFFFFF:
        raise ValueError("time outside the meter's range")
    return b"\x05\x20\x01" + _U32.pack(seconds)


def read_record(index: int) -> bytes:
    return _READ_RECORD.pack(b"\x05\x1f", index)


def _success(message: bytes, minimum: int) -> bytes:
    if len(message) < minimum or message[:2] != SUCCESS:
        raise MalformedFrameError("not a success reply of the expected size", message)
    return message[2:]


def _timestamp(seconds: int) -> datetime:
    return _EPOCH + timedelta(seconds=seconds)


def parse_version(message: bytes) -> str:
    payload = _success(message, 3)
    length = payload[0]
    if len(payload) != length + 1:
        raise MalformedFrameError("version string length does not match", message)
    try:
        return payload[1:].decode("ascii")
    except UnicodeDecodeError:
        raise MalformedFrameError("version is not ASCII", message) from None


def parse_serial_number(message: bytes) -> str:
    payload = _success(message, 3)
    try:
        text = payload.decode("ascii").rstrip("\x00")
    except UnicodeDecodeError:
        raise MalformedFrameError("serial number is not ASCII", message) from None
    if not text.isprintable() or not text:
        raise MalformedFrameError("serial number is not printable", message)
    return text


def parse_clock(message: bytes) -> datetime:
    payload = _success(message, 6)
    if len(payload) != 4:
        raise MalformedFrameError("clock reply has the wrong size", message)
    return _timestamp(_U32.unpack(payload)[0])


def parse_unit(message: bytes) -> str:
    payload = _success(message, 6)
    unit = _UNITS.get(payload[0])
    if unit is None or len(payload) != 4:
        raise MalformedFrameError("unknown glucose unit", message)
    return unit


def parse_count(message: bytes) -> int:
    if len(message) == 4 and message[:2] == b"\x05\x0f":
        return int(_U16.unpack_from(message, 2)[0])
    if len(message) == 3 and message[0] == 0x0F:
        return int(_U16.unpack_from(message, 1)[0])
    raise MalformedFrameError("not a record-count reply", message)


def parse_record(index: int, message: bytes) -> UltraEasyRecord:
    if len(message) != _RECORD.size or message[:2] != SUCCESS:
        raise MalformedFrameError("not a record reply", message)
    _, seconds, value = _RECORD.unpack(message)
    if value > 0xFFFF:
        raise MalformedFrameError("glucose value out of range", message)
    return UltraEasyRecord(index=index, device_time=_timestamp(seconds), value_mg_dl=value, raw=message)
