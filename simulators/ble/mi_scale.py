"""Xiaomi Mi Scale 2 / Mi Body Composition Scale 2 on Bumble: weigh-ins broadcast in advertisement data.

`weigh()` plays one weigh-in the way the real scales advertise it: a few unstable frames while the weight
settles, the stabilized weight repeated, then (body composition scale) the result with impedance and
"weight removed", repeated. The payload encoders are this simulator's own (layouts as documented by
openScale: v1 10 bytes on service data UUID 0x181D, v2 13 bytes on 0x181B; weight in 5 g steps).
"""

from __future__ import annotations

import asyncio
import struct
from datetime import datetime
from typing import Literal

from bumble.core import AdvertisingData

from simulators.ble.peripheral import SimulatedPeripheral

__all__ = ["MiScale", "encode_v1", "encode_v2"]

STABILIZED, REMOVED = 0x20, 0x80


def _date(t: datetime | None) -> bytes:
    t = t or datetime(1970, 1, 1)  # a scale whose clock was never set
    return struct.pack("<HBBBBB", t.year, t.month, t.day, t.hour, t.minute, t.second)


def encode_v1(weight_kg: float, *, stable: bool, removed: bool = False, at: datetime | None = None) -> bytes:
    ctrl = 0x02 | (STABILIZED if stable else 0) | (REMOVED if removed else 0)  # 0x02: "kg" as the scale sets it
    return bytes([ctrl]) + struct.pack("<H", round(weight_kg * 200)) + _date(at)


def encode_v2(
    weight_kg: float, *, stable: bool, impedance: int | None = None, removed: bool = False, at: datetime | None = None
) -> bytes:
    ctrl1 = 0x04 | (STABILIZED if stable else 0) | (REMOVED if removed else 0) | (0x02 if impedance else 0)
    return bytes([0x02, ctrl1]) + _date(at) + struct.pack("<HH", impedance or 0, round(weight_kg * 200))


class MiScale(SimulatedPeripheral):
    kind = "xiaomi-scale"

    def __init__(self, version: Literal["v1", "v2"] = "v2", *, interval: float = 0.05, **kwargs: object) -> None:
        kwargs.setdefault("name", "MIBFS" if version == "v2" else "MI SCALE2")
        kwargs.setdefault("address", "C7:00:00:00:00:07")
        kwargs.setdefault("serial", "MISCALE7")
        kwargs.setdefault("system_id", None)
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.version = version
        self.uuid = 0x181B if version == "v2" else 0x181D
        self.service_uuids = (self.uuid,)
        self.interval = interval
        self.payload = b""
        self.advertised = 0

    def advertising_data(self) -> bytes:
        entries = [
            (AdvertisingData.FLAGS, bytes([0x06])),
            (AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS, struct.pack("<H", self.uuid)),
        ]
        if self.payload:
            entries.append((AdvertisingData.SERVICE_DATA_16_BIT_UUID, struct.pack("<H", self.uuid) + self.payload))
        entries.append((AdvertisingData.COMPLETE_LOCAL_NAME, self.name.encode()))
        return bytes(AdvertisingData(entries))

    async def show(self, payload: bytes) -> None:
        """Advertise `payload` (as raw service data) for one interval."""
        assert self.device is not None
        await self.device.stop_advertising()
        self.payload = payload
        await self.advertise()
        self.advertised += 1
        await asyncio.sleep(self.interval)

    async def weigh(
        self, weight_kg: float, *, impedance: int | None = None, at: datetime | None = None, repeats: int = 3
    ) -> None:
        for fraction in (0.4, 0.8, 0.97):
            unstable = round(weight_kg * fraction, 2)
            await self.show(
                encode_v2(unstable, stable=False, at=at)
                if self.version == "v2"
                else encode_v1(unstable, stable=False, at=at)
            )
        for _ in range(repeats):
            await self.show(
                encode_v2(weight_kg, stable=True, at=at)
                if self.version == "v2"
                else encode_v1(weight_kg, stable=True, at=at)
            )
        for _ in range(repeats):
            if self.version == "v2":
                await self.show(encode_v2(weight_kg, stable=True, impedance=impedance, removed=True, at=at))
            else:
                await self.show(encode_v1(weight_kg, stable=True, removed=True, at=at))
