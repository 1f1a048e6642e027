"""`BleTransport` on bleak 3.x.

`BleakTransport()` uses bleak's platform backend (BlueZ on the Pi). Tests and the demo pass our Bumble
backend classes plus their keyword arguments, which bleak forwards untouched::

    BleakTransport(scanner_backend=BleakScannerBumble, client_backend=BleakClientBumble, hub=hub)

so the same code path (this module, bleak's API layer) runs in CI and in production.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, Self, TypeVar

import structlog
from bleak import BleakClient, BleakScanner
from bleak.args.bluez import OrPattern
from bleak.assigned_numbers import AdvertisementDataType
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakDeviceNotFoundError, BleakError

from drivers.ble.stack import stack_error
from drivers.ble.transport import (
    ANY_DEVICE,
    DEFAULT_TIMEOUT,
    AddressType,
    Advert,
    BleConnectionError,
    BleError,
    BleNotFoundError,
    BlePairingError,
    BleTimeoutError,
    NotifyHandler,
    ScanFilter,
    normalize_uuid,
)

__all__ = ["BleakSession", "BleakTransport", "passive_scan_args"]

log = structlog.get_logger(__name__)
T = TypeVar("T")


def _address_type(device: BLEDevice) -> AddressType:
    """BlueZ puts it in details["props"]["AddressType"]; our Bumble backend gives a Bumble Address."""
    details = device.details
    if isinstance(details, dict):
        kind = details.get("props", {}).get("AddressType")
        return "public" if kind == "public" else "random" if kind == "random" else "unknown"
    is_public = getattr(details, "is_public", None)
    if isinstance(is_public, bool):
        return "public" if is_public else "random"
    return "unknown"


def _cancel_if_cancelling() -> None:
    """Some stacks turn a cancelled wait into their own error; never let that swallow a cancellation."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _advert(device: BLEDevice, data: AdvertisementData) -> Advert:
    return Advert(
        address=device.address,
        address_type=_address_type(device),
        name=data.local_name or device.name,
        services=tuple(normalize_uuid(s) for s in data.service_uuids),
        rssi=data.rssi,
        manufacturer_data=dict(data.manufacturer_data),
        service_data=dict(data.service_data),
    )


class BleakSession:
    """A connected `BleakClient` behind the `BleSession` interface."""

    def __init__(self, client: BleakClient, timeout: float) -> None:
        self._client = client
        self._timeout = timeout
        self._down = asyncio.Event()
        self._chars: dict[str, BleakGATTCharacteristic] = {}

    def _index(self) -> None:
        for service in self._client.services:
            for char in service.characteristics:
                self._chars.setdefault(char.uuid.lower(), char)

    def _mark_down(self) -> None:
        self._down.set()

    @property
    def address(self) -> str:
        return self._client.address

    @property
    def is_connected(self) -> bool:
        return not self._down.is_set() and self._client.is_connected

    def has(self, uuid: int | str) -> bool:
        return normalize_uuid(uuid) in self._chars

    def can_write(self, uuid: int | str) -> bool:
        char = self._chars.get(normalize_uuid(uuid))
        props = char.properties if char is not None else []
        return "write" in props or "write-without-response" in props

    def can_read(self, uuid: int | str) -> bool:
        char = self._chars.get(normalize_uuid(uuid))
        return char is not None and "read" in char.properties

    def _char(self, uuid: int | str) -> BleakGATTCharacteristic:
        try:
            return self._chars[normalize_uuid(uuid)]
        except KeyError:
            raise BleNotFoundError(f"characteristic {normalize_uuid(uuid)[:8]} not present") from None

    async def _run(self, operation: str, call: Awaitable[T], timeout: float | None) -> T:
        limit = self._timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                return await call
        except TimeoutError:
            _cancel_if_cancelling()
            raise BleTimeoutError(operation, limit) from None
        except BleError:
            raise
        except (BleakError, EOFError, ConnectionError, OSError) as exc:
            _cancel_if_cancelling()
            if self._down.is_set() or not self._client.is_connected:
                raise BleConnectionError(f"{operation}: link lost") from exc
            raise BleError(f"{operation} failed: {type(exc).__name__}") from exc
        except Exception as exc:  # the backend's own errors (e.g. an ATT error response from the device)
            _cancel_if_cancelling()
            if self._down.is_set() or not self._client.is_connected:
                raise BleConnectionError(f"{operation}: link lost") from exc
            raise BleError(f"{operation} failed: {type(exc).__name__}") from exc

    async def read(self, uuid: int | str, *, timeout: float | None = None) -> bytes:
        char = self._char(uuid)
        return bytes(await self._run("read", self._client.read_gatt_char(char), timeout))

    async def write(self, uuid: int | str, data: bytes, *, response: bool = True, timeout: float | None = None) -> None:
        char = self._char(uuid)
        await self._run("write", self._client.write_gatt_char(char, data, response=response), timeout)

    async def subscribe(self, uuid: int | str, handler: NotifyHandler, *, timeout: float | None = None) -> None:
        char = self._char(uuid)

        def deliver(_char: BleakGATTCharacteristic, data: bytearray) -> None:
            handler(bytes(data))

        await self._run("subscribe", self._client.start_notify(char, deliver), timeout)

    async def unsubscribe(self, uuid: int | str, *, timeout: float | None = None) -> None:
        await self._run("unsubscribe", self._client.stop_notify(self._char(uuid)), timeout)

    async def pair(self, *, timeout: float | None = None) -> None:
        try:
            await self._run("pair", self._client.pair(), timeout)
        except BleConnectionError:
            raise
        except BleError as exc:
            raise BlePairingError("pairing failed") from exc

    async def bonded_and_encrypted(self) -> bool:
        """Asked of the client backend: our Bumble backend knows the link's encryption and the bond store.
        BlueZ (bleak's Linux backend) exposes the bond as the device's `Paired` property (read through bleak's
        BlueZ manager) and encrypts links to bonded LE devices; bleak has no public call for link encryption."""
        backend: Any = getattr(self._client, "_backend", None)
        probe = getattr(backend, "bonded_and_encrypted", None)
        if callable(probe):
            return bool(await probe())
        path = getattr(backend, "_device_path", None)
        if isinstance(path, str):  # BlueZ (not testable on this machine: no BlueZ daemon here)
            try:
                from bleak.backends.bluezdbus.manager import get_global_bluez_manager

                manager = await get_global_bluez_manager()
                return bool(manager.is_paired(path))
            except Exception:  # no BlueZ after all: not proven bonded
                return False
        return False

    async def wait_disconnected(self, timeout: float | None = None) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self._down.wait()
        except TimeoutError:
            return False
        return True

    async def disconnect(self) -> None:
        self._down.set()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._timeout):
                await self._client.disconnect()
        _cancel_if_cancelling()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.disconnect()


def passive_scan_args(scan_filter: ScanFilter) -> dict[str, Any]:
    """bleak's arguments for a passive scan (no SCAN_REQ) of the adverts `scan_filter` wants.

    On BlueZ a passive scan is an AdvertisementMonitor (BlueZ >= 5.56 started with --experimental, kernel
    >= 5.10), which reports only adverts matching at least one "or pattern" (bleak: `BlueZScannerArgs`
    `or_patterns`; bleak raises without one). Our patterns: service data for each 16-bit UUID in
    `scan_filter.service_data`, the UUID little-endian at the start of the AD structure's data
    (Core Supplement Part A §1.11). Other backends take `scanning_mode` and ignore `bluez`.
    """
    if not scan_filter.service_data:
        raise BleError("a passive scan needs the service data UUIDs to listen for (BlueZ matches adverts on them)")
    patterns = [
        OrPattern(0, AdvertisementDataType.SERVICE_DATA_UUID16, uuid.to_bytes(2, "little"))
        for uuid in scan_filter.service_data
    ]
    return {"scanning_mode": "passive", "bluez": {"or_patterns": patterns}}


class BleakTransport:
    """Scanner and client factory; `backend_kwargs` go to both backends through bleak."""

    def __init__(
        self,
        *,
        scanner_backend: type[BaseBleakScanner] | None = None,
        client_backend: type[BaseBleakClient] | None = None,
        op_timeout: float = DEFAULT_TIMEOUT,
        stack_hint: str | None = None,
        **backend_kwargs: Any,
    ) -> None:
        self._stack_hint = stack_hint  # what to check when the stack cannot be reached (default: BlueZ's)
        self._scanner_backend = scanner_backend
        self._client_backend = client_backend
        self._op_timeout = op_timeout
        self._kwargs = backend_kwargs

    def _scanner(
        self, callback: Callable[[BLEDevice, AdvertisementData], None], passive: ScanFilter | None = None
    ) -> BleakScanner:
        kwargs: dict[str, Any] = dict(self._kwargs)
        if passive is not None:
            args = passive_scan_args(passive)
            kwargs["bluez"] = {**kwargs.get("bluez", {}), **args["bluez"]}
            kwargs["scanning_mode"] = args["scanning_mode"]
        return BleakScanner(callback, backend=self._scanner_backend, **kwargs)

    async def _start(
        self,
        on_advert: Callable[[BLEDevice, AdvertisementData], None],
        operation: str,
        passive: ScanFilter | None = None,
    ) -> BleakScanner:
        """Start a scanner; failing here means the stack is unreachable (see drivers.ble.stack), or, for a
        passive scan, that the stack cannot scan passively (BlueZ without --experimental): a plain BleError
        with bleak's reason, so the caller may listen actively instead."""
        try:
            scanner = self._scanner(on_advert, passive)
            await scanner.start()
        except asyncio.CancelledError:
            raise
        except BleError:
            raise
        except Exception as exc:
            _cancel_if_cancelling()
            if passive is not None:
                raise BleError(f"passive scan refused: {exc}") from exc
            raise stack_error(operation, exc, self._stack_hint) from exc
        return scanner

    async def adverts(self, scan_filter: ScanFilter = ANY_DEVICE, *, passive: bool = False) -> AsyncIterator[Advert]:
        queue: asyncio.Queue[Advert] = asyncio.Queue()

        def on_advert(device: BLEDevice, data: AdvertisementData) -> None:
            advert = _advert(device, data)
            if scan_filter.matches(advert):
                queue.put_nowait(advert)

        scanner = await self._start(on_advert, "passive scan" if passive else "scan", scan_filter if passive else None)
        try:
            while True:
                yield await queue.get()
        finally:
            with contextlib.suppress(Exception):
                await scanner.stop()

    async def scan(self, duration: float, scan_filter: ScanFilter = ANY_DEVICE) -> list[Advert]:
        seen: dict[str, Advert] = {}
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(duration):
                async for advert in self.adverts(scan_filter):
                    seen[advert.address.upper()] = advert
        return sorted(seen.values(), key=lambda a: (-a.rssi, a.address))

    async def _find(self, address: str, timeout: float) -> BLEDevice:
        found: asyncio.Future[BLEDevice] = asyncio.get_running_loop().create_future()
        wanted = address.upper()

        def on_advert(device: BLEDevice, _data: AdvertisementData) -> None:
            if device.address.upper() == wanted and not found.done():
                found.set_result(device)

        scanner = await self._start(on_advert, "the scan for the device")
        try:
            async with asyncio.timeout(timeout):
                return await found
        except TimeoutError:
            _cancel_if_cancelling()
            raise BleNotFoundError("device did not advertise in time") from None
        finally:
            with contextlib.suppress(Exception):
                await scanner.stop()

    async def connect(self, address: str, *, timeout: float = DEFAULT_TIMEOUT, pair: bool = False) -> BleakSession:
        device = await self._find(address, timeout)
        # Waiting for an advert may take long; once seen, the link itself gets the operation timeout.
        link_timeout = max(self._op_timeout, 1.0)
        holder: list[BleakSession] = []

        def on_disconnect(_client: BleakClient) -> None:
            if holder:
                holder[0]._mark_down()

        client = BleakClient(
            device,
            disconnected_callback=on_disconnect,
            timeout=link_timeout,
            backend=self._client_backend,
            **self._kwargs,
        )
        session = BleakSession(client, self._op_timeout)
        holder.append(session)
        try:
            async with asyncio.timeout(link_timeout):
                await client.connect()
        except TimeoutError:
            _cancel_if_cancelling()
            raise BleTimeoutError("connect", link_timeout) from None
        except BleakDeviceNotFoundError as exc:
            _cancel_if_cancelling()
            raise BleNotFoundError("device not reachable") from exc
        except Exception as exc:
            _cancel_if_cancelling()
            raise BleConnectionError(f"connect failed: {type(exc).__name__}") from exc
        session._index()
        if pair:
            try:
                await session.pair(timeout=max(timeout, link_timeout))
            except BaseException:
                await session.disconnect()
                raise
        log.debug("ble_connected", address=address)
        return session
