"""How fast the FHIR mapping runs, against the full pydantic validation it replaces on the hot path.

Run from the repository root:  python bench/bench_fhir.py [--seconds 2]
Prints readings/s for map_reading (dict templates + orjson), for validate_bundle (fhir.resources R4B)
on the same bundles, and the ratio. A mix of the four kinds, with and without pulse, flags and offsets.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.fhir import GatewayInfo, map_reading, validate_bundle
from gateway.reading import DeviceIdentity, Kind, Measurement, Metric, Reading, Status, Unit

GATEWAY = GatewayInfo(id="vitalgate-bench", version="0.1.0")
TZ = timezone(timedelta(hours=1))


def sample(n: int) -> list[Reading]:
    """n distinct readings from four devices (distinct sequence numbers, so distinct identifiers)."""
    bp = DeviceIdentity("ble-bp", address="00:1C:05:FF:E8:74", system_id="74e8fffeff051c00", manufacturer="A")
    scale = DeviceIdentity("ble-scale", address="00:1C:05:FF:E8:75", serial_number="S-1", model="W1")
    meter = DeviceIdentity("onetouch", address="/dev/ttyUSB0", serial_number="C1234")
    t0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    out = []
    for i in range(n):
        rx = t0 + timedelta(seconds=i)
        local = datetime(2026, 11, 24, 13, 0) + timedelta(seconds=i)
        match i % 4:
            case 0:
                out.append(
                    Reading(
                        Kind.BLOOD_PRESSURE,
                        (
                            Measurement(Metric.SYSTOLIC, 120.0 + i % 30, Unit.MMHG),
                            Measurement(Metric.DIASTOLIC, 80.0, Unit.MMHG),
                            Measurement(Metric.MEAN_ARTERIAL, 93.0, Unit.MMHG),
                            Measurement(Metric.PULSE_RATE, 70.0, Unit.PER_MIN),
                        ),
                        bp,
                        rx,
                        local,
                        timedelta(seconds=4),
                        1,
                        i,
                        frozenset({Status.IRREGULAR_PULSE}) if i % 8 == 0 else frozenset(),
                    )
                )
            case 1:
                out.append(
                    Reading(
                        Kind.BODY_WEIGHT,
                        (
                            Measurement(Metric.BODY_WEIGHT, 70.0 + i % 10, Unit.KG),
                            Measurement(Metric.BMI, 22.5, Unit.KG_PER_M2),
                            Measurement(Metric.BODY_HEIGHT, 1.76, Unit.M),
                        ),
                        scale,
                        rx,
                        local,
                        None,
                        2,
                        i,
                    )
                )
            case 2:
                out.append(
                    Reading(
                        Kind.BLOOD_GLUCOSE,
                        (Measurement(Metric.GLUCOSE, 90.0 + i % 50, Unit.MG_DL),),
                        meter,
                        rx,
                        local,
                        sequence=i,
                    )
                )
            case _:
                out.append(
                    Reading(
                        Kind.PULSE_RATE,
                        (Measurement(Metric.PULSE_RATE, 60.0 + i % 40, Unit.PER_MIN),),
                        bp,
                        rx,
                        sequence=i,
                    )
                )
    return out


def rate(work: Callable[[int], object], n: int, seconds: float) -> float:
    """Items per second, repeating passes over n items for at least `seconds`."""
    done = 0
    start = time.perf_counter()
    while True:
        for i in range(n):
            work(i)
        done += n
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--readings", type=int, default=2000)
    args = parser.parse_args()
    readings = sample(args.readings)
    patients = [f"Patient/p{i % 50}" for i in range(len(readings))]
    mapped = [map_reading(r, p, GATEWAY, local_tz=TZ) for r, p in zip(readings, patients, strict=True)]
    observations = sum(e["resource"]["resourceType"] == "Observation" for m in mapped for e in m.entries)

    map_rate = rate(lambda i: map_reading(readings[i], patients[i], GATEWAY, local_tz=TZ), len(readings), args.seconds)
    validate_rate = rate(lambda i: validate_bundle(mapped[i].bundle), min(len(mapped), 400), args.seconds)
    per = observations / len(mapped)
    print(f"{'step':<34}{'readings/s':>12}{'observations/s':>16}")
    print(f"{'map_reading (dicts + orjson)':<34}{map_rate:>12,.0f}{map_rate * per:>16,.0f}")
    print(f"{'validate_bundle (fhir.resources)':<34}{validate_rate:>12,.0f}{validate_rate * per:>16,.0f}")
    print(f"ratio map/validate: {map_rate / validate_rate:.1f}x ({per:.2f} observations, 2 devices a reading)")


if __name__ == "__main__":
    main()
