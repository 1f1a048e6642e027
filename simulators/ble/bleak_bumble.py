"""A bleak backend on Google's Bumble stack, so tests and demos run bleak against simulated peripherals.

Production uses bleak's BlueZ backend. Here the kernel has no Bluetooth, so `BleakScannerBumble` and
`BleakClientBumble` implement bleak's backend interfaces over one Bumble central `Device` (the `BumbleHub`,
the moral equivalent of one adapter). The hub reaches the peripherals either through an in-process
`bumble.link.LocalLink` (tests, demo) or through an HCI transport such as `tcp-client:127.0.0.1:PORT`
(a simulator started by `vitalgate simulate` in another process serves a controller on `tcp-server:`).

Use it through bleak's public API, exactly like BlueZ::

    hub = BumbleHub(link=link)
    BleakScanner(backend=BleakScannerBumble, hub=hub)
    BleakClient(device, backend=BleakClientBumble, hub=hub)

Bonding: keys go to the hub's key store (a file sealed with the gateway's data key when `keystore_path`
and `sealer` are set, so `vitalgate pair` and `vitalgate run` share them; in memory otherwise). Like
BlueZ, a connection to a bonded peer is encrypted right away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import structlog
from bleak.args import SizedBuffer
from bleak.assigned_numbers import CHARACTERISTIC_PROPERTIES, CharacteristicPropertyName
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakDeviceNotFoundError, BleakError
from bleak.uuids import normalize_uuid_str
from bumble import hci, pairing
from bumble.controller import Controller
from bumble.core import UUID, AdvertisingData
from bumble.device import Advertisement, Connection, Device, Peer
from bumble.host import Host
from bumble.keys import JsonKeyStore, KeyStore, MemoryKeyStore
from bumble.link import LocalLink
from bumble.transport import open_transport
from bumble.transport.common import AsyncPipeSink, Transport

__all__ = ["BleakClientBumble", "BleakScannerBumble", "BumbleHub", "PasskeyProvider", "bumble_uuid"]

PasskeyProvider = Callable[[], Awaitable[int | None]]
T = TypeVar("T")
_log = structlog.get_logger(__name__)

CENTRAL_ADDRESS = "F0:47:57:00:00:01"  # static random (two top bits set): the gateway's own address

_UUID_LISTS = (
    AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.INCOMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.COMPLETE_LIST_OF_32_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.INCOMPLETE_LIST_OF_32_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
)


def bumble_uuid(uuid: UUID) -> str:
    """Bumble UUID -> bleak's normalized 128-bit lower-case string."""
    return normalize_uuid_str(uuid.to_hex_str("-"))


class _Delegate(pairing.PairingDelegate):
    """Keyboard-only central: asks the hub's passkey provider when the peripheral displays a passkey."""

    def __init__(self, passkey: PasskeyProvider | None) -> None:
        super().__init__(io_capability=pairing.PairingDelegate.KEYBOARD_INPUT_ONLY)
        self._passkey = passkey

    async def get_number(self) -> int | None:
        if self._passkey is None:
            return None  # negative reply: pairing fails rather than guessing a passkey
        return await self._passkey()


class BumbleHub:
    """One Bumble central shared by every scanner and client of a process, like one BlueZ adapter."""

    def __init__(
        self,
        *,
        link: LocalLink | None = None,
        hci_transport: str | None = None,
        address: str = CENTRAL_ADDRESS,
        keystore_path: str | None = None,
        passkey: PasskeyProvider | None = None,
        sealer: Any = None,
    ) -> None:
        if (link is None) == (hci_transport is None):
            raise ValueError("give exactly one of link= or hci_transport=")
        if keystore_path is not None and sealer is None:
            raise ValueError("a bond store file is sealed at rest: give sealer= (gateway.sealedfile.SealedFiles)")
        self._sealer = sealer
        self._link = link
        self._hci_spec = hci_transport
        self._address = hci.Address(address, hci.Address.RANDOM_DEVICE_ADDRESS)
        self._keystore_path = keystore_path
        self.passkey = passkey
        self._device: Device | None = None
        self._transport: Transport | None = None
        self._lock = asyncio.Lock()
        self.connect_lock = asyncio.Lock()  # Bumble allows one pending LE connection at a time
        self._active = 0  # scanners that want scan responses (SCAN_REQ sent)
        self._passive = 0  # scanners that only listen (advertisement-only devices)
        self._scan_lock = asyncio.Lock()  # start/stop of the shared scan must not interleave
        # The scan type of every LE Set (Extended) Scan Parameters command the host sent its controller,
        # "active" or "passive": what the adapter was really told (tests check it, as a sniffer would).
        self.scan_parameters: list[str] = []

    async def device(self) -> Device:
        async with self._lock:
            if self._device is None:
                self._device = await self._open()
            return self._device

    async def _open(self) -> Device:
        if self._link is not None:
            controller = Controller("gateway", link=self._link, public_address=None)
            device = Device(address=self._address, host=Host(controller, _RecordingSink(controller, self)))
        else:
            assert self._hci_spec is not None
            self._transport = await open_transport(self._hci_spec)
            device = Device.with_hci("gateway", self._address, self._transport.source, self._transport.sink)
        device.keystore = self._make_keystore(device)
        device.pairing_config_factory = lambda _conn: pairing.PairingConfig(
            sc=True,
            mitm=True,
            bonding=True,
            delegate=_Delegate(self.passkey),
            identity_address_type=pairing.PairingConfig.AddressType.RANDOM,
        )
        await device.power_on()
        return device

    def _make_keystore(self, device: Device) -> KeyStore:
        if self._keystore_path is None:
            return MemoryKeyStore()
        return SafeJsonKeyStore(namespace=str(self._address), filename=self._keystore_path, sealer=self._sealer)

    async def start_scanning(self, *, active: bool = True) -> Device:
        """Join the shared scan. One adapter scans one way: actively while any scanner wants scan responses
        (a connect looking for its device, `vitalgate scan`), passively while only listeners remain."""
        device = await self.device()
        async with self._scan_lock:
            if active:
                self._active += 1
            else:
                self._passive += 1
            await self._rescan(device)
        return device

    async def stop_scanning(self, *, active: bool = True) -> None:
        async with self._scan_lock:
            if active:
                self._active -= 1
            else:
                self._passive -= 1
            if self._device is not None:
                await self._rescan(self._device)

    async def _rescan(self, device: Device) -> None:
        """Bring the controller's scan to what the scanners now need (under `_scan_lock`)."""
        wanted: bool | None = True if self._active else False if self._passive else None
        running: bool | None = (not device.scanning_is_passive) if device.is_scanning else None
        if wanted == running:
            return
        if device.is_scanning:
            await device.stop_scanning()
        if wanted is not None:
            await device.start_scanning(active=wanted, filter_duplicates=False)

    def _note_hci(self, packet: bytes) -> None:
        if packet[:1] != b"\x01":  # HCI command packets only
            return
        try:
            command = hci.HCI_Packet.from_bytes(packet)
        except Exception:  # not ours to judge: the controller answers it
            return
        if isinstance(command, hci.HCI_LE_Set_Scan_Parameters_Command):
            self.scan_parameters.append("active" if command.le_scan_type else "passive")
        elif isinstance(command, hci.HCI_LE_Set_Extended_Scan_Parameters_Command):
            self.scan_parameters.append("active" if any(command.scan_types) else "passive")

    async def is_bonded(self, address: hci.Address) -> bool:
        device = await self.device()
        return device.keystore is not None and await device.keystore.get(str(address)) is not None

    async def is_bonded_address(self, address: str) -> bool:
        return await self.is_bonded(_parse_address(address))

    async def close(self) -> None:
        async with self._lock:
            if self._device is not None:
                with contextlib.suppress(Exception):
                    await self._device.power_off()
                self._device = None
            if self._transport is not None:
                await self._transport.close()
                self._transport = None


def _hub(kwargs: dict[str, Any]) -> BumbleHub:
    hub = kwargs.get("hub")
    if not isinstance(hub, BumbleHub):
        raise BleakError("the Bumble backend needs hub=BumbleHub(...)")
    return hub


def _advertisement_data(adv: Advertisement) -> AdvertisementData:
    data = adv.data
    name = data.get(AdvertisingData.COMPLETE_LOCAL_NAME) or data.get(AdvertisingData.SHORTENED_LOCAL_NAME)
    services: list[str] = []
    for kind in _UUID_LISTS:
        for uuid in data.get_all(kind):
            items = uuid if isinstance(uuid, list) else [uuid]
            services.extend(bumble_uuid(u) for u in items if isinstance(u, UUID))
    manufacturer: dict[int, bytes] = {}
    for company, payload in data.get_all(AdvertisingData.MANUFACTURER_SPECIFIC_DATA):
        manufacturer[int(company)] = bytes(payload)
    service_data: dict[str, bytes] = {}
    for service, service_payload in data.get_all(AdvertisingData.SERVICE_DATA):
        service_data[bumble_uuid(service)] = bytes(service_payload)
    return AdvertisementData(
        local_name=name if isinstance(name, str) else None,
        manufacturer_data=manufacturer,
        service_data=service_data,
        service_uuids=list(dict.fromkeys(services)),
        tx_power=adv.tx_power if adv.tx_power != 127 else None,
        rssi=adv.rssi,
        platform_data=(adv,),
    )


class _RecordingSink(AsyncPipeSink):
    """The host-to-controller pipe, noting the scan parameters the host sets (like an HCI trace)."""

    def __init__(self, controller: Controller, hub: BumbleHub) -> None:
        super().__init__(controller)
        self._hub = hub

    def on_packet(self, packet: bytes) -> None:
        self._hub._note_hci(bytes(packet))
        super().on_packet(packet)


class BleakScannerBumble(BaseBleakScanner):
    """Scans on the hub's central; advertisement reports become bleak `AdvertisementData`.

    `scanning_mode="passive"` (bleak's argument) joins the hub's scan as a listener: no scan requests while
    no active scanner runs. bleak's `bluez=` arguments (or_patterns) arrive in `kwargs` and are not needed here.
    """

    def __init__(
        self,
        detection_callback: AdvertisementDataCallback | None,
        service_uuids: list[str] | None,
        scanning_mode: str = "active",
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._hub = _hub(kwargs)
        self._active = scanning_mode != "passive"
        self._device: Device | None = None

    def _on_advertisement(self, adv: Advertisement) -> None:
        data = _advertisement_data(adv)
        if not self.is_allowed_uuid(data.service_uuids):
            return
        address = adv.address
        device = self.create_or_update_device(str(address), _bleak_address(address), data.local_name, address, data)
        self.call_detection_callbacks(device, data)

    async def start(self) -> None:
        self.seen_devices = {}
        self._device = await self._hub.start_scanning(active=self._active)
        self._device.on(Device.EVENT_ADVERTISEMENT, self._on_advertisement)

    async def stop(self) -> None:
        if self._device is None:
            return
        self._device.remove_listener(Device.EVENT_ADVERTISEMENT, self._on_advertisement)
        self._device = None
        await self._hub.stop_scanning(active=self._active)


def _bleak_address(address: hci.Address) -> str:
    """bleak shows addresses without Bumble's type suffix ("/P")."""
    return address.to_string(with_type_qualifier=False)


def _properties(bits: int) -> list[CharacteristicPropertyName]:
    return [name for bit, name in CHARACTERISTIC_PROPERTIES.items() if bits & bit and bit <= 0x80]


class BleakClientBumble(BaseBleakClient):
    """A GATT client over one Bumble connection of the hub's central."""

    def __init__(self, address_or_ble_device: BLEDevice | str, **kwargs: Any) -> None:
        super().__init__(
            address_or_ble_device,
            disconnected_callback=kwargs.pop("disconnected_callback", None),
            timeout=kwargs.pop("timeout", 10.0),
        )
        self._hub = _hub(kwargs)
        if isinstance(address_or_ble_device, BLEDevice) and isinstance(address_or_ble_device.details, hci.Address):
            self._peer_address: hci.Address = address_or_ble_device.details
        else:
            self._peer_address = _parse_address(self.address)
        self._connection: Connection | None = None
        self._peer: Peer | None = None

    @property
    def name(self) -> str:
        return self.address

    @property
    def mtu_size(self) -> int:
        return self._connection.att_mtu if self._connection is not None else 23

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        device = await self._hub.device()
        async with self._hub.connect_lock:
            # For a bonded peer Bumble first scans for it (identity resolution) and, if it started that
            # scan itself, stops it afterwards, under our other scanners' feet. Keeping the hub's shared
            # scan running across the connect avoids both the hang and the stolen scan. Passively: the
            # device was already found, and an advertisement-only listener keeps its passive scan.
            await self._hub.start_scanning(active=False)
            try:
                # Bumble's own timeout cancels the attempt at the controller; an outer timeout or a task
                # cancelled while connecting must do the same (see `_connect_or_cancel`).
                connection = await _connect_or_cancel(device, self._peer_address, self._timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise BleakDeviceNotFoundError(self.address, f"connect failed: {type(exc).__name__}") from exc
            finally:
                await self._hub.stop_scanning(active=False)
        self._connection = connection
        connection.on(Connection.EVENT_DISCONNECTION, self._on_disconnection)
        try:
            if pair:
                await connection.pair()
            elif await self._hub.is_bonded(connection.peer_address):
                await connection.encrypt()  # what BlueZ does for a bonded device
            self._peer = Peer(connection)
            self.services = await _att(self._discover())
        except BaseException:
            with contextlib.suppress(Exception):
                await self.disconnect()
            raise

    def _on_disconnection(self, _reason: int) -> None:
        was_connected = self._connection is not None
        self._connection = None
        self._peer = None
        if was_connected and self._disconnected_callback is not None:
            self._disconnected_callback()

    async def _discover(self) -> BleakGATTServiceCollection:
        assert self._peer is not None
        collection = BleakGATTServiceCollection()
        for service in await self._peer.discover_services():
            b_service = BleakGATTService(service, service.handle, bumble_uuid(service.uuid))
            collection.add_service(b_service)
            for char in await service.discover_characteristics():
                b_char = BleakGATTCharacteristic(
                    char,
                    char.handle,
                    bumble_uuid(char.uuid),
                    _properties(int(char.properties)),
                    lambda: self.mtu_size - 3,
                    b_service,
                )
                collection.add_characteristic(b_char)
                for desc in await char.discover_descriptors():
                    b_desc = BleakGATTDescriptor(desc, desc.handle, bumble_uuid(desc.type), b_char)
                    collection.add_descriptor(b_desc)
        return collection

    async def disconnect(self) -> None:
        connection = self._connection
        if connection is None:
            return
        self._connection = None  # a requested disconnect is not reported to the callback
        self._peer = None
        with contextlib.suppress(Exception):
            await connection.disconnect()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        if self._connection is None:
            raise BleakError("Not connected")
        await self._connection.pair()

    async def bonded_and_encrypted(self) -> bool:
        """The gateway's device-authentication check (drivers.ble.common.BleDriver.run)."""
        conn = self._connection
        return conn is not None and bool(conn.is_encrypted) and await self._hub.is_bonded(conn.peer_address)

    async def unpair(self) -> None:
        device = await self._hub.device()
        if device.keystore is not None:
            with contextlib.suppress(KeyError):
                await device.keystore.delete(str(self._peer_address))

    def _require_peer(self) -> Peer:
        if self._peer is None:
            raise BleakError("Not connected")
        return self._peer

    async def read_gatt_char(
        self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        return bytearray(await _att(self._require_peer().read_value(characteristic.obj)))

    async def read_gatt_descriptor(
        self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False, **kwargs: Any
    ) -> bytearray:
        return bytearray(await _att(self._require_peer().read_value(descriptor.obj)))

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data: SizedBuffer, response: bool) -> None:
        await _att(self._require_peer().write_value(characteristic.obj, bytes(data), with_response=response))

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: SizedBuffer) -> None:
        await _att(self._require_peer().write_value(descriptor.obj, bytes(data), with_response=True))

    async def start_notify(
        self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback, **kwargs: Any
    ) -> None:
        def deliver(value: bytes) -> None:
            callback(bytearray(value))

        characteristic.obj.vg_subscriber = deliver  # kept so stop_notify removes the same one
        await _att(self._require_peer().subscribe(characteristic.obj, deliver, prefer_notify=True))

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        subscriber = getattr(characteristic.obj, "vg_subscriber", None)
        await _att(self._require_peer().unsubscribe(characteristic.obj, subscriber))


# How long a cancelled caller still waits for the ATT transaction or connection attempt it started to end.
_SETTLE_SECONDS = 2.0


async def _att(operation: Awaitable[T]) -> T:
    """Run one ATT request; if the caller is cancelled, let the request finish before giving up.

    ATT allows one request at a time per bearer. Cancelling Bumble's wait clears its pending request while
    the peer's response is still coming: Bumble then logs `!!! unexpected response, there is no pending
    request`, and a request sent next could meet the old response. Finishing the transaction (bounded by
    the link's own 30 s ATT timeout and our settle time) keeps the bearer in step.
    """
    task = asyncio.ensure_future(operation)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(task), _SETTLE_SECONDS)
        if not task.done():
            task.cancel()
        raise


async def _connect_or_cancel(device: Device, address: hci.Address, seconds: float) -> Connection:
    """`device.connect`, and when the caller is cancelled, cancel the attempt at the controller too.

    Cancelling `device.connect` from outside skips Bumble's own clean-up (it sends LE Create Connection
    Cancel only on its own timeout), so the controller went on connecting; the late LE Connection Complete
    then met no pending connection (`Exception in callback Host.on_packet(...)`), leaving a connection
    nobody owned. So: cancel it ourselves, wait for the attempt to end, and drop a link made in the race.
    """
    attempt = asyncio.ensure_future(device.connect(address, timeout=seconds))
    try:
        return await asyncio.shield(attempt)
    except asyncio.CancelledError:
        if not attempt.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(device.send_command(hci.HCI_LE_Create_Connection_Cancel_Command()))
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(attempt), _SETTLE_SECONDS)
        if attempt.done() and not attempt.cancelled() and attempt.exception() is None:
            with contextlib.suppress(Exception):
                await asyncio.shield(attempt.result().disconnect())
        elif not attempt.done():
            attempt.cancel()
        raise


def _parse_address(text: str) -> hci.Address:
    """ "AA:BB:..." is taken as random (what health devices use); "AA:BB:.../P" as public."""
    if text.endswith("/P"):
        return hci.Address(text[:-2], hci.Address.PUBLIC_DEVICE_ADDRESS)
    return hci.Address(text, hci.Address.RANDOM_DEVICE_ADDRESS)


class SafeJsonKeyStore(JsonKeyStore):
    """Bumble's JSON bond store, sealed at rest: the LTKs, IRKs and CSRKs in it are secrets. Read and written
    through the gateway's sealer (gateway.sealedfile: AES-256-GCM under a key derived from the data key,
    `gateway.safefiles` underneath, so a symlink at its name is refused and no fixed `<name>.tmp` is used).

    One that does not open (tampered, truncated, or sealed with a key no longer in the key file) is moved
    aside to `<name>.unreadable`, kept for investigation, and the gateway goes on with no bonds: the devices
    must be paired again. So does a plaintext store (an earlier release's, or a planted one): it is kept
    aside sealed and its plaintext is overwritten.
    """

    def __init__(self, namespace: str, filename: str, sealer: Any) -> None:
        super().__init__(namespace, filename)
        self.filename = Path(os.path.abspath(filename))  # Bumble resolves links here: keep the name itself
        self.directory_name = self.filename.parent
        self.sealer = sealer
        self.problem: str | None = None  # the last reason the store could not be opened, for tests and logs

    async def load(self) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, dict[str, Any]]]:
        path = Path(self.filename)
        db = self._read(path)
        if self.namespace in db:
            return (db, db[self.namespace])
        if self.namespace == self.DEFAULT_NAMESPACE and len(db) == 1:
            return (db, next(iter(db.values())))
        key_map: dict[str, dict[str, Any]] = {}
        db[self.namespace] = key_map
        return (db, key_map)

    def _read(self, path: Path) -> dict[str, dict[str, dict[str, Any]]]:
        try:
            found = self.sealer.read(path)
        except ValueError as exc:  # gateway.sealedfile.SealedFileError: does not open
            return self._unreadable(path, str(exc))
        if found is None:
            return {}
        data, sealed = found
        try:
            db = json.loads(data)
        except ValueError:
            db = None
        if not isinstance(db, dict) or not all(isinstance(v, dict) for v in db.values()):
            what = "its contents are not a bond list" if sealed else "neither sealed nor a plaintext bond list"
            return self._unreadable(path, f"{path}: {what}")
        if not sealed:
            # An earlier release's store, or one planted by someone who could write to the card (an LTK of
            # their choosing would let their device pass for the patient's bonded one): the two look the same,
            # so a plaintext store is never trusted. Kept sealed aside for investigation, its plaintext
            # overwritten (gateway.sealedfile zeroes it), and the devices are paired again.
            aside = path.with_name(path.name + ".unreadable")
            self.sealer.write(aside, data)
            self.sealer.write(path, b"{}")
            reason = f"{path}: not sealed (an earlier release's store, or one put there by someone else)"
            return self._unreadable(path, reason, move=False)
        return db

    def _unreadable(self, path: Path, reason: str, *, move: bool = True) -> dict[str, dict[str, dict[str, Any]]]:
        aside = path.with_name(path.name + ".unreadable")
        if move:
            with contextlib.suppress(OSError):
                os.replace(path, aside)  # same checked folder; kept for investigation, never read again
        self.problem = reason
        self.sealer.unreadable(path, reason)
        _log.error(
            "ble_bond_store_unreadable",
            reason=reason,
            moved_to=str(aside),
            action="bonded BLE devices give no readings until paired again: re-pair the device "
            "(vitalgate pair ADDRESS, or the console's Pair button)",
        )
        return {}

    async def save(self, db: dict[str, dict[str, dict[str, Any]]]) -> None:
        self.sealer.write(Path(self.filename), json.dumps(db, sort_keys=True).encode())
