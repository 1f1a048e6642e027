"""Pulse Oximeter parsing, stored-record sync and continuous sampling, pinned by bytes.

Layouts: PLXS 1.0 §3.1 (PLX Spot-Check Measurement), §3.2 (PLX Continuous Measurement), §3.3 (PLX Features),
§3.4 (RACP, operator "all records" only). The frames marked "Spezi" are the byte vectors of Stanford
Spezi's PLX tests (SpeziBluetoothServices, PLXTests: spot-check, full continuous, simple continuous and
features), an independent implementation; the others are written here from the specification.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from drivers.ble.sampling import ContinuousSampler
from drivers.errors import DeviceProtocolError, MalformedFrameError
from drivers.gatt import plx
from drivers.gatt.plx import DeviceStatus as D
from drivers.gatt.plx import MeasurementStatus as M
from drivers.gatt.plx_records import PlxRecordSync, PlxSyncState, parse_time_checkpoint
from gateway.reading import Absent, DeviceIdentity, Kind, Measurement, Metric, Reading, Status, Unit

DEVICE = DeviceIdentity(driver="ble-pulse-oximeter", address="C5:00:00:00:00:05")
RX = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

SPEZI_SPOT = bytes([15, 172, 243, 190, 245, 232, 7, 11, 29, 23, 8, 57, 32, 64, 34, 0, 0, 102, 227])
SPEZI_CONTINUOUS_FULL = bytes([31, 222, 243, 202, 243, 202, 243, 90, 245, 212, 243, 178, 242, 32, 1, 0, 0, 0, 122, 227])
SPEZI_CONTINUOUS_SIMPLE = bytes([28, 95, 0, 90, 0, 32, 0, 0, 0, 0, 87, 240])
SPEZI_FEATURES = bytes([163, 0, 64, 16, 128, 1, 0])


def test_spot_check_spezi_vector() -> None:
    m = plx.parse_spot_check(SPEZI_SPOT)
    assert m == plx.PlxSpotCheck(
        spo2=94.0,
        pulse_rate=147.0,
        time_stamp=datetime(2024, 11, 29, 23, 8, 57),
        measurement_status=frozenset({M.MEASUREMENT_ONGOING, M.QUESTIONABLE_MEASUREMENT}),
        device_status=frozenset({D.EQUIPMENT_MALFUNCTION, D.LOW_PERFUSION}),
        pulse_amplitude_index=8.7,
    )
    assert plx.to_reading(m, DEVICE, RX, raw=SPEZI_SPOT) == Reading(
        kind=Kind.OXYGEN_SATURATION,
        measurements=(
            Measurement(Metric.SPO2, 94.0, Unit.PERCENT),
            Measurement(Metric.PULSE_RATE_OXIMETRY, 147.0, Unit.PER_MIN),
            Measurement(Metric.PULSE_AMPLITUDE_INDEX, 8.7, Unit.PERCENT),
        ),
        device=DEVICE,
        received_at=RX,
        device_time=datetime(2024, 11, 29, 23, 8, 57),
        status=frozenset({Status.QUESTIONABLE_MEASUREMENT, Status.PLX_EQUIPMENT_MALFUNCTION, Status.LOW_PERFUSION}),
        raw=SPEZI_SPOT,
    )


def test_continuous_spezi_vectors() -> None:
    assert plx.parse_continuous(SPEZI_CONTINUOUS_FULL) == plx.PlxContinuous(
        spo2=99.0,
        pulse_rate=97.0,
        fast=(97.0, 137.0),
        slow=(98.0, 69.0),
        measurement_status=frozenset({M.MEASUREMENT_ONGOING, M.FULLY_QUALIFIED_DATA}),
        device_status=frozenset(),
        pulse_amplitude_index=8.9,
    )
    simple = plx.parse_continuous(SPEZI_CONTINUOUS_SIMPLE)
    assert simple == plx.PlxContinuous(95, 90, None, None, frozenset({M.MEASUREMENT_ONGOING}), frozenset(), 8.7)
    reading = plx.to_reading(simple, DEVICE, RX)
    assert reading.device_time is None and reading.status == frozenset()
    assert [m.reported_value for m in reading.measurements] == [95, 90, 8.7]
    # Spezi's minimal frame: flags 0, SpO2 100, PR 90 (plain SFLOAT integers)
    assert plx.parse_continuous(bytes([0, 100, 0, 90, 0])) == plx.PlxContinuous(100, 90)


def test_features_spezi_vector() -> None:
    assert plx.parse_features(SPEZI_FEATURES) == plx.PlxFeatures(
        supported=frozenset(
            {
                plx.PlxFeature.MEASUREMENT_STATUS_SUPPORT,
                plx.PlxFeature.DEVICE_STATUS_SUPPORT,
                plx.PlxFeature.SPO2PR_SLOW,
                plx.PlxFeature.MULTIPLE_BONDS,
            }
        ),
        measurement_status_support=frozenset({M.EARLY_ESTIMATED_DATA, M.CALIBRATION_ONGOING}),
        device_status_support=frozenset({D.NON_PULSATILE_SIGNAL, D.QUESTIONABLE_PULSE}),
    )


def test_clock_not_set_drops_the_time_stamp() -> None:
    raw = bytes([0x11, 0x61, 0x00, 0x48, 0x00, 0xEA, 0x07, 1, 1, 0, 0, 0])  # flags: time stamp + clock not set
    m = plx.parse_spot_check(raw)
    assert m.clock_not_set and m.time_stamp == datetime(2026, 1, 1)
    assert plx.to_reading(m, DEVICE, RX).device_time is None


@pytest.mark.parametrize(
    ("raw", "absent"),
    [
        (bytes([0x02, 0x61, 0x00, 0x48, 0x00, 0x00, 0x20]), [Absent.NOT_PERFORMED] * 2),  # measurement unavailable
        (bytes([0x02, 0x61, 0x00, 0x48, 0x00, 0x00, 0x80]), [Absent.UNSUCCESSFUL] * 2),  # invalid measurement
        (bytes([0x00, 0xFF, 0x07, 0x48, 0x00]), [Absent.NOT_A_NUMBER, None]),  # SpO2 NaN (SFLOAT 0x07FF)
        (bytes([0x00, 0x61, 0x00, 0x00, 0x08]), [None, Absent.NOT_AT_RESOLUTION]),  # pulse NRes (0x0800)
    ],
)
def test_no_number_is_kept_as_absent(raw: bytes, absent: list[Absent | None]) -> None:
    reading = plx.to_reading(plx.parse_spot_check(raw), DEVICE, RX, raw=raw)
    assert [m.metric for m in reading.measurements] == [Metric.SPO2, Metric.PULSE_RATE_OXIMETRY]
    assert [m.absent for m in reading.measurements] == absent


def test_test_data_is_flagged() -> None:
    raw = bytes([0x02, 0x61, 0x00, 0x48, 0x00, 0x00, 0x08])  # status bit 11: data for testing
    reading = plx.to_reading(plx.parse_spot_check(raw), DEVICE, RX)
    assert reading.status == frozenset({Status.TEST_DATA})
    assert reading.measurements == (
        Measurement(Metric.SPO2, 97, Unit.PERCENT),
        Measurement(Metric.PULSE_RATE_OXIMETRY, 72, Unit.PER_MIN),
    )


# PLXS 1.0 §3.1.1.4 Device and Sensor Status, bit n (least significant first) -> its Status.
DEVICE_STATUS_BITS = [
    Status.PLX_EXTENDED_DISPLAY_UPDATE,  # 0 extended display update ongoing
    Status.PLX_EQUIPMENT_MALFUNCTION,  # 1 equipment malfunction detected
    Status.PLX_SIGNAL_PROCESSING_IRREGULARITY,  # 2 signal processing irregularity detected
    Status.PLX_SIGNAL_INADEQUATE,  # 3 inadequate signal detected
    Status.PLX_SIGNAL_POOR,  # 4 poor signal detected
    Status.LOW_PERFUSION,  # 5 low perfusion detected
    Status.PLX_SIGNAL_ERRATIC,  # 6 erratic signal detected
    Status.PLX_SIGNAL_NON_PULSATILE,  # 7 nonpulsatile signal detected
    Status.PLX_PULSE_QUESTIONABLE,  # 8 questionable pulse detected
    Status.PLX_SIGNAL_SEARCHING,  # 9 signal analysis ongoing
    Status.PLX_SENSOR_INTERFERENCE,  # 10 sensor interference detected
    Status.PLX_SENSOR_OFF,  # 11 sensor unconnected to user
    Status.PLX_SENSOR_UNSUPPORTED,  # 12 unknown sensor connected
    Status.PLX_SENSOR_DISPLACED,  # 13 sensor displaced
    Status.PLX_SENSOR_MALFUNCTION,  # 14 sensor malfunctioning
    Status.PLX_SENSOR_DISCONNECTED,  # 15 sensor disconnected
]


@pytest.mark.parametrize("bit", range(24))
def test_each_device_and_sensor_status_bit_is_its_own_status(bit: int) -> None:
    """Flags 0x04 (device and sensor status present), SpO2 97, PR 72, status uint24 with one bit set."""
    raw = bytes([0x04, 0x61, 0x00, 0x48, 0x00]) + (1 << bit).to_bytes(3, "little")
    reading = plx.to_reading(plx.parse_spot_check(raw), DEVICE, RX)
    assert reading.status == (frozenset({DEVICE_STATUS_BITS[bit]}) if bit < 16 else frozenset())  # 16-23 reserved


@pytest.mark.parametrize(
    ("word", "status"),
    [
        (0x4000, {Status.QUESTIONABLE_MEASUREMENT}),  # bit 14 questionable measurement detected
        (0x1000, {Status.CALIBRATION_ONGOING}),  # bit 12 calibration ongoing
        (0x0040, {Status.EARLY_ESTIMATE}),  # bit 6 early estimated data
        (0x0400, {Status.TEST_DATA}),  # bit 10 data for demonstration
        (0x03A0, set()),  # bits 5, 7, 8, 9: ongoing, validated, fully qualified, from storage: no flag
    ],
)
def test_measurement_status_flags(word: int, status: set[Status]) -> None:
    """PLXS 1.0 §3.1.1.3 Measurement Status (flags 0x02), SpO2 97, PR 72."""
    raw = bytes([0x02, 0x61, 0x00, 0x48, 0x00]) + word.to_bytes(2, "little")
    assert plx.to_reading(plx.parse_spot_check(raw), DEVICE, RX).status == frozenset(status)


@pytest.mark.parametrize(
    "raw",
    [b"", bytes([0x00, 0x61, 0x00, 0x48]), bytes([0x04, 0x61, 0x00, 0x48, 0x00, 0x00, 0x00]), SPEZI_SPOT + b"\x00"],
)
def test_malformed_spot_checks(raw: bytes) -> None:
    with pytest.raises(MalformedFrameError):
        plx.parse_spot_check(raw)


def _stored(minute: int, spo2: int = 97) -> bytes:
    """A stored spot-check: time stamp + measurement status 'from measurement storage' (bit 9)."""
    return bytes([0x03, spo2, 0x00, 0x48, 0x00, 0xEA, 0x07, 11, 30, 8, minute, 0, 0x00, 0x02])


def test_record_sync_commit_then_checkpoint_and_duplicates() -> None:
    sync = PlxRecordSync(None)
    assert sync.request() == bytes([0x01, 0x01])  # report stored records, all (PLXS 1.0 §3.4)
    for minute in (5, 1, 3):  # storage order need not be time order
        sync.receive_spot_check(_stored(minute))
    assert sync.checkpoint is None  # nothing handed out yet
    records = sync.take_records()
    assert [m.time_stamp.minute for m, _ in records if m.time_stamp] == [5, 1, 3]
    assert all(m.stored for m, _ in records)
    assert sync.checkpoint == datetime(2026, 11, 30, 8, 5)
    sync.receive_racp(bytes([0x06, 0x00, 0x01, 0x01]))
    assert sync.state is PlxSyncState.COMPLETE
    assert PlxRecordSync.delete_request() == bytes([0x02, 0x01])

    again = PlxRecordSync(parse_time_checkpoint(sync.checkpoint.isoformat()))
    again.request()
    for minute in (1, 3, 5, 7):
        again.receive_spot_check(_stored(minute))
    assert [m.time_stamp.minute for m, _ in again.take_records() if m.time_stamp] == [7]
    assert again.duplicates == 3


def test_record_sync_failures() -> None:
    sync = PlxRecordSync(None)
    sync.request()
    sync.receive_racp(bytes([0x06, 0x00, 0x01, 0x06]))
    assert sync.state is PlxSyncState.COMPLETE and sync.no_records
    failed = PlxRecordSync(None)
    failed.request()
    failed.receive_racp(bytes([0x06, 0x00, 0x01, 0x04]))  # operator not supported
    assert failed.state is PlxSyncState.FAILED
    with pytest.raises(DeviceProtocolError):
        failed.receive_racp(bytes([0x06, 0x00, 0x04, 0x01]))  # answer to a count we never asked for
    with pytest.raises(ValueError):
        parse_time_checkpoint("not a time")


def test_sampler_interval_and_change() -> None:
    s = ContinuousSampler(interval=60, spo2_change=3, pulse_change=10)
    kept = [
        s.offer(97, 70, 0.0),  # first
        s.offer(97, 72, 1.0),  # same, too soon
        s.offer(95, 75, 30.0),  # -2 SpO2, +5 pulse: not enough
        s.offer(94, 71, 31.0),  # -3 SpO2 from the last kept (97): kept
        s.offer(94, 82, 32.0),  # +11 pulse: kept
        s.offer(94, 82, 91.9),  # 59.9 s since the last kept
        s.offer(94, 82, 92.0),  # 60 s: kept
        s.offer(94, None, 93.0),  # no pulse, no change
    ]
    assert kept == [True, False, False, True, True, False, True, False]
    assert (s.offered, s.kept) == (8, 4)
