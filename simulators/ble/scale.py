"""A multi-user weight scale: Weight Scale service 0x181D, measurements 0x2A9D sent as indications.

Behaves like the cuff: stored measurements go out once a gateway subscribes, then the scale disconnects.
"""

from __future__ import annotations

import asyncio
import struct

from bumble import gatt
from bumble.device import Connection

from simulators.ble import encoding
from simulators.ble.encoding import WeightRecord
from simulators.ble.peripheral import SimulatedPeripheral, uuid16

__all__ = ["WeightScale"]

# Weight Scale Feature 0x2A9E: time stamp, multiple users, BMI; resolutions 0.005 kg and 1 mm (GSS §3.253)
FEATURES = 0x00000007 | (4 << 3) | (3 << 7)


class WeightScale(SimulatedPeripheral):
    kind = "ble-scale"
    service_uuids = (0x181D,)

    def __init__(
        self, records: list[WeightRecord | bytes] | None = None, *, linger: float = 0.3, **kwargs: object
    ) -> None:
        kwargs.setdefault("name", "VG-Scale")
        kwargs.setdefault("address", "C2:00:00:00:00:02")
        kwargs.setdefault("serial", "SCALE002")
        kwargs.setdefault("model", "SIM-WS")
        kwargs.setdefault("system_id", (0x0000_0002, 0x00_1B_DC))
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.pending: list[WeightRecord | bytes] = list(records or [])
        self.sent: list[bytes] = []
        self.linger = linger
        self._measurement: gatt.Characteristic[bytes] | None = None

    def add(self, record: WeightRecord | bytes) -> None:
        self.pending.append(record)

    def services(self) -> list[gatt.Service]:
        props = gatt.Characteristic.Properties
        self._measurement = gatt.Characteristic(uuid16(0x2A9D), props.INDICATE, self._enc(), b"")
        self._measurement.on(gatt.Characteristic.EVENT_SUBSCRIPTION, self._on_subscription)
        feature = gatt.Characteristic(uuid16(0x2A9E), props.READ, self._enc(), struct.pack("<I", FEATURES))
        return [gatt.Service(uuid16(0x181D), [self._measurement, feature])]

    def _on_subscription(self, bearer: Connection, _notify: bool, indicate: bool) -> None:
        if indicate:
            self.spawn(self._send_stored(bearer))

    async def _send_stored(self, connection: Connection) -> None:
        assert self.device is not None and self._measurement is not None
        while self.pending:
            record = self.pending[0]
            frame = record if isinstance(record, bytes) else encoding.encode_weight(record)
            await self.device.indicate_subscriber(connection, self._measurement, frame)
            self.sent.append(frame)
            self.pending.pop(0)
        await asyncio.sleep(self.linger)
        await self.drop_connection()
