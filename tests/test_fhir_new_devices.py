"""FHIR for the devices of issue 14 (oximeter, thermometer, body composition), through full R4B validation.

Expected codes come from tests/test_fhir_mapping.py's EXPECTED (written from the sources: IEEE 11073-10404 /
10408 / 10420 terms, LOINC, the R4 oxygensat / heartrate / bodytemp profiles), not from gateway.fhir.codes.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from drivers.gatt import plx
from gateway.fhir import MappingError, map_reading, validate_bundle
from gateway.reading import Kind, Measurement, Metric, Status, Unit
from tests.test_fhir_mapping import (
    ASN1,
    BLE,
    EXPECTED,
    GATEWAY,
    LOINC,
    MDC,
    PATIENTS,
    PHD,
    PHD_SD,
    PLUS_ONE,
    POCD,
    RECEIVED,
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


# The displays of MDC_PULS_OXIM_DEV_STATUS bits 0-15 in the PHD IG's CodeSystem ASN1ToHL7 (HL7/phd
# input/fsh/CodeSystem.ASN1ToHL7.fsh, codes 150604.0 ... 150604.15), in MDER bit order.
IG_150604 = [
    "sensor-disconnected",
    "sensor-malfunction",
    "sensor-displaced",
    "sensor-unsupported",
    "sensor-off",
    "sensor-interference",
    "signal-searching",
    "signal-pulse-questionable",
    "signal-non-pulsatile",
    "signal-erratic",
    "signal-low-perfusion",
    "signal-poor",
    "signal-inadequate",
    "signal-processing-irregularity",
    "device-equipment-malfunction",
    "device-extended-update",
]
STATUS_CODE = {"coding": [{"system": MDC, "code": "150604", "display": "MDC_PULS_OXIM_DEV_STATUS"}]}


def _bit(mder: int) -> dict[str, Any]:
    name = IG_150604[mder]
    return {
        "code": {"coding": [{"system": ASN1, "code": f"150604.{mder}", "display": name}], "text": name},
        "valueBoolean": True,
    }


def _plx(raw: bytes) -> Any:
    return plx.to_reading(plx.parse_spot_check(raw), BLE, RECEIVED)


def _status_observation(mapped: Any) -> dict[str, Any]:
    (o,) = [o for o in resources(mapped, "Observation") if codings(o["code"]) == [(MDC, "150604")]]
    return o


@pytest.mark.parametrize("bit", range(16))
def test_every_plx_device_status_bit_becomes_its_ig_bit(bit: int) -> None:
    """PLXS 1.0 §3.1 spot-check, flags 0x04, SpO2 97, PR 72, Device and Sensor Status with PLX bit n set.

    The PLX field numbers the bits of 11073-10404's device-and-sensor-status from the least significant end;
    MDER (and so ASN1ToHL7) numbers them from the most significant ("bit 0 is the HIGH order bit", IG
    CodeSystem ASN1ToHL7 notes): PLX bit n is 150604.(15 - n). The names line up one by one (PLX bit 15
    "sensor disconnected" = 150604.0 sensor-disconnected ... PLX bit 0 "extended display update" =
    150604.15 device-extended-update), which is how this test checks the table.
    """
    raw = bytes([0x04, 0x61, 0x00, 0x48, 0x00]) + (1 << bit).to_bytes(3, "little")
    mapped = map_reading(_plx(raw), "Patient/123", GATEWAY)
    validate_bundle(mapped.bundle)
    o = _status_observation(mapped)
    assert o["component"] == [_bit(15 - bit)]
    assert o["meta"]["profile"] == [PHD_SD + "PhdBitsEnumerationObservation"]
    assert "interpretation" not in o and not [k for k in o if k.startswith("value")]  # BITs: components only


def test_plx_status_bytes_to_whole_observations() -> None:
    """PLXS 1.0 §3.1 spot-check with both status fields (flags 0x06): SpO2 97 %, PR 72 /min,
    Measurement Status 0x4000 (bit 14 questionable measurement detected), Device and Sensor Status 0x000424
    (bits 2 signal processing irregularity, 5 low perfusion, 10 sensor interference)."""
    raw = bytes([0x06, 0x61, 0x00, 0x48, 0x00, 0x00, 0x40, 0x24, 0x04, 0x00])
    mapped = map_reading(_plx(raw), "Patient/123", GATEWAY, local_tz=PLUS_ONE)
    validate_bundle(mapped.bundle)
    o = _status_observation(mapped)
    spo2, pulse = (e["resource"] for e in mapped.entries[2:4])
    primary_url = mapped.entries[2]["fullUrl"]
    gateway_ext = spo2["extension"]
    assert {k: v for k, v in o.items() if k != "identifier"} == {
        "resourceType": "Observation",
        "meta": {"profile": [PHD_SD + "PhdBitsEnumerationObservation"]},
        "extension": gateway_ext,
        "status": "final",
        "category": [{"coding": [{"system": PHD[0], "code": PHD[1], "display": "PHD generated Observation"}]}],
        "code": {**STATUS_CODE, "text": "Pulse oximeter device and sensor status"},
        "subject": {"reference": "Patient/123"},
        "effectiveDateTime": "2026-11-24T13:00:05.250000+00:00",
        "issued": "2026-11-24T13:00:05.250000+00:00",
        "device": {"reference": mapped.entries[0]["fullUrl"]},
        # MDER order (ASN1ToHL7 code order): PLX bit 10 -> .5, bit 5 -> .10, bit 2 -> .13
        "component": [_bit(5), _bit(10), _bit(13)],
        "derivedFrom": [{"reference": primary_url}],
    }
    questionable = [{"coding": [{"system": POCD, "code": "questionable", "display": "Questionable"}]}]
    assert [codings(x["code"])[0][1] for x in (spo2, pulse)] == ["150456", "149530"]
    assert spo2["interpretation"] == pulse["interpretation"] == questionable  # PHD IG: measurement status
    assert spo2["status"] == pulse["status"] == "final"


def test_plx_early_estimate_is_preliminary_and_unavailable_not_performed() -> None:
    """Measurement Status bit 6 (early estimated data) -> interpretation early-indication, status preliminary;
    bit 13 (measurement unavailable) -> dataAbsentReason not-performed (PHD IG Measurement Status table)."""
    early = map_reading(_plx(bytes([0x02, 0x61, 0x00, 0x48, 0x00, 0x40, 0x00])), "Patient/123", GATEWAY)
    validate_bundle(early.bundle)
    spo2 = early.entries[2]["resource"]
    assert (spo2["status"], spo2["interpretation"][0]["coding"][0]["code"]) == ("preliminary", "early-indication")
    gone = map_reading(_plx(bytes([0x02, 0x61, 0x00, 0x48, 0x00, 0x00, 0x20])), "Patient/123", GATEWAY)
    validate_bundle(gone.bundle)
    spo2 = gone.entries[2]["resource"]
    assert "valueQuantity" not in spo2
    assert spo2["dataAbsentReason"]["coding"][0]["code"] == "not-performed"


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
