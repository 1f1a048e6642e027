"""Device resources: the measuring device (PHD IG PhdDevice) and the gateway itself (PhgDevice).

Identity: the System ID as an EUI-64 (SYSID), the Bluetooth address as an EUI-48 (BTMAC), the serial
number (v2-0203 SNO), and always a VitalGate identifier (urn:uuid derived from the device key, the same
value since the first release) so conditional create has something stable to match for any device. The
EUI-64 is matched when the device has one, because another PHG uploading the same device would use that.
These identifiers never equal a Bundle `fullUrl`: fullUrls are fresh random placeholders per Bundle
(see `mapping`), so a server that rewrites placeholder strings cannot touch an identifier.

PhdDevice is claimed in meta.profile only when its required elements are known (manufacturer, model
number, a firmware version); a plain BLE device without Device Information still gets the same shape
minus those, and no claim. Resources and requests are cached per device: a gateway sees few devices.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from gateway.fhir import codes as c
from gateway.fhir.errors import MappingError
from gateway.fhir.model import GatewayInfo
from gateway.reading import DeviceIdentity, Kind

__all__ = ["DeviceParts", "clean_text", "condition", "phd_device", "phg_device"]

_SYSTEM_ID = re.compile(r"[0-9A-Fa-f]{16}")
_BT_ADDRESS = re.compile(r"[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5}")
_CONTROL = dict.fromkeys([*range(0x20), 0x7F])
# FHIR search escapes (R4 search.html#escaping) for a token value, then URL-encoding for the query.
_SEARCH_ESCAPE = str.maketrans({"\\": "\\\\", ",": "\\,", "$": "\\$", "|": "\\|"})
_NEEDS_WORK = re.compile(r"[^A-Za-z0-9\-._~:/]")  # anything else is escaped and/or percent-encoded


def clean_text(value: str | None) -> str | None:
    """Device-reported strings go into FHIR `string`s, which must not hold control characters or be blank."""
    if value is None:
        return None
    cleaned = value.translate(_CONTROL).strip()
    return cleaned or None


def _token(text: str) -> str:
    """One system or value of a token search: FHIR-escaped, then percent-encoded (the common case: as is)."""
    if _NEEDS_WORK.search(text) is None:
        return text
    return quote(text.translate(_SEARCH_ESCAPE), safe=":/")


def condition(identifiers: list[dict[str, Any]]) -> str:
    """`ifNoneExist` matching any of `identifiers` (a comma is OR in FHIR search), each escaped and encoded."""
    return "identifier=" + ",".join(f"{_token(i['system'])}|{_token(i['value'])}" for i in identifiers)


def _urn(seed: str) -> str:
    return f"urn:uuid:{uuid.uuid5(c.NAMESPACE, seed)}"


@dataclass(frozen=True, slots=True)
class DeviceParts:
    """A Device's cached resource and request; `id_part` is its part of the PHD Observation identifier."""

    resource: dict[str, Any]
    request: dict[str, Any]
    id_part: str = ""


def _request(match: dict[str, Any]) -> dict[str, Any]:
    return {"method": "POST", "url": "Device", "ifNoneExist": condition([match])}


@lru_cache(maxsize=1024)
def phd_device(device: DeviceIdentity, kind: Kind, htest: bool) -> DeviceParts:
    """The measuring device. `htest` labels a simulated device as test data, like its Observations."""
    try:
        key = device.key
    except ValueError:
        raise MappingError("device has neither System ID, serial number nor address") from None
    own = {"system": c.URI, "value": _urn(f"device|{key}")}
    identifiers: list[dict[str, Any]] = []
    match: dict[str, Any] = own
    id_part = own["value"].removeprefix("urn:uuid:").replace("-", "").upper()
    if device.system_id is not None:
        if not _SYSTEM_ID.fullmatch(device.system_id):
            raise MappingError("device System ID is not 16 hex digits")
        hexid = device.system_id.upper()
        sysid = "-".join(hexid[i : i + 2] for i in range(0, 16, 2))
        match = {"type": c.SYSID_TYPE, "system": c.EUI64, "value": sysid}
        identifiers.append(match)
        id_part = hexid
    if device.address is not None and _BT_ADDRESS.fullmatch(device.address):
        mac = device.address.replace(":", "-").upper()
        identifiers.append({"type": c.BTMAC_TYPE, "system": c.BT_MAC, "value": mac})
        if device.system_id is None:
            id_part = mac.replace("-", "")
    serial = clean_text(device.serial_number)
    if serial is not None:
        identifiers.append({"type": c.SERIAL_TYPE, "value": serial})
    identifiers.append(own)

    manufacturer = clean_text(device.manufacturer)
    model = clean_text(device.model)
    firmware = clean_text(device.firmware)
    resource: dict[str, Any] = {"resourceType": "Device"}
    meta: dict[str, Any] = {}
    if manufacturer is not None and model is not None and firmware is not None:
        meta["profile"] = [c.PHD_DEVICE]
    if htest:
        meta["security"] = [c.HTEST]
    if meta:
        resource["meta"] = meta
    resource["identifier"] = identifiers
    for field, value in (("manufacturer", manufacturer), ("serialNumber", serial), ("modelNumber", model)):
        if value is not None:
            resource[field] = value
    resource["type"] = c.PHD_DEVICE_TYPE
    specialization = c.SPECIALIZATIONS.get(kind)
    if specialization is not None:
        resource["specialization"] = [specialization.element]
    if firmware is not None:
        resource["version"] = [{"type": c.FIRMWARE_VERSION, "value": firmware}]
    return DeviceParts(resource, _request(match), id_part)


def gateway_system_id(gateway_id: str) -> str:
    """A 64-bit System ID for the gateway, derived from its configured id (stable across restarts).

    The host's network MAC is not stable in containers and not ours to publish; this is a locally
    administered value (IEEE U/L bit set, I/G bit clear), so it can never collide with an assigned EUI-64.
    """
    raw = bytearray(hashlib.sha256(f"vitalgate-phg|{gateway_id}".encode()).digest()[:8])
    raw[0] = (raw[0] | 0x02) & 0xFE
    return "-".join(f"{b:02X}" for b in raw)


@lru_cache(maxsize=64)
def phg_device(gateway: GatewayInfo) -> DeviceParts:
    """The gateway (PhgDevice): System ID, the specializations it can receive, software version, clock sync."""
    gateway_id = clean_text(gateway.id)
    if gateway_id is None:
        raise MappingError("gateway id is empty")
    own = {"system": c.URI, "value": _urn(f"gateway|{gateway_id}")}
    sysid = {"type": c.SYSID_TYPE, "system": c.EUI64, "value": gateway_system_id(gateway_id)}
    resource: dict[str, Any] = {"resourceType": "Device", "meta": {"profile": [c.PHG_DEVICE]}}
    resource["identifier"] = [sysid, own]
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
    seen: dict[str, dict[str, Any]] = {}
    for spec in c.SPECIALIZATIONS.values():
        seen.setdefault(spec.code, spec.element)
    resource["specialization"] = list(seen.values())
    version = clean_text(gateway.version) or "unknown"
    resource["version"] = [{"type": c.SOFTWARE_VERSION, "value": version}]
    resource["property"] = [{"type": c.TIME_SYNC_CODE, "valueCode": [c.PHG_TIME_SYNC]}]
    return DeviceParts(resource, _request(own))
