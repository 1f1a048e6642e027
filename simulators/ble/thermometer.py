"""A Bluetooth thermometer: Health Thermometer service 0x1809, stored readings indicated on 0x2A1C.

Behaviour is `IndicatingPeripheral`'s (store, indicate on subscription, linger, disconnect). It also has
the static Temperature Type 0x2A1D (HTS 1.0 §3.2) when `fixed_site` is set, and then leaves the type out
of each measurement, as a single-site thermometer does. The encoder below is this simulator's own,
written from GSS "Temperature Measurement" and IEEE 11073-20601 §F.8 (FLOAT), not the gateway's parser.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime

from bumble import gatt

from simulators.ble import encoding
from simulators.ble.indicating import IndicatingPeripheral
from simulators.ble.peripheral import uuid16

__all__ = ["TemperatureRecord", "Thermometer", "encode_temperature", "ieee_float"]


def ieee_float(value: float, exponent: int = -2) -> bytes:
    """IEEE 11073 32-bit FLOAT: 8-bit signed exponent (top byte), 24-bit signed mantissa, little-endian."""
    mantissa = round(value * 10**-exponent)
    if not -(2**23) + 3 <= mantissa <= 2**23 - 3:
        raise ValueError("mantissa out of range")
    return struct.pack("<I", ((exponent & 0xFF) << 24) | (mantissa & 0xFFFFFF))


@dataclass(frozen=True)
class TemperatureRecord:
    value: float  # in Celsius, or Fahrenheit when `fahrenheit`
    time: datetime | None = None
    site: int | None = None  # Temperature Type (1 armpit ... 9 tympanum), in the measurement
    fahrenheit: bool = False


def encode_temperature(r: TemperatureRecord) -> bytes:
    flags = (0x01 if r.fahrenheit else 0) | (0x02 if r.time else 0) | (0x04 if r.site is not None else 0)
    out = bytes([flags]) + ieee_float(r.value, -2)
    if r.time:
        out += encoding.date_time(r.time)
    if r.site is not None:
        out += bytes([r.site])
    return out


class Thermometer(IndicatingPeripheral[TemperatureRecord]):
    kind = "ble-thermometer"
    service_uuids = (0x1809,)
    measurement_uuid = 0x2A1C
    feature_uuid = 0x2A21  # Measurement Interval (HTS 1.0 §3.4): 0 = no periodic measurements
    features = struct.pack("<H", 0)
    defaults = {
        "name": "VG-Thermo",
        "address": "C4:00:00:00:00:04",
        "serial": "THERM004",
        "model": "SIM-HT",
        "system_id": (0x0000_0004, 0x00_1B_DC),
    }

    def __init__(
        self, records: list[TemperatureRecord | bytes] | None = None, *, fixed_site: int | None = None, **kwargs: object
    ) -> None:
        super().__init__(records, **kwargs)  # type: ignore[arg-type]
        self.fixed_site = fixed_site

    def encode(self, record: TemperatureRecord) -> bytes:
        return encode_temperature(record)

    def services(self) -> list[gatt.Service]:
        services = super().services()
        if self.fixed_site is not None:
            props = gatt.Characteristic.Properties
            site = gatt.Characteristic(uuid16(0x2A1D), props.READ, self._enc(), bytes([self.fixed_site]))
            services[0] = gatt.Service(uuid16(0x1809), [*services[0].characteristics, site])
        return services
