"""Reading <-> bytes for the queue. Versioned, so rows written by an older gateway still open."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from typing import Any

import orjson

from gateway.reading import Absent, DeviceIdentity, Kind, Measurement, Metric, Reading, Status, Unit

__all__ = ["CodecError", "decode_reading", "encode_reading"]

VERSION = 1


class CodecError(ValueError):
    """A stored payload that does not decode into a Reading."""


def encode_reading(r: Reading) -> bytes:
    d = r.device
    doc: dict[str, Any] = {
        "v": VERSION,
        "kind": r.kind.value,
        "m": [
            [m.metric.value, m.reported_value, m.reported_unit.value]
            if m.absent is None
            else [m.metric.value, None, m.reported_unit.value, m.absent.value]
            for m in r.measurements
        ],
        "dev": [d.driver, d.address, d.serial_number, d.system_id, d.manufacturer, d.model, d.firmware],
        "rx": r.received_at.isoformat(),
        "t": r.device_time.isoformat() if r.device_time else None,
        "off": r.clock_offset.total_seconds() if r.clock_offset is not None else None,
        "u": r.user_slot,
        "seq": r.sequence,
        "st": sorted(s.value for s in r.status),
        "raw": base64.b64encode(r.raw).decode() if r.raw else "",
        "sim": r.simulated,
    }
    return orjson.dumps(doc)


def decode_reading(data: bytes) -> Reading:
    try:
        doc = orjson.loads(data)
        if doc.get("v") != VERSION:
            raise CodecError(f"unsupported payload version {doc.get('v')!r}")
        return Reading(
            kind=Kind(doc["kind"]),
            measurements=tuple(_measurement(m) for m in doc["m"]),
            device=DeviceIdentity(*doc["dev"]),
            received_at=datetime.fromisoformat(doc["rx"]),
            device_time=datetime.fromisoformat(doc["t"]) if doc["t"] else None,
            clock_offset=timedelta(seconds=doc["off"]) if doc["off"] is not None else None,
            user_slot=doc["u"],
            sequence=doc["seq"],
            status=frozenset(Status(s) for s in doc["st"]),
            raw=base64.b64decode(doc["raw"]),
            simulated=bool(doc["sim"]),
        )
    except CodecError:
        raise
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"payload does not decode: {type(exc).__name__}") from None


def _measurement(m: list[Any]) -> Measurement:
    """[metric, value, unit] or, for a value the device did not give, [metric, null, unit, absent]."""
    if len(m) == 4:
        return Measurement.missing(Metric(m[0]), Unit(m[2]), Absent(m[3]))
    a, b, c = m
    return Measurement(Metric(a), float(b), Unit(c))
