"""Random readings through the dict-built mapping: every bundle must pass full fhir.resources R4B validation.

This is the proof that the hot path (plain dicts + orjson, no pydantic) emits valid FHIR for inputs the
hand-written cases did not think of: odd time zones, clock offsets, device strings with control
characters, every status combination, extreme values.
"""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta, timezone, tzinfo

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.clockcheck import judge
from gateway.fhir import GatewayInfo, MappedReading, MappingError, map_reading, validate_bundle
from gateway.reading import Absent, DeviceIdentity, Kind, Measurement, Metric, Reading, Status, Unit

UNITS: dict[Metric, list[Unit]] = {
    Metric.SYSTOLIC: [Unit.MMHG, Unit.KPA],
    Metric.DIASTOLIC: [Unit.MMHG, Unit.KPA],
    Metric.MEAN_ARTERIAL: [Unit.MMHG, Unit.KPA],
    Metric.PULSE_RATE: [Unit.PER_MIN],
    Metric.BODY_WEIGHT: [Unit.KG, Unit.LB],
    Metric.BMI: [Unit.KG_PER_M2],
    Metric.BODY_HEIGHT: [Unit.M, Unit.IN],
    Metric.GLUCOSE: [Unit.MG_DL, Unit.MMOL_L],
}
# kind -> (required metrics, optional metrics)
SHAPES: dict[Kind, tuple[list[Metric], list[Metric]]] = {
    Kind.BLOOD_PRESSURE: ([Metric.SYSTOLIC, Metric.DIASTOLIC], [Metric.MEAN_ARTERIAL, Metric.PULSE_RATE]),
    Kind.PULSE_RATE: ([Metric.PULSE_RATE], []),
    Kind.BODY_WEIGHT: ([Metric.BODY_WEIGHT], [Metric.BMI, Metric.BODY_HEIGHT]),
    Kind.BLOOD_GLUCOSE: ([Metric.GLUCOSE], []),
}
CONVERTED = {
    Unit.KPA: 1 / 0.133322387415,
    Unit.M: 100.0,
}  # units the profiles do not allow, and their factors

values = st.one_of(
    st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False),
    st.integers(min_value=0, max_value=10**6).map(float),
    st.sampled_from([0.0, -0.0, 1e-7, 5e-324, 120.0, 0.005]),
)
texts = st.one_of(st.none(), st.text(max_size=12), st.text(alphabet=string.printable, max_size=12))
offsets = st.integers(min_value=-14 * 3600, max_value=14 * 3600).map(lambda s: timezone(timedelta(seconds=s)))
zones: st.SearchStrategy[tzinfo] = st.one_of(st.just(UTC), offsets, st.timezones())


@st.composite
def devices(draw: st.DrawFn) -> DeviceIdentity:
    system_id = draw(st.one_of(st.none(), st.text(alphabet="0123456789abcdefABCDEF", min_size=16, max_size=16)))
    address = draw(
        st.one_of(
            st.none(),
            st.from_regex(r"\A[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}\Z"),
            st.sampled_from(["/dev/ttyUSB0", "/dev/ttyACM1"]),
        )
    )
    serial = draw(texts)
    if not (system_id or serial or address):
        address = "/dev/ttyUSB0"
    return DeviceIdentity(
        driver=draw(st.sampled_from(["ble-bp", "ble-scale", "onetouch"])),
        address=address,
        serial_number=serial,
        system_id=system_id,
        manufacturer=draw(texts),
        model=draw(texts),
        firmware=draw(texts),
    )


@st.composite
def readings(draw: st.DrawFn) -> Reading:
    kind = draw(st.sampled_from(list(SHAPES)))
    required, optional = SHAPES[kind]
    metrics = required + [m for m in optional if draw(st.booleans())]
    measurements = tuple(
        Measurement(m, draw(values), unit)
        if (why := draw(st.one_of(st.none(), st.none(), st.none(), st.sampled_from(list(Absent))))) is None
        else Measurement.missing(m, unit, why)
        for m in metrics
        for unit in [draw(st.sampled_from(UNITS[m]))]
    )
    received = draw(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=zones))
    device_time = draw(
        st.one_of(
            st.none(),
            st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
            st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=zones),
        )
    )
    offset = draw(st.one_of(st.none(), st.timedeltas(min_value=timedelta(days=-10), max_value=timedelta(days=10))))
    return Reading(
        kind=kind,
        measurements=measurements,
        device=draw(devices()),
        received_at=received,
        device_time=device_time,
        clock_offset=offset,
        user_slot=draw(st.one_of(st.none(), st.integers(0, 255))),
        sequence=draw(st.one_of(st.none(), st.integers(0, 65535))),
        status=frozenset(
            draw(st.sets(st.sampled_from(sorted(set(Status) - {Status.CONTROL_SOLUTION, Status.TEST_DATA}))))
        ),
        simulated=draw(st.booleans()),
    )


patients = st.one_of(
    st.from_regex(r"\A[A-Za-z0-9\-.]{1,64}\Z").map(lambda i: f"Patient/{i}"),
    st.from_regex(r"\A[A-Za-z0-9\-.]{1,64}\Z"),
    st.tuples(
        st.sampled_from(["urn:oid:1.2.36.146.595.217.0.1", "https://hospital.example/mrn", "urn:uuid:x"]),
        st.text(
            alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x2FF, exclude_categories=("Cc", "Zs")),
            min_size=1,
            max_size=20,
        ),
    ).map(lambda p: f"{p[0]}|{p[1]}"),
)


def absences(bundle: dict[str, object]) -> int:
    """How many values went as dataAbsentReason (on an Observation or a component), the Coincident Time
    Stamp's time fault (gateway.fhir.clockflag) aside."""
    count = 0
    for entry in bundle["entry"]:  # type: ignore[attr-defined]
        resource = entry["resource"]
        if "PhdCoincidentTimeStampObservation" in str(resource.get("meta")):
            continue
        count += "dataAbsentReason" in resource
        count += sum("dataAbsentReason" in c for c in resource.get("component", []))
    return count


def quantities(bundle: dict[str, object]) -> list[float]:
    out = []
    for entry in bundle["entry"]:  # type: ignore[attr-defined]
        resource = entry["resource"]
        if "valueQuantity" in resource:
            out.append(resource["valueQuantity"]["value"])
        out += [c["valueQuantity"]["value"] for c in resource.get("component", []) if "valueQuantity" in c]
    return out


def _positional(mapped: MappedReading) -> bytes:
    body = mapped.body.decode()
    for i, entry in enumerate(mapped.entries):
        body = body.replace(entry["fullUrl"], f"urn:uuid:entry-{i}")
    return body.encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    reading=readings(),
    patient=patients,
    local_tz=st.one_of(st.none(), zones),
    test_data=st.booleans(),
    gateway_id=st.from_regex(r"\A[a-z0-9][a-z0-9\-]{0,20}\Z"),
)
def test_random_readings_validate(
    reading: Reading, patient: str, local_tz: tzinfo | None, test_data: bool, gateway_id: str
) -> None:
    gateway = GatewayInfo(id=gateway_id, version="0.1.0")
    mapped = map_reading(reading, patient, gateway, local_tz=local_tz, test_data=test_data)
    validate_bundle(mapped.bundle)
    assert orjson.loads(mapped.body) == mapped.bundle
    again = map_reading(reading, patient, gateway, local_tz=local_tz, test_data=test_data)
    assert _positional(again) == _positional(mapped)  # same resources; only the fresh placeholders differ

    got = quantities(mapped.bundle)
    numbers = [m for m in reading.measurements if m.absent is None]
    assert len(got) == len(numbers)
    assert absences(mapped.bundle) == len(reading.measurements) - len(numbers)  # kept, not dropped
    for m in numbers:  # the device's own number, exactly, unless the profile fixes the unit
        if m.reported_unit in CONVERTED:
            want = m.reported_value * CONVERTED[m.reported_unit]
            # rounded to 0.1 (plus float noise)
            match = next(g for g in got if abs(g - want) <= 0.05 + 1e-9 * max(1.0, abs(want)))
        else:
            match = next(g for g in got if g == m.reported_value)
        got.remove(match)
    security = [
        e["resource"].get("meta", {}).get("security")
        for e in mapped.entries
        if e["resource"]["resourceType"] == "Observation"
    ]
    htest = [
        {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
            "code": "HTEST",
            "display": "test health data",
        }
    ]
    assert all(s == (htest if test_data or reading.simulated else None) for s in security)
    # An implausible device clock flags every measurement Observation; a time fault has no effectiveDateTime.
    verdict = judge(reading, local_tz=local_tz)
    measured = [e["resource"] for e in mapped.entries if "issued" in e["resource"]]
    assert all(("note" in r) == (verdict is not None) for r in measured)
    fault = verdict is not None and verdict.problem != "offset"
    assert all(("effectivePeriod" in r) == fault and ("effectiveDateTime" in r) != fault for r in measured)


PATIENT_ERRORS = {
    "patient binding: identifier system is not an absolute URI",
    "patient binding: identifier value is empty or has control characters",
    "patient binding must be 'Patient/<id>', '<id>' or '<system>|<value>'",
}


@settings(max_examples=300, deadline=None)
@given(patient=st.text(max_size=40), reading=readings())
def test_any_patient_text_is_refused_or_valid(patient: str, reading: Reading) -> None:
    """Whatever an operator typed: a MappingError without the text in it, or a bundle that validates."""
    try:
        mapped = map_reading(reading, patient, GatewayInfo(id="gw", version="1"))
    except MappingError as exc:
        assert str(exc) in PATIENT_ERRORS  # fixed texts: nothing of the input is repeated
        return
    validate_bundle(mapped.bundle)
