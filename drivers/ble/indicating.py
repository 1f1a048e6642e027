"""Sessions for devices that indicate stored measurements on subscription: BP cuffs and weight scales.

Supported: Blood Pressure Service 1.0 (0x1810, measurement 0x2A35) and Weight Scale Service 1.0 (0x181D,
measurement 0x2A9D), with Device Information 0x180A for identity and Current Time 0x1805 for the clock.
Expected path: a paired device's Bluetooth address in the `[[devices]]` table (`address = "C1:..."`).
Multi-user devices put their user id on each reading (`user_slot`); the core maps slots to patients.

Durability note: the BLE stack confirms an indication before the session commits it (the stack, not the
application, sends the ATT confirmation), so a crash in that window can lose the reading in flight; every
committed one is safe. Cuffs and scales offer no record-access procedure to re-read it, so these drivers
say `rereadable = False`: the core connects only while the queue can commit, and holds readings in memory
while a commit fails (gateway.diskguard).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import ClassVar

import structlog

from drivers.base import DeviceContext
from drivers.ble.common import BleDriver, BleOptions, collect_frames, received_now
from drivers.ble.transport import BleSession
from drivers.gatt import blood_pressure, uuids, weight_scale
from gateway.reading import DeviceIdentity, Reading

__all__ = ["BloodPressureDriver", "IndicatingDriver", "WeightScaleDriver"]

log = structlog.get_logger(__name__)


def _bp(raw: bytes, device: DeviceIdentity, at: datetime, offset: timedelta | None, sim: bool) -> Reading:
    m = blood_pressure.parse_bp_measurement(raw)
    return blood_pressure.to_reading(m, device, at, offset, raw, simulated=sim)


def _weight(raw: bytes, device: DeviceIdentity, at: datetime, offset: timedelta | None, sim: bool) -> Reading:
    m = weight_scale.parse_weight_measurement(raw)
    return weight_scale.to_reading(m, device, at, offset, raw, simulated=sim)


class IndicatingDriver(BleDriver):
    """Subscribe to the measurement and commit each indicated one until the device goes quiet."""

    service: ClassVar[str]
    measurement: ClassVar[str]
    # The device deletes a measurement once its indication is confirmed: the core starts a session only
    # while the queue can commit and holds what it received if a commit then fails (gateway.diskguard).
    rereadable: ClassVar[bool] = False

    @staticmethod
    def decode(raw: bytes, device: DeviceIdentity, at: datetime, offset: timedelta | None, sim: bool) -> Reading:
        raise NotImplementedError

    async def collect(
        self,
        session: BleSession,
        ctx: DeviceContext,
        identity: DeviceIdentity,
        offset: timedelta | None,
        opts: BleOptions,
    ) -> None:
        parse = self.decode
        source = f"{self.name}/{uuids.short_uuid(self.measurement) or 0:04x}"

        def to_reading(raw: bytes) -> Reading:
            return parse(raw, identity, received_now(), offset, opts.simulated)

        limit = 1 if self.quirks.last_record_only else None
        count = await collect_frames(
            session,
            ctx,
            self.measurement,
            to_reading,
            idle_timeout=opts.idle_timeout,
            source=source,
            max_readings=opts.max_readings_per_session,
            limit=limit,
        )
        # A poll that found nothing new is routine (about once a second per device): debug, not info.
        (log.info if count else log.debug)("ble_session_done", driver=self.name, readings=count)


class BloodPressureDriver(IndicatingDriver):
    name = "ble-blood-pressure"
    description = "Bluetooth LE blood pressure monitor (Blood Pressure Service 0x1810)"
    service = uuids.BLOOD_PRESSURE_SERVICE
    measurement = uuids.BLOOD_PRESSURE_MEASUREMENT
    decode = staticmethod(_bp)


class WeightScaleDriver(IndicatingDriver):
    name = "ble-weight-scale"
    description = "Bluetooth LE weight scale (Weight Scale Service 0x181D), multi-user"
    service = uuids.WEIGHT_SCALE_SERVICE
    measurement = uuids.WEIGHT_MEASUREMENT
    decode = staticmethod(_weight)
