"""Code tables for the FHIR mapping: every code, system, unit and profile the gateway emits lives here.

New devices add rows (a Kind in KINDS, a (Metric, Unit) in QUANTITIES, a specialization in
SPECIALIZATIONS, a Status in STATUS_BITS); the mapping code has no per-kind branches.

Sources (HL7 PHD IG STU 2, HL7/phd tag 2.0.0, input/fsh; see docs/phd-conformance.md):
- PhdBaseObservation: category PhdObservationCategories#phd (STU 1.1 had `phd-observation`), extension
  `observation-gatewayDevice` 1..1, `device.reference` 1..1, the conditionalCreate identifier slice
  (system = the profile's canonical URL, value built as in the profile's notes), HTEST security label,
  dataAbsentReason from data-absent-reason when the value is a special FLOAT or the measurement failed.
- PhdNumericObservation / PhdCompoundNumericObservation (value or components with UCUM quantities),
  PhdBitsEnumerationObservation (components coded from ASN1MeasurementBits, `valueBoolean`),
  PhdCoincidentTimeStampObservation (MDCClockTypes code, subject PHD, device PHG, valueDateTime).
- PhdDevice / PhgDevice: identifiers typed from ContinuaDeviceIdentifiers, SYSID on the EUI-64 OID,
  BTMAC on eui-48/bluetooth, type MDC 65573 / 531981, specialization from DeviceTypes11073MDC with a
  version, version types MDCDeviceVersionTypes, PHG time-sync property MDC 68220.
- Code systems ASN1ToHL7 and ContinuaDeviceIdentifiers are published under terminology.hl7.org in STU 2.
- FHIR R4 vital-signs profiles (bp, heartrate, bodyweight, bodyheight, bmi): LOINC codes and the UCUM
  units they allow (body height only `cm` or `[in_i]`, so metres are converted to cm).
- LOINC: 41653-7 is glucose *mass* concentration in capillary blood by glucometer; a meter reporting
  mmol/L is a *substance* concentration, which is 14743-9. Keeping the device's unit therefore means
  picking the LOINC code by unit (the one deliberate departure from "always 41653-7").
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from gateway.reading import Kind, Metric, Status, Unit

__all__ = [
    "BITS_FAMILIES",
    "INTERPRETATIONS",
    "KINDS",
    "PRELIMINARY_STATUS",
    "QUANTITIES",
    "REJECTED_STATUS",
    "SPECIALIZATIONS",
    "STATUS_BITS",
    "KindSpec",
    "ObservationSpec",
    "QuantitySpec",
    "StatusBit",
]

# Namespace of every uuid5 the gateway derives (fullUrls and identifiers). Never change it: identifiers
# already on a backend would stop matching and conditional create would duplicate data.
NAMESPACE: Final = uuid.UUID("6f1c3b0e-8a4e-5d2b-9c7e-2f6a1d9b4e30")

LOINC: Final = "http://loinc.org"
MDC: Final = "urn:iso:std:iso:11073:10101"
UCUM: Final = "http://unitsofmeasure.org"
URI: Final = "urn:ietf:rfc:3986"
OBS_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
PHD_CATEGORY: Final = "http://hl7.org/fhir/uv/phd/CodeSystem/PhdObservationCategories"
ASN1_TO_HL7: Final = "http://terminology.hl7.org/CodeSystem/ASN1ToHL7"
DATA_ABSENT: Final = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
V2_YES_NO: Final = "http://terminology.hl7.org/CodeSystem/v2-0136"
V2_ID_TYPE: Final = "http://terminology.hl7.org/CodeSystem/v2-0203"
ACT_REASON: Final = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
EUI64: Final = "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680"
BT_MAC: Final = "http://hl7.org/fhir/sid/eui-48/bluetooth"
DEVICE_ID_TYPE: Final = "http://terminology.hl7.org/CodeSystem/ContinuaDeviceIdentifiers"
EXT_GATEWAY: Final = "http://hl7.org/fhir/StructureDefinition/observation-gatewayDevice"
EXT_COINCIDENT: Final = "http://hl7.org/fhir/uv/phd/StructureDefinition/CoincidentTimeStampReference"
VITALSIGNS: Final = "http://hl7.org/fhir/StructureDefinition/vitalsigns"
_PHD_SD: Final = "http://hl7.org/fhir/uv/phd/StructureDefinition/"
# The conditionalCreate identifier slice of PhdBaseObservation: its system is the profile's own URL.
PHD_IDENTIFIER_SYSTEM: Final = _PHD_SD + "PhdBaseObservation"
PHD_NUMERIC: Final = _PHD_SD + "PhdNumericObservation"
PHD_COMPOUND: Final = _PHD_SD + "PhdCompoundNumericObservation"
PHD_BITS: Final = _PHD_SD + "PhdBitsEnumerationObservation"
PHD_COINCIDENT: Final = _PHD_SD + "PhdCoincidentTimeStampObservation"
PHD_DEVICE: Final = _PHD_SD + "PhdDevice"
PHG_DEVICE: Final = _PHD_SD + "PhgDevice"


def coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


_MDC_CODES: dict[int, tuple[dict[str, Any], str]] = {}


def mdc_code(code: dict[str, Any]) -> str:
    """The MDC code of a CodeableConcept (the `type` part of the PHD conditional-create identifier).

    Cached by object: the concepts are this module's constants (the entry keeps the object alive).
    """
    hit = _MDC_CODES.get(id(code))
    if hit is not None and hit[0] is code:
        return hit[1]
    found = str(next(cd["code"] for cd in code["coding"] if cd["system"] == MDC))
    _MDC_CODES[id(code)] = (code, found)
    return found


def concept(*codings: dict[str, str], text: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"coding": list(codings)}
    if text is not None:
        out["text"] = text
    return out


def _mdc(code: str, ref_id: str) -> dict[str, str]:
    return coding(MDC, code, ref_id)


def _loinc(code: str, display: str) -> dict[str, str]:
    return coding(LOINC, code, display)


HTEST: Final = coding(ACT_REASON, "HTEST", "test health data")
YES: Final = concept(coding(V2_YES_NO, "Y", "Yes"))
PHD_OBSERVATION: Final = concept(coding(PHD_CATEGORY, "phd", "PHD generated Observation"))
VITAL_SIGNS: Final = concept(coding(OBS_CATEGORY, "vital-signs", "Vital Signs"))
LABORATORY: Final = concept(coding(OBS_CATEGORY, "laboratory", "Laboratory"))

PHD_DEVICE_TYPE: Final = concept(_mdc("65573", "MDC_MOC_VMS_MDS_SIMP"), text="Personal health device")
PHG_DEVICE_TYPE: Final = concept(_mdc("531981", "MDC_MOC_VMS_MDS_AHD"), text="Personal health gateway")
FIRMWARE_VERSION: Final = concept(_mdc("531976", "MDC_ID_PROD_SPEC_FW"), text="Firmware revision")
SOFTWARE_VERSION: Final = concept(_mdc("531975", "MDC_ID_PROD_SPEC_SW"), text="Software revision")
SYSID_TYPE: Final = concept(coding(DEVICE_ID_TYPE, "SYSID", "IEEE 11073 System Identifier"))
BTMAC_TYPE: Final = concept(coding(DEVICE_ID_TYPE, "BTMAC", "Bluetooth MAC address"))
SERIAL_TYPE: Final = concept(coding(V2_ID_TYPE, "SNO", "Serial Number"))

COINCIDENT_CODE: Final = concept(_mdc("67975", "MDC_ATTR_TIME_ABS"), text="Absolute time")
TIME_SYNC_CODE: Final = concept(_mdc("68220", "MDC_TIME_SYNC_PROTOCOL"), text="Clock synchronization method")
# The PHD's clock: a Bluetooth profile device's clock is set by hand or by us, never synchronized.
TIME_SYNC_COMPONENT: Final = {
    "code": TIME_SYNC_CODE,
    "valueCodeableConcept": concept(_mdc("532224", "MDC_TIME_SYNC_NONE")),
}
# The gateway's clock: systemd-timesyncd (the default on Debian / Raspberry Pi OS) is an SNTP client.
PHG_TIME_SYNC: Final = concept(_mdc("532227", "MDC_TIME_SYNC_SNTPV4"))


def data_absent(code: str, display: str) -> dict[str, Any]:
    return concept(coding(DATA_ABSENT, code, display))


# PhdNumericObservation.dataAbsentReason for the special FLOAT values (its comment: NaN, +INF, -INF map to
# their own codes, NRes and reserved to `error`), and the IG's Measurement Status table for a failed one.
ABSENT_NAN: Final = data_absent("not-a-number", "Not a Number (NaN)")
ABSENT_POS_INF: Final = data_absent("positive-infinity", "Positive Infinity (PINF)")
ABSENT_NEG_INF: Final = data_absent("negative-infinity", "Negative Infinity (NINF)")
ABSENT_ERROR: Final = data_absent("error", "Error")
ABSENT_NOT_PERFORMED: Final = data_absent("not-performed", "Not Performed")


@dataclass(frozen=True, slots=True)
class Specialization:
    """One IEEE 11073-104xx specialization (ValueSet DeviceTypes11073MDC) a PHD claims.

    The Bluetooth profiles do not report the specialization's version; "1" is what the IG's own
    examples of Bluetooth devices carry (phd-711000FEFF5F49B0..., phd-00601900010E9234...).
    """

    code: str
    ref_id: str
    text: str
    version: str = "1"

    @property
    def element(self) -> dict[str, Any]:
        return {"systemType": concept(_mdc(self.code, self.ref_id), text=self.text), "version": self.version}


@dataclass(frozen=True, slots=True)
class QuantitySpec:
    """How one metric, as reported in one unit, is coded and written.

    `factor` None keeps the device's own number; otherwise the canonical value (`Measurement.value`) is
    multiplied by it and rounded to `digits` (kPa -> mm[Hg], m -> cm), because the profiles fix the unit.
    """

    code: dict[str, Any]
    ucum: str
    unit: str
    factor: float | None = None
    digits: int = 1


_SYS = (_mdc("150021", "MDC_PRESS_BLD_NONINV_SYS"), _loinc("8480-6", "Systolic blood pressure"))
_DIA = (_mdc("150022", "MDC_PRESS_BLD_NONINV_DIA"), _loinc("8462-4", "Diastolic blood pressure"))
_MEAN = (_mdc("150023", "MDC_PRESS_BLD_NONINV_MEAN"), _loinc("8478-0", "Mean blood pressure"))
_PULSE = concept(_mdc("149546", "MDC_PULS_RATE_NON_INV"), _loinc("8867-4", "Heart rate"), text="Pulse rate")
_WEIGHT = concept(_mdc("188736", "MDC_MASS_BODY_ACTUAL"), _loinc("29463-7", "Body weight"), text="Body weight")
_HEIGHT = concept(_mdc("188740", "MDC_LEN_BODY_ACTUAL"), _loinc("8302-2", "Body height"), text="Body height")
_BMI = concept(
    _mdc("188752", "MDC_RATIO_MASS_BODY_LEN_SQ"),
    _loinc("39156-5", "Body mass index (BMI) [Ratio]"),
    text="Body mass index",
)
_GLU_CAPILLARY = _mdc("160184", "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD")

# Pulse oximetry (IEEE 11073-10404; MDC codes = partition 2 << 16 + term code): SpO2 MDC_PULS_OXIM_SAT_O2
# with LOINC 59408-5 (by pulse oximetry) and 2708-6 (the R4 oxygensat profile's fixed code); the pulse
# rate an oximeter derives, MDC_PULS_OXIM_PULS_RATE, with 8867-4 (R4 heartrate profile); pulse amplitude
# index MDC_PULS_OXIM_PERF_REL (term 19376), no LOINC.
_SPO2 = concept(
    _mdc("150456", "MDC_PULS_OXIM_SAT_O2"),
    _loinc("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),
    _loinc("2708-6", "Oxygen saturation in Arterial blood"),
    text="Oxygen saturation (SpO2)",
)
_PULSE_OXIM = concept(
    _mdc("149530", "MDC_PULS_OXIM_PULS_RATE"), _loinc("8867-4", "Heart rate"), text="Pulse rate (oximeter)"
)
_PAI = concept(_mdc("150488", "MDC_PULS_OXIM_PERF_REL"), text="Pulse amplitude index")
# Body temperature (IEEE 11073-10408): MDC_TEMP_BODY or the site's own term (SCADA partition; TEMP_TYMP
# 150392, RECT 188420, ORAL 188424, EAR 188428, FINGER 188432, TOE 188448, AXILLA 188452, GIT 188456),
# always with LOINC 8310-5 as the R4 bodytemp profile requires.
_BODY_TEMP = _loinc("8310-5", "Body temperature")
_TEMP_SITES: dict[Metric, tuple[str, str, str]] = {
    Metric.BODY_TEMPERATURE: ("150364", "MDC_TEMP_BODY", ""),
    Metric.TEMPERATURE_AXILLA: ("188452", "MDC_TEMP_AXILLA", "Axilla"),
    Metric.TEMPERATURE_EAR: ("188428", "MDC_TEMP_EAR", "Ear"),
    Metric.TEMPERATURE_FINGER: ("188432", "MDC_TEMP_FINGER", "Finger"),
    Metric.TEMPERATURE_GIT: ("188456", "MDC_TEMP_GIT", "Gastro-intestinal tract"),
    Metric.TEMPERATURE_ORAL: ("188424", "MDC_TEMP_ORAL", "Mouth"),
    Metric.TEMPERATURE_RECTAL: ("188420", "MDC_TEMP_RECT", "Rectum"),
    Metric.TEMPERATURE_TOE: ("188448", "MDC_TEMP_TOE", "Toe"),
    Metric.TEMPERATURE_TYMPANUM: ("150392", "MDC_TEMP_TYMP", "Tympanic membrane"),
}


def _temp_code(metric: Metric) -> dict[str, Any]:
    code, ref_id, site = _TEMP_SITES[metric]
    return concept(
        _mdc(code, ref_id), _BODY_TEMP, text=f"Body temperature ({site.lower()})" if site else "Body temperature"
    )


# Body composition (IEEE 11073-10420 terms, SCADA partition): body fat MDC_BODY_FAT with LOINC 41982-0;
# fat-free mass 57684, soft lean mass 57688, body water 57692 (also in 11073-20601); basal metabolism 57696,
# muscle percentage 57700, muscle mass 57704, electrical impedance 57708 (10420 additions, as listed by an
# open 11073 nomenclature table). No LOINC is claimed where we know of none.
_BODY_FAT = concept(
    _mdc("188748", "MDC_BODY_FAT"), _loinc("41982-0", "Percentage of body fat Measured"), text="Body fat"
)
_FAT_FREE = concept(_mdc("188756", "MDC_MASS_BODY_FAT_FREE"), text="Fat-free mass")
_SOFT_LEAN = concept(_mdc("188760", "MDC_MASS_BODY_SOFT_LEAN"), text="Soft lean mass")
_WATER = concept(_mdc("188764", "MDC_BODY_WATER"), text="Body water mass")
_BMR = concept(_mdc("188768", "MDC_BASAL_METABOLISM"), text="Basal metabolism")
_MUSCLE_PCT = concept(_mdc("188772", "MDC_BODY_MUSCLE"), text="Muscle percentage")
_MUSCLE_MASS = concept(_mdc("188776", "MDC_MASS_BODY_MUSCLE"), text="Muscle mass")
_IMPEDANCE = concept(_mdc("188780", "MDC_BODY_ELECTRICAL_IMPEDANCE"), text="Body electrical impedance")

_MASSES = ((Unit.KG, "kg", "kg"), (Unit.LB, "[lb_av]", "lb"))

QUANTITIES: Final[MappingProxyType[tuple[Metric, Unit], QuantitySpec]] = MappingProxyType(
    {
        (Metric.SYSTOLIC, Unit.MMHG): QuantitySpec(concept(*_SYS, text="Systolic"), "mm[Hg]", "mmHg"),
        (Metric.SYSTOLIC, Unit.KPA): QuantitySpec(concept(*_SYS, text="Systolic"), "mm[Hg]", "mmHg", 1.0),
        (Metric.DIASTOLIC, Unit.MMHG): QuantitySpec(concept(*_DIA, text="Diastolic"), "mm[Hg]", "mmHg"),
        (Metric.DIASTOLIC, Unit.KPA): QuantitySpec(concept(*_DIA, text="Diastolic"), "mm[Hg]", "mmHg", 1.0),
        (Metric.MEAN_ARTERIAL, Unit.MMHG): QuantitySpec(concept(*_MEAN, text="Mean"), "mm[Hg]", "mmHg"),
        (Metric.MEAN_ARTERIAL, Unit.KPA): QuantitySpec(concept(*_MEAN, text="Mean"), "mm[Hg]", "mmHg", 1.0),
        (Metric.PULSE_RATE, Unit.PER_MIN): QuantitySpec(_PULSE, "/min", "beats/minute"),
        (Metric.BODY_WEIGHT, Unit.KG): QuantitySpec(_WEIGHT, "kg", "kg"),
        (Metric.BODY_WEIGHT, Unit.LB): QuantitySpec(_WEIGHT, "[lb_av]", "lb"),
        (Metric.BODY_HEIGHT, Unit.M): QuantitySpec(_HEIGHT, "cm", "cm", 100.0),
        (Metric.BODY_HEIGHT, Unit.IN): QuantitySpec(_HEIGHT, "[in_i]", "in"),
        (Metric.BMI, Unit.KG_PER_M2): QuantitySpec(_BMI, "kg/m2", "kg/m2"),
        (Metric.GLUCOSE, Unit.MG_DL): QuantitySpec(
            concept(
                _GLU_CAPILLARY,
                _loinc("41653-7", "Glucose [Mass/volume] in Capillary blood by Glucometer"),
                text="Capillary blood glucose",
            ),
            "mg/dL",
            "mg/dL",
        ),
        (Metric.GLUCOSE, Unit.MMOL_L): QuantitySpec(
            concept(
                _GLU_CAPILLARY,
                _loinc("14743-9", "Glucose [Moles/volume] in Capillary blood by Glucometer"),
                text="Capillary blood glucose",
            ),
            "mmol/L",
            "mmol/L",
        ),
        (Metric.SPO2, Unit.PERCENT): QuantitySpec(_SPO2, "%", "%"),
        (Metric.PULSE_RATE_OXIMETRY, Unit.PER_MIN): QuantitySpec(_PULSE_OXIM, "/min", "beats/minute"),
        (Metric.PULSE_AMPLITUDE_INDEX, Unit.PERCENT): QuantitySpec(_PAI, "%", "%"),
        **{(m, Unit.CEL): QuantitySpec(_temp_code(m), "Cel", "C") for m in _TEMP_SITES},
        **{(m, Unit.DEG_F): QuantitySpec(_temp_code(m), "[degF]", "F") for m in _TEMP_SITES},
        (Metric.BODY_FAT, Unit.PERCENT): QuantitySpec(_BODY_FAT, "%", "%"),
        (Metric.MUSCLE_PERCENT, Unit.PERCENT): QuantitySpec(_MUSCLE_PCT, "%", "%"),
        **{(Metric.MUSCLE_MASS, u): QuantitySpec(_MUSCLE_MASS, c, n) for u, c, n in _MASSES},
        **{(Metric.FAT_FREE_MASS, u): QuantitySpec(_FAT_FREE, c, n) for u, c, n in _MASSES},
        **{(Metric.SOFT_LEAN_MASS, u): QuantitySpec(_SOFT_LEAN, c, n) for u, c, n in _MASSES},
        **{(Metric.BODY_WATER_MASS, u): QuantitySpec(_WATER, c, n) for u, c, n in _MASSES},
        (Metric.IMPEDANCE, Unit.OHM): QuantitySpec(_IMPEDANCE, "Ohm", "Ohm"),
        (Metric.BASAL_METABOLISM, Unit.KJ): QuantitySpec(_BMR, "kJ", "kJ"),
    }
)


@dataclass(frozen=True, slots=True)
class ObservationSpec:
    """One Observation a kind yields.

    Either `value` (a numeric Observation, code from QUANTITIES) or `components` (a panel with its own
    `code`). `required` observations must be present; the others appear when their metric does.
    `role` is part of the identifier, so it must never change.
    """

    role: str
    category: tuple[dict[str, Any], ...]
    profiles: tuple[str, ...] = ()
    value: Metric | None = None
    components: tuple[tuple[Metric, bool], ...] = ()
    code: dict[str, Any] | None = None
    required: bool = False
    body_site: dict[str, Any] | None = None  # Observation.bodySite (text only: the MDC term names the site)

    @property
    def all_profiles(self) -> tuple[str, ...]:
        """The PHD IG profile its shape conforms to, then the R4 vital-signs ones it claims."""
        return (PHD_NUMERIC if self.value is not None else PHD_COMPOUND, *self.profiles)


@dataclass(frozen=True, slots=True)
class KindSpec:
    observations: tuple[ObservationSpec, ...]  # the first is the primary one

    @property
    def metrics(self) -> frozenset[Metric]:
        out = {o.value for o in self.observations if o.value is not None}
        out.update(m for o in self.observations for m, _ in o.components)
        return frozenset(out)


def _vs(profile: str) -> tuple[str, ...]:
    return (VITALSIGNS, f"http://hl7.org/fhir/StructureDefinition/{profile}")


_VS_CATEGORY = (VITAL_SIGNS, PHD_OBSERVATION)
_PULSE_SPEC = ObservationSpec("pulse-rate", _VS_CATEGORY, _vs("heartrate"), value=Metric.PULSE_RATE)

KINDS: Final[MappingProxyType[Kind, KindSpec]] = MappingProxyType(
    {
        Kind.BLOOD_PRESSURE: KindSpec(
            (
                ObservationSpec(
                    "blood-pressure",
                    _VS_CATEGORY,
                    _vs("bp"),
                    components=(
                        (Metric.SYSTOLIC, True),
                        (Metric.DIASTOLIC, True),
                        (Metric.MEAN_ARTERIAL, False),
                    ),
                    code=concept(
                        _mdc("150020", "MDC_PRESS_BLD_NONINV"),
                        _loinc("85354-9", "Blood pressure panel with all children optional"),
                        text="Blood pressure",
                    ),
                    required=True,
                ),
                _PULSE_SPEC,
            )
        ),
        Kind.PULSE_RATE: KindSpec(
            (ObservationSpec("pulse-rate", _VS_CATEGORY, _vs("heartrate"), value=Metric.PULSE_RATE, required=True),)
        ),
        Kind.BODY_WEIGHT: KindSpec(
            (
                ObservationSpec(
                    "body-weight", _VS_CATEGORY, _vs("bodyweight"), value=Metric.BODY_WEIGHT, required=True
                ),
                ObservationSpec("bmi", _VS_CATEGORY, _vs("bmi"), value=Metric.BMI),
                ObservationSpec("body-height", _VS_CATEGORY, _vs("bodyheight"), value=Metric.BODY_HEIGHT),
            )
        ),
        # Glucose is not a vital sign: US Core files blood glucose under `laboratory` (example
        # `blood-glucose`, Laboratory Result Observation); the PHD IG asks only `phd-observation`. Both given.
        Kind.BLOOD_GLUCOSE: KindSpec(
            (ObservationSpec("blood-glucose", (LABORATORY, PHD_OBSERVATION), value=Metric.GLUCOSE, required=True),)
        ),
        Kind.OXYGEN_SATURATION: KindSpec(
            (
                ObservationSpec("spo2", _VS_CATEGORY, _vs("oxygensat"), value=Metric.SPO2, required=True),
                ObservationSpec("pulse-rate", _VS_CATEGORY, _vs("heartrate"), value=Metric.PULSE_RATE_OXIMETRY),
                ObservationSpec("pulse-amplitude-index", (PHD_OBSERVATION,), value=Metric.PULSE_AMPLITUDE_INDEX),
            )
        ),
        # One of these per reading: the metric says where it was measured (HTS Temperature Type).
        Kind.BODY_TEMPERATURE: KindSpec(
            tuple(
                ObservationSpec(
                    m.value,  # body-temperature, body-temperature-oral ...
                    _VS_CATEGORY,
                    _vs("bodytemp"),
                    value=m,
                    body_site={"text": site} if site else None,
                )
                for m, (_, _, site) in _TEMP_SITES.items()
            )
        ),
        # Not R4 vital signs: the PHD category only. None required (an advertising scale may send only the
        # impedance); each compartment its own Observation.
        Kind.BODY_COMPOSITION: KindSpec(
            tuple(
                ObservationSpec(metric.value, (PHD_OBSERVATION,), value=metric)
                for metric in (
                    Metric.BODY_FAT,
                    Metric.MUSCLE_PERCENT,
                    Metric.MUSCLE_MASS,
                    Metric.FAT_FREE_MASS,
                    Metric.SOFT_LEAN_MASS,
                    Metric.BODY_WATER_MASS,
                    Metric.IMPEDANCE,
                    Metric.BASAL_METABOLISM,
                )
            )
        ),
    }
)


SPECIALIZATIONS: Final[MappingProxyType[Kind, Specialization]] = MappingProxyType(
    {
        Kind.BLOOD_PRESSURE: Specialization("528391", "MDC_DEV_SPEC_PROFILE_BPM", "Blood pressure monitor"),
        Kind.PULSE_RATE: Specialization("528388", "MDC_DEV_SPEC_PROFILE_PULS_OXIM", "Pulse oximeter"),
        Kind.BODY_WEIGHT: Specialization("528399", "MDC_DEV_SPEC_PROFILE_SCALE", "Weighing scale"),
        Kind.BLOOD_GLUCOSE: Specialization("528401", "MDC_DEV_SPEC_PROFILE_GLUCOSE", "Glucose meter"),
        Kind.OXYGEN_SATURATION: Specialization("528388", "MDC_DEV_SPEC_PROFILE_PULS_OXIM", "Pulse oximeter"),
        Kind.BODY_TEMPERATURE: Specialization("528392", "MDC_DEV_SPEC_PROFILE_TEMP", "Thermometer"),
        Kind.BODY_COMPOSITION: Specialization("528404", "MDC_DEV_SPEC_PROFILE_BCA", "Body composition analyzer"),
    }
)


@dataclass(frozen=True, slots=True)
class StatusBit:
    """One measurement-status flag as a bit of a PHD BITs observation (CodeSystem ASN1ToHL7).

    `code` None: no single ASN1ToHL7 bit says it, so only its name is carried, as text, and that BITs
    Observation does not claim PhdBitsEnumerationObservation (its components must be coded). Those are
    the aggregate flags of readings queued by release 0.1 (pulse rate out of range without direction,
    device annunciation, folded PLX signal quality), the glucose meter's folded sensor faults (withheld,
    never sent as patient data) and the glucose time fault (the MDC glucose status has no time bit).
    """

    family: str
    code: str | None
    name: str


# Order here is output order (a frozenset has none), so the body stays byte-identical across runs.
STATUS_BITS: Final[MappingProxyType[Status, StatusBit]] = MappingProxyType(
    {
        Status.BODY_MOVEMENT: StatusBit("8410608", "8410608.0", "body-movement"),
        Status.CUFF_LOOSE: StatusBit("8410608", "8410608.1", "cuff-too-loose"),
        Status.IRREGULAR_PULSE: StatusBit("8410608", "8410608.2", "irregular-pulse"),
        Status.PULSE_RATE_ABOVE_RANGE: StatusBit("8410608", "8410608.3", "pulse-over-range-limit"),
        Status.PULSE_RATE_BELOW_RANGE: StatusBit("8410608", "8410608.4", "pulse-under-range-limit"),
        Status.PULSE_RATE_OUT_OF_RANGE: StatusBit("8410608", None, "pulse-rate-out-of-range"),
        Status.IMPROPER_POSITION: StatusBit("8410608", "8410608.5", "improper-body-position"),
        Status.BATTERY_LOW: StatusBit("8417752", "8417752.0", "device-battery-low"),
        Status.SENSOR_FAULT: StatusBit("8417752", None, "sensor-fault"),
        Status.VALUE_ABOVE_RANGE: StatusBit("8417752", "8417752.5", "sensor-result-too-high"),
        Status.VALUE_BELOW_RANGE: StatusBit("8417752", "8417752.6", "sensor-result-too-low"),
        Status.DEVICE_FAULT: StatusBit("8417752", "8417752.10", "device-gen-fault"),
        Status.TIME_FAULT: StatusBit("8417752", None, "time-fault"),
        Status.DEVICE_ANNUNCIATION: StatusBit("8417752", None, "device-annunciation"),
        # PLX Device and Sensor Status (PLXS 1.0 §3.1.1.4), bit by bit, as MDC_PULS_OXIM_DEV_STATUS 150604
        # (11073-10404, SCADA term 19532): codes and displays of CodeSystem ASN1ToHL7 (HL7/phd
        # input/fsh/CodeSystem.ASN1ToHL7.fsh, 150604.0-.15, all "event" bits, so only set bits are sent) and
        # the IG example Observation `bits-observation` (150604.2 / .7 / .10 / .11 / .12). MDER bit k is
        # PLX bit 15 - k (drivers/gatt/plx.py).
        Status.PLX_SENSOR_DISCONNECTED: StatusBit("150604", "150604.0", "sensor-disconnected"),
        Status.PLX_SENSOR_MALFUNCTION: StatusBit("150604", "150604.1", "sensor-malfunction"),
        Status.PLX_SENSOR_DISPLACED: StatusBit("150604", "150604.2", "sensor-displaced"),
        Status.PLX_SENSOR_UNSUPPORTED: StatusBit("150604", "150604.3", "sensor-unsupported"),
        Status.PLX_SENSOR_OFF: StatusBit("150604", "150604.4", "sensor-off"),
        Status.PLX_SENSOR_INTERFERENCE: StatusBit("150604", "150604.5", "sensor-interference"),
        Status.PLX_SIGNAL_SEARCHING: StatusBit("150604", "150604.6", "signal-searching"),
        Status.PLX_PULSE_QUESTIONABLE: StatusBit("150604", "150604.7", "signal-pulse-questionable"),
        Status.PLX_SIGNAL_NON_PULSATILE: StatusBit("150604", "150604.8", "signal-non-pulsatile"),
        Status.PLX_SIGNAL_ERRATIC: StatusBit("150604", "150604.9", "signal-erratic"),
        Status.LOW_PERFUSION: StatusBit("150604", "150604.10", "signal-low-perfusion"),
        Status.PLX_SIGNAL_POOR: StatusBit("150604", "150604.11", "signal-poor"),
        Status.PLX_SIGNAL_INADEQUATE: StatusBit("150604", "150604.12", "signal-inadequate"),
        Status.PLX_SIGNAL_PROCESSING_IRREGULARITY: StatusBit("150604", "150604.13", "signal-processing-irregularity"),
        Status.PLX_EQUIPMENT_MALFUNCTION: StatusBit("150604", "150604.14", "device-equipment-malfunction"),
        Status.PLX_EXTENDED_DISPLAY_UPDATE: StatusBit("150604", "150604.15", "device-extended-update"),
        # Folded signal bits of readings queued before the bits were kept one by one: text only.
        Status.SIGNAL_QUALITY: StatusBit("150604", None, "signal-quality"),
    }
)

# Measurement-Status conditions that the PHD IG (STU 2, PhdBaseObservation notes, "Measurement Status" table)
# maps to `Observation.interpretation` with the PoCD measurement-status code system (the IG depends on
# hl7.fhir.uv.pocd 0.3.0 for it; PhdBaseObservation slice `MsmtStatusInterpretation`), not to a BITs
# Observation. Set on every measurement Observation of the reading (not on the BITs ones).
POCD_MEASUREMENT_STATUS: Final = "http://hl7.org/fhir/uv/pocd/CodeSystem/measurement-status"
INTERPRETATIONS: Final[MappingProxyType[Status, dict[str, Any]]] = MappingProxyType(
    {
        Status.QUESTIONABLE_MEASUREMENT: {
            "coding": [{"system": POCD_MEASUREMENT_STATUS, "code": "questionable", "display": "Questionable"}]
        },
        Status.CALIBRATION_ONGOING: {
            "coding": [
                {"system": POCD_MEASUREMENT_STATUS, "code": "calibration-ongoing", "display": "Calibration ongoing"}
            ]
        },
        Status.EARLY_ESTIMATE: {
            "coding": [{"system": POCD_MEASUREMENT_STATUS, "code": "early-indication", "display": "Early indication"}]
        },
    }
)
# ... and an early estimate makes the Observation `preliminary` (same table; PhdBaseObservation.status).
PRELIMINARY_STATUS: Final = frozenset({Status.EARLY_ESTIMATE})

BITS_FAMILIES: Final[MappingProxyType[str, dict[str, Any]]] = MappingProxyType(
    {
        "8410608": concept(
            _mdc("8410608", "MDC_BLOOD_PRESSURE_MEASUREMENT_STATUS"), text="Blood pressure measurement status"
        ),
        "8417752": concept(_mdc("8417752", "MDC_GLU_METER_DEV_STATUS"), text="Glucose meter device status"),
        "150604": concept(_mdc("150604", "MDC_PULS_OXIM_DEV_STATUS"), text="Pulse oximeter device and sensor status"),
    }
)

# Not patient data at all: a control-solution test checks the meter, not the person.
# ... nor is a value the device itself marks as demonstration or test data (PLX measurement status).
REJECTED_STATUS: Final = frozenset({Status.CONTROL_SOLUTION, Status.TEST_DATA})
