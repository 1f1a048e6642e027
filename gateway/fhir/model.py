"""The two value types of the FHIR layer's API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["GatewayInfo", "MappedReading"]


@dataclass(frozen=True, slots=True)
class GatewayInfo:
    """The gateway itself: its own Device (the PHD IG's PHG), referenced by every Observation."""

    id: str  # config gateway.id, e.g. "vitalgate-01"
    version: str  # software version
    manufacturer: str = "VitalGate project"
    model: str = "VitalGate"


@dataclass(frozen=True, slots=True)
class MappedReading:
    """One reading as a FHIR transaction.

    `identifier` is the primary Observation's PHD IG identifier value (deterministic: used in ifNoneExist
    and for duplicate detection downstream, e.g. the MQTT `identifier` property). `entries` are the
    bundle's entries, with fresh placeholder fullUrls, so a forwarder can pack several readings into one
    transaction (see `transaction_bundle` / `merge_entries`). The dicts share constant parts with the
    code tables for speed: treat them as read-only.
    """

    identifier: str
    bundle: dict[str, Any]
    body: bytes
    entries: list[dict[str, Any]]
