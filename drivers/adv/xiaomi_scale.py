"""Xiaomi Mi Scale 2 and Mi Body Composition Scale 2: weigh-ins in BLE advertisement service data.

Facts from the published decoders (openScale's Xiaomi handlers, the ble_monitor parser and its tests;
the code here is our own):

- Mi Scale 2 (XMTZC04HM; ble_monitor: "Mi Scale V1"): service data UUID 0x181D, 10 bytes:
  control uint8 (bit 0 pounds, bit 4 catty (jin), bit 5 stabilized, bit 7 weight removed) | weight uint16
  | year uint16 | month | day | hour | minute | second.
- Mi Body Composition Scale 2 (XMTZC05HM; "Mi Scale V2"): service data UUID 0x181B, 13 bytes:
  control0 uint8 (bit 0 pounds) | control1 uint8 (bit 1 impedance present, bit 5 stabilized, bit 6 catty,
  bit 7 weight removed) | year uint16 | month | day | hour | minute | second | impedance uint16 (ohm)
  | weight uint16.
- Weight: raw / 200 in kg; raw / 100 in pounds or catty (1 jin = 0.5 kg, converted to kg here).
  A year before 2000 means the scale's clock was never set: no device time then.

Each weigh-in is advertised many times (about once a second while on the scale and for a while after):
`WeighInTracker` turns that stream into one reading per weigh-in, from stabilized frames only, and
`assign_user` picks the user slot from configured weight ranges (these scales do not know their users).
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from drivers.errors import MalformedFrameError
from gateway.reading import DeviceIdentity, Kind, Measurement, Metric, Reading, Unit

__all__ = [
    "MiScaleFrame",
    "UserRange",
    "WeighInTracker",
    "assign_user",
    "parse_mi_scale",
    "parse_v1",
    "parse_v2",
    "to_readings",
]

UNKNOWN_USER = 0xFF  # a weigh-in no configured range (or more than one) claims: kept unassigned
_V1 = struct.Struct("<BHHBBBBB")
_V2 = struct.Struct("<BBHBBBBBHH")


@dataclass(frozen=True, slots=True)
class MiScaleFrame:
    """One advertisement payload, decoded. `weight` is in `unit` (kg or lb; catty converted to kg)."""

    model: Literal["v1", "v2"]
    weight: float
    unit: Unit
    stabilized: bool
    removed: bool
    time: datetime | None
    impedance: float | None
    raw: bytes

    @property
    def weight_kg(self) -> float:
        return self.weight * 0.45359237 if self.unit is Unit.LB else self.weight

    @property
    def weigh_in(self) -> tuple[float, Unit]:
        """What stays the same across the repeated adverts of one weigh-in."""
        return (self.weight, self.unit)


def _time(year: int, month: int, day: int, hour: int, minute: int, second: int) -> datetime | None:
    if year < 2000:
        return None
    try:
        return datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None


def _weight(raw: int, pounds: bool, catty: bool) -> tuple[float, Unit]:
    if pounds:
        return raw / 100, Unit.LB
    if catty:
        return raw / 200, Unit.KG  # raw / 100 jin, and a jin is half a kilogram
    return raw / 200, Unit.KG


def parse_v1(payload: bytes) -> MiScaleFrame:
    """Mi Scale 2 service data (UUID 0x181D)."""
    if len(payload) != _V1.size:
        raise MalformedFrameError(f"mi scale: expected {_V1.size} bytes, got {len(payload)}", bytes(payload))
    ctrl, weight_raw, year, month, day, hour, minute, second = _V1.unpack(payload)
    weight, unit = _weight(weight_raw, bool(ctrl & 0x01), bool(ctrl & 0x10))
    time = _time(year, month, day, hour, minute, second)
    return MiScaleFrame("v1", weight, unit, bool(ctrl & 0x20), bool(ctrl & 0x80), time, None, bytes(payload))


def parse_v2(payload: bytes) -> MiScaleFrame:
    """Mi Body Composition Scale 2 service data (UUID 0x181B)."""
    if len(payload) != _V2.size:
        raise MalformedFrameError(f"mi body scale: expected {_V2.size} bytes, got {len(payload)}", bytes(payload))
    ctrl0, ctrl1, year, month, day, hour, minute, second, impedance, weight_raw = _V2.unpack(payload)
    weight, unit = _weight(weight_raw, bool(ctrl0 & 0x01), bool(ctrl1 & 0x40))
    has_impedance = bool(ctrl1 & 0x02) and 0 < impedance < 3000  # 0 / 0xFFFF: not measured
    return MiScaleFrame(
        "v2",
        weight,
        unit,
        bool(ctrl1 & 0x20),
        bool(ctrl1 & 0x80),
        _time(year, month, day, hour, minute, second),
        float(impedance) if has_impedance else None,
        bytes(payload),
    )


SERVICE_V1 = "0000181d-0000-1000-8000-00805f9b34fb"
SERVICE_V2 = "0000181b-0000-1000-8000-00805f9b34fb"


def parse_mi_scale(service_data: dict[str, bytes]) -> MiScaleFrame | None:
    """The frame in an advert's service data, by its UUID; None when the advert carries neither."""
    if SERVICE_V2 in service_data:
        return parse_v2(service_data[SERVICE_V2])
    if SERVICE_V1 in service_data:
        return parse_v1(service_data[SERVICE_V1])
    return None


class WeighInTracker:
    """One weigh-in from many adverts (pure: the caller passes a monotonic `now`).

    Only stabilized frames count. A weigh-in is final when its impedance arrives (v2), when the scale says
    the weight was removed, when another weight is stabilized, or `settle` seconds after its last frame.
    A final weigh-in is remembered for `repeat` seconds so the scale's repeats of it are not read again.
    """

    def __init__(self, settle: float = 3.0, repeat: float = 60.0) -> None:
        self.settle = settle
        self.repeat = repeat
        self._pending: MiScaleFrame | None = None
        self._pending_at = 0.0
        self._done: deque[tuple[tuple[float, Unit], float]] = deque(maxlen=16)
        self.repeats = 0

    def _recent(self, key: tuple[float, Unit], now: float) -> bool:
        return any(k == key and now - at < self.repeat for k, at in self._done)

    def _final(self, now: float) -> list[MiScaleFrame]:
        if self._pending is None:
            return []
        frame, self._pending = self._pending, None
        self._done.append((frame.weigh_in, now))
        return [frame]

    def feed(self, frame: MiScaleFrame, now: float) -> list[MiScaleFrame]:
        """Weigh-ins that became final with this frame (zero, one, or two when a new one replaced one)."""
        out = self.flush(now)
        if not frame.stabilized:
            return out
        if self._recent(frame.weigh_in, now):
            self.repeats += 1
            return out
        if self._pending is not None and self._pending.weigh_in != frame.weigh_in:
            out += self._final(now)
        if self._pending is None:
            self._pending = frame
        elif frame.impedance is not None or self._pending.time is None:
            self._pending = replace(frame, time=frame.time or self._pending.time)
        self._pending_at = now
        if frame.impedance is not None or frame.removed:
            out += self._final(now)
        return out

    def flush(self, now: float, *, force: bool = False) -> list[MiScaleFrame]:
        """The pending weigh-in once it has been quiet for `settle` seconds (or at once with `force`)."""
        if self._pending is not None and (force or now - self._pending_at >= self.settle):
            return self._final(now)
        return []


@dataclass(frozen=True, slots=True)
class UserRange:
    slot: int
    min_kg: float
    max_kg: float


def assign_user(weight_kg: float, users: tuple[UserRange, ...]) -> int | None:
    """The slot whose range holds the weight; `UNKNOWN_USER` when none or several do; None without ranges."""
    if not users:
        return None
    hits = [u.slot for u in users if u.min_kg <= weight_kg <= u.max_kg]
    return hits[0] if len(hits) == 1 else UNKNOWN_USER


def to_readings(
    frame: MiScaleFrame,
    device: DeviceIdentity,
    received_at: datetime,
    user_slot: int | None,
    *,
    clock_offset: timedelta | None = None,
    simulated: bool = False,
) -> list[Reading]:
    """A BODY_WEIGHT reading, and a BODY_COMPOSITION reading with the impedance when the scale measured one."""

    def make(kind: Kind, measurement: Measurement) -> Reading:
        return Reading(
            kind=kind,
            measurements=(measurement,),
            device=device,
            received_at=received_at,
            device_time=frame.time,
            clock_offset=clock_offset if frame.time is not None else None,
            user_slot=user_slot,
            raw=frame.raw,
            simulated=simulated,
        )

    out = [make(Kind.BODY_WEIGHT, Measurement(Metric.BODY_WEIGHT, frame.weight, frame.unit))]
    if frame.impedance is not None:
        out.append(make(Kind.BODY_COMPOSITION, Measurement(Metric.IMPEDANCE, frame.impedance, Unit.OHM)))
    return out
