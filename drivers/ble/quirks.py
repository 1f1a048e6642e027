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

Matching: manufacturer case-insensitively equal, model as a case-insensitive glob (`UA-651BLE*`).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Literal

from drivers.gatt import uuids
from gateway.reading import DeviceIdentity

__all__ = ["STANDARD", "TABLE", "QuirkRow", "Quirks", "quirks_for"]

DATE_TIME = uuids.uuid16(0x2A08)  # Date Time characteristic (GSS "Date Time"), used by some cuffs to set the clock


@dataclass(frozen=True, slots=True)
class Quirks:
    set_clock: Literal["when-off", "always", "never"] = "when-off"
    time_characteristic: str = uuids.CURRENT_TIME
    last_record_only: bool = False
    connect_delay: float = 0.0


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
        return identity.manufacturer.strip().casefold() == self.manufacturer.casefold() and fnmatch.fnmatchcase(
            identity.model.strip().casefold(), self.model.casefold()
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
)


def quirks_for(identity: DeviceIdentity, table: tuple[QuirkRow, ...] | None = None) -> tuple[Quirks, QuirkRow | None]:
    """The first row matching the device (in `table`, default `TABLE`), else the standard behaviour."""
    for row in TABLE if table is None else table:
        if row.matches(identity):
            return row.quirks, row
    return STANDARD, None
