"""FHIR mapping: every kind and option through full R4B validation, with exact codes, units and values.

Expected codes come from this file's own tables, written from the sources (HL7 PHD IG STU 2 examples
`bloodPress`, `bpm-status`, `coin-20181119174911`; FHIR R4 vital-signs profiles; LOINC), not from
`gateway.fhir.codes`, so a wrong table entry fails here.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import subprocess
import sys
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.fhir import (
    GatewayInfo,
    InvalidBundleError,
    MappedReading,
    MappingError,
    map_reading,
    transaction_bundle,
    validate_bundle,
)
from gateway.reading import DeviceIdentity, Kind, Measurement, Metric, Reading, Status, Unit

ROOT = Path(__file__).resolve().parents[1]
GATEWAY = GatewayInfo(id="vitalgate-01", version="0.1.0")
PLUS_ONE = timezone(timedelta(hours=1))
RECEIVED = datetime(2026, 11, 24, 13, 0, 5, 250000, tzinfo=UTC)
DEVICE_TIME = datetime(2026, 11, 24, 13, 58, 30)  # zone-less device clock, local time +01:00
BLE = DeviceIdentity(
    driver="ble-bp",
    address="00:1c:05:ff:e8:74",
    serial_number="501900083",
    system_id="74e8fffeff051c00",
    manufacturer="Acme Medical",
    model="BP-7",
    firmware="r2.1",
)
SERIAL_ONLY = DeviceIdentity(driver="onetouch", address="/dev/ttyUSB0", serial_number="C1234")

MDC = "urn:iso:std:iso:11073:10101"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
URI = "urn:ietf:rfc:3986"
GATEWAY_EXT = "http://hl7.org/fhir/StructureDefinition/observation-gatewayDevice"
COINCIDENT_EXT = "http://hl7.org/fhir/uv/phd/StructureDefinition/CoincidentTimeStampReference"
HTEST = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
    "code": "HTEST",
    "display": "test health data",
}
VITAL = ("http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs")
LAB = ("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory")
PHD = ("http://hl7.org/fhir/uv/phd/CodeSystem/PhdObservationCategories", "phd")  # STU 2 (STU 1.1: phd-observation)
PHD_SD = "http://hl7.org/fhir/uv/phd/StructureDefinition/"
PHD_ID = PHD_SD + "PhdBaseObservation"  # the conditionalCreate identifier slice's fixed system
ASN1 = "http://terminology.hl7.org/CodeSystem/ASN1ToHL7"
# Identifier time stamp (PHD IG "Generating the PHD Reported Timestamp"): the device clock in seconds since
# 2000-01-01; 2026-11-24T13:58:30 is 9824 days + 50,310 s. Without a device time: our receive time.
STAMPS = {"none": "rx848840405.250000", "device": "848843910", "device+offset": "848843910"}
PATIENT_PARTS = {
    "Patient/123": "123",
    "123": "123",
    "urn:oid:1.2.36.146.595.217.0.1|MRN-77": "MRN-77-urn:oid:1.2.36.146.595.217.0.1",
}
URN_UUID = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
MMHG_PER_KPA = 1 / 0.133322387415  # 1 mmHg = 133.322387415 Pa (conventional, not the torr)

# (metric, reported unit) -> ([(system, code)] of Observation.code, UCUM code, unit text, convert)
EXPECTED: dict[tuple[Metric, Unit], tuple[list[tuple[str, str]], str, str, Any]] = {
    (Metric.SYSTOLIC, Unit.MMHG): ([(MDC, "150021"), (LOINC, "8480-6")], "mm[Hg]", "mmHg", None),
    (Metric.SYSTOLIC, Unit.KPA): ([(MDC, "150021"), (LOINC, "8480-6")], "mm[Hg]", "mmHg", MMHG_PER_KPA),
    (Metric.DIASTOLIC, Unit.MMHG): ([(MDC, "150022"), (LOINC, "8462-4")], "mm[Hg]", "mmHg", None),
    (Metric.DIASTOLIC, Unit.KPA): ([(MDC, "150022"), (LOINC, "8462-4")], "mm[Hg]", "mmHg", MMHG_PER_KPA),
    (Metric.MEAN_ARTERIAL, Unit.MMHG): ([(MDC, "150023"), (LOINC, "8478-0")], "mm[Hg]", "mmHg", None),
    (Metric.MEAN_ARTERIAL, Unit.KPA): ([(MDC, "150023"), (LOINC, "8478-0")], "mm[Hg]", "mmHg", MMHG_PER_KPA),
    (Metric.PULSE_RATE, Unit.PER_MIN): ([(MDC, "149546"), (LOINC, "8867-4")], "/min", "beats/minute", None),
    (Metric.BODY_WEIGHT, Unit.KG): ([(MDC, "188736"), (LOINC, "29463-7")], "kg", "kg", None),
    (Metric.BODY_WEIGHT, Unit.LB): ([(MDC, "188736"), (LOINC, "29463-7")], "[lb_av]", "lb", None),
    (Metric.BMI, Unit.KG_PER_M2): ([(MDC, "188752"), (LOINC, "39156-5")], "kg/m2", "kg/m2", None),
    (Metric.BODY_HEIGHT, Unit.M): ([(MDC, "188740"), (LOINC, "8302-2")], "cm", "cm", 100.0),
    (Metric.BODY_HEIGHT, Unit.IN): ([(MDC, "188740"), (LOINC, "8302-2")], "[in_i]", "in", None),
    (Metric.GLUCOSE, Unit.MG_DL): ([(MDC, "160184"), (LOINC, "41653-7")], "mg/dL", "mg/dL", None),
    (Metric.GLUCOSE, Unit.MMOL_L): ([(MDC, "160184"), (LOINC, "14743-9")], "mmol/L", "mmol/L", None),
    # pulse oximetry (IEEE 11073-10404 terms; R4 oxygensat fixes LOINC 2708-6, US Core adds 59408-5)
    (Metric.SPO2, Unit.PERCENT): ([(MDC, "150456"), (LOINC, "59408-5"), (LOINC, "2708-6")], "%", "%", None),
    (Metric.PULSE_RATE_OXIMETRY, Unit.PER_MIN): ([(MDC, "149530"), (LOINC, "8867-4")], "/min", "beats/minute", None),
    (Metric.PULSE_AMPLITUDE_INDEX, Unit.PERCENT): ([(MDC, "150488")], "%", "%", None),
    # body composition (IEEE 11073-10420 terms; LOINC only for body fat)
    (Metric.BODY_FAT, Unit.PERCENT): ([(MDC, "188748"), (LOINC, "41982-0")], "%", "%", None),
    (Metric.MUSCLE_PERCENT, Unit.PERCENT): ([(MDC, "188772")], "%", "%", None),
    (Metric.IMPEDANCE, Unit.OHM): ([(MDC, "188780")], "Ohm", "Ohm", None),
    (Metric.BASAL_METABOLISM, Unit.KJ): ([(MDC, "188768")], "kJ", "kJ", None),
}
# body temperature by site (IEEE 11073-10408): MDC term per site, always LOINC 8310-5 (R4 bodytemp)
_TEMP_MDC = {
    Metric.BODY_TEMPERATURE: "150364",
    Metric.TEMPERATURE_AXILLA: "188452",
    Metric.TEMPERATURE_EAR: "188428",
    Metric.TEMPERATURE_FINGER: "188432",
    Metric.TEMPERATURE_GIT: "188456",
    Metric.TEMPERATURE_ORAL: "188424",
    Metric.TEMPERATURE_RECTAL: "188420",
    Metric.TEMPERATURE_TOE: "188448",
    Metric.TEMPERATURE_TYMPANUM: "150392",
}
for _m, _code in _TEMP_MDC.items():
    EXPECTED[(_m, Unit.CEL)] = ([(MDC, _code), (LOINC, "8310-5")], "Cel", "C", None)
    EXPECTED[(_m, Unit.DEG_F)] = ([(MDC, _code), (LOINC, "8310-5")], "[degF]", "F", None)
for _m, _code in (
    (Metric.MUSCLE_MASS, "188776"),
    (Metric.FAT_FREE_MASS, "188756"),
    (Metric.SOFT_LEAN_MASS, "188760"),
    (Metric.BODY_WATER_MASS, "188764"),
):
    EXPECTED[(_m, Unit.KG)] = ([(MDC, _code)], "kg", "kg", None)
    EXPECTED[(_m, Unit.LB)] = ([(MDC, _code)], "[lb_av]", "lb", None)
# role of the numeric Observation a metric becomes -> (categories, profiles)
VS = "http://hl7.org/fhir/StructureDefinition/"
NUMERIC: dict[Metric, tuple[list[tuple[str, str]], list[str]]] = {
    Metric.PULSE_RATE: ([VITAL, PHD], [PHD_SD + "PhdNumericObservation", VS + "vitalsigns", VS + "heartrate"]),
    Metric.BODY_WEIGHT: ([VITAL, PHD], [PHD_SD + "PhdNumericObservation", VS + "vitalsigns", VS + "bodyweight"]),
    Metric.BMI: ([VITAL, PHD], [PHD_SD + "PhdNumericObservation", VS + "vitalsigns", VS + "bmi"]),
    Metric.BODY_HEIGHT: ([VITAL, PHD], [PHD_SD + "PhdNumericObservation", VS + "vitalsigns", VS + "bodyheight"]),
    Metric.GLUCOSE: ([LAB, PHD], [PHD_SD + "PhdNumericObservation"]),
}
# status -> (MDC code of the BITs observation, ASN1ToHL7 bit code or None when only text is carried, name)
BITS: dict[Status, tuple[str, str | None, str]] = {
    Status.BODY_MOVEMENT: ("8410608", "8410608.0", "body-movement"),
    Status.CUFF_LOOSE: ("8410608", "8410608.1", "cuff-too-loose"),
    Status.IRREGULAR_PULSE: ("8410608", "8410608.2", "irregular-pulse"),
    Status.PULSE_RATE_ABOVE_RANGE: ("8410608", "8410608.3", "pulse-over-range-limit"),
    Status.PULSE_RATE_BELOW_RANGE: ("8410608", "8410608.4", "pulse-under-range-limit"),
    Status.PULSE_RATE_OUT_OF_RANGE: ("8410608", None, "pulse-rate-out-of-range"),  # queued by 0.1: no direction
    Status.IMPROPER_POSITION: ("8410608", "8410608.5", "improper-body-position"),
    Status.BATTERY_LOW: ("8417752", "8417752.0", "device-battery-low"),
    Status.SENSOR_FAULT: ("8417752", None, "sensor-fault"),  # several bits folded: text only
    Status.VALUE_ABOVE_RANGE: ("8417752", "8417752.5", "sensor-result-too-high"),
    Status.VALUE_BELOW_RANGE: ("8417752", "8417752.6", "sensor-result-too-low"),
    Status.DEVICE_FAULT: ("8417752", "8417752.10", "device-gen-fault"),
    Status.TIME_FAULT: ("8417752", None, "time-fault"),  # no ASN1ToHL7 bit for it
    Status.DEVICE_ANNUNCIATION: ("8417752", None, "device-annunciation"),  # likewise (queued by 0.1)
    # pulse oximeter device and sensor status MDC_PULS_OXIM_DEV_STATUS, bit by bit: written from the PHD IG's
    # CodeSystem ASN1ToHL7 (HL7/phd input/fsh/CodeSystem.ASN1ToHL7.fsh, codes 150604.0-.15 and their displays)
    Status.PLX_SENSOR_DISCONNECTED: ("150604", "150604.0", "sensor-disconnected"),
    Status.PLX_SENSOR_MALFUNCTION: ("150604", "150604.1", "sensor-malfunction"),
    Status.PLX_SENSOR_DISPLACED: ("150604", "150604.2", "sensor-displaced"),
    Status.PLX_SENSOR_UNSUPPORTED: ("150604", "150604.3", "sensor-unsupported"),
    Status.PLX_SENSOR_OFF: ("150604", "150604.4", "sensor-off"),
    Status.PLX_SENSOR_INTERFERENCE: ("150604", "150604.5", "sensor-interference"),
    Status.PLX_SIGNAL_SEARCHING: ("150604", "150604.6", "signal-searching"),
    Status.PLX_PULSE_QUESTIONABLE: ("150604", "150604.7", "signal-pulse-questionable"),
    Status.PLX_SIGNAL_NON_PULSATILE: ("150604", "150604.8", "signal-non-pulsatile"),
    Status.PLX_SIGNAL_ERRATIC: ("150604", "150604.9", "signal-erratic"),
    Status.LOW_PERFUSION: ("150604", "150604.10", "signal-low-perfusion"),
    Status.PLX_SIGNAL_POOR: ("150604", "150604.11", "signal-poor"),
    Status.PLX_SIGNAL_INADEQUATE: ("150604", "150604.12", "signal-inadequate"),
    Status.PLX_SIGNAL_PROCESSING_IRREGULARITY: ("150604", "150604.13", "signal-processing-irregularity"),
    Status.PLX_EQUIPMENT_MALFUNCTION: ("150604", "150604.14", "device-equipment-malfunction"),
    Status.PLX_EXTENDED_DISPLAY_UPDATE: ("150604", "150604.15", "device-extended-update"),
    Status.SIGNAL_QUALITY: ("150604", None, "signal-quality"),  # folded by an earlier release: text only
}
POCD = "http://hl7.org/fhir/uv/pocd/CodeSystem/measurement-status"
# Measurement-Status conditions -> Observation.interpretation (PHD IG STU 2, PhdBaseObservation notes, table
# "Measurement Status": Questionable -> PoCDStatus#questionable, Calibrating -> #calibration-ongoing,
# Early-estimate -> #early-indication with status preliminary)
INTERPRETATION: dict[Status, str] = {
    Status.QUESTIONABLE_MEASUREMENT: "questionable",
    Status.CALIBRATION_ONGOING: "calibration-ongoing",
    Status.EARLY_ESTIMATE: "early-indication",
}
REFUSED = {Status.CONTROL_SOLUTION, Status.TEST_DATA}  # not patient data: never an Observation
PATIENTS = {
    "Patient/123": {"reference": "Patient/123"},
    "123": {"reference": "Patient/123"},
    "urn:oid:1.2.36.146.595.217.0.1|MRN-77": {
        "type": "Patient",
        "identifier": {"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "MRN-77"},
    },
}
# timestamp variants: (device_time, clock_offset, expected effectiveDateTime)
TIMES = {
    "none": (None, None, "2026-11-24T13:00:05.250000+00:00"),
    "device": (DEVICE_TIME, None, "2026-11-24T13:58:30+01:00"),
    "device+offset": (DEVICE_TIME, timedelta(seconds=90), "2026-11-24T13:57:00+01:00"),
}


def codings(concept: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["system"], c["code"]) for c in concept.get("coding", [])]


def resources(mapped: MappedReading, kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in mapped.entries if e["resource"]["resourceType"] == kind]


def by_code(mapped: MappedReading, system: str, code: str) -> list[dict[str, Any]]:
    return [r for r in resources(mapped, "Observation") if (system, code) in codings(r["code"])]


def expected_quantity(m: Measurement) -> dict[str, Any]:
    _, ucum, unit, convert = EXPECTED[(m.metric, m.reported_unit)]
    value = m.reported_value if convert is None else round(m.reported_value * convert, 1)
    return {"value": value, "unit": unit, "system": UCUM, "code": ucum}


def reading(
    kind: Kind,
    *measurements: tuple[Metric, float, Unit],
    device: DeviceIdentity = BLE,
    time: str = "device",
    status: frozenset[Status] = frozenset(),
    simulated: bool = False,
    sequence: int | None = 7,
) -> Reading:
    device_time, offset, _ = TIMES[time]
    return Reading(
        kind=kind,
        measurements=tuple(Measurement(*m) for m in measurements),
        device=device,
        received_at=RECEIVED,
        device_time=device_time,
        clock_offset=offset,
        user_slot=1,
        sequence=sequence,
        status=status,
        simulated=simulated,
    )


def check(r: Reading, patient: str, *, time: str, test_data: bool = False) -> MappedReading:
    """Map, validate, and assert everything every bundle must satisfy; return it for kind-specific checks."""
    mapped = map_reading(r, patient, GATEWAY, local_tz=PLUS_ONE, test_data=test_data)
    validate_bundle(mapped.bundle)
    assert orjson.loads(mapped.body) == mapped.bundle
    assert mapped.entries is mapped.bundle["entry"]
    assert mapped.bundle["type"] == "transaction"
    htest = test_data or r.simulated

    devices = resources(mapped, "Device")
    assert len(devices) == 2
    phd_url, phg_url = mapped.entries[0]["fullUrl"], mapped.entries[1]["fullUrl"]
    assert phd_url != phg_url
    assert [t["coding"][0]["code"] for t in (d["type"] for d in devices)] == ["65573", "531981"]
    assert ("security" in devices[0].get("meta", {})) is htest
    assert devices[1]["meta"] == {"profile": [PHD_SD + "PhgDevice"]}
    urls = [e["fullUrl"] for e in mapped.entries]
    assert all(URN_UUID.fullmatch(u) for u in urls) and len(set(urls)) == len(urls)
    every_identifier = [i["value"] for e in mapped.entries for i in e["resource"]["identifier"]]
    assert not any(u in v for u in urls for v in every_identifier)  # servers rewrite placeholder strings

    observations = resources(mapped, "Observation")
    coincident = [o for o in observations if codings(o["code"]) == [(MDC, "67975")]]
    measured = [o for o in observations if o not in coincident]
    assert len(coincident) == (1 if TIMES[time][1] is not None else 0)
    prefix = f"74E8FFFEFF051C00-{PATIENT_PARTS[patient]}-" if r.device == BLE else None
    for entry in mapped.entries:
        resource = entry["resource"]
        assert entry["request"]["method"] == "POST"
        assert entry["request"]["url"] == resource["resourceType"]
        if resource in measured:
            phd_id, legacy = resource["identifier"]
            assert phd_id["system"] == PHD_ID and legacy["system"] == URI
            if prefix is not None:
                mdc = codings(resource["code"])[0][1]
                assert phd_id["value"] == f"{prefix}{mdc}-{STAMPS[time]}"
            assert entry["request"]["ifNoneExist"] == (
                f"identifier={PHD_ID}|{phd_id['value'].replace('|', '%5C%7C')},{URI}|{legacy['value']}"
            )
        if resource["resourceType"] == "Observation":
            preliminary = is_measurement(resource) and Status.EARLY_ESTIMATE in r.status
            assert resource["status"] == ("preliminary" if preliminary else "final")
            assert (resource.get("meta", {}).get("security") == [HTEST]) is htest
            assert "security" in resource.get("meta", {}) or not htest
    for o in measured:
        assert o["subject"] == PATIENTS[patient]
        assert o["device"] == {"reference": phd_url}
        assert o["effectiveDateTime"] == TIMES[time][2]
        assert o["issued"] == "2026-11-24T13:00:05.250000+00:00"
        expected_ext = [{"url": GATEWAY_EXT, "valueReference": {"reference": phg_url}}]
        if coincident:
            expected_ext.append(
                {
                    "url": COINCIDENT_EXT,
                    "valueReference": {"reference": urls[2]},
                }
            )
        assert o["extension"] == expected_ext
    if coincident:
        coin = coincident[0]
        assert coin["subject"] == {"reference": phd_url}
        assert coin["device"] == {"reference": phg_url}
        assert coin["effectiveDateTime"] == "2026-11-24T13:00:05.250000+00:00"
        # the gateway's 14:00:05.25 (+01:00) read 90 s later on the device clock
        assert coin["valueDateTime"] == "2026-11-24T14:01:35.250000+01:00"
        assert coin["meta"]["profile"] == [PHD_SD + "PhdCoincidentTimeStampObservation"]
    assert mapped.identifier == measured[0]["identifier"][0]["value"]
    check_status(mapped, r, measured[0])
    check_interpretation(mapped, r)
    return mapped


def check_status(mapped: MappedReading, r: Reading, primary: dict[str, Any]) -> None:
    families: dict[str, list[tuple[str | None, str]]] = {}
    for status in BITS:  # frozen order: the order of the PHD bit table
        if status in r.status:
            family, code, name = BITS[status]
            families.setdefault(family, []).append((code, name))
    bits_obs = [
        o for o in resources(mapped, "Observation") if codings(o["code"])[0][1] in ("8410608", "8417752", "150604")
    ]
    assert [codings(o["code"]) for o in bits_obs] == [[(MDC, f)] for f in families]
    for o, (_family, _bits) in zip(bits_obs, families.items(), strict=True):
        bits = _bits
        assert [c for cat in o["category"] for c in codings(cat)] == [PHD]
        primary_url = next(e["fullUrl"] for e in mapped.entries if e["resource"] is primary)
        assert o["derivedFrom"] == [{"reference": primary_url}]
        all_coded = all(code is not None for code, _ in _bits)
        assert o.get("meta", {}).get("profile", []) == ([PHD_SD + "PhdBitsEnumerationObservation"] if all_coded else [])
        got = [
            (comp["code"]["coding"][0]["code"] if "coding" in comp["code"] else None, comp["code"]["text"])
            for comp in o["component"]
        ]
        assert got == bits
        for comp in o["component"]:
            assert comp["valueBoolean"] is True and "valueCodeableConcept" not in comp
            if "coding" in comp["code"]:
                assert comp["code"]["coding"][0]["system"] == ASN1


def check_interpretation(mapped: MappedReading, r: Reading) -> None:
    """Measurement-Status conditions on every measurement Observation (not the BITs or coincident ones)."""
    codes = [code for status, code in INTERPRETATION.items() if status in r.status]
    for o in resources(mapped, "Observation"):
        got = [(cd["system"], cd["code"]) for i in o.get("interpretation", []) for cd in i["coding"]]
        assert got == ([(POCD, code) for code in codes] if is_measurement(o) else [])


def is_measurement(o: dict[str, Any]) -> bool:
    """A measured value (numeric or panel), not a BITs status or coincident time stamp Observation."""
    return codings(o["code"])[0][1] not in ("8410608", "8417752", "150604", "67975")


def check_numeric(mapped: MappedReading, m: Measurement) -> None:
    codes, *_ = EXPECTED[(m.metric, m.reported_unit)]
    found = by_code(mapped, *codes[1])
    assert len(found) == 1
    o = found[0]
    assert codings(o["code"]) == codes
    assert o["valueQuantity"] == expected_quantity(m)
    categories, profiles = NUMERIC[m.metric]
    assert [c for cat in o["category"] for c in codings(cat)] == categories
    assert o.get("meta", {}).get("profile", []) == profiles


BP_FLAGS = [
    frozenset(),
    frozenset({Status.IRREGULAR_PULSE, Status.CUFF_LOOSE, Status.PULSE_RATE_BELOW_RANGE}),
    frozenset({Status.BODY_MOVEMENT, Status.PULSE_RATE_OUT_OF_RANGE}),
]


@pytest.mark.parametrize(
    ("unit", "mean", "pulse", "flags", "time", "test_data", "patient"),
    list(
        itertools.product([Unit.MMHG, Unit.KPA], [False, True], [False, True], BP_FLAGS, TIMES, [False, True], PATIENTS)
    ),
)
def test_blood_pressure(
    unit: Unit, mean: bool, pulse: bool, flags: frozenset[Status], time: str, test_data: bool, patient: str
) -> None:
    values = {Unit.MMHG: (128.0, 82.0, 97.0), Unit.KPA: (17.1, 10.9, 13.0)}[unit]
    ms: list[tuple[Metric, float, Unit]] = [
        (Metric.SYSTOLIC, values[0], unit),
        (Metric.DIASTOLIC, values[1], unit),
    ]
    if mean:
        ms.append((Metric.MEAN_ARTERIAL, values[2], unit))
    if pulse:
        ms.append((Metric.PULSE_RATE, 64.0, Unit.PER_MIN))
    r = reading(Kind.BLOOD_PRESSURE, *ms, time=time, status=flags)
    mapped = check(r, patient, time=time, test_data=test_data)

    panels = by_code(mapped, LOINC, "85354-9")
    assert len(panels) == 1
    panel = panels[0]
    assert codings(panel["code"]) == [(MDC, "150020"), (LOINC, "85354-9")]
    assert [c for cat in panel["category"] for c in codings(cat)] == [VITAL, PHD]
    assert panel["meta"]["profile"] == [PHD_SD + "PhdCompoundNumericObservation", VS + "vitalsigns", VS + "bp"]
    assert "valueQuantity" not in panel
    expected_components = [
        {"code": codings(c["code"]), "valueQuantity": c["valueQuantity"]} for c in panel["component"]
    ]
    assert expected_components == [
        {"code": EXPECTED[(m.metric, m.reported_unit)][0], "valueQuantity": expected_quantity(m)}
        for m in r.measurements
        if m.metric is not Metric.PULSE_RATE
    ]
    if unit is Unit.KPA:  # 17.1 kPa is 128.3 mmHg, 10.9 kPa 81.8 mmHg, 13.0 kPa 97.5 mmHg
        assert [c["valueQuantity"]["value"] for c in panel["component"]] == [128.3, 81.8, 97.5][
            : len(panel["component"])
        ]
    pulses = by_code(mapped, LOINC, "8867-4")
    assert len(pulses) == (1 if pulse else 0)
    if pulse:
        check_numeric(mapped, Measurement(Metric.PULSE_RATE, 64.0, Unit.PER_MIN))
    n_obs = 1 + pulse + bool(flags) + (time == "device+offset")
    assert len(resources(mapped, "Observation")) == n_obs


@pytest.mark.parametrize(
    ("unit", "extras", "time", "simulated", "patient"),
    list(itertools.product([Unit.KG, Unit.LB], ["none", "metric", "imperial"], TIMES, [False, True], PATIENTS)),
)
def test_body_weight(unit: Unit, extras: str, time: str, simulated: bool, patient: str) -> None:
    ms: list[tuple[Metric, float, Unit]] = [(Metric.BODY_WEIGHT, 72.35 if unit is Unit.KG else 159.5, unit)]
    if extras == "metric":
        ms += [(Metric.BMI, 23.6, Unit.KG_PER_M2), (Metric.BODY_HEIGHT, 1.751, Unit.M)]
    elif extras == "imperial":
        ms += [(Metric.BMI, 23.6, Unit.KG_PER_M2), (Metric.BODY_HEIGHT, 68.9, Unit.IN)]
    r = reading(Kind.BODY_WEIGHT, *ms, time=time, simulated=simulated)
    mapped = check(r, patient, time=time)
    for m in r.measurements:
        check_numeric(mapped, m)
    if extras == "metric":  # metres become centimetres: the bodyheight profile allows only cm and [in_i]
        assert by_code(mapped, LOINC, "8302-2")[0]["valueQuantity"]["value"] == 175.1
    assert len(resources(mapped, "Observation")) == len(ms) + (time == "device+offset")
    assert mapped.identifier == by_code(mapped, LOINC, "29463-7")[0]["identifier"][0]["value"]


GLUCOSE_FLAGS = [
    frozenset(),
    frozenset({Status.VALUE_ABOVE_RANGE}),
    frozenset({Status.BATTERY_LOW, Status.DEVICE_FAULT, Status.VALUE_BELOW_RANGE}),
    frozenset({Status.SENSOR_FAULT, Status.DEVICE_ANNUNCIATION, Status.TIME_FAULT}),
]


@pytest.mark.parametrize(
    ("unit", "flags", "time", "test_data", "patient"),
    list(itertools.product([Unit.MG_DL, Unit.MMOL_L], GLUCOSE_FLAGS, TIMES, [False, True], PATIENTS)),
)
def test_blood_glucose(unit: Unit, flags: frozenset[Status], time: str, test_data: bool, patient: str) -> None:
    value = 104.0 if unit is Unit.MG_DL else 5.8
    r = reading(Kind.BLOOD_GLUCOSE, (Metric.GLUCOSE, value, unit), device=SERIAL_ONLY, time=time, status=flags)
    mapped = check(r, patient, time=time, test_data=test_data)
    check_numeric(mapped, r.measurements[0])
    assert len(resources(mapped, "Observation")) == 1 + bool(flags) + (time == "device+offset")


@pytest.mark.parametrize(
    ("flags", "time", "patient"),
    list(itertools.product([frozenset(), frozenset(Status) - REFUSED], TIMES, PATIENTS)),
)
def test_pulse_rate(flags: frozenset[Status], time: str, patient: str) -> None:
    r = reading(Kind.PULSE_RATE, (Metric.PULSE_RATE, 58.0, Unit.PER_MIN), time=time, status=flags)
    mapped = check(r, patient, time=time)
    check_numeric(mapped, r.measurements[0])
    # every flag is carried: one BITs Observation per family when all are set
    families = len({BITS[s][0] for s in flags if s in BITS})
    assert len(resources(mapped, "Observation")) == 1 + families + (time == "device+offset")


def _strip_urls(mapped: MappedReading) -> bytes:
    """The body with each fresh placeholder replaced by its position: what must be equal across runs."""
    body = mapped.body.decode()
    for i, entry in enumerate(mapped.entries):
        body = body.replace(entry["fullUrl"], f"urn:uuid:entry-{i}")
    return body.encode()


def test_whole_blood_pressure_panel() -> None:
    """One Observation compared whole, written out by hand after the PHD IG `bloodPress` example."""
    r = reading(
        Kind.BLOOD_PRESSURE,
        (Metric.SYSTOLIC, 116.0, Unit.MMHG),
        (Metric.DIASTOLIC, 71.0, Unit.MMHG),
        (Metric.MEAN_ARTERIAL, 86.0, Unit.MMHG),
        simulated=True,
    )
    mapped = map_reading(r, "Patient/123", GATEWAY, local_tz=PLUS_ONE)
    namespace = uuid.UUID("6f1c3b0e-8a4e-5d2b-9c7e-2f6a1d9b4e30")
    legacy = f"urn:uuid:{uuid.uuid5(namespace, f'{r.idempotency_key}|Patient/123|blood-pressure')}"
    phd_id = "74E8FFFEFF051C00-123-150020-848843910"  # device-patient-type-timestamp (PhdBaseObservation notes)
    phd, phg, url = (e["fullUrl"] for e in mapped.entries)

    def mmhg(v: float) -> dict[str, Any]:
        return {"value": v, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}

    assert mapped.entries[2] == {
        "fullUrl": url,
        "resource": {
            "resourceType": "Observation",
            "meta": {
                "profile": [PHD_SD + "PhdCompoundNumericObservation", VS + "vitalsigns", VS + "bp"],
                "security": [HTEST],
            },
            "extension": [{"url": GATEWAY_EXT, "valueReference": {"reference": phg}}],
            "identifier": [{"system": PHD_ID, "value": phd_id}, {"system": URI, "value": legacy}],
            "status": "final",
            "category": [
                {"coding": [{"system": VITAL[0], "code": "vital-signs", "display": "Vital Signs"}]},
                {"coding": [{"system": PHD[0], "code": "phd", "display": "PHD generated Observation"}]},
            ],
            "code": {
                "coding": [
                    {"system": MDC, "code": "150020", "display": "MDC_PRESS_BLD_NONINV"},
                    {
                        "system": LOINC,
                        "code": "85354-9",
                        "display": "Blood pressure panel with all children optional",
                    },
                ],
                "text": "Blood pressure",
            },
            "subject": {"reference": "Patient/123"},
            "effectiveDateTime": "2026-11-24T13:58:30+01:00",
            "issued": "2026-11-24T13:00:05.250000+00:00",
            "device": {"reference": phd},
            "component": [
                {
                    "code": {
                        "coding": [
                            {"system": MDC, "code": "150021", "display": "MDC_PRESS_BLD_NONINV_SYS"},
                            {"system": LOINC, "code": "8480-6", "display": "Systolic blood pressure"},
                        ],
                        "text": "Systolic",
                    },
                    "valueQuantity": mmhg(116.0),
                },
                {
                    "code": {
                        "coding": [
                            {"system": MDC, "code": "150022", "display": "MDC_PRESS_BLD_NONINV_DIA"},
                            {"system": LOINC, "code": "8462-4", "display": "Diastolic blood pressure"},
                        ],
                        "text": "Diastolic",
                    },
                    "valueQuantity": mmhg(71.0),
                },
                {
                    "code": {
                        "coding": [
                            {"system": MDC, "code": "150023", "display": "MDC_PRESS_BLD_NONINV_MEAN"},
                            {"system": LOINC, "code": "8478-0", "display": "Mean blood pressure"},
                        ],
                        "text": "Mean",
                    },
                    "valueQuantity": mmhg(86.0),
                },
            ],
        },
        "request": {
            "method": "POST",
            "url": "Observation",
            "ifNoneExist": f"identifier={PHD_ID}|{phd_id},{URI}|{legacy}",
        },
    }


IDS = "http://terminology.hl7.org/CodeSystem/ContinuaDeviceIdentifiers"  # STU 2: under terminology.hl7.org
SYSID_TYPE = {"coding": [{"system": IDS, "code": "SYSID", "display": "IEEE 11073 System Identifier"}]}
EUI64 = "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680"


def test_measuring_device_whole() -> None:
    """PhdDevice: SYSID (EUI-64 with dashes), BTMAC (EUI-48), serial, specialization, firmware; match on EUI-64."""
    mapped = map_reading(
        reading(Kind.BLOOD_PRESSURE, (Metric.SYSTOLIC, 120.0, Unit.MMHG), (Metric.DIASTOLIC, 80.0, Unit.MMHG)),
        "1",
        GATEWAY,
    )
    url = mapped.entries[0]["fullUrl"]
    own = f"urn:uuid:{uuid.uuid5(uuid.UUID('6f1c3b0e-8a4e-5d2b-9c7e-2f6a1d9b4e30'), 'device|eui64:74e8fffeff051c00')}"
    assert url != own
    assert mapped.entries[0] == {
        "fullUrl": url,
        "resource": {
            "resourceType": "Device",
            "meta": {"profile": [PHD_SD + "PhdDevice"]},
            "identifier": [
                {"type": SYSID_TYPE, "system": EUI64, "value": "74-E8-FF-FE-FF-05-1C-00"},
                {
                    "type": {"coding": [{"system": IDS, "code": "BTMAC", "display": "Bluetooth MAC address"}]},
                    "system": "http://hl7.org/fhir/sid/eui-48/bluetooth",
                    "value": "00-1C-05-FF-E8-74",
                },
                {
                    "type": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                "code": "SNO",
                                "display": "Serial Number",
                            }
                        ]
                    },
                    "value": "501900083",
                },
                {"system": URI, "value": own},
            ],
            "manufacturer": "Acme Medical",
            "serialNumber": "501900083",
            "modelNumber": "BP-7",
            "type": {
                "coding": [{"system": MDC, "code": "65573", "display": "MDC_MOC_VMS_MDS_SIMP"}],
                "text": "Personal health device",
            },
            "specialization": [
                {
                    "systemType": {
                        "coding": [{"system": MDC, "code": "528391", "display": "MDC_DEV_SPEC_PROFILE_BPM"}],
                        "text": "Blood pressure monitor",
                    },
                    "version": "1",
                }
            ],
            "version": [
                {
                    "type": {
                        "coding": [{"system": MDC, "code": "531976", "display": "MDC_ID_PROD_SPEC_FW"}],
                        "text": "Firmware revision",
                    },
                    "value": "r2.1",
                }
            ],
        },
        "request": {
            "method": "POST",
            "url": "Device",
            "ifNoneExist": f"identifier={EUI64}|74-E8-FF-FE-FF-05-1C-00",
        },
    }


@pytest.mark.parametrize(("kind", "code"), [(Kind.BODY_WEIGHT, "528399"), (Kind.BLOOD_GLUCOSE, "528401")])
def test_measuring_device_specialization(kind: Kind, code: str) -> None:
    metric, unit = {Kind.BODY_WEIGHT: (Metric.BODY_WEIGHT, Unit.KG), Kind.BLOOD_GLUCOSE: (Metric.GLUCOSE, Unit.MG_DL)}[
        kind
    ]
    device = map_reading(reading(kind, (metric, 80.0, unit)), "1", GATEWAY).entries[0]["resource"]
    assert [codings(s["systemType"]) for s in device["specialization"]] == [[(MDC, code)]]


def test_gateway_device_whole() -> None:
    """PhgDevice: a System ID (locally administered, from gateway.id), specializations, version, time sync."""
    mapped = map_reading(reading(Kind.PULSE_RATE, (Metric.PULSE_RATE, 60.0, Unit.PER_MIN)), "1", GATEWAY)
    url = mapped.entries[1]["fullUrl"]
    own = f"urn:uuid:{uuid.uuid5(uuid.UUID('6f1c3b0e-8a4e-5d2b-9c7e-2f6a1d9b4e30'), 'gateway|vitalgate-01')}"
    digest = hashlib.sha256(b"vitalgate-phg|vitalgate-01").digest()[:8]
    sysid = "-".join(f"{b:02X}" for b in bytes([(digest[0] | 2) & 0xFE]) + digest[1:])
    assert int(sysid[:2], 16) & 0b11 == 0b10  # locally administered, unicast

    def spec(code: str, ref: str, text: str) -> dict[str, Any]:
        return {"systemType": {"coding": [{"system": MDC, "code": code, "display": ref}], "text": text}, "version": "1"}

    assert mapped.entries[1] == {
        "fullUrl": url,
        "resource": {
            "resourceType": "Device",
            "meta": {"profile": [PHD_SD + "PhgDevice"]},
            "identifier": [{"type": SYSID_TYPE, "system": EUI64, "value": sysid}, {"system": URI, "value": own}],
            "manufacturer": "VitalGate project",
            "modelNumber": "VitalGate",
            "deviceName": [
                {"name": "vitalgate-01", "type": "user-friendly-name"},
                {"name": "VitalGate", "type": "model-name"},
            ],
            "type": {
                "coding": [{"system": MDC, "code": "531981", "display": "MDC_MOC_VMS_MDS_AHD"}],
                "text": "Personal health gateway",
            },
            "specialization": [
                spec("528391", "MDC_DEV_SPEC_PROFILE_BPM", "Blood pressure monitor"),
                spec("528388", "MDC_DEV_SPEC_PROFILE_PULS_OXIM", "Pulse oximeter"),
                spec("528399", "MDC_DEV_SPEC_PROFILE_SCALE", "Weighing scale"),
                spec("528401", "MDC_DEV_SPEC_PROFILE_GLUCOSE", "Glucose meter"),
                spec("528392", "MDC_DEV_SPEC_PROFILE_TEMP", "Thermometer"),
                spec("528404", "MDC_DEV_SPEC_PROFILE_BCA", "Body composition analyzer"),
            ],
            "version": [
                {
                    "type": {
                        "coding": [{"system": MDC, "code": "531975", "display": "MDC_ID_PROD_SPEC_SW"}],
                        "text": "Software revision",
                    },
                    "value": "0.1.0",
                }
            ],
            "property": [
                {
                    "type": {
                        "coding": [{"system": MDC, "code": "68220", "display": "MDC_TIME_SYNC_PROTOCOL"}],
                        "text": "Clock synchronization method",
                    },
                    "valueCode": [{"coding": [{"system": MDC, "code": "532227", "display": "MDC_TIME_SYNC_SNTPV4"}]}],
                }
            ],
        },
        "request": {"method": "POST", "url": "Device", "ifNoneExist": f"identifier={URI}|{own}"},
    }


def test_device_without_system_id_matches_on_own_identifier() -> None:
    r = reading(Kind.BLOOD_GLUCOSE, (Metric.GLUCOSE, 99.0, Unit.MG_DL), device=SERIAL_ONLY)
    mapped = map_reading(r, "1", GATEWAY)
    entry = mapped.entries[0]
    device = entry["resource"]
    assert [i.get("system") for i in device["identifier"]] == [None, URI]  # serial (no system), then ours
    own = device["identifier"][1]["value"]
    assert own != entry["fullUrl"]
    assert entry["request"]["ifNoneExist"] == f"identifier={URI}|{own}"
    assert "modelNumber" not in device and "manufacturer" not in device and "version" not in device
    assert "meta" not in device  # PhdDevice not claimed: manufacturer, model and version unknown
    # the identifier's device part is our own device id (32 hex) when there is no EUI-64 or EUI-48
    assert mapped.identifier.startswith(own.removeprefix("urn:uuid:").replace("-", "").upper() + "-1-160184-")


def test_same_reading_gives_same_resources_fresh_placeholders() -> None:
    r = reading(
        Kind.BLOOD_PRESSURE,
        (Metric.SYSTOLIC, 120.0, Unit.MMHG),
        (Metric.DIASTOLIC, 80.0, Unit.MMHG),
        (Metric.PULSE_RATE, 70.0, Unit.PER_MIN),
        time="device+offset",
        status=frozenset(BITS),
    )
    first = map_reading(r, "Patient/9", GATEWAY, local_tz=PLUS_ONE)
    again = map_reading(replace(r, raw=b"\x01"), "Patient/9", GATEWAY, local_tz=PLUS_ONE)
    assert _strip_urls(first) == _strip_urls(again)
    assert not {e["fullUrl"] for e in first.entries} & {e["fullUrl"] for e in again.entries}
    assert first.identifier == again.identifier
    # "9" and "Patient/9" are the same binding, so the same identifiers
    assert _strip_urls(map_reading(r, "9", GATEWAY, local_tz=PLUS_ONE)) == _strip_urls(first)


def _sample_digest() -> str:
    r = reading(
        Kind.BLOOD_PRESSURE,
        (Metric.SYSTOLIC, 120.0, Unit.MMHG),
        (Metric.DIASTOLIC, 80.0, Unit.MMHG),
        time="device+offset",
        status=frozenset(BITS),
    )
    return hashlib.sha256(_strip_urls(map_reading(r, "Patient/9", GATEWAY, local_tz=PLUS_ONE))).hexdigest()


def test_body_is_identical_across_processes() -> None:
    """Status flags are a frozenset whose order varies with hash seeds: the body must not."""
    code = "import sys; sys.path.insert(0, 'tests'); import test_fhir_mapping as t; print(t._sample_digest())"
    digests = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=120
        )
        digests.add(out.stdout.strip())
    assert digests == {_sample_digest()}


def test_other_patient_other_observations_same_devices() -> None:
    r = reading(Kind.BODY_WEIGHT, (Metric.BODY_WEIGHT, 80.0, Unit.KG))
    a = map_reading(r, "Patient/a", GATEWAY)
    b = map_reading(r, "Patient/b", GATEWAY)
    assert [e["request"] for e in a.entries[:2]] == [e["request"] for e in b.entries[:2]]
    assert a.identifier != b.identifier


def test_other_reading_other_identifier() -> None:
    """The IG's identifier tells measurements apart by device time and type; the record number does not
    count (another PHG would not know it), only the second (legacy) identifier holds it."""
    one = reading(Kind.BODY_WEIGHT, (Metric.BODY_WEIGHT, 80.0, Unit.KG))
    later = replace(one, device_time=DEVICE_TIME + timedelta(seconds=1))
    assert map_reading(one, "1", GATEWAY).identifier != map_reading(later, "1", GATEWAY).identifier
    renumbered = replace(one, sequence=8)
    a, b = map_reading(one, "1", GATEWAY), map_reading(renumbered, "1", GATEWAY)
    assert a.identifier == b.identifier
    assert a.entries[2]["resource"]["identifier"][1] != b.entries[2]["resource"]["identifier"][1]


def test_transaction_bundle_packs_readings_once_per_device() -> None:
    one = map_reading(reading(Kind.PULSE_RATE, (Metric.PULSE_RATE, 60.0, Unit.PER_MIN)), "1", GATEWAY)
    two = map_reading(
        reading(Kind.PULSE_RATE, (Metric.PULSE_RATE, 61.0, Unit.PER_MIN), time="none", sequence=9), "1", GATEWAY
    )
    other = map_reading(
        reading(Kind.BLOOD_GLUCOSE, (Metric.GLUCOSE, 99.0, Unit.MG_DL), device=SERIAL_ONLY), "2", GATEWAY
    )
    again = map_reading(reading(Kind.PULSE_RATE, (Metric.PULSE_RATE, 60.0, Unit.PER_MIN)), "1", GATEWAY)
    packed = transaction_bundle([*one.entries, *two.entries, *other.entries, *again.entries])
    validate_bundle(packed)
    urls = [e["fullUrl"] for e in packed["entry"]]
    assert urls == [
        one.entries[0]["fullUrl"],
        one.entries[1]["fullUrl"],
        one.entries[2]["fullUrl"],
        two.entries[2]["fullUrl"],
        other.entries[0]["fullUrl"],
        other.entries[2]["fullUrl"],
    ]
    # the second reading's references now point at the first reading's Devices
    second = packed["entry"][3]["resource"]
    assert second["device"] == {"reference": urls[0]}
    assert second["extension"][0]["valueReference"] == {"reference": urls[1]}
    assert two.entries[2]["resource"]["device"] == {"reference": two.entries[0]["fullUrl"]}  # input untouched
    with pytest.raises(InvalidBundleError):  # without the merge: references to entries not in the bundle
        validate_bundle({"resourceType": "Bundle", "type": "transaction", "entry": [*one.entries[2:]]})


def test_validation_refuses_an_identifier_equal_to_a_full_url() -> None:
    """What made a real server (Medplum) duplicate everything: it rewrites strings equal to a placeholder."""
    mapped = map_reading(reading(Kind.PULSE_RATE, (Metric.PULSE_RATE, 60.0, Unit.PER_MIN)), "1", GATEWAY)
    bad = orjson.loads(mapped.body)
    obs = bad["entry"][2]
    obs["resource"]["identifier"] = [{"system": URI, "value": obs["fullUrl"]}]
    obs["request"]["ifNoneExist"] = f"identifier={URI}|{obs['fullUrl']}"
    with pytest.raises(InvalidBundleError) as info:
        validate_bundle(bad)
    assert ("entry[2].resource.identifier", "identifier_holds_a_full_url") in info.value.problems


SECRET = "SECRETPATIENT42"


@pytest.mark.parametrize(
    "patient",
    [
        "Observation/1",
        "",
        "a b",
        "Patient/",
        "Patient/x y",
        f"|{SECRET}",
        "urn:x|",
        f"notauri|{SECRET}",
        f"urn:x| {SECRET}",
        f"urn:x|{SECRET}\x00",
        f"Patient/{SECRET}/_history/1",
        f"http://x/Patient/{SECRET}",
    ],
)
def test_bad_patient_binding(patient: str) -> None:
    r = reading(Kind.PULSE_RATE, (Metric.PULSE_RATE, 60.0, Unit.PER_MIN))
    with pytest.raises(MappingError) as err:
        map_reading(r, patient, GATEWAY)
    assert SECRET not in str(err.value)


@pytest.mark.parametrize(
    ("kind", "measurements", "status", "device", "message"),
    [
        (
            Kind.BLOOD_GLUCOSE,
            [(Metric.GLUCOSE, 99.0, Unit.MG_DL)],
            {Status.CONTROL_SOLUTION},
            BLE,
            "control-solution",
        ),
        (Kind.BLOOD_PRESSURE, [(Metric.SYSTOLIC, 120.0, Unit.MMHG)], set(), BLE, "lacks diastolic"),
        (Kind.BLOOD_PRESSURE, [(Metric.DIASTOLIC, 80.0, Unit.MMHG)], set(), BLE, "lacks systolic"),
        (Kind.BODY_WEIGHT, [(Metric.BMI, 22.0, Unit.KG_PER_M2)], set(), BLE, "lacks body-weight"),
        (
            Kind.BLOOD_GLUCOSE,
            [(Metric.GLUCOSE, 99.0, Unit.MG_DL), (Metric.PULSE_RATE, 60.0, Unit.PER_MIN)],
            set(),
            BLE,
            "unexpected metric pulse-rate",
        ),
        (
            Kind.PULSE_RATE,
            [(Metric.PULSE_RATE, 60.0, Unit.PER_MIN), (Metric.PULSE_RATE, 61.0, Unit.PER_MIN)],
            set(),
            BLE,
            "pulse-rate twice",
        ),
        (
            Kind.BODY_WEIGHT,
            [(Metric.BODY_WEIGHT, 80.0, Unit.MMHG)],
            set(),
            BLE,
            "no FHIR mapping for body-weight in mm[Hg]",
        ),
        (Kind.BODY_WEIGHT, [(Metric.BODY_WEIGHT, float("nan"), Unit.KG)], set(), BLE, "not a finite number"),
        (
            Kind.BLOOD_PRESSURE,
            [(Metric.SYSTOLIC, float("inf"), Unit.KPA), (Metric.DIASTOLIC, 1.0, Unit.KPA)],
            set(),
            BLE,
            "not a finite number",
        ),
        (Kind.PULSE_RATE, [(Metric.PULSE_RATE, 60.0, Unit.PER_MIN)], set(), DeviceIdentity("x"), "neither"),
        (
            Kind.PULSE_RATE,
            [(Metric.PULSE_RATE, 60.0, Unit.PER_MIN)],
            set(),
            DeviceIdentity("x", system_id="12"),
            "16 hex digits",
        ),
    ],
)
def test_unmappable_readings(
    kind: Kind,
    measurements: list[tuple[Metric, float, Unit]],
    status: set[Status],
    device: DeviceIdentity,
    message: str,
) -> None:
    r = Reading(
        kind=kind,
        measurements=tuple(Measurement(*m) for m in measurements),
        device=device,
        received_at=RECEIVED,
        status=frozenset(status),
    )
    with pytest.raises(MappingError, match=re.escape(message)):
        map_reading(r, "Patient/1", GATEWAY)


def test_every_status_is_mapped_or_refused() -> None:
    """A new Status member must be given a FHIR form (or refused) before it can be used: never dropped."""
    for status in Status:
        r = reading(Kind.BLOOD_GLUCOSE, (Metric.GLUCOSE, 99.0, Unit.MG_DL), status=frozenset({status}))
        if status in REFUSED:
            with pytest.raises(MappingError):
                map_reading(r, "1", GATEWAY)
        else:
            mapped = map_reading(r, "1", GATEWAY)
            texts = [c["code"]["text"] for o in resources(mapped, "Observation") for c in o.get("component", [])]
            interpretations = [
                i["coding"][0]["code"] for o in resources(mapped, "Observation") for i in o.get("interpretation", [])
            ]
            if status in INTERPRETATION:
                assert (texts, interpretations) == ([], [INTERPRETATION[status]])
            else:
                assert (texts, interpretations) == ([BITS[status][2]], [])


def test_offsets_fhir_cannot_express_become_utc() -> None:
    odd = timezone(timedelta(minutes=53, seconds=28))  # e.g. a zoneinfo LMT offset
    r = reading(Kind.PULSE_RATE, (Metric.PULSE_RATE, 60.0, Unit.PER_MIN))
    mapped = map_reading(r, "1", GATEWAY, local_tz=odd)
    validate_bundle(mapped.bundle)
    assert by_code(mapped, LOINC, "8867-4")[0]["effectiveDateTime"] == "2026-11-24T13:05:02+00:00"


def test_device_strings_are_cleaned() -> None:
    device = replace(BLE, manufacturer="  Acme\x00 ", model="\x01\x02", firmware=" ", serial_number="SN\x007")
    mapped = map_reading(reading(Kind.PULSE_RATE, (Metric.PULSE_RATE, 60.0, Unit.PER_MIN), device=device), "1", GATEWAY)
    validate_bundle(mapped.bundle)
    resource = mapped.entries[0]["resource"]
    assert (resource["manufacturer"], resource["serialNumber"]) == ("Acme", "SN7")
    assert "modelNumber" not in resource and "version" not in resource


def _bp() -> MappedReading:
    r = reading(Kind.BLOOD_PRESSURE, (Metric.SYSTOLIC, 120.0, Unit.MMHG), (Metric.DIASTOLIC, 80.0, Unit.MMHG))
    return map_reading(r, f"Patient/{SECRET}", GATEWAY)


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda b: b["entry"][2]["resource"].update(valueString=SECRET, valueQuantity={"value": 1}), "value"),
        (lambda b: b["entry"][2]["resource"].update(bogus=SECRET), "extra_forbidden"),
        (lambda b: b["entry"][2]["resource"].pop("status"), "missing"),
        (lambda b: b["entry"][2]["resource"].update(subject=f"Patient/{SECRET}"), "subject"),
        (lambda b: b["entry"][2]["resource"].update(effectiveDateTime=f"{SECRET}"), "effectiveDateTime"),
        (
            lambda b: b["entry"][2]["resource"].update(device={"reference": "urn:uuid:0000"}),
            "unresolved_reference",
        ),
        (lambda b: b["entry"][2]["request"].pop("ifNoneExist"), "not_an_identifier_of_the_resource"),
        (
            lambda b: b["entry"][2]["request"].update(ifNoneExist=f"identifier=x|{SECRET}"),
            "not_an_identifier",
        ),
        (lambda b: b["entry"][2]["request"].update(method="PUT"), "not_post_of_resource_type"),
        (lambda b: b["entry"].append(b["entry"][2]), "duplicate_full_url"),
        (lambda b: b["entry"][0]["resource"].update(manufacturer=f"{SECRET}\x01"), "bad_fhir_string"),
        (lambda b: b.update(type="batch"), "not_transaction"),
    ],
)
def test_validate_bundle_catches_damage(damage: Any, problem: str) -> None:
    bundle = orjson.loads(_bp().body)
    validate_bundle(bundle)
    damage(bundle)
    with pytest.raises(InvalidBundleError) as err:
        validate_bundle(bundle)
    assert any(problem in f"{loc} {kind}" for loc, kind in err.value.problems)
    assert SECRET not in str(err.value) and SECRET not in repr(err.value.problems)
    assert err.value.__cause__ is None and (err.value.__context__ is None or err.value.__suppress_context__)


def test_blank_gateway_id_is_refused() -> None:
    r = reading(Kind.PULSE_RATE, (Metric.PULSE_RATE, 60.0, Unit.PER_MIN))
    with pytest.raises(MappingError, match="gateway id is empty"):
        map_reading(r, "1", GatewayInfo(id=" \x00", version="1"))
