"""The one rule for what an operator may bind a device to: the FHIR mapping's own `patient_reference`.

`vitalgate bind` checks with this before writing, so a binding it accepts is one the mapping accepts later;
before, a typo such as 'Patient/has space' was stored and every later reading of that device quarantined.
"""

from __future__ import annotations

from gateway.errors import ConfigError
from gateway.fhir.errors import MappingError
from gateway.fhir.patient import patient_reference

__all__ = ["binding_patient"]

_HINT = "use a FHIR id (Patient/123 or 123: letters, digits, '-' and '.', at most 64) or an identifier system|value"


def binding_patient(text: str, *, source: str = "<command line>", key: str = "PATIENT") -> str:
    """The form stored in the binding: 'Patient/<id>' for an id, 'system|value' for an identifier.

    Raises ConfigError with the mapping's reason (which never repeats the input: it is a patient identifier).
    """
    try:
        ref, _ = patient_reference(text)
    except MappingError as exc:
        raise ConfigError(source, key, f"{exc}; {_HINT}") from None
    if "reference" in ref:
        return str(ref["reference"])
    return text
