"""LifeScan binary link layer and OneTouch Ultra Easy messages: literal frames in, whole results compared.

[gmu-crc] glucometerutils/support/tests/test_lifescan.py (crc_ccitt vectors);
[gmu-pkt] glucometerutils/drivers/tests/test_otultraeasy.py (_make_packet vectors);
message layouts from glucometerutils/drivers/otultraeasy.py (repository glucometers-tech/glucometerutils).
"""

from __future__ import annotations

import contextlib
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.errors import ChecksumError, DriverError, MalformedFrameError
from drivers.serial import lifescan_binary as b
from drivers.serial import onetouch_ultraeasy as m

DISCONNECT_FRAME = b"\x02\x06\x08\x03\xc2\x62"  # [gmu-pkt] test_make_packet_ack (disconnect bit set)
VERSION_REQUEST = b"\x02\x09\x03\x05\x0d\x02\x03\x08\x9f"  # [gmu-pkt] test_make_packet_version_request


def test_crc_vectors() -> None:
    assert b.crc_ccitt(b"\x02\x06\x06\x03") == 0x41CD  # [gmu-crc] test_crc
    assert b.crc_ccitt(b"\x02\x06\x08\x03") == 0x62C2  # [gmu-crc] test_crc_array


def test_encode_matches_published_packets() -> None:
    assert b.encode_frame(b"", b.LinkControl(disconnect=True)) == DISCONNECT_FRAME
    assert b.encode_frame(b"\x05\x0d\x02", b.LinkControl(expect_receive=True, sequence=True)) == VERSION_REQUEST


def test_parse_published_packets() -> None:
    assert b.parse_frame(DISCONNECT_FRAME) == b.Frame(b.LinkControl(disconnect=True), b"", DISCONNECT_FRAME)
    assert b.parse_frame(VERSION_REQUEST) == b.Frame(
        b.LinkControl(expect_receive=True, sequence=True), b"\x05\x0d\x02", VERSION_REQUEST
    )


def test_link_control_bits() -> None:
    # bit layout from lifescan_binary_protocol._LINK_CONTROL: 3 padding bits, more, disconnect, ack, E, S
    assert b.LinkControl.from_byte(0x1F) == b.LinkControl(True, True, True, True, True)
    assert b.LinkControl(more=True).to_byte() == 0x10
    assert b.LinkControl(acknowledge=True, expect_receive=True).to_byte() == 0x06


def test_bad_frames() -> None:
    corrupt = DISCONNECT_FRAME[:-2] + b"\x00\x00"
    with pytest.raises(ChecksumError) as info:
        b.parse_frame(corrupt)
    assert (info.value.wire, info.value.calculated, info.value.raw) == (0x0000, 0x62C2, corrupt)
    with pytest.raises(MalformedFrameError):
        b.parse_frame(b"\x02\x07\x08\x03\xc2\x62")  # length byte says 7, frame has 6
    with pytest.raises(MalformedFrameError):
        b.parse_frame(b"\x02\x06\x28\x03\x24\x64")  # reserved bit 5 set (CRC right for these bytes)


def test_decoder_resynchronises_after_garbage_and_split_reads() -> None:
    d = b.FrameDecoder()
    d.receive_data(b"\xff\xfe" + VERSION_REQUEST[:4])
    with pytest.raises(b.GarbageError) as info:
        d.next_frame()
    assert info.value.raw == b"\xff\xfe"
    assert d.next_frame() is None  # half a frame so far
    d.receive_data(VERSION_REQUEST[4:] + DISCONNECT_FRAME)
    assert d.next_frame() == b.parse_frame(VERSION_REQUEST)
    assert d.next_frame() == b.parse_frame(DISCONNECT_FRAME)
    assert d.next_frame() is None


def test_link_state_handshake() -> None:
    link = b.LinkState()
    assert link.connect() == DISCONNECT_FRAME
    assert link.request(b"\x05\x0d\x02") == b.encode_frame(b"\x05\x0d\x02", b.LinkControl())
    assert link.sequence is True
    answer = b.Frame(b.LinkControl(sequence=False), b"\x05\x06", b"")
    ack = link.accept_response(answer)
    assert ack == b.encode_frame(b"", b.LinkControl(acknowledge=True, expect_receive=True, sequence=True))
    with pytest.raises(b.SequenceError):
        link.accept_response(answer)  # the same sequence bit again: a repeated packet


def test_ultraeasy_messages() -> None:
    assert m.READ_SERIAL == b"\x05\x0b\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    assert m.read_record(501) == b"\x05\x1f\xf5\x01"
    # otultraeasy _DATETIME_REQUEST: 05 20, 01 = write, then u32 LE seconds (0x5FF16D10 as below)
    assert m.write_clock(datetime(2021, 1, 3, 7, 6, 56)) == b"\x05\x20\x01\x10\x6d\xf1\x5f"
    assert m.parse_version(b"\x05\x06\x08" + b"03.04.03") == "03.04.03"
    assert m.parse_serial_number(b"\x05\x06C3A123456") == "C3A123456"
    # 0x5FF16D10 = 1609657616 s after 1970-01-01 = 2021-01-03 07:06:56 on the meter's own clock
    assert m.parse_clock(b"\x05\x06\x10\x6d\xf1\x5f") == datetime(2021, 1, 3, 7, 6, 56)
    assert m.parse_unit(b"\x05\x06\x01\x00\x00\x00") == "mmol/L"
    assert m.parse_count(b"\x05\x0f\x2c\x01") == 300
    assert m.parse_count(b"\x0f\x2c\x01") == 300  # the newest glucometerutils layout
    raw = b"\x05\x06\x10\x6d\xf1\x5f\x7b\x00\x00\x00"
    assert m.parse_record(4, raw) == m.UltraEasyRecord(4, datetime(2021, 1, 3, 7, 6, 56), 123, raw)


@pytest.mark.parametrize(
    "message",
    [b"", b"\x05", b"\x05\x07\x10\x6d\xf1\x5f\x7b\x00\x00\x00", b"\x05\x06\x10\x6d\xf1\x5f\x7b\x00\x00"],
)
def test_bad_record_messages(message: bytes) -> None:
    with pytest.raises(MalformedFrameError) as info:
        m.parse_record(0, message)
    assert info.value.raw == message


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_fuzz_decoder_and_messages(data: bytes) -> None:
    d = b.FrameDecoder()
    d.receive_data(data)
    for _ in range(len(data) + 1):
        try:
            if d.next_frame() is None:
                break
        except DriverError:
            pass
    for parse in (m.parse_version, m.parse_serial_number, m.parse_clock, m.parse_unit, m.parse_count):
        with contextlib.suppress(DriverError):
            parse(data)
    with contextlib.suppress(DriverError):
        m.parse_record(0, data)
