"""A body composition scale: Weight Scale 0x181D and Body Composition 0x181B, multi-user.

Each weigh-in is indicated on Weight Measurement 0x2A9D and on Body Composition Measurement 0x2A9C (which
repeats the weight, as real scales do). A value longer than ATT_MTU 23 allows goes as two packets with the
"multiple packet" flag (BCS 1.0 §4.2.1); `split=True` splits every value. `with_weight_
service=False` makes a scale that has only the Body Composition service. The encoder is this simulator's
own, from GSS "Body Composition Measurement" (flags uint16; body fat 0.1 %; masses 0.005 kg; impedance
0.1 Ohm; basal metabolism kJ).
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from datetime import datetime

from bumble import gatt
from bumble.device import Connection

from simulators.ble import encoding
from simulators.ble.encoding import WeightRecord
from simulators.ble.peripheral import SimulatedPeripheral, uuid16

__all__ = ["BodyCompositionScale", "BodyRecord", "encode_body_composition"]

MULTIPLE_PACKET = 1 << 12
MAX_PACKET = 20  # ATT_MTU 23 - 3: a longer value must be split (BCS 1.0 §4.2.1)


@dataclass(frozen=True)
class BodyRecord:
    weight: float  # kg
    fat_percent: float
    time: datetime | None = None
    user: int | None = None
    muscle_percent: float | None = None
    water_kg: float | None = None
    impedance_ohm: float | None = None
    bmr_kj: int | None = None


def _mass(kg: float) -> bytes:
    return struct.pack("<H", round(kg / 0.005))


def encode_body_composition(r: BodyRecord, *, split: bool = False) -> list[bytes]:
    """One value, or two packets (time/user/fat/BMR/muscle in the first; water/impedance/weight in the second)
    when asked to or when one would not fit the default ATT_MTU."""
    head = struct.pack("<H", round(r.fat_percent * 10))
    first_flags = (0x0002 if r.time else 0) | (0x0004 if r.user is not None else 0)
    first = b""
    if r.time:
        first += encoding.date_time(r.time)
    if r.user is not None:
        first += bytes([r.user])
    if r.bmr_kj is not None:
        first_flags |= 0x0008
        first += struct.pack("<H", r.bmr_kj)
    if r.muscle_percent is not None:
        first_flags |= 0x0010
        first += struct.pack("<H", round(r.muscle_percent * 10))
    second_flags = 0x0400  # weight
    second = b""
    if r.water_kg is not None:
        second_flags |= 0x0100
        second += _mass(r.water_kg)
    if r.impedance_ohm is not None:
        second_flags |= 0x0200
        second += struct.pack("<H", round(r.impedance_ohm * 10))
    second += _mass(r.weight)
    whole = struct.pack("<H", first_flags | second_flags) + head + first + second
    if not split and len(whole) <= MAX_PACKET:
        return [whole]
    return [
        struct.pack("<H", first_flags | MULTIPLE_PACKET) + head + first,
        struct.pack("<H", second_flags | MULTIPLE_PACKET) + head + second,
    ]


class BodyCompositionScale(SimulatedPeripheral):
    kind = "ble-body-scale"
    service_uuids: tuple[int, ...] = (0x181D, 0x181B)

    def __init__(
        self,
        records: list[BodyRecord | bytes] | None = None,
        *,
        split: bool = False,
        with_weight_service: bool = True,
        linger: float = 0.4,
        **kwargs: object,
    ) -> None:
        kwargs.setdefault("name", "VG-BodyScale")
        kwargs.setdefault("address", "C6:00:00:00:00:06")
        kwargs.setdefault("serial", "BODY0006")
        kwargs.setdefault("model", "SIM-BCS")
        kwargs.setdefault("system_id", (0x0000_0006, 0x00_1B_DC))
        super().__init__(**kwargs)  # type: ignore[arg-type]
        if not with_weight_service:
            self.service_uuids = (0x181B,)
        self.records: list[BodyRecord | bytes] = list(records or [])
        self.split = split
        self.with_weight_service = with_weight_service
        self.linger = linger
        self._weight: gatt.Characteristic[bytes] | None = None
        self._body: gatt.Characteristic[bytes] | None = None
        self._subscribed: set[str] = set()
        self._sending: asyncio.Task[None] | None = None

    def add(self, record: BodyRecord) -> None:
        self.records.append(record)

    def services(self) -> list[gatt.Service]:
        props = gatt.Characteristic.Properties
        self._body = gatt.Characteristic(uuid16(0x2A9C), props.INDICATE, self._enc(), b"")
        self._body.on(gatt.Characteristic.EVENT_SUBSCRIPTION, lambda c, _n, i: self._on_subscription(c, "body", i))
        # Body Composition Feature 0x2A9B: time stamp, multiple users, BMR, muscle %, body water, impedance,
        # weight; mass resolution 0.005 kg (index 4 at bits 11-14) (GSS "Body Composition Feature")
        feature = gatt.Characteristic(uuid16(0x2A9B), props.READ, self._enc(), struct.pack("<I", 0x38F | 4 << 11))
        services = [gatt.Service(uuid16(0x181B), [self._body, feature])]
        if self.with_weight_service:
            self._weight = gatt.Characteristic(uuid16(0x2A9D), props.INDICATE, self._enc(), b"")
            self._weight.on(
                gatt.Characteristic.EVENT_SUBSCRIPTION, lambda c, _n, i: self._on_subscription(c, "weight", i)
            )
            wfeature = gatt.Characteristic(uuid16(0x2A9E), props.READ, self._enc(), struct.pack("<I", 0x03 | 4 << 3))
            services.insert(0, gatt.Service(uuid16(0x181D), [self._weight, wfeature]))
        return services

    def on_connected(self, connection: Connection) -> None:
        self._subscribed = set()

    def _on_subscription(self, connection: Connection, which: str, indicate: bool) -> None:
        if not indicate:
            return
        self._subscribed.add(which)
        wanted = {"body", "weight"} if self.with_weight_service else {"body"}
        if wanted <= self._subscribed and (self._sending is None or self._sending.done()):
            task = asyncio.ensure_future(self._send(connection))
            self._sending = task
            self.spawn(task)

    async def _send(self, connection: Connection) -> None:
        assert self.device is not None and self._body is not None
        while self.records:
            r = self.records[0]
            if isinstance(r, bytes):
                await self.device.indicate_subscriber(connection, self._body, r)
            else:
                if self._weight is not None:
                    frame = encoding.encode_weight(WeightRecord(r.weight, time=r.time, user=r.user))
                    await self.device.indicate_subscriber(connection, self._weight, frame)
                for packet in encode_body_composition(r, split=self.split):
                    await self.device.indicate_subscriber(connection, self._body, packet)
            self.records.pop(0)
        await asyncio.sleep(self.linger)
        await self.drop_connection()
