"""Known device behaviours as data: a table keyed by Device Information (manufacturer, model).

A device that follows its Bluetooth SIG profile needs no row: unknown devices get `STANDARD`. A row says
what a model does differently and where that is documented, and the BLE session (drivers/ble/common.py)
applies it without a branch per brand:

- `set_clock = "always"`: the device sends nothing until its clock was written after connecting (written
  at once, whatever the drift; to `time_characteristic` when the device takes Date Time 0x2A08 instead of
  Current Time 0x2A2B).
- `set_clock = "never"`: writing the clock misleads the device (e.g. it keeps UTC, or applies a zone of
  its own); its offset is still measured and corrects every reading (gateway/reading.py).
- `last_record_only`: the device sends its newest record only; the session ends after one instead of
  waiting `idle_timeout` for more.
- `connect_delay`: seconds to wait after connecting (and reading Device Information) before the clock
  and measurements, for devices that drop requests made too early.
- `time_characteristic`: where the device keeps its clock when it has no Current Time 0x2A2B: the clock is
  read there (for the offset) and written there.
- `clock_zone`: the zone the device's clock keeps whatever the gateway's zone is ("UTC", an IANA name, or
  a fixed offset "+08:00"): its clock is compared and set in that zone, and its zone-less time stamps are
  read in it (`in_clock_zone`), so a device that keeps UTC is not taken as keeping local time.

Matching: manufacturer and model as case-insensitive globs (`Roche*`, `UA-651BLE*`). No shipped row uses
`clock_zone` yet: no connected device we support is documented to keep UTC (Tidepool's notes on device
time: diabetes devices keep local wall-clock time); the one documented case, Xiaomi scales set in UTC by
their app, is measured from the live advertisement instead (drivers/ble/adv_scale.py `live_offset`).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from drivers.gatt import uuids
from gateway.reading import DeviceIdentity, Reading

__all__ = ["STANDARD", "TABLE", "QuirkRow", "Quirks", "in_clock_zone", "parse_zone", "quirks_for", "with_clock_zone"]

STANDARD_TIME = uuids.CURRENT_TIME
DATE_TIME = uuids.uuid16(0x2A08)  # Date Time characteristic (GSS "Date Time"), used by some cuffs to set the clock


@dataclass(frozen=True, slots=True)
class Quirks:
    set_clock: Literal["when-off", "always", "never"] = "when-off"
    time_characteristic: str = uuids.CURRENT_TIME
    last_record_only: bool = False
    connect_delay: float = 0.0
    clock_zone: str | None = None  # "UTC", an IANA zone or "+HH:MM": the zone the device's clock keeps

    def effects(self) -> list[str]:
        """What differs from the standard behaviour, in words an operator reads (`vitalgate drivers`)."""
        out: list[str] = []
        if self.set_clock != "when-off":
            out.append(f"clock written {self.set_clock}")
        if self.time_characteristic != STANDARD_TIME:
            out.append(f"clock at 0x{self.time_characteristic[4:8].upper()}")
        if self.last_record_only:
            out.append("last record only")
        if self.connect_delay:
            out.append(f"waits {self.connect_delay:g} s after connecting")
        if self.clock_zone:
            out.append(f"clock keeps {self.clock_zone}")
        return out


STANDARD = Quirks()


@dataclass(frozen=True, slots=True)
class QuirkRow:
    manufacturer: str
    model: str  # glob
    quirks: Quirks
    behaviour: str
    source: str

    def matches(self, identity: DeviceIdentity) -> bool:
        if identity.manufacturer is None or identity.model is None:
            return False
        return fnmatch.fnmatchcase(identity.manufacturer.strip().casefold(), self.manufacturer.casefold()) and (
            fnmatch.fnmatchcase(identity.model.strip().casefold(), self.model.casefold())
        )


TABLE: tuple[QuirkRow, ...] = (
    QuirkRow(
        "A&D Medical",
        "UA-651BLE*",
        Quirks(set_clock="always", time_characteristic=DATE_TIME, connect_delay=1.0),
        "sends its stored readings only after its clock was written (Date Time 0x2A08) within seconds of "
        "connecting; drops early requests from a central that bonded with it",
        'A&D Medical UA-651BLE SDK §3 as summarised in a public device-profile table ("Post-connect: CCCD '
        "Indicate + Date Time 0x2A08 ... within 5s\"); the 1 s delay after connecting is blessed-android's "
        "(welie/blessed-android, BluetoothPeripheral.getServiceDiscoveryDelay, observed with a UA-651BLE)",
    ),
    QuirkRow(
        "Roche*",
        "*",
        Quirks(time_characteristic=DATE_TIME),
        "Accu-Chek meters keep their clock in Date Time 0x2A08 (in the Glucose service), not in a Current Time "
        "service: the clock is read and, when off, set there",
        "NightscoutFoundation/xDrip, app/src/main/java/com/eveningoutpost/dexdrip/services/"
        'BluetoothGlucoseMeter.java: "Roche Aviva Connect uses a DateTime characteristic instead" '
        "(transmutes its Current Time read to Date Time 0x2A08 when the manufacturer starts with Roche)",
    ),
)

_FIXED = re.compile(r"^([+-])(\d{2}):(\d{2})$")


def parse_zone(name: str) -> tzinfo:
    """ "UTC", "+08:00" / "-03:30" (a fixed offset) or an IANA name; ValueError for anything else."""
    if name.upper() in ("UTC", "Z"):
        return UTC
    if m := _FIXED.match(name):
        sign = -1 if m.group(1) == "-" else 1
        return timezone(sign * timedelta(hours=int(m.group(2)), minutes=int(m.group(3))))
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def in_clock_zone(t: datetime | None, zone: tzinfo | None) -> datetime | None:
    """A device's zone-less time stamp in the zone its clock keeps (already zoned or no zone known: as is)."""
    if t is None or zone is None or t.tzinfo is not None:
        return t
    return t.replace(tzinfo=zone)


def with_clock_zone(reading: Reading, zone: tzinfo | None) -> Reading:
    """The reading with its device time placed in `zone` (the declared correction of a `clock_zone` row).

    Downstream (`Reading.effective_time`, the FHIR mapping) then reads an aware time as it is, instead of
    taking the bare digits as the gateway's local time.
    """
    zoned = in_clock_zone(reading.device_time, zone)
    return reading if zoned is reading.device_time else replace(reading, device_time=zoned)


def quirks_for(identity: DeviceIdentity, table: tuple[QuirkRow, ...] | None = None) -> tuple[Quirks, QuirkRow | None]:
    """The first row matching the device (in `table`, default `TABLE`), else the standard behaviour."""
    for row in TABLE if table is None else table:
        if row.matches(identity):
            return row.quirks, row
    return STANDARD, None
