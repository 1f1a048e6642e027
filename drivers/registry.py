"""Drivers looked up by name and imported lazily; third parties register through an entry-point group.

A third-party package adds, in its pyproject.toml::

    [project.entry-points."vitalgate.drivers"]
    acme-cuff = "acme_vitalgate.cuff:AcmeCuffDriver"
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

__all__ = ["BUILTIN", "ENTRY_POINT_GROUP", "UnknownDriverError", "available", "load", "origin"]

ENTRY_POINT_GROUP = "vitalgate.drivers"

# name -> "module:attribute". Imported only when a config names the driver.
BUILTIN: dict[str, str] = {
    "onetouch-ultra2": "drivers.serial.session_ultra2:OneTouchUltra2Driver",
    "onetouch-ultraeasy": "drivers.serial.session_ultraeasy:OneTouchUltraEasyDriver",
    "tanita-bc": "drivers.serial.session_tanita:TanitaDriver",
    "simulated": "simulators.simple:SimulatedDevice",
    "ble-blood-pressure": "drivers.ble.indicating:BloodPressureDriver",
    "ble-weight-scale": "drivers.ble.scale:ScaleDriver",
    "ble-glucose": "drivers.ble.glucose:GlucoseDriver",
    "ble-thermometer": "drivers.ble.thermometer:ThermometerDriver",
    "ble-pulse-oximeter": "drivers.ble.oximeter:PulseOximeterDriver",
    "xiaomi-scale": "drivers.ble.adv_scale:XiaomiScaleDriver",
    "omron-ble": "drivers.ble.omron:OmronDriver",
}


class UnknownDriverError(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown driver {name!r}; available: {', '.join(sorted(available()))}")
        self.name = name


def _third_party() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available() -> dict[str, str]:
    """All driver names with their import paths; built-ins win over a third party of the same name."""
    return {**_third_party(), **BUILTIN}


def load(name: str) -> Any:
    """The driver class registered under `name`."""
    target = available().get(name)
    if target is None:
        raise UnknownDriverError(name)
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr)


def origin(name: str) -> str:
    """Which package a driver comes from: "built in", or the distribution's name and version."""
    if name in BUILTIN:
        return "built in"
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            dist = ep.dist
            return f"{dist.name} {dist.version}" if dist is not None else ep.value.partition(":")[0]
    raise UnknownDriverError(name)
