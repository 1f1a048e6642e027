"""Forwarders send mapped readings to a backend; the core owns buffering and retry.

Each forwarder module exposes `build(section, ctx) -> Forwarder`; the config's `[output] forwarder`
names which one runs. `file` is the built-in default when no backend is configured.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.forwarders.base import Forwarder

__all__ = ["FORWARDERS", "ForwarderContext", "build_forwarder"]

# name -> module with `build(section: Mapping[str, Any], ctx: ForwarderContext) -> Forwarder`
FORWARDERS: dict[str, str] = {
    "file": "gateway.forwarders.file",
    "mqtt": "gateway.forwarders.mqtt",
    "https": "gateway.forwarders.https",
}


@dataclass(frozen=True, slots=True)
class ForwarderContext:
    """What every forwarder may need besides its own config section."""

    config_file: str  # for error messages: ConfigError(ctx.config_file, "mqtt.host", "...")
    gateway_id: str
    state_dir: Path


def build_forwarder(name: str, section: Mapping[str, Any], ctx: ForwarderContext) -> Forwarder:
    module = importlib.import_module(FORWARDERS[name])
    forwarder: Forwarder = module.build(section, ctx)
    return forwarder
