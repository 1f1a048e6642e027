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
