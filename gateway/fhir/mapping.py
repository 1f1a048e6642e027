"""Reading -> FHIR R4 transaction Bundle, built as plain dicts from the tables in `codes`.

No pydantic here: building and validating fhir.resources models runs ~1,300 Observations/s, far too slow
for draining a backlog. Output is proven equal to validated FHIR by the tests (every kind and option
through `validate_bundle`, plus hypothesis-generated readings). Decisions, after the HL7 PHD IG (STU 2):

- Identifiers: each Observation's identifier is `urn:ietf:rfc:3986` | `urn:uuid:<uuid5(reading
  idempotency key, patient, role)>`. The patient is part of it, so one device record bound to another
  patient is another resource. The same uuid is the entry's fullUrl, and `ifNoneExist` matches it (the
  PHD IG's conditionalCreate identifier, given a system so the search is exact).
- Times: effectiveDateTime is the device time corrected by the known clock offset, with its UTC offset;
  `issued` is the gateway's receive time. When the clock offset is known, a PHD Coincident Time Stamp
  Observation (MDC_ATTR_TIME_ABS: gateway time as effective, the device clock as valueString) is added
  and referenced through the CoincidentTimeStampReference extension, so the device's own time can be
  recovered.
- Gateway: a Device of its own, referenced with the core extension `observation-gatewayDevice`.
- Measurement status flags: a PHD BITs observation per flag family (MDC_BLOOD_PRESSURE_MEASUREMENT_STATUS,
  MDC_GLU_METER_DEV_STATUS), one component per flag (ASN1ToHL7 bit code, or text only where the flag
  folds several bits; value v2-0136#Y), derivedFrom
  the measurement, like the PHD IG's `bpm-status` example. The measurement itself stays `final`.
- Simulated data (reading.simulated or test_data) carries meta.security v3-ActReason#HTEST.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import orjson

from gateway.fhir import codes as c
from gateway.fhir.devices import phd_device_entry, phg_device_entry
from gateway.fhir.errors import MappingError
from gateway.fhir.model import GatewayInfo, MappedReading
from gateway.fhir.patient import patient_reference
from gateway.reading import Measurement, Metric, Reading

__all__ = ["map_reading", "transaction_bundle"]

_MAX_OFFSET = timedelta(hours=14)


def _urn(seed: str) -> str:
    return f"urn:uuid:{uuid.uuid5(c.NAMESPACE, seed)}"


def _datetime(t: datetime) -> str:
    """FHIR dateTime: offsets only in whole minutes within ±14 h; anything odder (LMT zones) goes to UTC."""
    offset = t.utcoffset()
    if offset is None or offset.seconds % 60 or offset.microseconds or abs(offset) > _MAX_OFFSET:
        t = t.astimezone(UTC)
    return t.isoformat()


def _entry(full_url: str, resource: dict[str, Any], url: str = "Observation") -> dict[str, Any]:
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {"method": "POST", "url": url, "ifNoneExist": f"identifier={c.URI}|{full_url}"},
    }


def _quantity(m: Measurement) -> tuple[dict[str, Any], dict[str, Any]]:
    """(code, valueQuantity) for one measurement, by its metric and the unit the device used."""
    spec = c.QUANTITIES.get((m.metric, m.reported_unit))
    if spec is None:
        raise MappingError(f"no FHIR mapping for {m.metric.value} in {m.reported_unit.value}")
    value = m.reported_value if spec.factor is None else round(m.value * spec.factor, spec.digits)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MappingError(f"{m.metric.value} value is not a finite number")
    return spec.code, {"value": value, "unit": spec.unit, "system": c.UCUM, "code": spec.ucum}


def _measurements(reading: Reading, spec: c.KindSpec) -> dict[Metric, Measurement]:
    found: dict[Metric, Measurement] = {}
    allowed = spec.metrics
    for m in reading.measurements:
        if m.metric not in allowed:
            raise MappingError(f"{reading.kind.value} reading carries unexpected metric {m.metric.value}")
        if m.metric in found:
            raise MappingError(f"{reading.kind.value} reading carries {m.metric.value} twice")
        found[m.metric] = m
    return found


def _meta(profiles: tuple[str, ...], htest: bool) -> dict[str, Any] | None:
    meta: dict[str, Any] = {}
    if profiles:
        meta["profile"] = list(profiles)
    if htest:
        meta["security"] = [c.HTEST]
    return meta or None


def _resource(
    meta: dict[str, Any] | None,
    extension: list[dict[str, Any]],
    identifier: str,
    category: Sequence[dict[str, Any]],
    code: dict[str, Any],
    common: dict[str, Any],
) -> dict[str, Any]:
    """An Observation's head, in FHIR's element order (a stable order keeps the body byte-identical)."""
    resource: dict[str, Any] = {"resourceType": "Observation"}
    if meta is not None:
        resource["meta"] = meta
    resource["extension"] = extension
    resource["identifier"] = [{"system": c.URI, "value": identifier}]
    resource["status"] = "final"
    resource["category"] = list(category)
    resource["code"] = code
    resource.update(common)
    return resource


def _observation(
    spec: c.ObservationSpec,
    found: Mapping[Metric, Measurement],
    ids: tuple[str, str],  # (seed prefix, kind name) for identifiers and messages
    meta: dict[str, Any] | None,
    extension: list[dict[str, Any]],
    common: dict[str, Any],
) -> dict[str, Any] | None:
    seed, kind = ids
    if spec.value is not None:
        m = found.get(spec.value)
        if m is None:
            if spec.required:
                raise MappingError(f"{kind} reading lacks {spec.value.value}")
            return None
        code, quantity = _quantity(m)
        resource = _resource(meta, extension, _urn(f"{seed}|{spec.role}"), spec.category, code, common)
        resource["valueQuantity"] = quantity
        return _entry(resource["identifier"][0]["value"], resource)
    components = []
    for metric, required in spec.components:
        m = found.get(metric)
        if m is None:
            if required:
                raise MappingError(f"{kind} reading lacks {metric.value}")
            continue
        code, quantity = _quantity(m)
        components.append({"code": code, "valueQuantity": quantity})
    assert spec.code is not None  # a panel always has its own code (codes table invariant)
    resource = _resource(meta, extension, _urn(f"{seed}|{spec.role}"), spec.category, spec.code, common)
    resource["component"] = components
    return _entry(resource["identifier"][0]["value"], resource)


def _status_entries(
    reading: Reading,
    seed: str,
    meta: dict[str, Any] | None,
    extension: list[dict[str, Any]],
    common: dict[str, Any],
    primary: str,
) -> list[dict[str, Any]]:
    """One PHD BITs Observation per status family, bits in table order."""
    if not reading.status:
        return []
    unknown = reading.status - c.STATUS_BITS.keys()
    if unknown:
        raise MappingError(f"no FHIR mapping for status {sorted(s.value for s in unknown)}")
    families: dict[str, list[dict[str, Any]]] = {}
    for status, bit in c.STATUS_BITS.items():
        if status in reading.status:
            code: dict[str, Any] = {"text": bit.name}
            if bit.code is not None:
                code = {"coding": [{"system": c.ASN1_TO_HL7, "code": bit.code, "display": bit.name}], **code}
            families.setdefault(bit.family, []).append({"code": code, "valueCodeableConcept": c.YES})
    out = []
    for family, components in families.items():
        resource = _resource(
            meta,
            extension,
            _urn(f"{seed}|status-{family}"),
            (c.PHD_OBSERVATION,),
            c.BITS_FAMILIES[family],
            common,
        )
        resource["component"] = components
        resource["derivedFrom"] = [{"reference": primary}]
        out.append(_entry(resource["identifier"][0]["value"], resource))
    return out


def _coincident_entry(
    reading: Reading,
    key: str,
    offset: timedelta,
    phd_url: str,
    phg_url: str,
    meta: dict[str, Any] | None,
    local_tz: tzinfo | None,
) -> dict[str, Any]:
    """PHD Coincident Time Stamp: at gateway time T (receipt) the device clock read T + offset.

    Subject is the PHD, device the PHG (PHD IG example coin-20181119174911); it says nothing about the
    patient, so its identifier leaves the patient out.
    """
    gateway_now = reading.received_at
    local = gateway_now.astimezone(local_tz) if local_tz is not None else gateway_now.astimezone()
    device_clock = (local + offset).replace(tzinfo=None).isoformat()
    resource: dict[str, Any] = {"resourceType": "Observation"}
    if meta is not None:
        resource["meta"] = meta
    full_url = _urn(f"{key}|coincident-time")
    resource["identifier"] = [{"system": c.URI, "value": full_url}]
    resource["status"] = "final"
    resource["code"] = c.COINCIDENT_CODE
    resource["subject"] = {"reference": phd_url}
    resource["effectiveDateTime"] = _datetime(gateway_now)
    resource["valueString"] = device_clock
    resource["device"] = {"reference": phg_url}
    resource["component"] = [c.TIME_SYNC_COMPONENT]
    return _entry(full_url, resource)


def map_reading(
    reading: Reading,
    patient: str,
    gateway: GatewayInfo,
    *,
    local_tz: tzinfo | None = None,
    test_data: bool = False,
) -> MappedReading:
    """Map one reading for one patient to a transaction Bundle. Same input, byte-identical `body`.

    Raises MappingError (message free of PHI) when the reading cannot be FHIR: unknown kind, a required
    metric missing, a stray or repeated metric, an unmapped unit or status, a control-solution test, a
    non-finite value, or a malformed patient binding.
    """
    spec = c.KINDS.get(reading.kind)
    if spec is None:
        raise MappingError(f"no FHIR mapping for kind {reading.kind.value}")
    if reading.status & c.REJECTED_STATUS:
        raise MappingError("control-solution readings are not patient data")
    subject, patient_key = patient_reference(patient)
    found = _measurements(reading, spec)
    htest = test_data or reading.simulated

    phd = phd_device_entry(reading.device, htest)  # first: it refuses a device without identity
    key = reading.idempotency_key
    phg = phg_device_entry(gateway)
    phd_url: str = phd["fullUrl"]
    phg_url: str = phg["fullUrl"]
    entries: list[dict[str, Any]] = [phd, phg]
    extension: list[dict[str, Any]] = [{"url": c.EXT_GATEWAY, "valueReference": {"reference": phg_url}}]
    plain_meta = _meta((), htest)
    if reading.clock_offset is not None:
        coin = _coincident_entry(reading, key, reading.clock_offset, phd_url, phg_url, plain_meta, local_tz)
        entries.append(coin)
        extension.append({"url": c.EXT_COINCIDENT, "valueReference": {"reference": coin["fullUrl"]}})

    common = {
        "subject": subject,
        "effectiveDateTime": _datetime(reading.effective_time(local_tz)),
        "issued": _datetime(reading.received_at.astimezone(UTC)),
        "device": {"reference": phd_url},
    }
    seed = f"{key}|{patient_key}"
    observations = []
    for obs_spec in spec.observations:
        entry = _observation(
            obs_spec, found, (seed, reading.kind.value), _meta(obs_spec.profiles, htest), extension, common
        )
        if entry is not None:
            observations.append(entry)
    primary: str = observations[0]["fullUrl"]
    observations.extend(_status_entries(reading, seed, plain_meta, extension, common, primary))
    entries.extend(observations)

    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    return MappedReading(identifier=primary, bundle=bundle, body=orjson.dumps(bundle), entries=entries)


def transaction_bundle(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One transaction from several readings' entries.

    Entries with a fullUrl already seen are dropped, first one kept: the Devices every reading repeats,
    and (harmlessly) any repeat of the same reading, since a transaction may not hold one fullUrl twice.
    Equal fullUrl means equal deterministic identity, so nothing distinct is lost.
    """
    seen: set[str] = set()
    out: list[Mapping[str, Any]] = []
    for entry in entries:
        url = entry.get("fullUrl")
        if isinstance(url, str):
            if url in seen:
                continue
            seen.add(url)
        out.append(entry)
    return {"resourceType": "Bundle", "type": "transaction", "entry": out}
