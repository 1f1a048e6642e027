"""A multi-user weight scale: Weight Scale service 0x181D, measurements 0x2A9D sent as indications.

Behaves like the cuff (`IndicatingPeripheral`): stored measurements go out once a gateway subscribes,
then the scale disconnects.
"""

from __future__ import annotations

import struct

from simulators.ble import encoding
from simulators.ble.encoding import WeightRecord
from simulators.ble.indicating import IndicatingPeripheral

__all__ = ["WeightScale"]

# Weight Scale Feature 0x2A9E: time stamp, multiple users, BMI; resolutions 0.005 kg and 1 mm (GSS §3.253)
FEATURES = 0x00000007 | (4 << 3) | (3 << 7)


class WeightScale(IndicatingPeripheral[WeightRecord]):
    kind = "ble-scale"
    service_uuids = (0x181D,)
    measurement_uuid = 0x2A9D
    feature_uuid = 0x2A9E
    features = struct.pack("<I", FEATURES)
    defaults = {
        "name": "VG-Scale",
        "address": "C2:00:00:00:00:02",
        "serial": "SCALE002",
        "model": "SIM-WS",
        "system_id": (0x0000_0002, 0x00_1B_DC),
    }

    def encode(self, record: WeightRecord) -> bytes:
        return encoding.encode_weight(record)
