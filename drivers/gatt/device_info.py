"""Device Information Service (0x180A) -> `gateway.reading.DeviceIdentity`.

Strings (DIS 1.1 §3.2: Manufacturer Name 0x2A29, Model Number 0x2A24, Serial Number 0x2A25, Hardware
Revision 0x2A27, Firmware Revision 0x2A26, Software Revision 0x2A28) are UTF-8
without a terminator; some devices pad with NULs or spaces, which we strip. Invalid UTF-8 raises
`MalformedFrameError`; an empty string is "not given" (None).

System ID (0x2A23, DIS 1.1 / GSS "System ID"): 8 bytes, little-endian, Manufacturer Identifier
(uint40, first 5 bytes) then Organizationally Unique Identifier (uint24, last 3 bytes). Decision: we
present it as the IEEE EUI-64 the PHD IG uses for Device.identifier: OUI first, then the 40-bit identifier,
most significant byte first, i.e. the 8 bytes reversed, as 16 upper-case hex digits without separators
(DeviceIdentity.system_id). DIS 1.1 example: OUI 0x123456 + manufacturer id 0xFFFE9ABCDE ->
"123456FFFE9ABCDE" (wire: DE BC 9A FE FF 56 34 12). All-zero IDs are "not given" (None).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from drivers.errors import MalformedFrameError
from drivers.gatt import uuids
from gateway.reading import DeviceIdentity

__all__ = [
    "STRING_FIELDS",
    "DeviceInformation",
    "eui64_dashed",
    "parse_device_information",
    "parse_string",
    "parse_system_id",
    "to_identity",
]

SYSTEM_ID_SIZE = 8


def parse_string(data: bytes) -> str | None:
    """A DIS UTF-8 string; None when empty after stripping NUL padding and whitespace."""
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedFrameError("device information: string is not UTF-8", bytes(data)) from None
    text = text.strip("\x00").strip()
    if "\x00" in text:
        raise MalformedFrameError("device information: NUL inside string", bytes(data))
    return text or None


def parse_system_id(data: bytes) -> str | None:
    """8 wire bytes -> EUI-64 as 16 upper-case hex digits (OUI first); None for all zeros."""
    raw = bytes(data)
    if len(raw) != SYSTEM_ID_SIZE:
        raise MalformedFrameError(f"system id: {len(raw)} bytes, expected {SYSTEM_ID_SIZE}", raw)
    if not any(raw):
        return None
    return raw[::-1].hex().upper()


def eui64_dashed(system_id: str) -> str:
    """'123456FFFE9ABCDE' -> '12-34-56-FF-FE-9A-BC-DE' (IEEE hexadecimal representation)."""
    return "-".join(system_id[i : i + 2] for i in range(0, len(system_id), 2)).upper()


@dataclass(frozen=True, slots=True)
class DeviceInformation:
    manufacturer: str | None = None
    model: str | None = None
    serial_number: str | None = None
    hardware_revision: str | None = None
    firmware_revision: str | None = None
    software_revision: str | None = None
    system_id: str | None = None


#: Characteristic UUID -> DeviceInformation field, for the strings.
STRING_FIELDS: dict[str, str] = {
    uuids.MANUFACTURER_NAME: "manufacturer",
    uuids.MODEL_NUMBER: "model",
    uuids.SERIAL_NUMBER: "serial_number",
    uuids.HARDWARE_REVISION: "hardware_revision",
    uuids.FIRMWARE_REVISION: "firmware_revision",
    uuids.SOFTWARE_REVISION: "software_revision",
}


def parse_device_information(values: Mapping[str, bytes]) -> DeviceInformation:
    """Build from whatever DIS characteristics the device has, keyed by UUID (any spelling)."""
    fields: dict[str, str | None] = {}
    for uuid, data in values.items():
        full = uuids.normalize(uuid)
        if full == uuids.SYSTEM_ID:
            fields["system_id"] = parse_system_id(data)
        elif full in STRING_FIELDS:
            fields[STRING_FIELDS[full]] = parse_string(data)
    return DeviceInformation(**fields)


def to_identity(info: DeviceInformation, driver: str, address: str | None = None) -> DeviceIdentity:
    return DeviceIdentity(
        driver=driver,
        address=address,
        serial_number=info.serial_number,
        system_id=info.system_id,
        manufacturer=info.manufacturer,
        model=info.model,
        firmware=info.firmware_revision,
    )
