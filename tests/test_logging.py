"""The PHI guard in the log pipeline."""

from __future__ import annotations

import io

import orjson
import structlog

from gateway.logging import REDACTED, configure_logging, scrub_phi


def test_sensitive_fields_are_redacted_by_name() -> None:
    event = {
        "event": "x",
        "patient": "Patient/7",
        "patient_id": "7",
        "systolic": 120,
        "mqtt_password": "pw",
        "serial_number": "SN1",
        "raw": b"\x01\x02",
        "rows": 5,
        "forwarder": "mqtt",
        "device_name": "cuff",
    }
    out = scrub_phi(None, "info", dict(event))
    assert out == {
        "event": "x",
        "patient": REDACTED,
        "patient_id": REDACTED,
        "systolic": REDACTED,
        "mqtt_password": REDACTED,
        "serial_number": REDACTED,
        "raw": REDACTED,
        "rows": 5,
        "forwarder": "mqtt",
        "device_name": "cuff",
    }


def test_sensitive_patterns_are_redacted_inside_strings() -> None:
    out = scrub_phi(
        None,
        "warning",
        {
            "event": "sent Patient/abc-1",
            "error": "401 for Bearer abc.def.ghi",
            "detail": '{"resourceType": "Observation"}',
            "blob": b"1234",
        },
    )
    assert out == {
        "event": f"sent {REDACTED}",
        "error": f"401 for {REDACTED}",
        "detail": f'{{{REDACTED}: "Observation"}}',
        "blob": "<4 bytes>",
    }


def test_configured_pipeline_writes_json_without_phi() -> None:
    buf = io.StringIO()
    configure_logging("debug", "json", buf)
    structlog.get_logger("t").info("bound", patient="Patient/secret-1", rows=2)
    doc = orjson.loads(buf.getvalue())
    assert doc["event"] == "bound" and doc["patient"] == REDACTED and doc["rows"] == 2 and doc["level"] == "info"
    assert "secret-1" not in buf.getvalue()


def test_sensitive_fields_nested_or_camel_case_are_redacted() -> None:
    """A dict or list passed as context, or a camelCase key copied from FHIR / JSON, must not slip past."""
    out = scrub_phi(
        None,
        "info",
        {
            "event": "x",
            "context": {"patient": "7", "rows": 2, "inner": [{"systolic": 120}, "Patient/abc"]},
            "items": ["Patient/xyz", b"12"],
            "patientId": "7",
            "serialNumber": "SN1",
            "address": "C1:00:00:00:00:01",
            "count": 3,
        },
    )
    assert out == {
        "event": "x",
        "context": {"patient": REDACTED, "rows": 2, "inner": [{"systolic": REDACTED}, REDACTED]},
        "items": [REDACTED, "<2 bytes>"],
        "patientId": REDACTED,
        "serialNumber": REDACTED,
        "address": REDACTED,
        "count": 3,
    }


def test_bluetooth_addresses_inside_library_messages_are_redacted() -> None:
    """bleak / Bumble warnings come through the stdlib handler as free text; a device address in them
    is an identifier like a serial number."""
    import logging

    buf = io.StringIO()
    configure_logging("info", "json", buf)
    logging.getLogger("bleak.backends.bluezdbus").warning("Device with address C1:0a:00:00:00:01 was not found")
    doc = orjson.loads(buf.getvalue())
    assert doc["event"] == "library_log" and doc["message"] == f"Device with address {REDACTED} was not found"
