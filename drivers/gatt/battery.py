"""Battery Level (0x2A19; BAS 1.0 §3.1, GSS "Battery Level").

uint8 percent 0..100; 101-255 are reserved -> MalformedFrameError.
"""

from __future__ import annotations

from drivers.gatt._wire import Reader

__all__ = ["parse_battery_level"]


def parse_battery_level(data: bytes) -> int:
    r = Reader(data, "battery level")
    level = r.u8()
    r.end()
    if level > 100:
        raise r.malformed("battery level above 100 %")
    return level
