"""What to tell an operator when the Bluetooth stack cannot be used at all.

Without BlueZ or D-Bus, bleak fails deep inside its D-Bus client (FileNotFoundError for the missing
system bus socket, BleakDBusError for AccessDenied or a BlueZ that is not running, no adapter); with
`VITALGATE_BLE_HCI` the Bumble transport fails to open (ConnectionRefusedError for a simulator that is
not running). Each is the host's setup, not the device: one sentence with what to check, no traceback.
"""

from __future__ import annotations

from drivers.ble.transport import BleStackError

__all__ = ["BLUEZ_HINT", "hci_hint", "stack_error"]

BLUEZ_HINT = (
    "is bluetooth.service running (systemctl status bluetooth)? is this user in group bluetooth? "
    "is D-Bus reachable (/run/dbus/system_bus_socket)? To use a Bumble HCI transport instead, "
    "set VITALGATE_BLE_HCI (e.g. tcp-client:127.0.0.1:7770 for `vitalgate simulate ble-cuff`)"
)


def hci_hint(hci: str) -> str:
    return (
        f"VITALGATE_BLE_HCI={hci} did not open: is the simulator (`vitalgate simulate ble-cuff`) or the "
        "HCI device running and reachable? Unset VITALGATE_BLE_HCI to use BlueZ"
    )


def stack_error(operation: str, exc: BaseException, hint: str | None) -> BleStackError:
    """The error raised when the scanner (the first thing to touch the stack) cannot start."""
    detail = type(exc).__name__
    return BleStackError(f"Bluetooth is not available: {operation} failed to start ({detail})", hint or BLUEZ_HINT)
