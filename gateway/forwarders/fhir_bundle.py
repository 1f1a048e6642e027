"""FHIR Bundles for the HTTPS forwarder: several readings' entries packed into one transaction or batch.

Entries are merged by conditional-create identity (`gateway.fhir.merge_entries`: the Devices every
reading repeats are sent once), and each Bundle entry remembers which readings depend on its answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from gateway.fhir import merge_entries
from gateway.forwarders.base import Outgoing

__all__ = ["BundleType", "Packed", "entry_count", "pack"]

BundleType = Literal["transaction", "batch"]


@dataclass(frozen=True, slots=True)
class Packed:
    body: bytes
    owners: tuple[tuple[int, ...], ...]  # per Bundle entry: positions in the batch that need it


_PHD_PROFILE = "http://hl7.org/fhir/uv/phd/StructureDefinition/"


def _logical_references(entries: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Batch entries are processed independently (R4 3.1.0.11.1: no interdependencies in a batch), so a
    `urn:uuid` reference to another entry cannot be resolved, and conditional references are a
    transaction processing rule (3.1.0.11.2). Replace each with a logical reference by the target's
    identifier (R4 Reference.identifier), which needs no resolution. Without `Reference.reference` an Observation no
    longer meets PhdBaseObservation (`device.reference` 1..1), so its PHD profile claims are dropped.
    The originals are left untouched (read-only, shared).
    """
    targets: dict[str, dict[str, Any]] = {}
    for entry in entries:
        resource = entry.get("resource") or {}
        for ident in resource.get("identifier") or ():
            if isinstance(entry.get("fullUrl"), str) and ident.get("system") and ident.get("value"):
                targets[entry["fullUrl"]] = {
                    "type": resource.get("resourceType"),
                    "identifier": {"system": ident["system"], "value": ident["value"]},
                }
                break

    def rewrite(node: Any) -> Any:
        if isinstance(node, Mapping):
            ref = node.get("reference")
            if isinstance(ref, str) and ref in targets:
                rest = {k: rewrite(v) for k, v in node.items() if k != "reference"}
                return {**rest, **targets[ref]}
            return {k: rewrite(v) for k, v in node.items()}
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    def unclaim(resource: Any) -> Any:
        meta = resource.get("meta") if isinstance(resource, Mapping) else None
        if resource.get("resourceType") != "Observation" or not isinstance(meta, Mapping):
            return resource
        profiles = [p for p in meta.get("profile", ()) if not p.startswith(_PHD_PROFILE)]
        rest = {k: v for k, v in meta.items() if k != "profile"}
        new_meta = {**rest, "profile": profiles} if profiles else rest
        return {**resource, "meta": new_meta} if new_meta else {k: v for k, v in resource.items() if k != "meta"}

    return [{**entry, "resource": unclaim(rewrite(entry.get("resource")))} for entry in entries]


def pack(batch: Sequence[Outgoing], bundle_type: BundleType) -> Packed:
    """One Bundle holding every item's entries, merged by `gateway.fhir.merge_entries` (an entry whose
    conditional-create identity was already seen is sent once, references pointed at the one kept), and
    for each Bundle entry the items that depend on its outcome.
    """
    flat: list[Mapping[str, Any]] = []
    positions: list[int] = []
    for pos, item in enumerate(batch):
        flat.extend(item.entries)
        positions.extend([pos] * len(item.entries))
    merged, where = merge_entries(flat)
    owners: list[list[int]] = [[] for _ in merged]
    for index, pos in zip(where, positions, strict=True):
        if pos not in owners[index]:
            owners[index].append(pos)
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "transaction", "entry": merged}
    if bundle_type == "batch":
        bundle = {**bundle, "type": "batch", "entry": _logical_references(merged)}
    return Packed(orjson.dumps(bundle), tuple(tuple(o) for o in owners))


def entry_count(batch: Sequence[Outgoing]) -> int:
    """How many entries `pack(batch)` sends (shared Devices and repeats counted once)."""
    return len(merge_entries([e for item in batch for e in item.entries])[0])
