"""A blood-pressure cuff: Blood Pressure service 0x1810 with stored readings sent as indications (0x2A35).

Behaviour (store, indicate on subscription, linger, disconnect; raw `bytes` entries sent as they are)
is `IndicatingPeripheral`'s.
"""

from __future__ import annotations

import struct
from datetime import datetime

from bumble import gatt
from bumble.device import Connection

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

    def _write_dt(self, _conn: Connection, value: bytes) -> None:
        """Date Time written: kept for the test, and the clock follows it (as the device's would)."""
        self.date_time_writes.append(bytes(value))
        year, month, day, hour, minute, second = struct.unpack("<HBBBBB", bytes(value)[:7])
        self.clock_skew = datetime(year, month, day, hour, minute, second) - datetime.now().replace(microsecond=0)

    def encode(self, record: BpRecord) -> bytes:
        return encoding.encode_bp(record)

    def services(self) -> list[gatt.Service]:
        services = super().services()
        if self.date_time_char:
            props, perms = gatt.Characteristic.Properties, gatt.Characteristic.Permissions
            value: gatt.CharacteristicValue[bytes] = gatt.CharacteristicValue(
                read=lambda _c: encoding.date_time(self.now()), write=self._write_dt
            )
            clock: gatt.Characteristic[bytes] = gatt.Characteristic(
                uuid16(0x2A08), props.READ | props.WRITE, perms.READABLE | perms.WRITEABLE, value
            )
            services[0] = gatt.Service(uuid16(0x1810), [*services[0].characteristics, clock])
        return services
