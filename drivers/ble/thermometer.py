"""Session for Bluetooth LE thermometers (Health Thermometer Service 1.0, 0x1809).

Supported: Temperature Measurement 0x2A1C (indicated; Celsius or Fahrenheit, optional time stamp and
temperature type), the static Temperature Type 0x2A1D of single-site thermometers, Device Information for
identity and Current Time for the clock. Intermediate Temperature 0x2A1E (values while measuring) is not
subscribed: only the final measurement is a reading. Expected path: the address in `[[devices]]`.

Durability: as for cuffs and scales (drivers/ble/indicating.py), the stack confirms an indication before
the reading is committed; a thermometer has no record-access procedure to fetch it again.
"""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

import structlog

from drivers.base import DeviceContext
from drivers.ble.common import BleOptions, collect_frames, received_now
from drivers.ble.indicating import IndicatingDriver
from drivers.ble.transport import BleError, BleSession
from drivers.errors import DeviceProtocolError
from drivers.gatt import health_thermometer as hts
from drivers.gatt import uuids
from gateway.reading import DeviceIdentity, Reading

__all__ = ["ThermometerDriver"]

log = structlog.get_logger(__name__)


async def read_site(session: BleSession) -> hts.TemperatureType | None:
    """The static Temperature Type, when the thermometer has one; unreadable or malformed -> None."""
    if not session.has(uuids.TEMPERATURE_TYPE):
        return None
    try:
        return hts.parse_temperature_type(await session.read(uuids.TEMPERATURE_TYPE))
    except (DeviceProtocolError, BleError) as exc:
        log.warning("thermometer_type_unreadable", error=type(exc).__name__)
        return None


class ThermometerDriver(IndicatingDriver):
    name: ClassVar[str] = "ble-thermometer"
    description: ClassVar[str] = "Bluetooth LE thermometer (Health Thermometer Service 0x1809)"
    service = uuids.HEALTH_THERMOMETER_SERVICE
    measurement = uuids.TEMPERATURE_MEASUREMENT

    async def collect(
        self,
        session: BleSession,
        ctx: DeviceContext,
        identity: DeviceIdentity,
        offset: timedelta | None,
        opts: BleOptions,
    ) -> None:
        site = await read_site(session)

        def to_reading(raw: bytes) -> Reading:
            m = hts.parse_temperature_measurement(raw)
            return hts.to_reading(m, identity, received_now(), offset, raw, site=site, simulated=opts.simulated)

        count = await collect_frames(
            session,
            ctx,
            self.measurement,
            to_reading,
            idle_timeout=opts.idle_timeout,
            source=f"{self.name}/2a1c",
            max_readings=opts.max_readings_per_session,
            limit=1 if self.quirks.last_record_only else None,
        )
        (log.info if count else log.debug)("ble_session_done", driver=self.name, readings=count)
