"""The binding model: which patient a device's readings belong to, and the names a device may be bound by.

Kept apart from the queue that stores bindings (gateway.queue) because the CLI and the console match and
normalize device names too, without a queue open; gateway.queue re-exports these names.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.reading import DeviceIdentity, Reading

__all__ = ["Binding", "device_selectors", "identity_selectors", "normalize_selector"]


@dataclass(frozen=True, slots=True)
class Binding:
    """Operator's statement: readings of this device (and user slot) belong to this patient.

    `device` matches any of a reading's identifiers (System ID, serial number, address or `DeviceIdentity.key`).
    """

    device: str
    user_slot: int | None
    patient: str

    def matches(self, reading: Reading) -> bool:
        if self.user_slot != reading.user_slot:
            return False
        return self.device in device_selectors(reading)


def device_selectors(reading: Reading) -> set[str]:
    return identity_selectors(reading.device)


def identity_selectors(d: DeviceIdentity) -> set[str]:
    """Every name an operator may bind this device by (see `Binding`); `vitalgate devices` uses it too."""
    names = {d.key}
    if d.address:
        names |= {d.address.upper(), f"addr:{d.address.upper()}"}
    if d.serial_number:
        names |= {d.serial_number, f"serial:{d.manufacturer or d.driver}:{d.serial_number}"}
    if d.system_id:
        names |= {d.system_id.lower(), f"eui64:{d.system_id.lower()}"}
    return names


def normalize_selector(device: str) -> str:
    """Addresses compare upper-case, System IDs lower-case (bare or `addr:` / `eui64:`); others as typed."""
    s = device.strip()
    for prefix, normalize in (("addr:", str.upper), ("eui64:", str.lower)):
        if s.lower().startswith(prefix):
            return prefix + normalize(s[len(prefix) :].strip())
    if len(s) == 17 and s.count(":") == 5:
        return s.upper()
    if len(s) == 16 and all(c in "0123456789abcdefABCDEF" for c in s):
        return s.lower()
    return s
