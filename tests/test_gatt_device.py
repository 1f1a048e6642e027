"""Device Information (DIS 1.1), System ID, Current Time (CTS 1.1 §3.1), Battery Level, UUIDs."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from drivers.errors import MalformedFrameError
from drivers.gatt import uuids
from drivers.gatt.battery import parse_battery_level
from drivers.gatt.current_time import (
    AdjustReason,
    CurrentTime,
    clock_offset,
    encode_current_time,
    parse_current_time,
)
from drivers.gatt.device_info import (
    DeviceInformation,
    eui64_dashed,
    parse_device_information,
    parse_string,
    parse_system_id,
    to_identity,
)
from gateway.reading import DeviceIdentity

# DIS 1.1 System ID example: OUI 0x123456, manufacturer identifier 0xFFFE9ABCDE. On the wire the 64-bit
# value is little-endian: manufacturer identifier (40 bits) first, then the OUI (24 bits).
SYSTEM_ID_WIRE = bytes.fromhex("DEBC9AFEFF563412")


def test_system_id_is_eui64_oui_first() -> None:
    assert parse_system_id(SYSTEM_ID_WIRE) == "123456FFFE9ABCDE"
    assert eui64_dashed("123456FFFE9ABCDE") == "12-34-56-FF-FE-9A-BC-DE"
    assert parse_system_id(bytes(8)) is None  # all zero: not given
    for size in (7, 9):
        with pytest.raises(MalformedFrameError):
            parse_system_id(bytes(size))


def test_strings() -> None:
    assert parse_string(b"Acme Medical") == "Acme Medical"
    assert parse_string(b"BP-7000\x00\x00") == "BP-7000"  # NUL padding
    assert parse_string("Zähler 2".encode()) == "Zähler 2"
    assert parse_string(b"") is None
    assert parse_string(b"\x00\x00") is None
    with pytest.raises(MalformedFrameError):
        parse_string(b"\xff\xfe")
    with pytest.raises(MalformedFrameError):
        parse_string(b"AB\x00CD")


def test_device_information_to_identity() -> None:
    info = parse_device_information(
        {
            "2a29": b"Acme Medical",  # manufacturer name
            "0x2A24": b"BP-7000",  # model number
            uuids.SERIAL_NUMBER: b"SN0042\x00",
            uuids.FIRMWARE_REVISION: b"1.2.3",
            uuids.HARDWARE_REVISION: b"rev B",
            uuids.SYSTEM_ID.upper(): SYSTEM_ID_WIRE,
            uuids.BATTERY_LEVEL: b"\x64",  # not a DIS characteristic: ignored
        }
    )
    assert info == DeviceInformation(
        manufacturer="Acme Medical",
        model="BP-7000",
        serial_number="SN0042",
        hardware_revision="rev B",
        firmware_revision="1.2.3",
        system_id="123456FFFE9ABCDE",
    )
    identity = to_identity(info, "ble-blood-pressure", "C0:FF:EE:00:00:01")
    assert identity == DeviceIdentity(
        driver="ble-blood-pressure",
        address="C0:FF:EE:00:00:01",
        serial_number="SN0042",
        system_id="123456FFFE9ABCDE",
        manufacturer="Acme Medical",
        model="BP-7000",
        firmware="1.2.3",
    )
    assert identity.key == "eui64:123456fffe9abcde"


CURRENT_TIME = bytes.fromhex(
    "EA070B180E1E00"  # Date Time 2026-11-24 14:30:00
    "02"  # day of week 2 = Tuesday
    "80"  # fractions256 0x80 = 128/256 s = 0.5 s
    "01"  # adjust reason bit 0: manual time update
)


def test_current_time_parse_and_encode() -> None:
    assert parse_current_time(CURRENT_TIME) == CurrentTime(
        time=datetime(2026, 11, 24, 14, 30, 0, 500000),
        day_of_week=2,
        fractions256=128,
        adjust_reason=frozenset({AdjustReason.MANUAL_TIME_UPDATE}),
    )
    assert encode_current_time(datetime(2026, 11, 24, 14, 30, 0, 500000)) == CURRENT_TIME
    # external reference (bit 1) + DST change (bit 3) = 0x0A; no fractions; Sunday 2026-11-29 = 7
    assert encode_current_time(
        datetime(2026, 11, 29, 0, 0, 1),
        frozenset({AdjustReason.EXTERNAL_REFERENCE_TIME_UPDATE, AdjustReason.CHANGE_OF_DST}),
    ) == bytes.fromhex("EA070B1D00000107000A")


def test_current_time_unknown_and_reserved() -> None:
    # year 0: clock not set; day of week 0 unknown; adjust reason 0xF0 only reserved bits (ignored)
    assert parse_current_time(bytes.fromhex("00000B180E1E000000F0")) == CurrentTime(None, None, 0)
    # day of week 8: reserved (CTS 1.1 §3.1 / GSS Day of Week: 8-255 RFU): the day is unknown, the time is good
    assert parse_current_time(bytes.fromhex("EA070B180E1E00080000")) == CurrentTime(
        datetime(2026, 11, 24, 14, 30, 0), None, 0
    )
    with pytest.raises(MalformedFrameError):
        parse_current_time(CURRENT_TIME[:-1])
    with pytest.raises(MalformedFrameError):
        parse_current_time(CURRENT_TIME + b"\x00")


def test_clock_offset() -> None:
    device = datetime(2026, 11, 24, 14, 35)
    gateway = datetime(2026, 11, 24, 14, 30)
    assert clock_offset(device, gateway) == timedelta(minutes=5)  # device clock 5 minutes ahead
    with pytest.raises(ValueError):
        clock_offset(device, gateway.astimezone())


def test_battery_level() -> None:
    assert parse_battery_level(b"\x64") == 100
    assert parse_battery_level(b"\x00") == 0
    for frame in (b"\x65", b"", b"\x50\x00"):
        with pytest.raises(MalformedFrameError):
            parse_battery_level(frame)


def test_uuids() -> None:
    assert uuids.BLOOD_PRESSURE_SERVICE == "00001810-0000-1000-8000-00805f9b34fb"
    assert uuids.RECORD_ACCESS_CONTROL_POINT == "00002a52-0000-1000-8000-00805f9b34fb"
    assert uuids.short_uuid("00002A35-0000-1000-8000-00805F9B34FB") == 0x2A35
    assert uuids.short_uuid("6e400001-b5a3-f393-e0a9-e50e24dcca9e") is None  # vendor UUID
    assert uuids.normalize("0x2a9d") == uuids.WEIGHT_MEASUREMENT
    assert uuids.normalize(0x2A19) == uuids.BATTERY_LEVEL
    assert uuids.name_of("2a18") == "Glucose Measurement"
    assert uuids.name_of("6e400001-b5a3-f393-e0a9-e50e24dcca9e") == "6e400001-b5a3-f393-e0a9-e50e24dcca9e"
    assert {
        uuids.uuid16(0x1810),
        uuids.uuid16(0x181D),
        uuids.uuid16(0x181B),
        uuids.uuid16(0x1808),
        uuids.uuid16(0x1809),  # Health Thermometer (Assigned Numbers §3.4)
        uuids.uuid16(0x1822),  # Pulse Oximeter
    } == uuids.HEALTH_SERVICES
    for bad in ("not-a-uuid", "12345"):
        with pytest.raises(ValueError):
            uuids.normalize(bad)
    with pytest.raises(ValueError):
        uuids.uuid16(0x10000)
