"""A blood-pressure cuff: Blood Pressure service 0x1810 with stored readings sent as indications (0x2A35).

Behaviour (store, indicate on subscription, linger, disconnect; raw `bytes` entries sent as they are)
is `IndicatingPeripheral`'s.
"""

from __future__ import annotations

import struct

from simulators.ble import encoding
from simulators.ble.encoding import BpRecord
from simulators.ble.indicating import IndicatingPeripheral

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

    def encode(self, record: BpRecord) -> bytes:
        return encoding.encode_bp(record)
