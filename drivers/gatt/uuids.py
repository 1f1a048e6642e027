"""The Bluetooth SIG 16-bit UUIDs VitalGate uses, as the full 128-bit strings bleak reports.

A 16-bit UUID is shorthand for 0000xxxx-0000-1000-8000-00805f9b34fb (Core Spec v5.4, Vol 3, Part B §2.5.1,
Bluetooth Base UUID). Numbers from the Bluetooth SIG Assigned Numbers document, §3.4 (services) and §3.8
(characteristics).
"""

from __future__ import annotations

import re

__all__ = [
    "BATTERY_LEVEL",
    "BATTERY_SERVICE",
    "BLOOD_PRESSURE_FEATURE",
    "BLOOD_PRESSURE_MEASUREMENT",
    "BLOOD_PRESSURE_SERVICE",
    "BODY_COMPOSITION_MEASUREMENT",
    "BODY_COMPOSITION_SERVICE",
    "CURRENT_TIME",
    "CURRENT_TIME_SERVICE",
    "DEVICE_INFORMATION_SERVICE",
    "FIRMWARE_REVISION",
    "GLUCOSE_FEATURE",
    "GLUCOSE_MEASUREMENT",
    "GLUCOSE_MEASUREMENT_CONTEXT",
    "GLUCOSE_SERVICE",
    "HARDWARE_REVISION",
    "HEALTH_SERVICES",
    "HEALTH_THERMOMETER_SERVICE",
    "INTERMEDIATE_TEMPERATURE",
    "MANUFACTURER_NAME",
    "MODEL_NUMBER",
    "NAMES",
    "PLX_CONTINUOUS_MEASUREMENT",
    "PLX_FEATURES",
    "PLX_SPOT_CHECK_MEASUREMENT",
    "PULSE_OXIMETER_SERVICE",
    "RECORD_ACCESS_CONTROL_POINT",
    "SERIAL_NUMBER",
    "SOFTWARE_REVISION",
    "SYSTEM_ID",
    "TEMPERATURE_MEASUREMENT",
    "TEMPERATURE_TYPE",
    "WEIGHT_MEASUREMENT",
    "WEIGHT_SCALE_FEATURE",
    "WEIGHT_SCALE_SERVICE",
    "name_of",
    "normalize",
    "short_uuid",
    "uuid16",
]

_BASE_SUFFIX = "-0000-1000-8000-00805f9b34fb"
_BASE_RE = re.compile(r"^0000([0-9a-f]{4})-0000-1000-8000-00805f9b34fb$")
_FULL_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def uuid16(short: int) -> str:
    """0x1810 -> '00001810-0000-1000-8000-00805f9b34fb' (lower case, as bleak reports UUIDs)."""
    if not 0 <= short <= 0xFFFF:
        raise ValueError("a 16-bit UUID is 0..0xFFFF")
    return f"0000{short:04x}{_BASE_SUFFIX}"


def normalize(uuid: str | int) -> str:
    """Any spelling ('1810', '0x1810', 0x1810, upper-case 128-bit) -> the lower-case 128-bit string."""
    if isinstance(uuid, int):
        return uuid16(uuid)
    text = uuid.strip().lower()
    if text.startswith("0x"):
        text = text[2:]
    if re.fullmatch(r"[0-9a-f]{4}", text):
        return uuid16(int(text, 16))
    if not _FULL_RE.match(text):
        raise ValueError("not a UUID")
    return text


def short_uuid(uuid: str) -> int | None:
    """The 16-bit number of a SIG UUID, or None for a vendor (non-base) UUID."""
    match = _BASE_RE.match(normalize(uuid))
    return int(match.group(1), 16) if match else None


# Services (Assigned Numbers §3.4)
BLOOD_PRESSURE_SERVICE = uuid16(0x1810)
WEIGHT_SCALE_SERVICE = uuid16(0x181D)
BODY_COMPOSITION_SERVICE = uuid16(0x181B)
GLUCOSE_SERVICE = uuid16(0x1808)
DEVICE_INFORMATION_SERVICE = uuid16(0x180A)
CURRENT_TIME_SERVICE = uuid16(0x1805)
BATTERY_SERVICE = uuid16(0x180F)
HEALTH_THERMOMETER_SERVICE = uuid16(0x1809)
PULSE_OXIMETER_SERVICE = uuid16(0x1822)

# Characteristics (Assigned Numbers §3.8)
BLOOD_PRESSURE_MEASUREMENT = uuid16(0x2A35)
BLOOD_PRESSURE_FEATURE = uuid16(0x2A49)
WEIGHT_MEASUREMENT = uuid16(0x2A9D)
WEIGHT_SCALE_FEATURE = uuid16(0x2A9E)
BODY_COMPOSITION_MEASUREMENT = uuid16(0x2A9C)
GLUCOSE_MEASUREMENT = uuid16(0x2A18)
GLUCOSE_MEASUREMENT_CONTEXT = uuid16(0x2A34)
GLUCOSE_FEATURE = uuid16(0x2A51)
RECORD_ACCESS_CONTROL_POINT = uuid16(0x2A52)
MANUFACTURER_NAME = uuid16(0x2A29)
MODEL_NUMBER = uuid16(0x2A24)
SERIAL_NUMBER = uuid16(0x2A25)
HARDWARE_REVISION = uuid16(0x2A27)
FIRMWARE_REVISION = uuid16(0x2A26)
SOFTWARE_REVISION = uuid16(0x2A28)
SYSTEM_ID = uuid16(0x2A23)
CURRENT_TIME = uuid16(0x2A2B)
BATTERY_LEVEL = uuid16(0x2A19)
TEMPERATURE_MEASUREMENT = uuid16(0x2A1C)
TEMPERATURE_TYPE = uuid16(0x2A1D)
INTERMEDIATE_TEMPERATURE = uuid16(0x2A1E)
PLX_SPOT_CHECK_MEASUREMENT = uuid16(0x2A5E)
PLX_CONTINUOUS_MEASUREMENT = uuid16(0x2A5F)
PLX_FEATURES = uuid16(0x2A60)

#: The measurement services a health device advertises; a scan filter for `vitalgate scan`.
HEALTH_SERVICES: frozenset[str] = frozenset(
    {
        BLOOD_PRESSURE_SERVICE,
        WEIGHT_SCALE_SERVICE,
        BODY_COMPOSITION_SERVICE,
        GLUCOSE_SERVICE,
        HEALTH_THERMOMETER_SERVICE,
        PULSE_OXIMETER_SERVICE,
    }
)

NAMES: dict[str, str] = {
    BLOOD_PRESSURE_SERVICE: "Blood Pressure",
    WEIGHT_SCALE_SERVICE: "Weight Scale",
    BODY_COMPOSITION_SERVICE: "Body Composition",
    GLUCOSE_SERVICE: "Glucose",
    DEVICE_INFORMATION_SERVICE: "Device Information",
    CURRENT_TIME_SERVICE: "Current Time",
    BATTERY_SERVICE: "Battery",
    BLOOD_PRESSURE_MEASUREMENT: "Blood Pressure Measurement",
    BLOOD_PRESSURE_FEATURE: "Blood Pressure Feature",
    WEIGHT_MEASUREMENT: "Weight Measurement",
    WEIGHT_SCALE_FEATURE: "Weight Scale Feature",
    BODY_COMPOSITION_MEASUREMENT: "Body Composition Measurement",
    GLUCOSE_MEASUREMENT: "Glucose Measurement",
    GLUCOSE_MEASUREMENT_CONTEXT: "Glucose Measurement Context",
    GLUCOSE_FEATURE: "Glucose Feature",
    RECORD_ACCESS_CONTROL_POINT: "Record Access Control Point",
    MANUFACTURER_NAME: "Manufacturer Name String",
    MODEL_NUMBER: "Model Number String",
    SERIAL_NUMBER: "Serial Number String",
    HARDWARE_REVISION: "Hardware Revision String",
    FIRMWARE_REVISION: "Firmware Revision String",
    SOFTWARE_REVISION: "Software Revision String",
    SYSTEM_ID: "System ID",
    CURRENT_TIME: "Current Time",
    BATTERY_LEVEL: "Battery Level",
    HEALTH_THERMOMETER_SERVICE: "Health Thermometer",
    PULSE_OXIMETER_SERVICE: "Pulse Oximeter",
    TEMPERATURE_MEASUREMENT: "Temperature Measurement",
    TEMPERATURE_TYPE: "Temperature Type",
    INTERMEDIATE_TEMPERATURE: "Intermediate Temperature",
    PLX_SPOT_CHECK_MEASUREMENT: "PLX Spot-Check Measurement",
    PLX_CONTINUOUS_MEASUREMENT: "PLX Continuous Measurement",
    PLX_FEATURES: "PLX Features",
}


def name_of(uuid: str | int) -> str:
    """A human name for logs and `vitalgate scan`; the UUID itself when unknown."""
    full = normalize(uuid)
    return NAMES.get(full, full)
