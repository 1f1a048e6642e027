"""Health Thermometer parsing, pinned by bytes.

Layouts: HTS 1.0 §3.1 / GSS "Temperature Measurement" (flags, FLOAT, Date Time, Temperature Type) and
HTS 1.0 §3.2 "Temperature Type". The first two frames are the vectors of a public JavaScript GATT parser's
test suite (38.2 °C as mantissa 382 / exponent -1; 98.6 °F with a time stamp); the FLOAT bytes 71 01 00 FF
for 36.9 come from the same suite's IEEE 11073 FLOAT test.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from drivers.errors import MalformedFrameError
from drivers.gatt import health_thermometer as hts
from drivers.gatt.sfloat import SpecialValue
from gateway.reading import Absent, DeviceIdentity, Kind, Measurement, Metric, Reading, Unit

DEVICE = DeviceIdentity(driver="ble-thermometer", address="C4:00:00:00:00:04")
RX = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_celsius_without_options() -> None:
    raw = bytes([0x00, 0x7E, 0x01, 0x00, 0xFF])
    assert hts.parse_temperature_measurement(raw) == hts.TemperatureMeasurement(Unit.CEL, 38.2)


def test_fahrenheit_with_time_stamp() -> None:
    raw = bytes([0x03, 0xDA, 0x03, 0x00, 0xFF, 0xEA, 0x07, 7, 21, 9, 15, 30])
    m = hts.parse_temperature_measurement(raw)
    assert m == hts.TemperatureMeasurement(Unit.DEG_F, 98.6, datetime(2026, 7, 21, 9, 15, 30))
    reading = hts.to_reading(m, DEVICE, RX, raw=raw)
    assert reading == Reading(
        kind=Kind.BODY_TEMPERATURE,
        measurements=(Measurement(Metric.BODY_TEMPERATURE, 98.6, Unit.DEG_F),),
        device=DEVICE,
        received_at=RX,
        device_time=datetime(2026, 7, 21, 9, 15, 30),
        raw=raw,
    )
    assert reading.measurements[0].value == pytest.approx(37.0)  # canonical Celsius: (98.6 - 32) * 5 / 9


def test_type_in_measurement_names_the_site() -> None:
    raw = bytes([0x06, 0x71, 0x01, 0x00, 0xFF, 0xEA, 0x07, 11, 30, 7, 5, 0, 0x06])  # type 6 = mouth
    m = hts.parse_temperature_measurement(raw)
    assert m == hts.TemperatureMeasurement(Unit.CEL, 36.9, datetime(2026, 11, 30, 7, 5), hts.TemperatureType.MOUTH)
    assert hts.to_reading(m, DEVICE, RX).measurements == (Measurement(Metric.TEMPERATURE_ORAL, 36.9, Unit.CEL),)


def test_static_type_used_when_the_measurement_has_none() -> None:
    assert hts.parse_temperature_type(b"\x09") is hts.TemperatureType.TYMPANUM
    m = hts.parse_temperature_measurement(bytes([0x00, 0x71, 0x01, 0x00, 0xFF]))
    reading = hts.to_reading(m, DEVICE, RX, site=hts.TemperatureType.TYMPANUM)
    assert reading.measurements == (Measurement(Metric.TEMPERATURE_TYMPANUM, 36.9, Unit.CEL),)
    # The measurement's own type wins over the static one (HTS 1.0 §3.2 forbids both; be deterministic).
    own = hts.parse_temperature_measurement(bytes([0x04, 0x71, 0x01, 0x00, 0xFF, 0x01]))
    assert hts.to_reading(own, DEVICE, RX, site=hts.TemperatureType.TYMPANUM).measurements[0].metric is (
        Metric.TEMPERATURE_AXILLA
    )


def test_reserved_type_is_an_unspecified_site() -> None:
    assert hts.parse_temperature_type(b"\x00") is None
    m = hts.parse_temperature_measurement(bytes([0x04, 0x71, 0x01, 0x00, 0xFF, 0x0A]))
    assert m.temperature_type is None
    assert hts.to_reading(m, DEVICE, RX).measurements[0].metric is Metric.BODY_TEMPERATURE


def test_nan_temperature_is_kept_without_a_number() -> None:
    raw = bytes([0x00, 0xFF, 0xFF, 0x7F, 0x00])  # FLOAT NaN (IEEE 11073-20601 §F.8: 0x007FFFFF)
    m = hts.parse_temperature_measurement(raw)
    assert m.temperature is SpecialValue.NAN
    (value,) = hts.to_reading(m, DEVICE, RX, raw=raw).measurements
    assert (value.metric, value.reported_unit, value.absent) == (Metric.BODY_TEMPERATURE, Unit.CEL, Absent.NOT_A_NUMBER)
    # +INF in Fahrenheit (0x007FFFFE)
    (inf,) = hts.to_reading(
        hts.parse_temperature_measurement(bytes([0x01, 0xFE, 0xFF, 0x7F, 0x00])), DEVICE, RX
    ).measurements
    assert (inf.reported_unit, inf.absent) == (Unit.DEG_F, Absent.POSITIVE_INFINITY)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        bytes([0x00, 0x7E, 0x01, 0x00]),  # FLOAT cut short
        bytes([0x02, 0x7E, 0x01, 0x00, 0xFF, 0xEA, 0x07]),  # time stamp flag, date cut short
        bytes([0x04, 0x7E, 0x01, 0x00, 0xFF]),  # type flag, no type byte
        bytes([0x00, 0x7E, 0x01, 0x00, 0xFF, 0x06]),  # a byte no flag accounts for
    ],
)
def test_malformed_frames(raw: bytes) -> None:
    with pytest.raises(MalformedFrameError):
        hts.parse_temperature_measurement(raw)


def test_temperature_type_must_be_one_byte() -> None:
    with pytest.raises(MalformedFrameError):
        hts.parse_temperature_type(b"\x02\x00")
