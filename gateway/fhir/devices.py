"""Device resources: the measuring device (PHD) and the gateway itself (PHG), as transaction entries.

Shaped after the PHD IG's PhdDevice / PhgDevice: System ID as an IEEE EUI-64 identifier (SYSID), the
Bluetooth address as an EUI-48 (BTMAC), firmware / software as typed versions, MDC device types. We do
not claim those profiles (they need data a plain BLE device may lack, e.g. a System ID), so no
meta.profile. Every Device also gets a VitalGate identifier (urn:uuid derived from the device key), so
conditional create always has something to match; the EUI-64 wins when the device has one, because
another PHG uploading the same device would use that.
Both builders are cached: a gateway sees few devices, and the entries are constant per device.
"""

from __future__ import annotations

import re
import uuid
from functools import lru_cache
from typing import Any

from gateway.fhir import codes as c
from gateway.fhir.errors import MappingError
from gateway.fhir.model import GatewayInfo
from gateway.reading import DeviceIdentity

__all__ = ["clean_text", "phd_device_entry", "phg_device_entry"]

_SYSTEM_ID = re.compile(r"[0-9A-Fa-f]{16}")
_BT_ADDRESS = re.compile(r"[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5}")
_CONTROL = dict.fromkeys([*range(0x20), 0x7F])


def clean_text(value: str | None) -> str | None:
    """Device-reported strings go into FHIR `string`s, which must not hold control characters or be blank."""
    if value is None:
        return None
    cleaned = value.translate(_CONTROL).strip()
    return cleaned or None


def _urn(seed: str) -> str:
    return f"urn:uuid:{uuid.uuid5(c.NAMESPACE, seed)}"


def _entry(full_url: str, resource: dict[str, Any], match: dict[str, Any]) -> dict[str, Any]:
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {
            "method": "POST",
            "url": "Device",
            "ifNoneExist": f"identifier={match['system']}|{match['value']}",
        },
    }


@lru_cache(maxsize=1024)
def phd_device_entry(device: DeviceIdentity, htest: bool) -> dict[str, Any]:
    """The measuring device. `htest` labels a simulated device as test data, like its Observations."""
    try:
        key = device.key
    except ValueError:
        raise MappingError("device has neither System ID, serial number nor address") from None
    full_url = _urn(f"device|{key}")
    own = {"system": c.URI, "value": full_url}
    identifiers: list[dict[str, Any]] = []
    match: dict[str, Any] = own
    if device.system_id is not None:
        if not _SYSTEM_ID.fullmatch(device.system_id):
            raise MappingError("device System ID is not 16 hex digits")
        sysid = "-".join(device.system_id[i : i + 2] for i in range(0, 16, 2)).upper()
        match = {"type": c.SYSID_TYPE, "system": c.EUI64, "value": sysid}
        identifiers.append(match)
    if device.address is not None and _BT_ADDRESS.fullmatch(device.address):
        mac = device.address.replace(":", "-").upper()
        identifiers.append({"type": c.BTMAC_TYPE, "system": c.BT_MAC, "value": mac})
    serial = clean_text(device.serial_number)
    if serial is not None:
        identifiers.append({"type": c.SERIAL_TYPE, "value": serial})
    identifiers.append(own)

    resource: dict[str, Any] = {"resourceType": "Device"}
    if htest:
        resource["meta"] = {"security": [c.HTEST]}
    resource["identifier"] = identifiers
    for field, value in (
        ("manufacturer", device.manufacturer),
        ("serialNumber", device.serial_number),
        ("modelNumber", device.model),
    ):
        text = clean_text(value)
        if text is not None:
            resource[field] = text
    resource["type"] = c.PHD_DEVICE_TYPE
    firmware = clean_text(device.firmware)
    if firmware is not None:
        resource["version"] = [{"type": c.FIRMWARE_VERSION, "value": firmware}]
    return _entry(full_url, resource, match)


@lru_cache(maxsize=64)
def phg_device_entry(gateway: GatewayInfo) -> dict[str, Any]:
    """The gateway (PHG). It has no EUI-64 of its own; its identifier derives from the configured id."""
    gateway_id = clean_text(gateway.id)
    if gateway_id is None:
        raise MappingError("gateway id is empty")
    full_url = _urn(f"gateway|{gateway_id}")
    own = {"system": c.URI, "value": full_url}
    resource: dict[str, Any] = {"resourceType": "Device", "identifier": [own]}
    manufacturer = clean_text(gateway.manufacturer)
    if manufacturer is not None:
        resource["manufacturer"] = manufacturer
    names = [{"name": gateway_id, "type": "user-friendly-name"}]
    model = clean_text(gateway.model)
    if model is not None:
        resource["modelNumber"] = model
        names.append({"name": model, "type": "model-name"})
    resource["deviceName"] = names
    resource["type"] = c.PHG_DEVICE_TYPE
    version = clean_text(gateway.version)
    if version is not None:
        resource["version"] = [{"type": c.SOFTWARE_VERSION, "value": version}]
    return _entry(full_url, resource, own)
