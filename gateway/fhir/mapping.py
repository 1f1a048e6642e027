"""Reading -> FHIR R4 transaction Bundle, built as plain dicts from the tables in `codes`.

No pydantic here: building and validating fhir.resources models runs ~1,300 Observations/s, far too slow
for draining a backlog. Output is proven equal to validated FHIR by the tests (every kind and option
through `validate_bundle`, plus hypothesis-generated readings). Decisions, after the HL7 PHD IG STU 2
(docs/phd-conformance.md lists each requirement and the test that pins it):

- Identifiers: each PHD Observation carries the IG's conditional-create identifier (PhdBaseObservation
  slice `conditionalCreate`): system = the profile's URL, value = device-patient-type-timestamp, where
  device is the System ID (16 hex) or Bluetooth address (12 hex) without dashes, patient the logical id
  or `value-system`, type the MDC code and timestamp the *device's own* time stamp as seconds since
  2000-01-01 (with its UTC offset in 15-minute units when the device gives one), as in the IG's page
  "Generating the PHD Reported Timestamp". A reading without a device time uses its gateway receive
  time (`rx...`): only this gateway can resend it. The identifier of earlier releases
  (`urn:ietf:rfc:3986` | `urn:uuid:<uuid5(reading key, patient, role)>`) stays as a second identifier,
  and `ifNoneExist` matches either (a comma is OR), so readings stored by an earlier release are not
  created again.
- fullUrls are fresh random `urn:uuid`s on every mapping, never equal to any identifier: servers rewrite
  every string equal to a placeholder (Medplum does), which had turned identifiers into server ids.
- Times: effectiveDateTime is the device time corrected by the known clock offset, with its UTC offset;
  `issued` is the gateway's receive time. When the clock offset is known, a PhdCoincidentTimeStamp
  Observation (gateway time as effective, the device clock as valueDateTime) is added and referenced
  through the CoincidentTimeStampReference extension, so the device's own time can be recovered. A device
  clock far from plausible (gateway.clockcheck) flags the reading as gateway.fhir.clockflag describes.
- Gateway: a PhgDevice of its own, referenced with the core extension `observation-gatewayDevice`.
- Measurement status flags: a PhdBitsEnumerationObservation per flag family, one component per flag
  (ASN1ToHL7 bit code, valueBoolean true), derivedFrom the measurement (IG example `bpm-status`).
  A flag that stands for several bits (see `codes.StatusBit`) is carried as text, and that Observation
  then does not claim the BITs profile. Measurement-Status conditions (questionable, calibrating, early
  estimate) are not bits: `interpretation` (and `preliminary`) on the measurement Observations, per the IG.
- No number (IEEE 11073 special value, failed measurement): `dataAbsentReason` instead of the value,
  per PhdNumericObservation / PhdCompoundNumericObservation.
- Simulated data (reading.simulated or test_data) carries meta.security v3-ActReason#HTEST.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import orjson

from gateway import clockcheck
from gateway.fhir import clockflag
from gateway.fhir import codes as c
from gateway.fhir.devices import condition, phd_device, phg_device
from gateway.fhir.errors import MappingError
from gateway.fhir.model import GatewayInfo, MappedReading
from gateway.fhir.patient import patient_identifier_part, patient_reference
from gateway.reading import Absent, Measurement, Metric, Reading

__all__ = ["fresh_urls", "map_reading", "transaction_bundle"]

_MAX_OFFSET = timedelta(hours=14)
_EPOCH_2000 = datetime(2000, 1, 1)
_QUARTER_HOUR = timedelta(minutes=15)
_ABSENT: dict[Absent, dict[str, Any]] = {
    Absent.NOT_A_NUMBER: c.ABSENT_NAN,
    Absent.NOT_AT_RESOLUTION: c.ABSENT_ERROR,
    Absent.RESERVED: c.ABSENT_ERROR,
    Absent.POSITIVE_INFINITY: c.ABSENT_POS_INF,
    Absent.NEGATIVE_INFINITY: c.ABSENT_NEG_INF,
    Absent.UNSUCCESSFUL: c.ABSENT_ERROR,
    Absent.NOT_PERFORMED: c.ABSENT_NOT_PERFORMED,
}
_HEX_VARIANT = "89ab"


def fresh_urls() -> Iterator[str]:
    """Random (version 4) `urn:uuid` placeholders, 16 at a time from one os.urandom call (speed)."""
    while True:
        block = os.urandom(256).hex()
        for i in range(0, 512, 32):
            h = block[i : i + 32]
            variant = _HEX_VARIANT[int(h[16], 16) & 3]
            yield f"urn:uuid:{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}"


_URLS = fresh_urls()


_NAMESPACE = c.NAMESPACE.bytes


def _urn(seed: str) -> str:
    """`urn:uuid:` + uuid.uuid5(c.NAMESPACE, seed), formatted directly (the uuid module is 3x slower)."""
    h = hashlib.sha1(_NAMESPACE + seed.encode(), usedforsecurity=False).hexdigest()
    variant = _HEX_VARIANT[int(h[16], 16) & 3]
    return f"urn:uuid:{h[:8]}-{h[8:12]}-5{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"


def _datetime(t: datetime) -> str:
    """FHIR dateTime: offsets only in whole minutes within ±14 h; anything odder (LMT zones) goes to UTC."""
    offset = t.utcoffset()
    if offset is None or offset.seconds % 60 or offset.microseconds or abs(offset) > _MAX_OFFSET:
        t = t.astimezone(UTC)
    return t.isoformat()


def _stamp(reading: Reading) -> str:
    """The time stamp part of the PHD identifier: the device's own clock, never the corrected time."""
    t = reading.device_time
    prefix = ""
    if t is None:
        t, prefix = reading.received_at.astimezone(UTC), "rx"
    wall = t.replace(tzinfo=None) - _EPOCH_2000
    seconds = wall.days * 86400 + wall.seconds
    text = f"{prefix}{seconds}" if not wall.microseconds else f"{prefix}{seconds}.{wall.microseconds:06d}"
    offset = t.utcoffset()
    if offset is not None and prefix == "":
        text += f"{offset // _QUARTER_HOUR:+d}"
    return text


def _identifiers(phd_value: str, legacy: str) -> list[dict[str, Any]]:
    return [{"system": c.PHD_IDENTIFIER_SYSTEM, "value": phd_value}, {"system": c.URI, "value": legacy}]


def _entry(full_url: str, resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {"method": "POST", "url": "Observation", "ifNoneExist": condition(resource["identifier"])},
    }


def _quantity(m: Measurement) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(code, valueQuantity) for one measurement, by its metric and the unit the device used.

    valueQuantity is None when the device gave no number (`m.absent`).
    """
    spec = c.QUANTITIES.get((m.metric, m.reported_unit))
    if spec is None:
        raise MappingError(f"no FHIR mapping for {m.metric.value} in {m.reported_unit.value}")
    if m.absent is not None:
        return spec.code, None
    value = m.reported_value if spec.factor is None else round(m.value * spec.factor, spec.digits)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MappingError(f"{m.metric.value} value is not a finite number")
    return spec.code, {"value": value, "unit": spec.unit, "system": c.UCUM, "code": spec.ucum}


def _value(target: dict[str, Any], m: Measurement, quantity: dict[str, Any] | None) -> None:
    if quantity is not None:
        target["valueQuantity"] = quantity
    else:
        assert m.absent is not None
        target["dataAbsentReason"] = _ABSENT[m.absent]


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


_META_CACHE: dict[tuple[tuple[str, ...], bool], dict[str, Any] | None] = {}


def _meta(profiles: tuple[str, ...], htest: bool) -> dict[str, Any] | None:
    key = (profiles, htest)
    try:
        return _META_CACHE[key]
    except KeyError:
        pass
    meta: dict[str, Any] = {}
    if profiles:
        meta["profile"] = list(profiles)
    if htest:
        meta["security"] = [c.HTEST]
    _META_CACHE[key] = out = meta or None
    return out


def _resource(
    meta: dict[str, Any] | None,
    extension: list[dict[str, Any]],
    identifier: list[dict[str, Any]],
    category: Sequence[dict[str, Any]],
    code: dict[str, Any],
    common: dict[str, Any],
) -> dict[str, Any]:
    """An Observation's head, in FHIR's element order (a stable order keeps the body's shape stable)."""
    resource: dict[str, Any] = {"resourceType": "Observation"}
    if meta is not None:
        resource["meta"] = meta
    resource["extension"] = extension
    resource["identifier"] = identifier
    resource["status"] = "final"
    resource["category"] = list(category)
    resource["code"] = code
    resource.update(common)
    return resource


class _Ids:
    """Builds both identifiers of each Observation of one reading."""

    __slots__ = ("prefix", "seed", "suffix")

    def __init__(self, device_part: str, patient_part: str, stamp: str, seed: str) -> None:
        self.prefix = f"{device_part}-{patient_part}-"
        self.suffix = f"-{stamp}"
        self.seed = seed

    def __call__(self, code: dict[str, Any], role: str) -> list[dict[str, Any]]:
        return _identifiers(f"{self.prefix}{c.mdc_code(code)}{self.suffix}", _urn(f"{self.seed}|{role}"))


def _observation(
    spec: c.ObservationSpec,
    found: Mapping[Metric, Measurement],
    ids: _Ids,
    kind: str,
    htest: bool,
    extension: list[dict[str, Any]],
    common: dict[str, Any],
) -> dict[str, Any] | None:
    meta = _meta(spec.all_profiles, htest)
    if spec.value is not None:
        m = found.get(spec.value)
        if m is None:
            if spec.required:
                raise MappingError(f"{kind} reading lacks {spec.value.value}")
            return None
        code, quantity = _quantity(m)
        resource = _resource(meta, extension, ids(code, spec.role), spec.category, code, common)
        _value(resource, m, quantity)
        if spec.body_site is not None:
            resource["bodySite"] = spec.body_site
        return _entry(next(_URLS), resource)
    components = []
    for metric, required in spec.components:
        m = found.get(metric)
        if m is None:
            if required:
                raise MappingError(f"{kind} reading lacks {metric.value}")
            continue
        code, quantity = _quantity(m)
        component: dict[str, Any] = {"code": code}
        _value(component, m, quantity)
        components.append(component)
    assert spec.code is not None  # a panel always has its own code (codes table invariant)
    resource = _resource(meta, extension, ids(spec.code, spec.role), spec.category, spec.code, common)
    resource["component"] = components
    return _entry(next(_URLS), resource)


def _status_entries(
    reading: Reading,
    ids: _Ids,
    htest: bool,
    extension: list[dict[str, Any]],
    common: dict[str, Any],
    primary: str,
) -> list[dict[str, Any]]:
    """One PhdBitsEnumerationObservation per status family, bits in table order."""
    if not reading.status:
        return []
    unknown = reading.status - c.STATUS_BITS.keys() - c.INTERPRETATIONS.keys()
    if unknown:
        raise MappingError(f"no FHIR mapping for status {sorted(s.value for s in unknown)}")
    families: dict[str, list[dict[str, Any]]] = {}
    coded: dict[str, bool] = {}
    for status, bit in c.STATUS_BITS.items():
        if status in reading.status:
            code: dict[str, Any] = {"text": bit.name}
            if bit.code is not None:
                code = {"coding": [{"system": c.ASN1_TO_HL7, "code": bit.code, "display": bit.name}], **code}
            families.setdefault(bit.family, []).append({"code": code, "valueBoolean": True})
            coded[bit.family] = coded.get(bit.family, True) and bit.code is not None
    out = []
    for family, components in families.items():
        family_code = c.BITS_FAMILIES[family]
        meta = _meta((c.PHD_BITS,) if coded[family] else (), htest)
        resource = _resource(
            meta, extension, ids(family_code, f"status-{family}"), (c.PHD_OBSERVATION,), family_code, common
        )
        resource["component"] = components
        resource["derivedFrom"] = [{"reference": primary}]
        out.append(_entry(next(_URLS), resource))
    return out


def _interpret(reading: Reading, observations: list[dict[str, Any]]) -> None:
    """Measurement-Status conditions on each measurement Observation: `interpretation`, `preliminary`.

    PHD IG STU 2, PhdBaseObservation notes, "Measurement Status" (see `codes.INTERPRETATIONS`).
    """
    found = [concept for status, concept in c.INTERPRETATIONS.items() if status in reading.status]
    if not found:
        return
    preliminary = bool(reading.status & c.PRELIMINARY_STATUS)
    for entry in observations:
        resource = entry["resource"]
        if preliminary:
            resource["status"] = "preliminary"
        resource["interpretation"] = list(found)


def _coincident_entry(
    reading: Reading,
    key: str,
    offset: timedelta,
    phd_url: str,
    phg_url: str,
    htest: bool,
    local_tz: tzinfo | None,
) -> dict[str, Any]:
    """PhdCoincidentTimeStamp: at gateway time T (receipt) the device clock read T + offset.

    Subject is the PHD, device the PHG (PHD IG example coin-20181119174911); it says nothing about the
    patient, so its identifier leaves the patient out. The device clock is taken in the gateway's zone.
    """
    gateway_now = reading.received_at
    local = gateway_now.astimezone(local_tz) if local_tz is not None else gateway_now.astimezone()
    resource: dict[str, Any] = {"resourceType": "Observation"}
    meta = _meta((c.PHD_COINCIDENT,), htest)
    if meta is not None:
        resource["meta"] = meta
    resource["identifier"] = [{"system": c.URI, "value": _urn(f"{key}|coincident-time")}]
    resource["status"] = "final"
    resource["code"] = c.COINCIDENT_CODE
    resource["subject"] = {"reference": phd_url}
    resource["effectiveDateTime"] = _datetime(gateway_now)
    resource["valueDateTime"] = _datetime(local + offset)
    resource["device"] = {"reference": phg_url}
    resource["component"] = [c.TIME_SYNC_COMPONENT]
    return _entry(next(_URLS), resource)


def map_reading(
    reading: Reading,
    patient: str,
    gateway: GatewayInfo,
    *,
    local_tz: tzinfo | None = None,
    test_data: bool = False,
    clock_limit: timedelta = clockcheck.DEFAULT_LIMIT,
) -> MappedReading:
    """Map one reading for one patient to a transaction Bundle with fresh placeholder fullUrls.

    The same input gives the same resources and identifiers; only the fullUrls (and references to
    them) differ between calls. Raises MappingError (message free of PHI) when the reading cannot be
    FHIR: unknown kind, a required metric missing, a stray or repeated metric, an unmapped unit or
    status, a control-solution test, a non-finite value, or a malformed patient binding.
    """
    spec = c.KINDS.get(reading.kind)
    if spec is None:
        raise MappingError(f"no FHIR mapping for kind {reading.kind.value}")
    if reading.status & c.REJECTED_STATUS:
        raise MappingError("control-solution and device test readings are not patient data")
    subject, patient_key = patient_reference(patient)
    found = _measurements(reading, spec)
    htest = test_data or reading.simulated

    phd = phd_device(reading.device, reading.kind, htest)  # first: it refuses a device without identity
    key = reading.idempotency_key
    phg = phg_device(gateway)
    phd_url = next(_URLS)
    phg_url = next(_URLS)
    entries: list[dict[str, Any]] = [
        {"fullUrl": phd_url, "resource": phd.resource, "request": phd.request},
        {"fullUrl": phg_url, "resource": phg.resource, "request": phg.request},
    ]
    extension: list[dict[str, Any]] = [{"url": c.EXT_GATEWAY, "valueReference": {"reference": phg_url}}]
    verdict = clockcheck.judge(reading, clock_limit, local_tz)  # an implausible device clock (gateway.fhir.clockflag)
    time_fault = verdict is not None and clockflag.is_time_fault(verdict)
    if reading.clock_offset is not None or time_fault:
        coin = _coincident_entry(reading, key, reading.clock_offset or timedelta(0), phd_url, phg_url, htest, local_tz)
        if time_fault:
            clockflag.time_fault_coincident(coin["resource"])
        entries.append(coin)
        extension.append({"url": c.EXT_COINCIDENT, "valueReference": {"reference": coin["fullUrl"]}})

    common = {
        "subject": subject,
        "effectiveDateTime": _datetime(reading.effective_time(local_tz)),
        "issued": _datetime(reading.received_at.astimezone(UTC)),
        "device": {"reference": phd_url},
    }
    ids = _Ids(phd.id_part, patient_identifier_part(patient), _stamp(reading), f"{key}|{patient_key}")
    observations = []
    for obs_spec in spec.observations:
        entry = _observation(obs_spec, found, ids, reading.kind.value, htest, extension, common)
        if entry is not None:
            observations.append(entry)
    _interpret(reading, observations)
    primary_entry = observations[0]
    observations.extend(_status_entries(reading, ids, htest, extension, common, primary_entry["fullUrl"]))
    if verdict is not None:
        received = _datetime(reading.received_at.astimezone(UTC))
        clockflag.flag_observations([o["resource"] for o in observations], verdict, received)
    entries.extend(observations)

    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    identifier: str = primary_entry["resource"]["identifier"][0]["value"]
    return MappedReading(identifier=identifier, bundle=bundle, body=orjson.dumps(bundle), entries=entries)


def _identity(entry: Mapping[str, Any]) -> str | None:
    """What a conditional create matches on: equal identity means the same server resource."""
    request = entry.get("request")
    if isinstance(request, Mapping) and isinstance(request.get("ifNoneExist"), str):
        return f"{request.get('url')}?{request['ifNoneExist']}"
    return None


def _rewrite(node: Any, moved: Mapping[str, str]) -> Any:
    if isinstance(node, Mapping):
        ref = node.get("reference")
        if isinstance(ref, str) and ref in moved:
            return {k: (moved[ref] if k == "reference" else v) for k, v in node.items()}
        return {k: _rewrite(v, moved) for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite(v, moved) for v in node]
    return node


def transaction_bundle(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One transaction from several readings' entries.

    An entry whose conditional-create identity (url + ifNoneExist) was already seen is dropped, first
    one kept, and references to the dropped entry's fullUrl are pointed at the kept one: the Devices
    every reading repeats, and any repeat of the same reading (a transaction may not create the same
    resource twice; Medplum refuses "Duplicate resource identity"). Equal identity is the same server
    resource, so nothing distinct is lost. The input entries are not modified (they are shared).
    """
    return {"resourceType": "Bundle", "type": "transaction", "entry": merge_entries(entries)[0]}


def merge_entries(entries: Sequence[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], list[int]]:
    """(merged entries, for each input entry the index of the merged entry that stands for it)."""
    out: list[Mapping[str, Any]] = []
    where: list[int] = []
    kept: dict[str, int] = {}
    moved: dict[str, str] = {}
    for entry in entries:
        ident = _identity(entry)
        if ident is not None and ident in kept:
            index = kept[ident]
            url, first = entry.get("fullUrl"), out[index].get("fullUrl")
            if isinstance(url, str) and isinstance(first, str) and url != first:
                moved[url] = first
            where.append(index)
            continue
        if ident is not None:
            kept[ident] = len(out)
        where.append(len(out))
        out.append(entry)
    if moved:
        out = [{**e, "resource": _rewrite(e.get("resource"), moved)} if "resource" in e else e for e in out]
    return out, where
