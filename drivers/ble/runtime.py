"""Which BLE transport this process uses: chosen once at start-up, shared by every BLE session.

One adapter serves every device, so the transport is process-wide. By default that is bleak on its
platform backend (BlueZ on the Pi). Tests and `vitalgate demo` install a `BleakTransport` over our Bumble
backend with `use_transport`. Setting `VITALGATE_BLE_HCI` (a Bumble transport name such as
`tcp-client:127.0.0.1:7770`, `usb:0` or `serial:/dev/ttyACM0`) makes the default the Bumble backend over
that HCI instead, with bonds kept in `VITALGATE_BLE_KEYSTORE` (default `ble-bonds.json`; a relative name
resolves against the gateway's state folder set with `set_state_dir`, not the working directory).

The bond store holds LTKs and IRKs, so it is sealed at rest. Drivers do not handle the gateway's keys:
the gateway hands in a `BondSealer` (gateway.sealedfile.SealedFiles, keyed from the data key) with
`set_bond_sealer`; without one the Bumble backend keeps bonds in memory only (`vitalgate scan`).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from drivers.ble.transport import BleTransport

__all__ = [
    "HCI_ENV",
    "KEYSTORE_ENV",
    "BondSealer",
    "bond_store_in_use",
    "get_transport",
    "reset_transport",
    "set_bond_sealer",
    "set_passkey_provider",
    "use_transport",
]

HCI_ENV = "VITALGATE_BLE_HCI"
KEYSTORE_ENV = "VITALGATE_BLE_KEYSTORE"

PasskeyProvider = Callable[[], Awaitable[int | None]]


class BondSealer(Protocol):
    """Reads and writes the bond store sealed at rest (the gateway's gateway.sealedfile.SealedFiles)."""

    def read(self, path: Path) -> tuple[bytes, bool] | None:
        """(plaintext, was it sealed), None if there is no file; ValueError with a sentence if it does not open."""
        ...

    def write(self, path: Path, plaintext: bytes) -> None: ...

    def unreadable(self, path: Path, reason: str) -> None:
        """The store could not be used and was moved aside (the gateway raises an alarm)."""
        ...


_transport: BleTransport | None = None
_passkey: PasskeyProvider | None = None
_state_dir: Path | None = None
_sealer: BondSealer | None = None


def set_state_dir(path: Path) -> None:
    """The gateway's state folder (config `gateway.state_dir`): where a relative bond store lives."""
    global _state_dir
    _state_dir = path


def set_bond_sealer(sealer: BondSealer | None) -> None:
    """How the Bumble backend's bond store is sealed at rest (set by the gateway from its data key)."""
    global _sealer
    _sealer = sealer


def bond_store_in_use() -> bool:
    """True when this process's default transport keeps bonds in our bond store (the Bumble backend)."""
    return _transport is None and bool(os.environ.get(HCI_ENV))


def keystore_path() -> Path:
    """The Bumble backend's bond store: `VITALGATE_BLE_KEYSTORE`, relative names under the state folder."""
    path = Path(os.environ.get(KEYSTORE_ENV, "ble-bonds.json"))
    if path.is_absolute():
        return path
    return (_state_dir or Path.cwd()) / path


def use_transport(transport: BleTransport) -> None:
    global _transport
    _transport = transport


def reset_transport() -> None:
    global _transport
    _transport = None


def set_passkey_provider(provider: PasskeyProvider | None) -> None:
    """Where a passkey comes from when a device asks for one while pairing (the `pair` command)."""
    global _passkey
    _passkey = provider


async def _provide_passkey() -> int | None:
    return await _passkey() if _passkey is not None else None


def get_transport() -> BleTransport:
    """The installed transport, else one built from the environment (see the module docstring)."""
    global _transport
    if _transport is None:
        from drivers.ble.bleak_transport import BleakTransport

        hci = os.environ.get(HCI_ENV)
        if hci:
            # Imported by name: the Bumble backend is not strictly typed and is optional in production.
            backend: Any = importlib.import_module("simulators.ble.bleak_bumble")
            hub = backend.BumbleHub(
                hci_transport=hci,
                keystore_path=str(keystore_path()) if _sealer is not None else None,
                sealer=_sealer,
                passkey=_provide_passkey,
            )
            from drivers.ble.stack import hci_hint

            _transport = BleakTransport(
                scanner_backend=backend.BleakScannerBumble,
                client_backend=backend.BleakClientBumble,
                stack_hint=hci_hint(hci),
                hub=hub,
            )
        else:
            _transport = BleakTransport()
    return _transport
