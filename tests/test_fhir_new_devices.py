"""FHIR for the devices of issue 14 (oximeter, thermometer, body composition), through full R4B validation.

Expected codes come from tests/test_fhir_mapping.py's EXPECTED (written from the sources: IEEE 11073-10404 /
10408 / 10420 terms, LOINC, the R4 oxygensat / heartrate / bodytemp profiles), not from gateway.fhir.codes.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from gateway.fhir import MappingError, map_reading, validate_bundle
from gateway.reading import Kind, Measurement, Metric, Status, Unit
from tests.test_fhir_mapping import (
    EXPECTED,
    GATEWAY,
    LOINC,
    MDC,
    PATIENTS,
    PHD,
    PHD_SD,
    TIMES,
    VITAL,
    check,
    codings,
    expected_quantity,
    reading,
    resources,
)

VS = "http://hl7.org/fhir/StructureDefinition/"
NUMERIC = PHD_SD + "PhdNumericObservation"
# metric -> (categories, profiles) of its Observation
SHAPE: dict[Metric, tuple[list[tuple[str, str]], list[str]]] = {
    Metric.SPO2: ([VITAL, PHD], [NUMERIC, VS + "vitalsigns", VS + "oxygensat"]),
    Metric.PULSE_RATE_OXIMETRY: ([VITAL, PHD], [NUMERIC, VS + "vitalsigns", VS + "heartrate"]),
    Metric.PULSE_AMPLITUDE_INDEX: ([PHD], [NUMERIC]),
    **{
        m: ([VITAL, PHD], [NUMERIC, VS + "vitalsigns", VS + "bodytemp"])
        for m in Metric
        if m.value.startswith("body-temp")
    },
    **{
        m: ([PHD], [NUMERIC])
        for m in (
            Metric.BODY_FAT,
            Metric.MUSCLE_PERCENT,
            Metric.MUSCLE_MASS,
            Metric.FAT_FREE_MASS,
            Metric.SOFT_LEAN_MASS,
            Metric.BODY_WATER_MASS,
            Metric.IMPEDANCE,
            Metric.BASAL_METABOLISM,
        )
    },
}
SITES = {
    Metric.TEMPERATURE_AXILLA: "Axilla",
    Metric.TEMPERATURE_EAR: "Ear",
    Metric.TEMPERATURE_FINGER: "Finger",
    Metric.TEMPERATURE_GIT: "Gastro-intestinal tract",
    Metric.TEMPERATURE_ORAL: "Mouth",
    Metric.TEMPERATURE_RECTAL: "Rectum",
    Metric.TEMPERATURE_TOE: "Toe",
    Metric.TEMPERATURE_TYMPANUM: "Tympanic membrane",
}


def observation_of(mapped: Any, m: Measurement) -> dict[str, Any]:
    codes = EXPECTED[(m.metric, m.reported_unit)][0]
    found = [o for o in resources(mapped, "Observation") if codings(o["code"]) == codes]
    assert len(found) == 1
    o = found[0]
    assert o["valueQuantity"] == expected_quantity(m)
    categories, profiles = SHAPE[m.metric]
    assert [c for cat in o["category"] for c in codings(cat)] == categories
    assert o["meta"]["profile"] == profiles
    return o


@pytest.mark.parametrize(
    ("pulse", "pai", "time", "patient"), list(itertools.product([True, False], [True, False], TIMES, PATIENTS))
)
def test_oxygen_saturation(pulse: bool, pai: bool, time: str, patient: str) -> None:
    ms = [(Metric.SPO2, 96.0, Unit.PERCENT)]
    ms += [(Metric.PULSE_RATE_OXIMETRY, 71.0, Unit.PER_MIN)] if pulse else []
    ms += [(Metric.PULSE_AMPLITUDE_INDEX, 4.2, Unit.PERCENT)] if pai else []
    r = reading(Kind.OXYGEN_SATURATION, *ms, time=time)
    mapped = check(r, patient, time=time)
    for m in r.measurements:
        observation_of(mapped, m)
    assert len(resources(mapped, "Observation")) == len(ms) + (time == "device+offset")
    spo2 = observation_of(mapped, r.measurements[0])
    assert (LOINC, "2708-6") in codings(spo2["code"]) and spo2["valueQuantity"]["code"] == "%"
    assert resources(mapped, "Device")[0]["specialization"][0]["systemType"]["coding"][0]["code"] == "528388"


def test_oximeter_status_bits() -> None:
    r = reading(
        Kind.OXYGEN_SATURATION,
        (Metric.SPO2, 93.0, Unit.PERCENT),
        status=frozenset({Status.LOW_PERFUSION, Status.SIGNAL_QUALITY}),
    )
    mapped = check(r, "Patient/123", time="device")
    bits = [o for o in resources(mapped, "Observation") if codings(o["code"]) == [(MDC, "150604")]]
    assert [c["code"]["text"] for c in bits[0]["component"]] == ["low-perfusion", "signal-quality"]


def test_device_test_data_is_never_an_observation() -> None:
    r = reading(Kind.OXYGEN_SATURATION, (Metric.SPO2, 97.0, Unit.PERCENT), status=frozenset({Status.TEST_DATA}))
    with pytest.raises(MappingError):
        map_reading(r, "Patient/123", GATEWAY)


@pytest.mark.parametrize(
    ("metric", "unit"), [(m, u) for m in SHAPE if m.value.startswith("body-temp") for u in (Unit.CEL, Unit.DEG_F)]
)
def test_body_temperature_by_site(metric: Metric, unit: Unit) -> None:
    value = 36.85 if unit is Unit.CEL else 98.4
    r = reading(Kind.BODY_TEMPERATURE, (metric, value, unit))
    mapped = check(r, "Patient/123", time="device")
    o = observation_of(mapped, r.measurements[0])
    assert (LOINC, "8310-5") in codings(o["code"])
    assert o.get("bodySite") == ({"text": SITES[metric]} if metric in SITES else None)
    assert resources(mapped, "Device")[0]["specialization"][0]["systemType"]["coding"][0]["code"] == "528392"


@pytest.mark.parametrize("unit", [Unit.KG, Unit.LB])
def test_body_composition_each_its_own_observation(unit: Unit) -> None:
    ms = [
        (Metric.BODY_FAT, 23.4, Unit.PERCENT),
        (Metric.MUSCLE_PERCENT, 40.5, Unit.PERCENT),
        (Metric.MUSCLE_MASS, 30.0, unit),
        (Metric.FAT_FREE_MASS, 60.0, unit),
        (Metric.SOFT_LEAN_MASS, 55.0, unit),
        (Metric.BODY_WATER_MASS, 42.0, unit),
        (Metric.IMPEDANCE, 500.0, Unit.OHM),
        (Metric.BASAL_METABOLISM, 6500.0, Unit.KJ),
    ]
    r = reading(Kind.BODY_COMPOSITION, *ms)
    mapped = check(r, "Patient/123", time="device")
    for m in r.measurements:
        observation_of(mapped, m)
    assert len(resources(mapped, "Observation")) == 8
    fat = observation_of(mapped, r.measurements[0])
    assert codings(fat["code"]) == [(MDC, "188748"), (LOINC, "41982-0")]
    only_impedance = reading(Kind.BODY_COMPOSITION, (Metric.IMPEDANCE, 455.0, Unit.OHM))  # a Mi scale's reading
    validate_bundle(map_reading(only_impedance, "Patient/123", GATEWAY).bundle)


def test_no_number_becomes_data_absent_reason() -> None:
    """A thermometer's FLOAT NaN and an oximeter's 'measurement unavailable' reach FHIR as dataAbsentReason
    (PHD IG PhdNumericObservation: NaN -> not-a-number, a failed measurement -> error)."""
    from gateway.reading import Absent

    temp = replace_measurements(
        reading(Kind.BODY_TEMPERATURE, (Metric.TEMPERATURE_ORAL, 0.0, Unit.CEL)),
        Measurement.missing(Metric.TEMPERATURE_ORAL, Unit.CEL, Absent.NOT_A_NUMBER),
    )
    spo2 = replace_measurements(
        reading(Kind.OXYGEN_SATURATION, (Metric.SPO2, 0.0, Unit.PERCENT)),
        Measurement.missing(Metric.SPO2, Unit.PERCENT, Absent.UNSUCCESSFUL),
    )
    reasons = []
    for r in (temp, spo2):
        mapped = map_reading(r, "Patient/123", GATEWAY)
        validate_bundle(mapped.bundle)
        (o,) = [o for o in resources(mapped, "Observation") if "valueQuantity" not in o and "component" not in o]
        reasons.append(o["dataAbsentReason"]["coding"][0]["code"])
    assert reasons == ["not-a-number", "error"]


def replace_measurements(r: Any, *ms: Measurement) -> Any:
    from dataclasses import replace

    return replace(r, measurements=ms)
