"""Which BLE transport this process uses: chosen once at start-up, shared by every BLE session.

One adapter serves every device, so the transport is process-wide. The daemon leaves the default (bleak
on BlueZ); tests and `vitalgate demo` install a `BleakTransport` over the Bumble backend instead.
"""

from __future__ import annotations

from drivers.ble.transport import BleTransport

__all__ = ["get_transport", "reset_transport", "use_transport"]

_transport: BleTransport | None = None


def use_transport(transport: BleTransport) -> None:
    global _transport
    _transport = transport


def reset_transport() -> None:
    global _transport
    _transport = None


def get_transport() -> BleTransport:
    """The installed transport, or bleak with its platform backend (BlueZ on Linux)."""
    global _transport
    if _transport is None:
        from drivers.ble.bleak_transport import BleakTransport

        _transport = BleakTransport()
    return _transport
