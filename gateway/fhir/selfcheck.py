"""Start-up proof that the dict templates still produce valid FHIR with this install's fhir.resources.

Maps one reading of every kind in every reported unit, with every mapped status flag, a device time and
clock offset and a full device identity, plus one without any number (dataAbsentReason), and validates
each bundle. Tens of milliseconds: cheap enough to
run at every start, and it catches a table edited into invalid FHIR before any patient data is sent.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta, tzinfo

from gateway.fhir import codes as c
from gateway.fhir.mapping import map_reading
from gateway.fhir.model import GatewayInfo
from gateway.fhir.validation import validate_bundle
from gateway.reading import Absent, DeviceIdentity, Measurement, Metric, Reading, Unit

__all__ = ["self_check"]

_DEVICE = DeviceIdentity(
    driver="self-check",
    address="00:00:5E:00:53:01",
    serial_number="SELF-CHECK",
    system_id="00005efffe005301",
    manufacturer="VitalGate",
    model="self-check",
    firmware="1",
)


def self_check(gateway: GatewayInfo, *, local_tz: tzinfo | None = None) -> int:
    """Raise InvalidBundleError (or MappingError) if any sample bundle is not valid; return how many passed."""
    units: dict[Metric, list[Unit]] = defaultdict(list)
    for metric, unit in c.QUANTITIES:
        units[metric].append(unit)
    received = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    checked = 0
    for kind, spec in c.KINDS.items():
        metrics = sorted(spec.metrics)
        for variant in range(max(len(units[m]) for m in metrics)):
            reading = Reading(
                kind=kind,
                measurements=tuple(Measurement(m, 1.5, units[m][variant % len(units[m])]) for m in metrics),
                device=_DEVICE,
                received_at=received,
                device_time=datetime(2026, 1, 1, 13, 0),
                clock_offset=timedelta(seconds=5),
                sequence=variant,
                status=frozenset(c.STATUS_BITS),
                simulated=True,
            )
            validate_bundle(map_reading(reading, "Patient/self-check", gateway, local_tz=local_tz).bundle)
            checked += 1
        # the same kind with no numbers at all: every value a dataAbsentReason
        missing = tuple(Measurement.missing(m, units[m][0], Absent.NOT_A_NUMBER) for m in metrics)
        reading = Reading(kind=kind, measurements=missing, device=_DEVICE, received_at=received, simulated=True)
        validate_bundle(map_reading(reading, "Patient/self-check", gateway, local_tz=local_tz).bundle)
        checked += 1
    return checked
