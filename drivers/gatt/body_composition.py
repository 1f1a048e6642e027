"""Body Composition Service 1.0: Body Composition Measurement (0x2A9C, indicate).

BCS 1.0 §3.2 / GSS v8 §3.34: flags uint16 | body fat percentage uint16 (0.1 %, always present)
| time stamp (bit 1) | user id (2) | basal metabolism uint16 kJ (3) | muscle percentage 0.1 % (4)
| muscle mass (5) | fat free mass (6) | soft lean mass (7) | body water mass (8) | impedance 0.1 ohm (9)
| weight (10) | height (11); bit 0 SI/imperial (masses 0.005 kg / 0.01 lb, height 0.001 m / 0.1 in);
bit 12 "multiple packet measurement"; bits 13-15 reserved (ignored; trailing bytes still rejected).

Body fat 0xFFFF = measurement unsuccessful: `body_fat_percent` None, and the reading's body fat a measurement
without a number (`Absent.UNSUCCESSFUL`, sent as dataAbsentReason), as for a weight of 0xFFFF.

Multi-packet (BCS 1.0 §4.2.1): when a measurement does not fit in ATT_MTU-3 the server splits it into
two indications, each with bit 12 set and its own flags saying which fields it carries.
`BodyCompositionAssembler` joins such a pair into one measurement (fields of the second fill the gaps of
the first); a single packet with bit 12 clear is complete on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta

from drivers.errors import DeviceProtocolError
from drivers.gatt._common import user_slot
from drivers.gatt._wire import Reader
from drivers.gatt.errors import NoValueError
from drivers.gatt.weight_scale import height, mass
from gateway.reading import Absent, DeviceIdentity, Kind, Measurement, Metric, Reading, Unit

__all__ = [
    "BodyCompositionAssembler",
    "BodyCompositionMeasurement",
    "composition_reading",
    "parse_body_composition",
    "to_reading",
]

_IMPERIAL = 1 << 0
_TIME_STAMP = 1 << 1
_USER_ID = 1 << 2
_BASAL_METABOLISM = 1 << 3
_MUSCLE_PERCENTAGE = 1 << 4
_MUSCLE_MASS = 1 << 5
_FAT_FREE_MASS = 1 << 6
_SOFT_LEAN_MASS = 1 << 7
_BODY_WATER_MASS = 1 << 8
_IMPEDANCE = 1 << 9
_WEIGHT = 1 << 10
_HEIGHT = 1 << 11
_MULTIPLE_PACKET = 1 << 12


@dataclass(frozen=True, slots=True)
class BodyCompositionMeasurement:
    """One 0x2A9C value; masses in kg or lb and height in m or in per `imperial`."""

    imperial: bool
    body_fat_percent: float | None  # None: the scale reported "measurement unsuccessful" (0xFFFF)
    time_stamp: datetime | None = None
    user_id: int | None = None
    basal_metabolism_kj: int | None = None
    muscle_percent: float | None = None
    muscle_mass: float | None = None
    fat_free_mass: float | None = None
    soft_lean_mass: float | None = None
    body_water_mass: float | None = None
    impedance_ohm: float | None = None
    weight: float | None = None
    height: float | None = None
    multiple_packet: bool = False

    @property
    def weight_unit(self) -> Unit:
        return Unit.LB if self.imperial else Unit.KG

    @property
    def height_unit(self) -> Unit:
        return Unit.IN if self.imperial else Unit.M


def parse_body_composition(data: bytes) -> BodyCompositionMeasurement:
    r = Reader(data, "body composition measurement")
    flags = r.u16()
    imp = bool(flags & _IMPERIAL)
    fat_raw = r.u16()

    def opt_mass(bit: int) -> float | None:
        return mass(r.u16(), imp) if flags & bit else None

    time_stamp = r.date_time() if flags & _TIME_STAMP else None
    user_id = r.u8() if flags & _USER_ID else None
    basal = r.u16() if flags & _BASAL_METABOLISM else None
    muscle_pct = r.u16() / 10 if flags & _MUSCLE_PERCENTAGE else None
    muscle_mass = opt_mass(_MUSCLE_MASS)
    fat_free = opt_mass(_FAT_FREE_MASS)
    soft_lean = opt_mass(_SOFT_LEAN_MASS)
    water = opt_mass(_BODY_WATER_MASS)
    impedance = r.u16() / 10 if flags & _IMPEDANCE else None
    weight = opt_mass(_WEIGHT)
    h = height(r.u16(), imp) if flags & _HEIGHT else None
    r.end()
    return BodyCompositionMeasurement(
        imp,
        None if fat_raw == 0xFFFF else fat_raw / 10,
        time_stamp,
        user_id,
        basal,
        muscle_pct,
        muscle_mass,
        fat_free,
        soft_lean,
        water,
        impedance,
        weight,
        h,
        bool(flags & _MULTIPLE_PACKET),
    )


class BodyCompositionAssembler:
    """Joins the two packets of a multi-packet measurement (pure; feed parsed packets in arrival order)."""

    def __init__(self) -> None:
        self._first: BodyCompositionMeasurement | None = None

    @property
    def pending(self) -> bool:
        return self._first is not None

    def add(self, packet: BodyCompositionMeasurement) -> BodyCompositionMeasurement | None:
        """The complete measurement, or None while waiting for the second packet.

        A single packet arriving while half a pair waits means the pair was broken: the waiting half is
        dropped and `DeviceProtocolError` raised (its raw bytes were kept by whoever parsed it)."""
        if not packet.multiple_packet:
            if self._first is not None:
                self._first = None
                raise DeviceProtocolError("body composition: second packet of a pair lost")
            return packet
        if self._first is None:
            self._first = packet
            return None
        first, self._first = self._first, None
        if first.imperial != packet.imperial:
            raise DeviceProtocolError("body composition: packets of one measurement disagree on units")
        gaps = {
            f.name: getattr(packet, f.name)
            for f in fields(first)
            if getattr(first, f.name) is None and getattr(packet, f.name) is not None
        }
        return replace(first, **gaps)

    def reset(self) -> None:
        """Forget half a pair (call on disconnect)."""
        self._first = None


def composition_reading(
    m: BodyCompositionMeasurement,
    device: DeviceIdentity,
    received_at: datetime,
    clock_offset: timedelta | None = None,
    raw: bytes = b"",
    *,
    simulated: bool = False,
) -> Reading:
    """A BODY_COMPOSITION Reading: body fat and every compartment the scale sent, each its own metric.

    Weight and height are not in it: they go into a BODY_WEIGHT reading (`to_reading`) only when the scale
    has no Weight Scale measurement of its own (drivers/ble/scale.py), so one weigh-in is one weight."""
    unit = m.weight_unit
    fat = (
        Measurement.missing(Metric.BODY_FAT, Unit.PERCENT, Absent.UNSUCCESSFUL)
        if m.body_fat_percent is None
        else Measurement(Metric.BODY_FAT, m.body_fat_percent, Unit.PERCENT)
    )
    values: list[tuple[Metric, float | None, Unit]] = [
        (Metric.MUSCLE_PERCENT, m.muscle_percent, Unit.PERCENT),
        (Metric.MUSCLE_MASS, m.muscle_mass, unit),
        (Metric.FAT_FREE_MASS, m.fat_free_mass, unit),
        (Metric.SOFT_LEAN_MASS, m.soft_lean_mass, unit),
        (Metric.BODY_WATER_MASS, m.body_water_mass, unit),
        (Metric.IMPEDANCE, m.impedance_ohm, Unit.OHM),
        (Metric.BASAL_METABOLISM, None if m.basal_metabolism_kj is None else float(m.basal_metabolism_kj), Unit.KJ),
    ]
    return Reading(
        kind=Kind.BODY_COMPOSITION,
        measurements=(fat, *(Measurement(metric, v, u) for metric, v, u in values if v is not None)),
        device=device,
        received_at=received_at,
        device_time=m.time_stamp,
        clock_offset=clock_offset,
        user_slot=user_slot(m.user_id),
        raw=raw,
        simulated=simulated,
    )


def to_reading(
    m: BodyCompositionMeasurement,
    device: DeviceIdentity,
    received_at: datetime,
    clock_offset: timedelta | None = None,
    raw: bytes = b"",
    *,
    simulated: bool = False,
) -> Reading:
    """A BODY_WEIGHT Reading from the weight (and height) fields; the compartments are in
    `composition_reading`. No weight -> `NoValueError`."""
    if m.weight is None:
        raise NoValueError("body composition without weight", raw, field="weight")
    measurements = [Measurement(Metric.BODY_WEIGHT, m.weight, m.weight_unit)]
    if m.height is not None:
        measurements.append(Measurement(Metric.BODY_HEIGHT, m.height, m.height_unit))
    return Reading(
        kind=Kind.BODY_WEIGHT,
        measurements=tuple(measurements),
        device=device,
        received_at=received_at,
        device_time=m.time_stamp,
        clock_offset=clock_offset,
        user_slot=user_slot(m.user_id),
        raw=raw,
        simulated=simulated,
    )
