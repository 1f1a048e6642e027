"""The small BLE interface the drivers talk to: scan adverts, connect, read, write, subscribe, pair.

Drivers never import bleak; they get a `BleTransport` (in production `BleakTransport` on BlueZ, in tests
the same class over our Bumble backend). Every operation has a timeout and fails with a `BleError`
subclass, so a session can tell "the device went away" from "we asked for something it lacks".

Notification handlers receive the raw bytes and must only enqueue them: parsing happens in the session
task, where a bad frame can be rejected (kept) without breaking the link layer's callback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from drivers.errors import DriverError, HostSetupError

__all__ = [
    "ANY_DEVICE",
    "DEFAULT_TIMEOUT",
    "Advert",
    "BleConnectionError",
    "BleError",
    "BleNotFoundError",
    "BlePairingError",
    "BleSession",
    "BleStackError",
    "BleTimeoutError",
    "BleTransport",
    "NotifyHandler",
    "ScanFilter",
    "normalize_uuid",
]

DEFAULT_TIMEOUT = 10.0
_BASE_UUID_SUFFIX = "-0000-1000-8000-00805f9b34fb"

NotifyHandler = Callable[[bytes], None]
AddressType = Literal["public", "random", "unknown"]


def normalize_uuid(uuid: int | str) -> str:
    """0x2A35, "2a35" or the full form -> "00002a35-0000-1000-8000-00805f9b34fb"."""
    if isinstance(uuid, int):
        return f"{uuid:08x}{_BASE_UUID_SUFFIX}"
    text = uuid.lower()
    if len(text) in (4, 8):
        return f"{int(text, 16):08x}{_BASE_UUID_SUFFIX}"
    return text


class BleError(DriverError):
    """Base of transport failures (the link, not the payload)."""


class BleStackError(HostSetupError, BleError):
    """The Bluetooth stack itself is not reachable (no BlueZ / D-Bus, no permission, HCI transport down)."""


class BleTimeoutError(BleError):
    def __init__(self, operation: str, timeout: float) -> None:
        super().__init__(f"{operation} timed out after {timeout:g} s")
        self.operation = operation
        self.timeout = timeout


class BleConnectionError(BleError):
    """Could not connect, or the link dropped during an operation."""


class BleNotFoundError(BleError):
    """The device did not advertise in time, or lacks a characteristic."""


class BlePairingError(BleError):
    """Pairing or encryption failed (wrong passkey, device rejected, bond lost)."""


@dataclass(frozen=True, slots=True)
class Advert:
    """One advertisement as seen by the scanner."""

    address: str
    address_type: AddressType
    name: str | None
    services: tuple[str, ...]
    rssi: int
    manufacturer_data: Mapping[int, bytes] = field(default_factory=dict)
    service_data: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScanFilter:
    """Which adverts to keep: any of `services` (normalized UUIDs), and/or an exact address, name, or
    manufacturer (Bluetooth SIG company id in the manufacturer-specific data, as HA's matchers do), and/or
    service data for any of `service_data` (16-bit UUIDs; what a passive scan on BlueZ matches on)."""

    services: tuple[str, ...] = ()
    address: str | None = None
    name: str | None = None
    manufacturer_id: int | None = None
    service_data: tuple[int, ...] = ()

    def matches(self, advert: Advert) -> bool:
        if self.address is not None and advert.address.upper() != self.address.upper():
            return False
        if self.service_data and not any(normalize_uuid(u) in advert.service_data for u in self.service_data):
            return False
        if self.name is not None and advert.name != self.name:
            return False
        if self.manufacturer_id is not None and self.manufacturer_id not in advert.manufacturer_data:
            return False
        return not self.services or any(s in advert.services for s in self.services)


ANY_DEVICE = ScanFilter()


class BleSession(Protocol):
    """One connection. Use as an async context manager or call `disconnect`."""

    @property
    def address(self) -> str: ...

    @property
    def is_connected(self) -> bool: ...

    def has(self, uuid: int | str) -> bool:
        """Whether the device exposes this characteristic (discovered at connect)."""
        ...

    def can_write(self, uuid: int | str) -> bool: ...

    def can_read(self, uuid: int | str) -> bool: ...

    async def read(self, uuid: int | str, *, timeout: float | None = None) -> bytes: ...

    async def write(
        self, uuid: int | str, data: bytes, *, response: bool = True, timeout: float | None = None
    ) -> None: ...

    async def subscribe(self, uuid: int | str, handler: NotifyHandler, *, timeout: float | None = None) -> None:
        """Enable notifications or indications (whichever the characteristic has)."""
        ...

    async def unsubscribe(self, uuid: int | str, *, timeout: float | None = None) -> None:
        """Disable them again (the device stops sending before the gateway hangs up)."""
        ...

    async def pair(self, *, timeout: float | None = None) -> None: ...

    async def bonded_and_encrypted(self) -> bool:
        """True when the peer is bonded with this adapter and the link is encrypted with the bond's keys."""
        ...

    async def wait_disconnected(self, timeout: float | None = None) -> bool:
        """True once the link is down; False when `timeout` passed first."""
        ...

    async def disconnect(self) -> None: ...


class BleTransport(Protocol):
    """Scanning and connecting; one per process (it owns the adapter)."""

    def adverts(self, scan_filter: ScanFilter = ANY_DEVICE, *, passive: bool = False) -> AsyncIterator[Advert]:
        """Adverts as they arrive, until the consumer stops iterating. `passive`: listen only, no scan
        requests (advertisement-only devices; needs `scan_filter.service_data` for BlueZ's patterns)."""
        ...

    async def scan(self, duration: float, scan_filter: ScanFilter = ANY_DEVICE) -> list[Advert]:
        """The latest advert of every matching device seen within `duration` seconds."""
        ...

    async def connect(self, address: str, *, timeout: float = DEFAULT_TIMEOUT, pair: bool = False) -> BleSession:
        """Wait up to `timeout` for `address` to advertise, then connect (within the transport's operation
        timeout), optionally pair, discover services. Not seen in time: `BleNotFoundError`."""
        ...
