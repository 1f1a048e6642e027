"""Thermometer sessions through bleak + our Bumble backend + a Bumble Health Thermometer, real queue."""

from __future__ import annotations

from datetime import datetime

from bumble.link import LocalLink

from drivers.ble.bleak_transport import BleakTransport
from drivers.ble.thermometer import ThermometerDriver
from gateway.queue import ReadingQueue
from gateway.reading import Absent, Kind, Measurement, Metric, Unit
from simulators.ble.thermometer import TemperatureRecord, Thermometer
from tests.ble.conftest import Recorded, make_ctx

T1 = datetime(2026, 11, 29, 21, 40, 0)


async def _session(link: LocalLink, ble: BleakTransport, queue: ReadingQueue, device: Thermometer) -> Recorded:
    await device.start(link)
    rec = make_ctx(queue, ThermometerDriver.name, "thermo", address=device.address, idle_timeout=2.0)
    try:
        await ThermometerDriver(ble).run(rec.ctx)
    finally:
        await device.stop()
    return rec


async def test_celsius_fahrenheit_sites_a_nan_and_a_bad_frame(
    link: LocalLink, ble: BleakTransport, queue: ReadingQueue
) -> None:
    nan = bytes([0x00, 0xFF, 0xFF, 0x7F, 0x00])  # FLOAT NaN: a reading without a number (dataAbsentReason)
    truncated = bytes([0x02, 0x71, 0x01, 0x00, 0xFF, 0xEA])  # time stamp flag, date cut short: kept as a reject
    thermo = Thermometer(
        [
            TemperatureRecord(36.85, time=T1, site=6),
            nan,
            truncated,
            TemperatureRecord(100.4, fahrenheit=True, site=9),
            TemperatureRecord(37.2),
        ]
    )
    rec = await _session(link, ble, queue, thermo)
    assert [r.kind for r in rec.readings] == [Kind.BODY_TEMPERATURE] * 4
    assert [r.measurements for r in rec.readings if r.raw != nan] == [
        (Measurement(Metric.TEMPERATURE_ORAL, 36.85, Unit.CEL),),
        (Measurement(Metric.TEMPERATURE_TYMPANUM, 100.4, Unit.DEG_F),),
        (Measurement(Metric.BODY_TEMPERATURE, 37.2, Unit.CEL),),
    ]
    assert rec.readings[1].measurements[0].absent is Absent.NOT_A_NUMBER
    assert [r.device_time for r in rec.readings] == [T1, None, None, None]
    assert rec.readings[0].device.serial_number == "THERM004"
    rejects = await queue.rejects()
    assert [(source, error, raw) for _id, source, error, raw in rejects] == [
        ("thermo:ble-thermometer/2a1c", "MalformedFrameError", truncated)
    ]


async def test_single_site_thermometer_reports_its_static_type(
    link: LocalLink, ble: BleakTransport, queue: ReadingQueue
) -> None:
    thermo = Thermometer([TemperatureRecord(36.4), TemperatureRecord(36.6)], fixed_site=1)  # 1 = armpit
    rec = await _session(link, ble, queue, thermo)
    assert [r.measurements[0].metric for r in rec.readings] == [Metric.TEMPERATURE_AXILLA] * 2
    assert [r.measurements[0].reported_value for r in rec.readings] == [36.4, 36.6]
