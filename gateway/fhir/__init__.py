"""HL7 FHIR R4 output: readings as transaction Bundles, shaped after the PHD IG and vital-signs profiles.

fhir.resources ships R4B models (4.3.0), the closest to R4; the JSON we emit uses only elements that
are the same in R4 and R4B. The hot path (`map_reading`) builds plain dicts from `codes` tables and
serializes with orjson; `validate_bundle` is the full pydantic check the tests use to prove the two agree.
"""

from gateway.fhir.errors import FhirError, InvalidBundleError, MappingError
from gateway.fhir.mapping import map_reading, merge_entries, transaction_bundle
from gateway.fhir.model import GatewayInfo, MappedReading
from gateway.fhir.selfcheck import self_check
from gateway.fhir.validation import validate_bundle

__all__ = [
    "FhirError",
    "GatewayInfo",
    "InvalidBundleError",
    "MappedReading",
    "MappingError",
    "map_reading",
    "merge_entries",
    "self_check",
    "transaction_bundle",
    "validate_bundle",
]
