"""Common plumbing of the simulated peripherals: a Bumble device on a link, advertising, pairing, clock.

A subclass builds its GATT services in `services()`; this base gives it Device Information, Current Time
and Battery, advertises its service UUIDs and name every ~20 ms (fast scan and connect in tests), and,
when `passkey` is set, pairs with LE Secure Connections + passkey entry (the device displays it).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Awaitable
from datetime import datetime, timedelta

import structlog
from bumble import gatt, hci, pairing
from bumble.controller import Controller
from bumble.core import UUID, AdvertisingData
from bumble.device import Connection, Device, DeviceConfiguration
from bumble.host import Host
from bumble.keys import MemoryKeyStore
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

from simulators.ble import encoding

__all__ = ["SimulatedPeripheral"]

log = structlog.get_logger(__name__)

ADVERTISING_INTERVAL_MS = 20.0
_EXACT_TIME = struct.Struct("<HBBBBBBBB")


class _DisplayDelegate(pairing.PairingDelegate):
    """The device shows a fixed passkey on its display; the user types it on the gateway."""

    def __init__(self, passkey: int) -> None:
        super().__init__(io_capability=pairing.PairingDelegate.DISPLAY_OUTPUT_ONLY)
        self._passkey = passkey

    async def generate_passkey(self) -> int:
        return self._passkey


def uuid16(value: int) -> UUID:
    return UUID.from_16_bits(value)


class SimulatedPeripheral:
    """Base of the simulators. Not thread-safe; lives on the event loop that started it."""

    kind = "peripheral"
    service_uuids: tuple[int, ...] = ()

    def __init__(
        self,
        *,
        name: str,
        address: str,
        serial: str,
        system_id: tuple[int, int] | None = (0x0000_0001, 0x00_1B_DC),
        clock_skew: timedelta = timedelta(0),
        clock_writable: bool = True,
        current_time: bool = True,
        passkey: int | None = None,
        battery: int = 87,
        manufacturer: str = "VitalGate Simulators",
        model: str = "SIM",
    ) -> None:
        self.name = name
        self.address = address
        self.serial = serial
        self.system_id = system_id
        self.clock_skew = clock_skew
        self.clock_writable = clock_writable
        self.current_time = current_time  # False: no Current Time service (the clock lives elsewhere, if anywhere)
        self.passkey = passkey
        self.battery = battery
        self.manufacturer = manufacturer
        self.model = model
        self.device: Device | None = None
        self.connection: Connection | None = None
        self.connected = asyncio.Event()
        self.disconnected = asyncio.Event()
        self.connections = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._count_waiters: list[tuple[int, asyncio.Future[None]]] = []

    # -- clock ----------------------------------------------------------------------------------------
    def now(self) -> datetime:
        """The device's own clock: local wall time plus its skew, zone-less like real devices."""
        return (datetime.now() + self.clock_skew).replace(microsecond=0)

    def _read_time(self, _conn: Connection) -> bytes:
        return encoding.current_time(self.now())

    def _write_time(self, _conn: Connection, value: bytes) -> None:
        year, month, day, hour, minute, second, _dow, _frac, _reason = _EXACT_TIME.unpack(value[:10])
        wanted = datetime(year, month, day, hour, minute, second)
        self.clock_skew = wanted - datetime.now().replace(microsecond=0)
        log.info("sim_clock_set", device=self.kind)

    # -- GATT -----------------------------------------------------------------------------------------
    def _enc(self) -> gatt.Characteristic.Permissions:
        """Read permission: encrypted link required when the device demands bonding."""
        if self.passkey is not None:
            return gatt.Characteristic.Permissions.READ_REQUIRES_ENCRYPTION
        return gatt.Characteristic.Permissions.READABLE

    def common_services(self) -> list[gatt.Service]:
        props = gatt.Characteristic.Properties
        perms = gatt.Characteristic.Permissions
        info = [
            gatt.Characteristic(uuid16(0x2A29), props.READ, perms.READABLE, self.manufacturer.encode()),
            gatt.Characteristic(uuid16(0x2A24), props.READ, perms.READABLE, self.model.encode()),
            gatt.Characteristic(uuid16(0x2A25), props.READ, perms.READABLE, self.serial.encode()),
            gatt.Characteristic(uuid16(0x2A26), props.READ, perms.READABLE, b"1.0.0"),
        ]
        if self.system_id is not None:
            sid = encoding.system_id(*self.system_id)
            info.append(gatt.Characteristic(uuid16(0x2A23), props.READ, perms.READABLE, sid))
        time_props = props.READ | props.NOTIFY | (props.WRITE if self.clock_writable else 0)
        time_perms = perms.READABLE | (perms.WRITEABLE if self.clock_writable else 0)
        clock = gatt.Service(
            uuid16(0x1805),
            [
                gatt.Characteristic(
                    uuid16(0x2A2B),
                    time_props,
                    time_perms,
                    gatt.CharacteristicValue(read=self._read_time, write=self._write_time),
                )
            ],
        )
        return [
            gatt.Service(uuid16(0x180A), info),
            *([clock] if self.current_time else []),
            gatt.Service(
                uuid16(0x180F),
                [
                    gatt.Characteristic(
                        uuid16(0x2A19),
                        props.READ,
                        perms.READABLE,
                        gatt.CharacteristicValue(read=lambda _c: bytes([self.battery])),
                    )
                ],
            ),
        ]

    def services(self) -> list[gatt.Service]:
        return []

    # -- lifecycle ------------------------------------------------------------------------------------
    def advertising_data(self) -> bytes:
        uuids = b"".join(struct.pack("<H", u) for u in self.service_uuids)
        return bytes(
            AdvertisingData(
                [
                    (AdvertisingData.FLAGS, bytes([0x06])),
                    (AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS, uuids),
                    (AdvertisingData.COMPLETE_LOCAL_NAME, self.name.encode()),
                    # 0xFFFF: the company id the Bluetooth SIG reserves for tests
                    (AdvertisingData.MANUFACTURER_SPECIFIC_DATA, struct.pack("<H", 0xFFFF) + b"VG"),
                ]
            )
        )

    async def start(self, link: LocalLink) -> None:
        """Attach to `link` and advertise."""
        controller = Controller(self.name, link=link)
        config = DeviceConfiguration(name=self.name, address=hci.Address(self.address))
        config.identity_address_type = hci.Address.RANDOM_DEVICE_ADDRESS
        device = Device(config=config, host=Host(controller, AsyncPipeSink(controller)))
        device.keystore = MemoryKeyStore()
        passkey = self.passkey
        device.pairing_config_factory = lambda _c: pairing.PairingConfig(
            sc=True,
            mitm=passkey is not None,
            bonding=True,
            delegate=_DisplayDelegate(passkey) if passkey is not None else pairing.PairingDelegate(),
            identity_address_type=pairing.PairingConfig.AddressType.RANDOM,
        )
        device.add_services(self.common_services() + self.services())
        device.on(Device.EVENT_CONNECTION, self._on_connection)
        self.device = device
        await device.power_on()
        await self.advertise()

    async def advertise(self) -> None:
        assert self.device is not None
        await self.device.start_advertising(
            advertising_data=self.advertising_data(),
            auto_restart=True,
            own_address_type=hci.OwnAddressType.RANDOM,
            advertising_interval_min=ADVERTISING_INTERVAL_MS,
            advertising_interval_max=ADVERTISING_INTERVAL_MS,
        )

    def _on_connection(self, connection: Connection) -> None:
        self.connection = connection
        self.connections += 1
        self.disconnected.clear()
        self.connected.set()
        for n, waiter in self._count_waiters:
            if self.connections >= n and not waiter.done():
                waiter.set_result(None)
        connection.on(Connection.EVENT_DISCONNECTION, self._on_disconnection)
        self.on_connected(connection)

    async def wait_connections(self, n: int) -> None:
        """Until a gateway has connected `n` times in all."""
        if self.connections >= n:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._count_waiters.append((n, waiter))
        await waiter

    def _on_disconnection(self, _reason: int) -> None:
        self.connection = None
        self.connected.clear()
        self.disconnected.set()
        self.on_disconnected()

    def on_connected(self, connection: Connection) -> None:
        """Hook for subclasses."""

    def on_disconnected(self) -> None:
        """Hook for subclasses."""

    def spawn(self, coro: Awaitable[None]) -> None:
        """Run a device-side job; kept referenced and cancelled on stop."""
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drop_connection(self) -> None:
        """Fault injection: the device goes away (battery saver, walked out of range)."""
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.disconnect()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self.device is not None:
            with contextlib.suppress(Exception):
                await self.device.stop_advertising()
            await self.drop_connection()
            with contextlib.suppress(Exception):
                await self.device.power_off()
            self.device = None
