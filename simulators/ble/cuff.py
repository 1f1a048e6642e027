"""A blood-pressure cuff: Blood Pressure service 0x1810 with stored readings sent as indications (0x2A35).

Behaviour (store, indicate on subscription, linger, disconnect; raw `bytes` entries sent as they are)
is `IndicatingPeripheral`'s.
"""

from __future__ import annotations

import struct

from bumble import gatt

from simulators.ble import encoding
from simulators.ble.encoding import BpRecord
from simulators.ble.indicating import IndicatingPeripheral
from simulators.ble.peripheral import uuid16

__all__ = ["BloodPressureCuff"]

# Blood Pressure Feature 0x2A49: body movement, cuff fit, irregular pulse, pulse range, position, multi-bond
FEATURES = 0x003F


class BloodPressureCuff(IndicatingPeripheral[BpRecord]):
    kind = "ble-cuff"
    service_uuids = (0x1810,)
    measurement_uuid = 0x2A35
    feature_uuid = 0x2A49
    features = struct.pack("<H", FEATURES)
    defaults = {"name": "VG-Cuff", "address": "C1:00:00:00:00:01", "serial": "CUFF0001", "model": "SIM-BP"}

    def __init__(
        self, records: list[BpRecord | bytes] | None = None, *, date_time_char: bool = False, **kwargs: object
    ) -> None:
        super().__init__(records, **kwargs)  # type: ignore[arg-type]
        self.date_time_char = date_time_char  # a writable Date Time 0x2A08, as A&D cuffs use to set the clock
        self.date_time_writes: list[bytes] = []

    def encode(self, record: BpRecord) -> bytes:
        return encoding.encode_bp(record)

    def services(self) -> list[gatt.Service]:
        services = super().services()
        if self.date_time_char:
            props, perms = gatt.Characteristic.Properties, gatt.Characteristic.Permissions
            value = gatt.CharacteristicValue(write=lambda _c, v: self.date_time_writes.append(bytes(v)))
            clock = gatt.Characteristic(uuid16(0x2A08), props.WRITE, perms.WRITEABLE, value)
            services[0] = gatt.Service(uuid16(0x1810), [*services[0].characteristics, clock])
        return services
