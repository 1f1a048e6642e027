"""A Bluetooth pulse oximeter: Pulse Oximeter service 0x1822 with spot-checks, continuous samples and storage.

- PLX Spot-Check 0x2A5E (indicate): `spot_checks` are indicated once the gateway subscribes.
- PLX Continuous 0x2A5F (notify): `continuous` samples go out every `period` seconds once subscribed.
- Record Access Control Point 0x2A52 (write + indicate): `stored` spot-checks, reported for "all records"
  with the "data from measurement storage" status bit, deleted on "delete all" (PLXS 1.0 §3.4: the only
  operator is "all records").
- PLX Features 0x2A60 (read): measurement status support, storage and time stamps.

Once everything queued was sent and no procedure runs, it lingers and disconnects, like a real one turning
its radio off. Entries given as `bytes` are sent as they are (malformed-frame tests). The encoders here are
this simulator's own, from GSS "PLX Spot-Check Measurement" / "PLX Continuous Measurement" / "PLX Features".
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass
from datetime import datetime

from bumble import gatt
from bumble.device import Connection

from simulators.ble import encoding
from simulators.ble.peripheral import SimulatedPeripheral, uuid16

__all__ = ["ContinuousSample", "PulseOximeter", "SpotCheck", "encode_continuous", "encode_spot_check"]

REPORT, DELETE, ABORT, COUNT = 1, 2, 3, 4
ALL = 1
SUCCESS, OPCODE_NOT_SUPPORTED, OPERATOR_NOT_SUPPORTED, NO_RECORDS = 1, 2, 4, 6
FROM_STORAGE = 1 << 9  # Measurement Status: data from measurement storage

# Supported features: measurement status support (bit 0), spot-check storage (2), spot-check time stamp (3);
# then the measurement status bits supported: ongoing, storage, demonstration, testing, unavailable,
# questionable, invalid.
FEATURES = struct.pack("<HH", 0x000D, (1 << 5) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 13) | (1 << 14) | (1 << 15))


@dataclass(frozen=True)
class SpotCheck:
    spo2: float
    pulse: float
    time: datetime | None = None
    status: int | None = None  # Measurement Status bits
    device_status: int | None = None  # Device and Sensor Status bits (24)
    pai: float | None = None  # pulse amplitude index, %


@dataclass(frozen=True)
class ContinuousSample:
    spo2: float
    pulse: float
    status: int | None = None


def encode_spot_check(r: SpotCheck, *, extra_status: int = 0) -> bytes:
    status = None if r.status is None and not extra_status else (r.status or 0) | extra_status
    flags = (0x01 if r.time else 0) | (0x02 if status is not None else 0) | (0x04 if r.device_status is not None else 0)
    flags |= 0x08 if r.pai is not None else 0
    out = bytes([flags]) + encoding.sfloat(r.spo2) + encoding.sfloat(r.pulse)
    if r.time:
        out += encoding.date_time(r.time)
    if status is not None:
        out += struct.pack("<H", status)
    if r.device_status is not None:
        out += r.device_status.to_bytes(3, "little")
    if r.pai is not None:
        out += encoding.sfloat(r.pai, -1)
    return out


def encode_continuous(r: ContinuousSample) -> bytes:
    flags = 0x04 if r.status is not None else 0
    out = bytes([flags]) + encoding.sfloat(r.spo2) + encoding.sfloat(r.pulse)
    if r.status is not None:
        out += struct.pack("<H", r.status)
    return out


class PulseOximeter(SimulatedPeripheral):
    kind = "ble-pulse-oximeter"
    service_uuids = (0x1822,)

    def __init__(
        self,
        spot_checks: list[SpotCheck | bytes] | None = None,
        *,
        stored: list[SpotCheck | bytes] | None = None,
        continuous: list[ContinuousSample | bytes] | None = None,
        period: float = 0.02,
        linger: float = 0.5,
        **kwargs: object,
    ) -> None:
        kwargs.setdefault("name", "VG-Oximeter")
        kwargs.setdefault("address", "C5:00:00:00:00:05")
        kwargs.setdefault("serial", "PLX00005")
        kwargs.setdefault("model", "SIM-PLX")
        kwargs.setdefault("system_id", (0x0000_0005, 0x00_1B_DC))
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.spot_checks: list[SpotCheck | bytes] = list(spot_checks or [])
        self.stored: list[SpotCheck | bytes] = list(stored or [])
        self.continuous: list[ContinuousSample | bytes] = list(continuous or [])
        self.period = period
        self.linger = linger
        self.requests: list[bytes] = []
        self.sent_continuous = 0
        self.stream_stops = 0  # times a connected central turned the continuous notifications off
        self._busy = 0
        self._streaming = False
        self._reported = False
        self._spot: gatt.Characteristic[bytes] | None = None
        self._cont: gatt.Characteristic[bytes] | None = None
        self._racp: gatt.Characteristic[bytes] | None = None

    def services(self) -> list[gatt.Service]:
        props = gatt.Characteristic.Properties
        perms = gatt.Characteristic.Permissions
        self._spot = gatt.Characteristic(uuid16(0x2A5E), props.INDICATE, self._enc(), b"")
        self._spot.on(gatt.Characteristic.EVENT_SUBSCRIPTION, self._on_spot_subscription)
        self._cont = gatt.Characteristic(uuid16(0x2A5F), props.NOTIFY, self._enc(), b"")
        self._cont.on(gatt.Characteristic.EVENT_SUBSCRIPTION, self._on_cont_subscription)
        write_perm = perms.WRITE_REQUIRES_ENCRYPTION if self.passkey is not None else perms.WRITEABLE
        self._racp = gatt.Characteristic(
            uuid16(0x2A52), props.WRITE | props.INDICATE, write_perm, gatt.CharacteristicValue(write=self._on_racp)
        )
        features = gatt.Characteristic(uuid16(0x2A60), props.READ, self._enc(), FEATURES)
        return [gatt.Service(uuid16(0x1822), [self._spot, self._cont, features, self._racp])]

    def on_connected(self, connection: Connection) -> None:
        self._reported = False
        self._streaming = False

    # -- jobs: each one counts as busy; the last to finish starts the linger-and-disconnect ------------
    def _job(self, coro: object) -> None:
        self._busy += 1

        async def run() -> None:
            try:
                await coro  # type: ignore[misc]
            finally:
                self._busy -= 1
                if self._busy == 0:
                    self.spawn(self._finish())

        self.spawn(run())

    async def _finish(self) -> None:
        await asyncio.sleep(self.linger)
        waiting_for_racp = bool(self.stored) and not self._reported
        if self._busy == 0 and not waiting_for_racp:
            await self.drop_connection()

    def _on_spot_subscription(self, connection: Connection, _notify: bool, indicate: bool) -> None:
        if indicate:
            self._job(self._send_spot(connection))

    def _on_cont_subscription(self, connection: Connection, notify: bool, _indicate: bool) -> None:
        self._streaming = notify  # a central writing the CCCD off stops the stream (GATT: no more notifications)
        self.stream_stops += not notify
        if notify:
            self._job(self._stream(connection))

    async def _send_spot(self, connection: Connection) -> None:
        assert self.device is not None and self._spot is not None
        while self.spot_checks:
            r = self.spot_checks[0]
            await self.device.indicate_subscriber(
                connection, self._spot, r if isinstance(r, bytes) else encode_spot_check(r)
            )
            self.spot_checks.pop(0)

    async def _stream(self, connection: Connection) -> None:
        assert self.device is not None and self._cont is not None
        while self.continuous and self._streaming and self.connection is connection:
            r = self.continuous.pop(0)
            await self.device.notify_subscriber(
                connection, self._cont, r if isinstance(r, bytes) else encode_continuous(r)
            )
            self.sent_continuous += 1
            await asyncio.sleep(self.period)

    def _on_racp(self, connection: Connection, value: bytes) -> None:
        self.requests.append(bytes(value))
        self._job(self._procedure(connection, bytes(value)))

    async def _respond(self, connection: Connection, request: int, code: int) -> None:
        assert self.device is not None and self._racp is not None
        await self.device.indicate_subscriber(connection, self._racp, bytes([0x06, 0x00, request, code]))

    async def _procedure(self, connection: Connection, request: bytes) -> None:
        assert self.device is not None and self._spot is not None and self._racp is not None
        opcode = request[0] if request else 0
        if opcode not in (REPORT, DELETE, COUNT):
            await self._respond(connection, opcode, OPCODE_NOT_SUPPORTED)
            return
        if len(request) != 2 or request[1] != ALL:
            await self._respond(connection, opcode, OPERATOR_NOT_SUPPORTED)
            return
        if opcode == COUNT:
            await self.device.indicate_subscriber(
                connection, self._racp, b"\x05\x00" + struct.pack("<H", len(self.stored))
            )
            return
        if opcode == DELETE:
            self.stored.clear()
            await self._respond(connection, DELETE, SUCCESS)
            return
        self._reported = True
        if not self.stored:
            await self._respond(connection, REPORT, NO_RECORDS)
            return
        for r in list(self.stored):
            frame = r if isinstance(r, bytes) else encode_spot_check(r, extra_status=FROM_STORAGE)
            await self.device.indicate_subscriber(connection, self._spot, frame)
        await self._respond(connection, REPORT, SUCCESS)
