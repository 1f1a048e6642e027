"""A blood-pressure cuff: Blood Pressure service 0x1810 with stored readings sent as indications.

Like home cuffs, it keeps readings until a gateway subscribes to 0x2A35, indicates each one (removing it
once the indication is confirmed), then disconnects after a short linger. Entries given as raw `bytes`
are sent as they are: that is how tests inject malformed frames.
"""

from __future__ import annotations

import asyncio
import struct

import structlog
from bumble import gatt
from bumble.device import Connection

from simulators.ble import encoding
from simulators.ble.encoding import BpRecord
from simulators.ble.peripheral import SimulatedPeripheral, uuid16

__all__ = ["BloodPressureCuff"]

log = structlog.get_logger(__name__)

# Blood Pressure Feature 0x2A49: body movement, cuff fit, irregular pulse, pulse range, position, multi-bond
FEATURES = 0x003F


class BloodPressureCuff(SimulatedPeripheral):
    kind = "ble-cuff"
    service_uuids = (0x1810,)

    def __init__(self, records: list[BpRecord | bytes] | None = None, *, linger: float = 0.3, **kwargs: object) -> None:
        kwargs.setdefault("name", "VG-Cuff")
        kwargs.setdefault("address", "C1:00:00:00:00:01")
        kwargs.setdefault("serial", "CUFF0001")
        kwargs.setdefault("model", "SIM-BP")
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.pending: list[BpRecord | bytes] = list(records or [])
        self.sent: list[bytes] = []
        self.linger = linger
        self._measurement: gatt.Characteristic[bytes] | None = None

    def services(self) -> list[gatt.Service]:
        props = gatt.Characteristic.Properties
        self._measurement = gatt.Characteristic(uuid16(0x2A35), props.INDICATE, self._enc(), b"")
        self._measurement.on(gatt.Characteristic.EVENT_SUBSCRIPTION, self._on_subscription)
        feature = gatt.Characteristic(uuid16(0x2A49), props.READ, self._enc(), struct.pack("<H", FEATURES))
        return [gatt.Service(uuid16(0x1810), [self._measurement, feature])]

    def add(self, record: BpRecord | bytes) -> None:
        """A new measurement on the device (sent at the next connection)."""
        self.pending.append(record)

    def _on_subscription(self, bearer: Connection, _notify: bool, indicate: bool) -> None:
        if indicate:
            self.spawn(self._send_stored(bearer))

    async def _send_stored(self, connection: Connection) -> None:
        assert self.device is not None and self._measurement is not None
        while self.pending:
            record = self.pending[0]
            frame = record if isinstance(record, bytes) else encoding.encode_bp(record)
            await self.device.indicate_subscriber(connection, self._measurement, frame)
            self.sent.append(frame)
            self.pending.pop(0)
        await asyncio.sleep(self.linger)
        await self.drop_connection()
