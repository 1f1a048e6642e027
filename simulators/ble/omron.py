"""An Omron cuff speaking Omron's own BLE protocol on Bumble, with an EEPROM the gateway reads.

Written from omblepy's protocol description (four 16-byte write and notify channels, XOR-checked packets,
an unlock channel with a 16-byte pairing key, per-user ring buffers and unread counters in a settings
block); its packet and record encoders are this simulator's own. `measure()` stores a reading as the cuff
would (next ring slot, unread + 1); `pairing_mode=True` is the cuff with -P- blinking.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime, timedelta

from bumble import gatt
from bumble.core import UUID
from bumble.device import Connection

from simulators.ble.peripheral import SimulatedPeripheral

__all__ = ["OmronCuff", "OmronReading", "decode_clock", "encode_clock", "encode_record"]

# Where the models keep things (omblepy deviceSpecific/*): start addresses, slots, record size, settings.
LAYOUT = {
    "HEM-7322T": ("big", (0x02AC, 0x0824), 100, 14, 0x0260, 0x0286, 8),
    "HEM-7361T": ("little", (0x0098, 0x06D8), 100, 16, 0x0010, 0x0054, 16),
    "HEM-7600T": ("big", (0x02AC,), 100, 14, 0x0260, 0x0286, 8),
}
# The clock ("time sync") block in the settings (omblepy settingsTimeSyncBytes): its offset, its size and the
# order of the date bytes in it; after them a sum byte (low byte of the sum of the bytes up to the last date
# byte) beside a byte the cuff keeps to itself. Our own encoder and decoder, written from omblepy's
# deviceSpecific/hem-7322t.py (10 bytes) and hem-7361t.py (16 bytes) `deviceSpecific_syncWithSystemTime`.
CLOCK = {
    "HEM-7322T": (0x14, 10, ("month", "year", "hour", "day", "second", "minute")),
    "HEM-7361T": (0x2C, 16, ("year", "month", "day", "hour", "minute", "second")),
    "HEM-7600T": (0x14, 10, ("month", "year", "hour", "day", "second", "minute")),
}


def encode_clock(t: datetime, size: int, order: tuple[str, ...], head: bytes) -> bytes:
    """A clock block as the cuff keeps it: `head` (what the cuff keeps before the date), date, sum, spare."""
    parts = {"year": t.year - 2000, "month": t.month, "day": t.day, "hour": t.hour, "minute": t.minute}
    parts["second"] = t.second
    body = head + bytes(parts[k] for k in order)
    # the spare byte as captured: 0x85 on a HEM-7280T (omblepy issue #57), 0x00 on a HEM-7188T1 (hass-omron #92)
    tail = [0x85, sum(body) & 0xFF] if size == 10 else [sum(body) & 0xFF, 0x00]
    return body + bytes(tail)


def decode_clock(block: bytes, order: tuple[str, ...]) -> datetime | None:
    """The time a written clock block sets; None when the cuff would refuse it (bad sum or no date)."""
    date_at = len(block) - 8
    body = block[: date_at + 6]
    check = block[date_at + 7] if len(block) == 10 else block[date_at + 6]
    if sum(body) & 0xFF != check:
        return None
    f = dict(zip(order, body[date_at:], strict=True))
    try:
        return datetime(f["year"] + 2000, f["month"], f["day"], f["hour"], f["minute"], f["second"])
    except ValueError:
        return None


# Bit positions (from the most significant bit of the record as one integer): layout of 14-byte records
# (HEM-7322T / 7600T) and of 16-byte ones (HEM-7361T); sys stored minus 25, year minus 2000.
FIELDS = {
    14: {"dia": 0, "sys": 8, "year": 16, "bpm": 24, "mov": 32, "ihb": 33, "month": 34, "day": 38, "hour": 43,
         "minute": 52, "second": 58},
    16: {"minute": 68, "second": 74, "mov": 80, "ihb": 81, "month": 82, "day": 86, "hour": 91, "year": 98,
         "bpm": 104, "dia": 112, "sys": 120},
}  # fmt: skip
WIDTH = {"dia": 8, "sys": 8, "year": 8, "bpm": 8, "mov": 1, "ihb": 1, "month": 4, "day": 5, "hour": 5, "minute": 6}
WIDTH["second"] = 6

TX = ("db5b55e0-aee7-11e1-965e-0002a5d5c51b", "e0b8a060-aee7-11e1-92f4-0002a5d5c51b",
      "0ae12b00-aee8-11e1-a192-0002a5d5c51b", "10e1ba60-aee8-11e1-89e5-0002a5d5c51b")  # fmt: skip
RX = ("49123040-aee8-11e1-a74d-0002a5d5c51b", "4d0bf320-aee8-11e1-a0d9-0002a5d5c51b",
      "5128ce60-aee8-11e1-b84b-0002a5d5c51b", "560f1420-aee8-11e1-8184-0002a5d5c51b")  # fmt: skip
UNLOCK = "b305b680-aee7-11e1-a730-0002a5d5c51b"
PARENT = "ecbe3980-c9a2-11e1-b1bd-0002a5d5c51b"


@dataclass(frozen=True)
class OmronReading:
    systolic: int
    diastolic: int
    pulse: int
    time: datetime
    movement: bool = False
    irregular: bool = False


def encode_record(r: OmronReading, size: int, endian: str) -> bytes:
    values = {
        "dia": r.diastolic, "sys": r.systolic - 25, "year": r.time.year - 2000, "bpm": r.pulse,
        "mov": int(r.movement), "ihb": int(r.irregular), "month": r.time.month, "day": r.time.day,
        "hour": r.time.hour, "minute": r.time.minute, "second": r.time.second,
    }  # fmt: skip
    number = 0
    for name, first in FIELDS[size].items():
        width = 6 if (size, name) == (16, "year") else WIDTH[name]  # the 16-byte layout keeps 6 year bits
        number |= values[name] << (size * 8 - first - width)
    return number.to_bytes(size, endian)  # type: ignore[arg-type]


def _xor(data: bytes) -> int:
    out = 0
    for b in data:
        out ^= b
    return out


def _packet(kind: bytes, address: int, data: bytes, count: int | None = None) -> bytes:
    body = bytes([8 + len(data)]) + kind + struct.pack(">H", address) + bytes([len(data) if count is None else count])
    body += data + b"\x00"
    return body + bytes([_xor(body)])


class OmronCuff(SimulatedPeripheral):
    kind = "omron-ble"

    def __init__(
        self,
        model: str = "HEM-7322T",
        *,
        key: bytes | None = None,
        pairing_mode: bool = False,
        clock_skew: timedelta = timedelta(0),
        **kwargs: object,
    ) -> None:
        kwargs.setdefault("name", "BLEsmart_0000021F")
        kwargs.setdefault("address", "C8:00:00:00:00:08")
        kwargs.setdefault("serial", "OMRON008")
        kwargs.setdefault("manufacturer", "OMRON HEALTHCARE")
        kwargs.setdefault("model", model)
        kwargs.setdefault("system_id", (0x0000_0008, 0x00_1B_DC))
        super().__init__(clock_skew=clock_skew, **kwargs)  # type: ignore[arg-type]
        self.endian, self.users, self.slots, self.size, self.settings_read, self.settings_write, n = LAYOUT[model]
        self.eeprom = bytearray(b"\xff" * 0x1000)
        self.last = [0] * len(self.users)
        self.unread = [0] * len(self.users)
        self.key = key
        self.pairing_mode = pairing_mode
        self.programming = False
        self.unlocked = False
        self.transmitting = False
        self.commands: list[bytes] = []
        self.corrupt: set[int] = set()  # fault injection: these answers (by count, from 0) get a wrong XOR byte
        self._answers = 0
        self._unread_bytes = n
        self.clock_sets: list[datetime] = []  # the times the gateway set, in order
        self.refuse_clock = False  # fault injection: a clock write gets no answer (the gateway times out)
        self.clock_garbage = False  # fault injection: the clock block reads all 0xFF (omblepy issue #7)
        self._pieces: list[bytes | None] = [None] * 4
        self._rx: list[gatt.Characteristic[bytes]] = []
        self._unlock: gatt.Characteristic[bytes] | None = None
        self._write_settings()

    # -- the cuff's memory ------------------------------------------------------------------------------
    def _write_settings(self) -> None:
        block = bytearray(self._unread_bytes)
        for u in range(len(self.users)):
            block[2 * u : 2 * u + 2] = self.last[u].to_bytes(2, self.endian)  # type: ignore[arg-type]
            counter = self.unread[u] if self.unread[u] else 0x8000
            block[2 * u + 4 : 2 * u + 6] = counter.to_bytes(2, self.endian)  # type: ignore[arg-type]
        self.eeprom[self.settings_read : self.settings_read + len(block)] = block

    def _write_clock(self) -> None:
        if self.model not in CLOCK:
            return
        offset, size, order = CLOCK[self.model]
        at = self.settings_read + offset
        head = bytes([0x08, 0xC8] if size == 10 else [0xC2, 0xA0, 0, 0, 0, 0, 0, 0])
        block = b"\xff" * size if self.clock_garbage else encode_clock(self.now(), size, order, head)
        self.eeprom[at : at + size] = block

    def measure(self, user: int, reading: OmronReading) -> None:
        """A new measurement stored for `user` (1-based) in the next ring slot."""
        u = user - 1
        slot = self.last[u] % self.slots
        at = self.users[u] + slot * self.size
        self.eeprom[at : at + self.size] = encode_record(reading, self.size, self.endian)
        self.last[u] = slot + 1
        self.unread[u] = min(self.unread[u] + 1, self.slots)
        self._write_settings()

    def unread_counters(self) -> list[int]:
        block = self.eeprom[self.settings_read : self.settings_read + self._unread_bytes]
        return [int.from_bytes(block[2 * u + 4 : 2 * u + 6], self.endian) for u in range(len(self.users))]  # type: ignore[arg-type]

    # -- GATT -------------------------------------------------------------------------------------------
    def common_services(self) -> list[gatt.Service]:
        """No Current Time service: these cuffs keep their clock in the EEPROM settings (omblepy reads and
        sets it there), so that is the clock the gateway must find."""
        return [s for s in super().common_services() if s.uuid != UUID.from_16_bits(0x1805)]

    def services(self) -> list[gatt.Service]:
        props = gatt.Characteristic.Properties
        perms = gatt.Characteristic.Permissions
        write = perms.WRITE_REQUIRES_ENCRYPTION if self.passkey is not None else perms.WRITEABLE
        tx = [
            gatt.Characteristic(UUID(u), props.WRITE | props.WRITE_WITHOUT_RESPONSE, write,
                                gatt.CharacteristicValue(write=lambda c, v, i=i: self._on_tx(c, i, bytes(v))))
            for i, u in enumerate(TX)
        ]  # fmt: skip
        self._rx = [gatt.Characteristic(UUID(u), props.NOTIFY, self._enc(), b"") for u in RX]
        self._unlock = gatt.Characteristic(
            UUID(UNLOCK), props.WRITE | props.NOTIFY, write, gatt.CharacteristicValue(write=self._on_unlock)
        )
        return [gatt.Service(UUID(PARENT), [*tx, *self._rx, self._unlock])]

    def on_connected(self, connection: Connection) -> None:
        self.unlocked = self.transmitting = self.programming = False
        self._pieces = [None] * 4

    def _on_unlock(self, connection: Connection, value: bytes) -> None:
        value = bytes(value)
        if value[:1] == b"\x01" and len(value) == 17:
            self.unlocked = self.key is not None and value[1:] == self.key
            answer = b"\x81\x00" if self.unlocked else b"\x81\x01"
        elif value[:1] == b"\x02" and self.pairing_mode:
            self.programming = True
            answer = b"\x82\x00"
        elif value[:1] == b"\x00" and self.programming and len(value) == 17:
            self.key, self.programming, self.pairing_mode, self.unlocked = value[1:], False, False, True
            answer = b"\x80\x00"
        else:
            answer = value[:1] + b"\x0f"
        self.spawn(self._notify_unlock(connection, answer + bytes(14)))

    async def _notify_unlock(self, connection: Connection, data: bytes) -> None:
        assert self.device is not None and self._unlock is not None
        await self.device.notify_subscriber(connection, self._unlock, data)

    def _on_tx(self, connection: Connection, channel: int, piece: bytes) -> None:
        self._pieces[channel] = piece
        first = self._pieces[0]
        if not first:
            return
        needed = (first[0] + 15) // 16
        if any(self._pieces[i] is None for i in range(needed)):
            return
        command = b"".join(p or b"" for p in self._pieces[:needed])[: first[0]]
        self._pieces = [None] * 4
        if _xor(command) or not self.unlocked:
            return  # a corrupt command, or a locked cuff: no answer (the gateway times out)
        self.commands.append(command)
        self.spawn(self._answer(connection, command))

    async def _answer(self, connection: Connection, command: bytes) -> None:
        kind, address, count = command[1:3], struct.unpack(">H", command[3:5])[0], command[5]
        if kind == b"\x00\x00":
            self.transmitting = True
            answer = _packet(b"\x80\x00", 0, bytes(16), count=0x10)
        elif kind == b"\x01\x00" and self.transmitting:
            self._write_clock()  # the clock runs: its block reads the time of this read
            answer = _packet(b"\x81\x00", address, bytes(self.eeprom[address : address + count]))
        elif kind == b"\x01\xc0" and self.transmitting:
            data = command[6 : 6 + count]
            if self.refuse_clock and self._clock_write(address) is not None:
                return
            self._write(address, data)
            answer = _packet(b"\x81\xc0", address, data)
        elif kind == b"\x0f\x00":
            self.transmitting = False
            answer = _packet(b"\x8f\x00", 0, b"")
        else:
            return
        assert self.device is not None
        if self._answers in self.corrupt:
            answer = answer[:-1] + bytes([answer[-1] ^ 0x5A])
        self._answers += 1
        for i in range(0, len(answer), 16):
            await self.device.notify_subscriber(connection, self._rx[i // 16], answer[i : i + 16])

    def _clock_write(self, address: int) -> tuple[int, tuple[str, ...]] | None:
        """(size, field order) when `address` is the clock block in the settings' write window."""
        if self.model in CLOCK and address == self.settings_write + CLOCK[self.model][0]:
            return CLOCK[self.model][1], CLOCK[self.model][2]
        return None

    def _write(self, address: int, data: bytes) -> None:
        """Writes to the settings' write window land in the settings (as the real cuffs mirror them); a
        clock block written there sets the cuff's clock (a bad one is ignored, as the cuff shows Err)."""
        clock = self._clock_write(address)
        if clock is not None and len(data) == clock[0]:
            when = decode_clock(data, clock[1])
            if when is not None:
                self.clock_skew = when - datetime.now().replace(microsecond=0)
                self.clock_sets.append(when)
            return
        if self.settings_write <= address < self.settings_write + 0x40:
            address = self.settings_read + (address - self.settings_write)
        self.eeprom[address : address + len(data)] = data
        block = self.eeprom[self.settings_read : self.settings_read + self._unread_bytes]
        for u in range(len(self.users)):
            counter = int.from_bytes(block[2 * u + 4 : 2 * u + 6], self.endian)  # type: ignore[arg-type]
            self.unread[u] = 0 if counter & 0x8000 else counter
