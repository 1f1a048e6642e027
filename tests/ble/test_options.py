"""BLE `[[devices]]` options are checked when the config is parsed, naming file and key."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import parse_config
from gateway.errors import ConfigError


def test_valid_ble_devices_parse() -> None:
    doc = {
        "devices": [
            {"driver": "ble-blood-pressure", "address": "C1:00:00:00:00:01", "poll_seconds": 1},
            {"driver": "ble-weight-scale", "address": "c2:00:00:00:00:02", "idle_timeout": 2.5},
            {"driver": "ble-glucose", "address": "C3:00:00:00:00:03", "connect_timeout": 60, "simulated": True},
        ]
    }
    assert [d.driver for d in parse_config(doc, "x.toml").devices] == [
        "ble-blood-pressure",
        "ble-weight-scale",
        "ble-glucose",
    ]


@pytest.mark.parametrize(
    ("device", "key"),
    [
        ({"driver": "ble-glucose"}, "address"),
        ({"driver": "ble-glucose", "address": "C3-00-00-00-00-03"}, "address"),
        ({"driver": "ble-glucose", "address": "C3:00:00:00:00:03", "idle_timeout": -1}, "idle_timeout"),
        ({"driver": "ble-glucose", "address": "C3:00:00:00:00:03", "connect_timeout": True}, "connect_timeout"),
        ({"driver": "ble-weight-scale", "address": "C2:00:00:00:00:02", "simulated": "yes"}, "simulated"),
        ({"driver": "ble-blood-pressure", "address": "C1:00:00:00:00:01", "colour": 1}, "colour"),
    ],
)
def test_bad_ble_options_name_the_key(device: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"devices": [device]}, "x.toml")
    assert err.value.file == "x.toml"
    assert err.value.key == f"devices[0].{key}"
