"""Errors of the FHIR layer. Messages name fields and codes, never patient ids or values (no PHI)."""

from __future__ import annotations

from gateway.errors import GatewayError

__all__ = ["FhirError", "InvalidBundleError", "MappingError"]


class FhirError(GatewayError):
    """Base of every error the FHIR layer raises on purpose."""


class MappingError(FhirError):
    """This reading cannot become FHIR (unknown kind, missing or stray metric, bad patient reference ...).

    The drainer quarantines the item with this message, so it must stay free of PHI.
    """


class InvalidBundleError(FhirError):
    """A bundle failed validation; `problems` lists (location, error type) pairs, never input values."""

    def __init__(self, message: str, problems: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems
