"""Pure helpers of the HTTPS forwarder: OperationOutcome summaries and Retry-After, fuzzed."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.forwarders.https import outcome_summary
from gateway.retry_after import MAX_RETRY_AFTER, parse_retry_after

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


def test_outcome_summary_literal() -> None:
    # OperationOutcome as a server would echo a validation failure (R4 OperationOutcome.issue).
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "invalid",
                "diagnostics": "Observation.subject: 'Patient/jane-doe-1962' not found; value 142.5 out of range",
                "expression": ["Bundle.entry[3].resource.subject"],
            }
        ],
    }
    assert outcome_summary(outcome, "HTTP 422") == (
        "HTTP 422: error invalid (server text withheld) at Bundle.entry[#].resource.subject"
    )


@settings(max_examples=300, deadline=None, derandomize=True)
@given(diagnostics=st.text(max_size=400), issue_extra=st.dictionaries(st.text(max_size=8), json_values, max_size=3))
def test_outcome_summary_never_echoes_numbers_or_runs_long(diagnostics: str, issue_extra: dict[str, Any]) -> None:
    issue = {**issue_extra, "severity": "error", "code": "invalid", "diagnostics": diagnostics}
    summary = outcome_summary({"resourceType": "OperationOutcome", "issue": [issue]}, "HTTP 400")
    assert summary.startswith("HTTP 400")
    assert len(summary) <= 400
    tail = summary[len("HTTP 400") :]
    assert not any(ch in "0123456789" for ch in tail.split(" at ")[0])


@settings(max_examples=300, deadline=None, derandomize=True)
@given(value=json_values)
def test_outcome_summary_survives_any_json(value: Any) -> None:
    assert outcome_summary(value, "HTTP 400").startswith("HTTP 400")
    assert outcome_summary({"resourceType": "OperationOutcome", "issue": value}, "x").startswith("x")


@settings(max_examples=300, deadline=None, derandomize=True)
@given(header=st.text(max_size=40))
def test_retry_after_any_header(header: str) -> None:
    seconds = parse_retry_after(header, now=1_800_000_000.0)
    assert seconds is None or 0.0 <= seconds <= MAX_RETRY_AFTER


def test_outcome_summary_drops_unquoted_references_and_identifiers() -> None:
    """Servers also echo references unquoted (HAPI: `Resource Patient/jdoe not found`) and identifier
    tokens: the summary lands in logs and, as the quarantine reason, in the database in plaintext."""
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "not-found",
                "diagnostics": "Resource Patient/jdoe not found, specified in path: Observation.subject",
            },
            {
                "severity": "error",
                "code": "duplicate",
                "diagnostics": "Multiple matches for identifier urn:ietf:rfc:3986|urn:uuid:feed-beef-cafe",
            },
        ],
    }
    assert outcome_summary(outcome, "HTTP 400") == (
        "HTTP 400: error not-found (server text withheld); error duplicate (server text withheld)"
    )


def test_attack_server_echoing_a_patient_name_in_diagnostics_keeps_none_of_it() -> None:
    """A compromised or careless server echoes PHI in words (issue 11): a name passes any scrubber, so
    only the structured parts (severity, code, expression) are kept."""
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "business-rule",
                "diagnostics": "Jane Margaret Doe born in March has no active enrolment at Riverside clinic",
                "details": {"text": "Doe, Jane: enrolment ended"},
                "expression": ["Observation.subject"],
            }
        ],
    }
    summary = outcome_summary(outcome, "HTTP 422")
    assert summary == "HTTP 422: error business-rule (server text withheld) at Observation.subject"
    for word in ("Jane", "Doe", "Margaret", "March", "Riverside", "enrolment"):
        assert word not in summary
