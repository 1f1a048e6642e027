"""Turn the operator's patient binding into a FHIR Reference.

Accepted: "Patient/<id>" (literal reference), "<system>|<value>" (logical reference by identifier, for
backends where the gateway never learns the server id) and a bare "<id>" (taken as Patient/<id>).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from gateway.fhir.errors import MappingError

__all__ = ["patient_identifier_part", "patient_reference"]

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")  # FHIR id datatype
_LITERAL = re.compile(r"Patient/([A-Za-z0-9\-.]{1,64})")
_SYSTEM = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")  # an absolute URI, no whitespace
_VALUE = re.compile(r"[^\x00-\x1f\x7f]+")


@lru_cache(maxsize=4096)
def patient_reference(patient: str) -> tuple[dict[str, Any], str]:
    """Return (Reference dict, canonical key). The key goes into identifiers, so each form has one spelling.

    Messages never repeat the input: it is a patient identifier.
    """
    if m := _LITERAL.fullmatch(patient):
        ref = f"Patient/{m.group(1)}"
        return {"reference": ref}, ref
    if _ID.fullmatch(patient):
        ref = f"Patient/{patient}"
        return {"reference": ref}, ref
    system, sep, value = patient.partition("|")
    if sep:
        if not _SYSTEM.fullmatch(system) or "|" in system:
            raise MappingError("patient binding: identifier system is not an absolute URI")
        if not value.strip() or value != value.strip() or not _VALUE.fullmatch(value):
            raise MappingError("patient binding: identifier value is empty or has control characters")
        return (
            {"type": "Patient", "identifier": {"system": system, "value": value}},
            f"identifier:{system}|{value}",
        )
    raise MappingError("patient binding must be 'Patient/<id>', '<id>' or '<system>|<value>'")


@lru_cache(maxsize=4096)
def patient_identifier_part(patient: str) -> str:
    """The patient's part of the PHD IG conditional-create identifier (PhdBaseObservation notes).

    A logical id as is ("Patient/123" -> "123"); an identifier as `value-system`, dashes included.
    """
    ref, _ = patient_reference(patient)
    literal = ref.get("reference")
    if isinstance(literal, str):
        return literal.removeprefix("Patient/")
    ident = ref["identifier"]
    return f"{ident['value']}-{ident['system']}"
