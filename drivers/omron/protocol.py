"""Omron's own Bluetooth LE protocol (cuffs that do not expose the standard Blood Pressure Service for
their stored records), sans-I/O. Facts from omblepy (github.com/userx14/omblepy: README "Documentation",
omblepy.py, sharedDriver.py, deviceSpecific/*) and captures published in its and hass-omron's issues;
the code is our own.

Transport: a vendor service (parent ecbe3980-c9a2-11e1-b1bd-0002a5d5c51b) with four write channels and
four notify channels. A packet is cut into 16-byte pieces, piece k on channel k; the receiver joins them
once the pieces the first byte (the packet length) asks for are in.

Packet: length uint8 | type 2 bytes | EEPROM address uint16 BE | data length uint8 | data | 0x00 | xor byte
chosen so that all bytes XOR to 0. Types: 0000 start of transmission (answer 8000, 0x18 bytes), 0100 read
(answer 8100 with the data), 01c0 write (answer 81c0 echoing it), 0f00 end of transmission (answer 8f00,
its first data byte a status: 0 = fine).

Unlock channel (b305b680-aee7-11e1-a730-0002a5d5c51b): `01` + 16-byte key unlocks (answer `81 00`);
in pairing mode `02` + 16 zero bytes enters key programming (answer `82 00`) and `00` + key stores the key
(answer `80 00`).

Records: each model keeps a ring buffer of fixed-size records per user at known EEPROM addresses; a
settings block holds, per user, the last written slot and an "unread records" count (0x8000 = none new).

Clock: the settings also hold a "time sync" block (omblepy `settingsTimeSyncBytes`, written back at the
same offset in the settings' write window, as the unread block is). Two formats (omblepy
deviceSpecific/hem-7322t.py and hem-7600t.py `deviceSpecific_syncWithSystemTime`, 10 bytes: 2 kept, month,
year-2000, hour, day, second, minute, a byte written 0, the low byte of the sum of the 8 before it;
hem-7361t.py, 16 bytes: 8 kept, year-2000, month, day, hour, minute, second, the sum byte, a byte written
0). omblepy does not set the HEM-7530T's clock (hem-7530t.py: "not supported"; README matrix: time sync ❌),
so neither do we.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from drivers.errors import ChecksumError, DeviceProtocolError, LocalProtocolError, MalformedFrameError
from gateway.reading import DeviceIdentity, Kind, Measurement, Metric, Reading, Status, Unit

__all__ = [
    "END",
    "MODELS",
    "PARENT_SERVICE",
    "RX_CHANNELS",
    "START",
    "TX_CHANNELS",
    "UNLOCK",
    "OmronModel",
    "OmronRecord",
    "Response",
    "RxAssembler",
    "encode_clock",
    "packet",
    "parse_clock",
    "parse_record",
    "read_command",
    "read_plan",
    "reset_unread",
    "to_reading",
    "unread_state",
    "write_command",
]

PARENT_SERVICE = "ecbe3980-c9a2-11e1-b1bd-0002a5d5c51b"
TX_CHANNELS = (
    "db5b55e0-aee7-11e1-965e-0002a5d5c51b",
    "e0b8a060-aee7-11e1-92f4-0002a5d5c51b",
    "0ae12b00-aee8-11e1-a192-0002a5d5c51b",
    "10e1ba60-aee8-11e1-89e5-0002a5d5c51b",
)
RX_CHANNELS = (
    "49123040-aee8-11e1-a74d-0002a5d5c51b",
    "4d0bf320-aee8-11e1-a0d9-0002a5d5c51b",
    "5128ce60-aee8-11e1-b84b-0002a5d5c51b",
    "560f1420-aee8-11e1-8184-0002a5d5c51b",
)
UNLOCK = "b305b680-aee7-11e1-a730-0002a5d5c51b"

T_START, T_READ, T_WRITE, T_END = b"\x00\x00", b"\x01\x00", b"\x01\xc0", b"\x0f\x00"
R_START, R_READ, R_WRITE, R_END = b"\x80\x00", b"\x81\x00", b"\x81\xc0", b"\x8f\x00"
PIECE = 16
NO_NEW = 0x8000  # the unread counter's value for "nothing new"


def _xor(data: bytes) -> int:
    out = 0
    for b in data:
        out ^= b
    return out


def packet(kind: bytes, address: int, data: bytes = b"", *, length: int | None = None) -> bytes:
    """One packet; `length` overrides the data-length byte (the start command asks for 0x10 bytes)."""
    if not 0 <= address <= 0xFFFF or len(data) > 0xFF - 8:
        raise LocalProtocolError("omron: address or data out of range")
    body = bytes([len(data) + 8]) + kind + address.to_bytes(2, "big") + bytes([len(data) if length is None else length])
    body += data + b"\x00"
    return body + bytes([_xor(body)])


START = packet(T_START, 0, length=0x10)  # 08 00 00 00 00 10 00 18
END = packet(T_END, 0)  # 08 0f 00 00 00 00 00 07


def read_command(address: int, size: int) -> bytes:
    return packet(T_READ, address, length=size)


def write_command(address: int, data: bytes) -> bytes:
    return packet(T_WRITE, address, data)


def pieces(data: bytes) -> list[bytes]:
    """A packet cut for the four channels (piece k goes to channel k)."""
    out = [data[i : i + PIECE] for i in range(0, len(data), PIECE)]
    if len(out) > len(TX_CHANNELS):
        raise LocalProtocolError("omron: packet longer than four channels carry")
    return out


@dataclass(frozen=True, slots=True)
class Response:
    kind: bytes
    address: int
    data: bytes
    raw: bytes


class RxAssembler:
    """Joins the notified pieces of one response; raises typed errors for a corrupt one."""

    def __init__(self) -> None:
        self._pieces: list[bytes | None] = [None] * len(RX_CHANNELS)

    def feed(self, channel: int, piece: bytes) -> Response | None:
        if not 0 <= channel < len(RX_CHANNELS):
            raise LocalProtocolError("omron: no such channel")
        self._pieces[channel] = bytes(piece)
        first = self._pieces[0]
        if not first:
            return None
        size = first[0]
        needed = (size + PIECE - 1) // PIECE
        if needed > len(RX_CHANNELS) or size < 8:
            self._pieces = [None] * len(RX_CHANNELS)
            raise MalformedFrameError("omron: impossible packet length", first)
        if any(self._pieces[i] is None for i in range(needed)):
            return None
        raw = b"".join(p or b"" for p in self._pieces[:needed])[:size]
        self._pieces = [None] * len(RX_CHANNELS)
        if len(raw) < size:
            raise MalformedFrameError("omron: packet shorter than its length byte", raw)
        if _xor(raw):
            raise ChecksumError(raw, raw[-1], raw[-1] ^ _xor(raw))
        count = raw[5]
        kind = raw[1:3]
        if kind == R_END:
            data = raw[6:7]
        elif count > size - 8:
            raise MalformedFrameError("omron: data length beyond the packet", raw)
        else:
            data = raw[6 : 6 + count]
        return Response(kind, int.from_bytes(raw[3:5], "big"), data, raw)


def unlock_request(key: bytes) -> bytes:
    if len(key) != 16:
        raise LocalProtocolError("omron: the pairing key is 16 bytes")
    return b"\x01" + key


PROGRAM_MODE_REQUEST = b"\x02" + b"\x00" * 16


def program_key_request(key: bytes) -> bytes:
    if len(key) != 16:
        raise LocalProtocolError("omron: the pairing key is 16 bytes")
    return b"\x00" + key


@dataclass(frozen=True, slots=True)
class OmronModel:
    """Where one model keeps what (omblepy deviceSpecific/<model>.py)."""

    name: str
    endian: Literal["big", "little"]
    users: tuple[int, ...]  # start address of each user's ring buffer
    slots: tuple[int, ...]  # records per user
    record_size: int
    block: int  # bytes per read
    settings_read: int
    settings_write: int
    unread: tuple[int, int] | None  # offsets of the unread-counter block in the settings; None: unknown
    layout: Literal["a", "a-7530", "b"]
    clock: tuple[int, int] | None = None  # offsets of the time-sync block in the settings; None: not settable


# Clock blocks: omblepy settingsTimeSyncBytes = [0x14, 0x1e] (hem-7322t.py line 20, hem-7600t.py line 20),
# [0x2C, 0x3C] (hem-7361t.py line 20); hem-7530t.py has it commented out and raises "not supported".
MODELS: dict[str, OmronModel] = {
    "HEM-7322T": OmronModel(
        "HEM-7322T", "big", (0x02AC, 0x0824), (100, 100), 0x0E, 0x38, 0x0260, 0x0286, (0, 8), "a", (0x14, 0x1E)
    ),
    "HEM-7361T": OmronModel(
        "HEM-7361T", "little", (0x0098, 0x06D8), (100, 100), 0x10, 0x10, 0x0010, 0x0054, (0, 16), "b", (0x2C, 0x3C)
    ),
    "HEM-7600T": OmronModel(
        "HEM-7600T", "big", (0x02AC,), (100,), 0x0E, 0x38, 0x0260, 0x0286, (0, 8), "a", (0x14, 0x1E)
    ),
    "HEM-7530T": OmronModel("HEM-7530T", "big", (0x02E8,), (90,), 0x0E, 0x10, 0x0260, 0x02A4, None, "a-7530"),
}


def _bits(raw: bytes, endian: Literal["big", "little"], first: int, last: int) -> int:
    """Bits `first`..`last` counted from the most significant bit of the record read as one integer."""
    value = int.from_bytes(raw, endian)
    return value >> (len(raw) * 8 - (last + 1)) & ((1 << (last - first + 1)) - 1)


# field -> (first bit, last bit) per layout; sys is stored minus 25, year minus 2000
_LAYOUTS: dict[str, dict[str, tuple[int, int]]] = {
    "a": {
        "dia": (0, 7), "sys": (8, 15), "year": (16, 23), "bpm": (24, 31), "mov": (32, 32), "ihb": (33, 33),
        "month": (34, 37), "day": (38, 42), "hour": (43, 47), "minute": (52, 57), "second": (58, 63),
    },
    "b": {
        "minute": (68, 73), "second": (74, 79), "mov": (80, 80), "ihb": (81, 81), "month": (82, 85),
        "day": (86, 90), "hour": (91, 95), "year": (98, 103), "bpm": (104, 111), "dia": (112, 119),
        "sys": (120, 127),
    },
}  # fmt: skip
_LAYOUTS["a-7530"] = {**_LAYOUTS["a"], "year": (18, 23)}


@dataclass(frozen=True, slots=True)
class OmronRecord:
    systolic: int
    diastolic: int
    pulse: int
    time: datetime
    body_movement: bool
    irregular_heartbeat: bool


def parse_record(model: OmronModel, raw: bytes) -> OmronRecord | None:
    """One stored record; None for an empty slot (all 0xFF)."""
    if len(raw) != model.record_size:
        raise MalformedFrameError(f"omron record: {len(raw)} bytes, expected {model.record_size}", bytes(raw))
    if raw == b"\xff" * model.record_size:
        return None
    f = {name: _bits(raw, model.endian, a, b) for name, (a, b) in _LAYOUTS[model.layout].items()}
    try:
        # The seconds field can read up to 63 (omblepy clamps it to 59; so do we).
        time = datetime(f["year"] + 2000, f["month"], f["day"], f["hour"], f["minute"], min(f["second"], 59))
    except ValueError:
        raise MalformedFrameError("omron record: impossible date", bytes(raw)) from None
    return OmronRecord(f["sys"] + 25, f["dia"], f["bpm"], time, bool(f["mov"]), bool(f["ihb"]))


def unread_state(model: OmronModel, block: bytes) -> list[tuple[int, int]]:
    """(last written slot, unread records) per user, from the settings' unread-counter block."""
    if model.unread is None or len(block) != model.unread[1] - model.unread[0]:
        raise MalformedFrameError("omron: unread-counter block of the wrong size", bytes(block))

    def low(two: bytes) -> int:
        return _bits(two, model.endian, 8, 15)

    return [(low(block[2 * u : 2 * u + 2]), low(block[2 * u + 4 : 2 * u + 6])) for u in range(len(model.users))]


def reset_unread(model: OmronModel, block: bytes) -> bytes:
    """The block with both unread counters set to "nothing new" (slots kept): what to write back."""
    return bytes(block[:4]) + NO_NEW.to_bytes(2, model.endian) * 2 + bytes(block[8:])


# Where the date fields sit in a clock block, and where its sum byte goes: the low byte of the sum of the
# bytes up to the last date field (omblepy sums the 8, resp. 14, bytes it built before appending it).
_CLOCK_FIELDS: dict[str, tuple[tuple[str, ...], int, int]] = {
    # layout: (field order, first field byte, sum byte)
    "a": (("month", "year", "hour", "day", "second", "minute"), 2, 9),  # omblepy hem-7322t.py lines 43, 52-53
    "b": (("year", "month", "day", "hour", "minute", "second"), 8, 14),  # omblepy hem-7361t.py lines 42, 51-52
}


def _clock_format(model: OmronModel, block: bytes) -> tuple[tuple[str, ...], int, int]:
    if model.clock is None or model.layout not in _CLOCK_FIELDS:
        raise LocalProtocolError(f"omron: {model.name} has no settable clock (omblepy: not supported)")
    if len(block) != model.clock[1] - model.clock[0]:
        raise MalformedFrameError("omron: clock block of the wrong size", bytes(block))
    return _CLOCK_FIELDS[model.layout]


def parse_clock(model: OmronModel, block: bytes) -> datetime | None:
    """The cuff's clock from its time-sync block (zone-less local time); None when it holds no valid time
    (a wrong sum byte, or fields that are not a date: omblepy issue #7 saw all 0xFF)."""
    order, first, check = _clock_format(model, block)
    if sum(block[: first + 6]) & 0xFF != block[check]:
        return None
    f = dict(zip(order, block[first : first + 6], strict=True))
    try:
        return datetime(f["year"] + 2000, f["month"], f["day"], f["hour"], f["minute"], f["second"])
    except ValueError:
        return None


def encode_clock(model: OmronModel, block: bytes, now: datetime) -> bytes:
    """The time-sync block as read, with the clock set to `now` (seconds, no zone): what to write back.

    The bytes before the date are kept as the cuff had them; the byte omblepy writes 0 is written 0.
    """
    order, first, check = _clock_format(model, block)
    if not 2000 <= now.year <= 2255:
        raise LocalProtocolError("omron: the cuff's clock holds years 2000-2255")
    fields = {"year": now.year - 2000, "month": now.month, "day": now.day, "hour": now.hour}
    fields |= {"minute": now.minute, "second": now.second}
    out = bytearray(block)
    out[first : first + 6] = bytes(fields[name] for name in order)
    out[check] = sum(out[: first + 6]) & 0xFF
    out[8 if check == 9 else 15] = 0  # the byte beside the sum that omblepy writes as 0 ("does not seem to matter")
    return bytes(out)


def read_plan(model: OmronModel, user: int, count: int, last_slot: int) -> list[tuple[int, int]]:
    """(address, size) reads for the `count` records written before `last_slot` in a user's ring buffer."""
    slots, size, start = model.slots[user], model.record_size, model.users[user]
    count = min(count, slots)
    if count <= 0:
        return []
    if not 0 <= last_slot <= slots:
        raise DeviceProtocolError("omron: last written slot outside the ring buffer")
    if last_slot < count:  # wraps: the start of the buffer, then its end
        plan = [(start, size * last_slot)] if last_slot else []
        return [*plan, (start + (slots + last_slot - count) * size, size * (count - last_slot))]
    return [(start + size * (last_slot - count), size * count)]


def to_reading(
    record: OmronRecord,
    device: DeviceIdentity,
    received_at: datetime,
    user_slot: int,
    clock_offset: timedelta | None = None,
    raw: bytes = b"",
    *,
    simulated: bool = False,
) -> Reading:
    status = {Status.BODY_MOVEMENT} if record.body_movement else set()
    if record.irregular_heartbeat:
        status.add(Status.IRREGULAR_PULSE)
    return Reading(
        kind=Kind.BLOOD_PRESSURE,
        measurements=(
            Measurement(Metric.SYSTOLIC, float(record.systolic), Unit.MMHG),
            Measurement(Metric.DIASTOLIC, float(record.diastolic), Unit.MMHG),
            Measurement(Metric.PULSE_RATE, float(record.pulse), Unit.PER_MIN),
        ),
        device=device,
        received_at=received_at,
        device_time=record.time,
        clock_offset=clock_offset,
        user_slot=user_slot,
        status=frozenset(status),
        raw=raw,
        simulated=simulated,
    )
