"""A device that indicates its stored measurements: the shared behaviour of the BP cuff and the scale.

Like home cuffs and scales, it keeps measurements until a gateway subscribes to the measurement
characteristic, indicates each one (removing it once the indication is confirmed), then disconnects
after a short linger. Entries given as raw `bytes` are sent as they are: that is how tests inject
malformed frames. A subclass names its service, measurement and feature characteristics and encodes.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar, Generic, TypeVar

from bumble import gatt
from bumble.device import Connection

from simulators.ble.peripheral import SimulatedPeripheral, uuid16

__all__ = ["IndicatingPeripheral"]

R = TypeVar("R")


class IndicatingPeripheral(SimulatedPeripheral, Generic[R]):
    measurement_uuid: ClassVar[int]
    feature_uuid: ClassVar[int]
    features: ClassVar[bytes]  # the Feature characteristic's value
    defaults: ClassVar[dict[str, object]] = {}  # SimulatedPeripheral keywords this device kind defaults

    def __init__(self, records: list[R | bytes] | None = None, *, linger: float = 0.3, **kwargs: object) -> None:
        for key, value in self.defaults.items():
            kwargs.setdefault(key, value)
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.pending: list[R | bytes] = list(records or [])
        self.sent: list[bytes] = []
        self.linger = linger
        self._measurement: gatt.Characteristic[bytes] | None = None

    def encode(self, record: R) -> bytes:
        raise NotImplementedError

    def services(self) -> list[gatt.Service]:
        props = gatt.Characteristic.Properties
        self._measurement = gatt.Characteristic(uuid16(self.measurement_uuid), props.INDICATE, self._enc(), b"")
        self._measurement.on(gatt.Characteristic.EVENT_SUBSCRIPTION, self._on_subscription)
        feature = gatt.Characteristic(uuid16(self.feature_uuid), props.READ, self._enc(), self.features)
        return [gatt.Service(uuid16(self.service_uuids[0]), [self._measurement, feature])]

    def add(self, record: R | bytes) -> None:
        """A new measurement on the device (sent at the next connection)."""
        self.pending.append(record)

    def _on_subscription(self, bearer: Connection, _notify: bool, indicate: bool) -> None:
        if indicate:
            self.spawn(self._send_stored(bearer))

    async def _send_stored(self, connection: Connection) -> None:
        assert self.device is not None and self._measurement is not None
        while self.pending:
            record = self.pending[0]
            frame = record if isinstance(record, bytes) else self.encode(record)
            await self.device.indicate_subscriber(connection, self._measurement, frame)
            self.sent.append(frame)
            self.pending.pop(0)
        await asyncio.sleep(self.linger)
        await self.drop_connection()
