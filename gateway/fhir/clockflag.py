"""How a reading with an implausible device clock (gateway.clockcheck) is flagged in FHIR, after the HL7
PHD IG STU 2 (2.0.0, input/intro-notes/StructureDefinition-PhdCoincidentTimestampObservation-notes.md,
"Logic to Report Coincident Timestamps"):

- The clock was read and was far off, its stamps otherwise on its current timeline (`offset`): IG Case 3,
  "the PHG adjusts the measurement timestamps ... by the difference": effectiveDateTime is the corrected
  time and the Coincident Time Stamp (gateway time as effective, the device clock as value) shows how far
  off it was. Nothing else changes but a note.
- The stamp is not from the device's current timeline (before 2010, or after the gateway received it):
  IG Case 2, the PHG "cannot produce a meaningful timestamp": the Coincident Time Stamp carries no value
  and `dataAbsentReason` unknown, the IG's *time fault*, which "tells the reader ... that the timestamp of
  the measurement cannot be trusted" (example coin-example-timefault). The IG lets the PHG leave out
  `effective[x]`, but PhdBaseObservation (and the vital-signs profiles) require it (`effective[x] 1..`),
  so the Observation says only what is known: `effectivePeriod` with just `end`, the time the gateway
  received it (R4 Period: a missing start is "not known"); `issued` is that time too.
- Either way `note` says so in words (the IG's Measurement Status table adds notes for conditions that
  have no coded element, e.g. manually entered), without PHI: what was off and that the clock needs setting.
"""

from __future__ import annotations

from typing import Any

from gateway.clockcheck import ClockVerdict
from gateway.fhir import codes as c

__all__ = ["TIME_FAULT", "flag_observations", "is_time_fault"]

TIME_FAULT: dict[str, Any] = {**c.data_absent("unknown", "Unknown"), "text": "Time fault: device clock implausible"}


def is_time_fault(verdict: ClockVerdict) -> bool:
    """Case 2 (no meaningful time) rather than Case 3 (corrected by the offset)."""
    return verdict.problem != "offset"


def note(verdict: ClockVerdict) -> str:
    if is_time_fault(verdict):
        return (
            f"Device clock implausible: {verdict.detail}. The measurement time cannot be trusted "
            "(PHD time fault); effectivePeriod.end is when the gateway received it. Set the device's clock."
        )
    return (
        f"Device clock implausible: {verdict.detail}; the time was corrected by that difference "
        "(PHD coincident time stamp). Set the device's clock."
    )


def time_fault_coincident(resource: dict[str, Any]) -> None:
    """Turn a Coincident Time Stamp Observation into the IG's time fault: no value, dataAbsentReason."""
    resource.pop("valueDateTime", None)
    resource["dataAbsentReason"] = TIME_FAULT


def flag_observations(resources: list[dict[str, Any]], verdict: ClockVerdict, received: str) -> None:
    """Flag the reading's Observations (fresh dicts from the mapping; shared parts are not mutated)."""
    text = note(verdict)
    for resource in resources:
        if is_time_fault(verdict):
            resource.pop("effectiveDateTime", None)
            resource["effectivePeriod"] = {"end": received}
        resource["note"] = [{"text": text}]
