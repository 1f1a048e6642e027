"""A transport-less simulated device: produces plausible readings straight as `Reading`s.

For development and the tests that exercise the core (queue, forwarders, crash recovery), where the
wire protocol is not the point. The BLE and serial simulators cover the protocols.

Options (`[[devices]] driver = "simulated"`): `kind` (blood-pressure, body-weight, blood-glucose),
`serial` (device serial number), `users` (list of user slots; omit for a single-user device),
`interval_seconds`, `count` (stop after this many readings; 0 = no limit), `seed`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from drivers.base import DeviceContext
from gateway.errors import ConfigError
from gateway.reading import DeviceIdentity, Kind, Measurement, Metric, Reading, Status, Unit

__all__ = ["SimulatedDevice", "make_reading"]

_OPTIONS = {"kind", "serial", "users", "interval_seconds", "count", "seed", "poll_seconds"}


def make_reading(kind: Kind, serial: str, rng: random.Random, user: int | None, sequence: int) -> Reading:
    """One plausible reading; the device time is now, zone-less as real devices report it.

    To the microsecond, unlike a real device's whole seconds: the simulator may measure many times a
    second, and the PHD IG identifier tells measurements apart by device, patient, type and device time.
    """
    now = datetime.now(UTC)
    device_time = datetime.now()
    status: frozenset[Status] = frozenset()
    if kind is Kind.BLOOD_PRESSURE:
        sys_ = rng.randint(105, 160)
        measurements: tuple[Measurement, ...] = (
            Measurement(Metric.SYSTOLIC, float(sys_), Unit.MMHG),
            Measurement(Metric.DIASTOLIC, float(rng.randint(60, min(100, sys_ - 25))), Unit.MMHG),
            Measurement(Metric.PULSE_RATE, float(rng.randint(55, 95)), Unit.PER_MIN),
        )
        if rng.random() < 0.1:
            status = frozenset({Status.IRREGULAR_PULSE})
        model = "Simulated BP cuff"
    elif kind is Kind.BODY_WEIGHT:
        measurements = (Measurement(Metric.BODY_WEIGHT, round(rng.uniform(55, 110) / 0.005) * 0.005, Unit.KG),)
        model = "Simulated scale"
    else:
        measurements = (Measurement(Metric.GLUCOSE, float(rng.randint(70, 220)), Unit.MG_DL),)
        model = "Simulated glucose meter"
    return Reading(
        kind=kind,
        measurements=measurements,
        device=DeviceIdentity("simulated", serial_number=serial, manufacturer="VitalGate simulator", model=model),
        received_at=now,
        device_time=device_time,
        user_slot=user,
        sequence=sequence,
        status=status,
        simulated=True,
    )


class SimulatedDevice:
    name: ClassVar[str] = "simulated"
    transport: ClassVar[str] = "none"
    description: ClassVar[str] = "Simulated device without a transport (development and tests)"

    def __init__(self) -> None:
        self._sequence = 0

    @classmethod
    def validate(cls, options: Mapping[str, Any], where: str) -> None:
        for key in options:
            if key not in _OPTIONS:
                raise ConfigError("", f"{where}.{key}", "unknown option for driver 'simulated'")
        kind = options.get("kind", "blood-pressure")
        if kind not in {k.value for k in (Kind.BLOOD_PRESSURE, Kind.BODY_WEIGHT, Kind.BLOOD_GLUCOSE)}:
            raise ConfigError("", f"{where}.kind", "must be blood-pressure, body-weight or blood-glucose")
        users = options.get("users", [])
        if not isinstance(users, list) or not all(isinstance(u, int) and 0 <= u < 255 for u in users):
            raise ConfigError("", f"{where}.users", "must be a list of user slot numbers 0-254")
        for key in ("count", "seed"):
            value = options.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError("", f"{where}.{key}", "must be a whole number, 0 or more")
        interval = options.get("interval_seconds", 1.0)
        if isinstance(interval, bool) or not isinstance(interval, int | float) or not 0 < interval <= 86400:
            raise ConfigError("", f"{where}.interval_seconds", "must be seconds, more than 0 and at most 86400")
        serial = options.get("serial", "x")
        if not isinstance(serial, str) or not serial:
            raise ConfigError("", f"{where}.serial", "must be a non-empty string")

    async def run(self, ctx: DeviceContext) -> None:
        o = ctx.options
        kind = Kind(o.get("kind", "blood-pressure"))
        serial = str(o.get("serial", f"SIM-{kind.value}"))
        users: list[int | None] = list(o.get("users", [])) or [None]
        rng = random.Random(o.get("seed"))
        count = int(o.get("count", 0))
        interval = float(o.get("interval_seconds", 1.0))
        last = await ctx.checkpoint("sequence")
        self._sequence = int(last) if last else 0
        while count == 0 or self._sequence < count:
            self._sequence += 1
            user = users[self._sequence % len(users)]
            await ctx.submit([make_reading(kind, serial, rng, user, self._sequence)])
            await ctx.set_checkpoint("sequence", str(self._sequence))
            await asyncio.sleep(interval)
        await asyncio.Event().wait()  # done: stay connected, produce nothing more
