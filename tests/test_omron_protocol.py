"""Omron's BLE protocol pinned by bytes from omblepy's documentation and published captures.

- omblepy README "Packet header for reads": 08 01 00 02 60 26 00 4d; omblepy.py start / end commands.
- omblepy issue #57 (HEM-7280T capture, annotated by omblepy's author): start response, settings read at
  0x0260, settings write at 0x0286, end response.
- hass-omron issue #13 (HEM-7322T-E debug log, omblepy-derived driver): a 0x38-byte record read at 0x062c
  arriving on the four channels. Record values below are decoded by hand from omblepy's bit layout for
  the HEM-7322T (deviceSpecific/hem-7322t.py), not by our parser.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from drivers.errors import ChecksumError, LocalProtocolError, MalformedFrameError
from drivers.omron import protocol as om

RECORD_READ = [  # rx ch0..ch3, hass-omron #13
    bytes.fromhex("408100062c3858671943109312ef005c"),
    bytes.fromhex("7880d01355601946109313a7005f7580"),
    bytes.fromhex("06c55c6c1945109314ed00565a8039fa"),
    bytes.fromhex("5869194c134c111710d76580ba79001e"),
]
SETTINGS_READ = [  # omblepy #57: answer to 080100026026004d
    bytes.fromhex("2e8100026026401e802d80008000094d"),
    bytes.fromhex("ff09865e094dff09865e08c809191212"),
    bytes.fromhex("2c1b855df835685114e002da00ff0000"),
]


def test_commands() -> None:
    assert om.read_command(0x0260, 0x26) == bytes.fromhex("080100026026004d")
    assert om.read_command(0x062C, 0x38) == bytes.fromhex("080100062c38001b")
    start, end = om.START, om.END
    assert start == bytes.fromhex("0800000000100018")
    assert end == bytes.fromhex("080f000000000007")
    written = bytes.fromhex("401e802d800080000100ff01860100")[:14]
    assert om.write_command(0x0286, written) == bytes.fromhex("1601c002860e401e802d800080000100ff01860100d6")
    assert om.pieces(om.write_command(0x0286, written)) == [
        bytes.fromhex("1601c002860e401e802d800080000100"),
        bytes.fromhex("ff01860100d6"),
    ]


def test_responses_from_a_capture() -> None:
    rx = om.RxAssembler()
    assert rx.feed(0, bytes.fromhex("18800000001000000094041311020778")) is None  # 0x18 bytes: two pieces
    start = rx.feed(1, bytes.fromhex("5a00ffff954d00e50000000000000000"))
    assert start is not None and start.kind == om.R_START
    rx2 = om.RxAssembler()
    got = [rx2.feed(i, p) for i, p in enumerate(SETTINGS_READ)]
    assert got[:2] == [None, None] and got[2] is not None
    assert (got[2].kind, got[2].address, len(got[2].data)) == (om.R_READ, 0x0260, 0x26)
    end = om.RxAssembler().feed(0, bytes.fromhex("088f0000000000870000000000000000"))
    assert end is not None and (end.kind, end.data) == (om.R_END, b"\x00")


def test_record_read_and_the_hem_7322t_layout() -> None:
    rx = om.RxAssembler()
    response = None
    for i, piece in enumerate(RECORD_READ):
        response = rx.feed(i, piece)
    assert response is not None and (response.address, len(response.data)) == (0x062C, 0x38)
    model = om.MODELS["HEM-7322T"]
    records = [om.parse_record(model, response.data[i : i + 14]) for i in range(0, 0x38, 14)]
    assert records[0] == om.OmronRecord(128, 88, 67, datetime(2025, 4, 4, 19, 11, 47), False, False)
    assert records[1] == om.OmronRecord(121, 85, 70, datetime(2025, 4, 4, 19, 14, 39), False, False)
    assert records[3] == om.OmronRecord(130, 88, 76, datetime(2025, 4, 26, 12, 4, 23), False, False)
    assert om.parse_record(model, b"\xff" * 14) is None  # an empty slot


def test_corrupt_piece_is_a_checksum_error() -> None:
    rx = om.RxAssembler()
    for i, piece in enumerate(RECORD_READ[:3]):
        rx.feed(i, piece)
    bad = bytearray(RECORD_READ[3])
    bad[0] ^= 0x01
    with pytest.raises(ChecksumError):
        rx.feed(3, bytes(bad))
    with pytest.raises(MalformedFrameError):
        om.RxAssembler().feed(0, bytes([0x60]) + bytes(15))  # 96 bytes: more than four channels


def test_unread_counters_from_the_capture_and_their_reset() -> None:
    model = om.MODELS["HEM-7322T"]
    block = bytes.fromhex("401e802d80008000")  # settings 0x00-0x08 of the omblepy #57 read
    assert om.unread_state(model, block) == [(0x1E, 0), (0x2D, 0)]
    assert om.reset_unread(model, block) == block  # already "nothing new": written back unchanged, as captured
    pending = bytes.fromhex("401e802d00030001")
    assert om.unread_state(model, pending) == [(0x1E, 3), (0x2D, 1)]
    assert om.reset_unread(model, pending) == bytes.fromhex("401e802d80008000")
    little = om.MODELS["HEM-7361T"]
    assert om.unread_state(little, bytes.fromhex("0500070002000100") + bytes(8)) == [(5, 2), (7, 1)]


def test_read_plan_follows_the_ring_buffer() -> None:
    model = om.MODELS["HEM-7322T"]
    assert om.read_plan(model, 0, 3, 30) == [(0x02AC + 27 * 14, 3 * 14)]
    assert om.read_plan(model, 1, 5, 2) == [(0x0824, 2 * 14), (0x0824 + 97 * 14, 3 * 14)]  # wraps
    assert om.read_plan(model, 0, 0, 30) == []
    assert om.read_plan(model, 0, 250, 30) == om.read_plan(model, 0, 100, 30)  # never more than the buffer


def test_a_second_captured_read() -> None:
    """hass-omron #13, the read at 0x05f4 before it; its first record decoded by hand from omblepy's layout:
    58 67 18 4a 19 71 16 51 -> dia 88, sys 0x67 + 25, 2024, pulse 74, month 6, day 11, 17:25:17."""
    rx = om.RxAssembler()
    pieces = [
        bytes.fromhex("40810005f4385867184a19711651007d"),
        bytes.fromhex("5f80ad6e4f61184c197116b800636d80"),
        bytes.fromhex("7fbc4f67184e268d1760009f918035f6"),
        bytes.fromhex("607719455093124b2176b280fd3e0042"),
    ]
    response = None
    for i, piece in enumerate(pieces):
        response = rx.feed(i, piece)
    assert response is not None and (response.address, len(response.data)) == (0x05F4, 0x38)
    first = om.parse_record(om.MODELS["HEM-7322T"], response.data[:14])
    assert first == om.OmronRecord(128, 88, 74, datetime(2024, 6, 11, 17, 25, 17), False, False)


# The time-sync block of the omblepy #57 settings read (HEM-7280T, settings at 0x0260 like the HEM-7322T):
# settings bytes 0x14-0x1e. omblepy hem-7322t.py line 43 reads month, year, hour, day, second, minute from
# bytes 2-7: 09 19 12 12 2c 1b -> 2025-09-18 18:27:44; byte 9 is the low byte of the sum of bytes 0-7 (line 53):
# 08+c8+09+19+12+12+2c+1b = 0x15d -> 5d. Byte 8 (85) is the one omblepy writes as 00.
CLOCK_7322T = bytes.fromhex("08c8091912122c1b855d")
# A 16-byte block (omblepy hem-7361t.py layout, settings 0x2C-0x3C) from a hass-omron debug log (issue #92,
# HEM-7188T1, read at 0x0010+0x2C): year, month, day, hour, minute, second at bytes 8-13 (hem-7361t.py line 42)
# -> 2026-09-09 11:31:07; byte 14 = low byte of the sum of bytes 0-13: c2+a0+1a+09+09+0b+1f+07 = 0x1bf -> bf.
CLOCK_7361T = bytes.fromhex("c2a00000000000001a09090b1f07bf00")


def test_the_clock_blocks_of_the_captures() -> None:
    assert om.parse_clock(om.MODELS["HEM-7322T"], CLOCK_7322T) == datetime(2025, 9, 18, 18, 27, 44)
    assert om.parse_clock(om.MODELS["HEM-7600T"], CLOCK_7322T) == datetime(2025, 9, 18, 18, 27, 44)
    assert om.parse_clock(om.MODELS["HEM-7361T"], CLOCK_7361T) == datetime(2026, 9, 9, 11, 31, 7)
    # omblepy issue #7: a HEM-7361T whose block read all 0xFF; and a block with a wrong sum byte
    assert om.parse_clock(om.MODELS["HEM-7361T"], b"\xff" * 16) is None
    assert om.parse_clock(om.MODELS["HEM-7322T"], CLOCK_7322T[:9] + b"\x5e") is None


def test_setting_the_clock_is_the_block_omblepy_writes() -> None:
    """2026-11-30 09:05:07 written as omblepy's deviceSpecific_syncWithSystemTime builds it: hem-7322t.py
    lines 51-53 (bytes 0-1 kept, 0b 1a 09 1e 07 05 = month 11, year 26, hour 9, day 30, second 7, minute 5,
    then 00 and the sum 08+c8+0b+1a+09+1e+07+05 = 0x128 -> 28), hem-7361t.py lines 50-52 (bytes 0-7 kept,
    1a 0b 1e 09 05 07, sum c2+a0+1a+0b+1e+09+05+07 = 0x1ba -> ba, then 00); written to the settings' write
    window at the same offset (sharedDriver.py line 84: settingsWriteAddress + settingsTimeSyncBytes[0])."""
    now = datetime(2026, 11, 30, 9, 5, 7)
    big, little = om.MODELS["HEM-7322T"], om.MODELS["HEM-7361T"]
    assert om.encode_clock(big, CLOCK_7322T, now) == bytes.fromhex("08c80b1a091e07050028")
    assert om.encode_clock(little, CLOCK_7361T, now) == bytes.fromhex("c2a00000000000001a0b1e090507ba00")
    assert om.write_command(0x0286 + 0x14, om.encode_clock(big, CLOCK_7322T, now)) == bytes.fromhex(
        "1201c0029a0a08c80b1a091e0705002800ad"
    )
    assert om.write_command(0x0054 + 0x2C, om.encode_clock(little, CLOCK_7361T, now)) == bytes.fromhex(
        "1801c0008010c2a00000000000001a0b1e090507ba000095"
    )
    assert om.parse_clock(big, om.encode_clock(big, CLOCK_7322T, now)) == now  # it reads back as set


def test_no_clock_where_omblepy_has_none() -> None:
    """omblepy hem-7530t.py: settingsTimeSyncBytes commented out, deviceSpecific_syncWithSystemTime raises
    "not supported" (README matrix: time sync ❌ for the HEM-7530T)."""
    model = om.MODELS["HEM-7530T"]
    assert model.clock is None
    with pytest.raises(LocalProtocolError):
        om.encode_clock(model, bytes(10), datetime(2026, 11, 30, 9, 5, 7))
    with pytest.raises(MalformedFrameError):
        om.parse_clock(om.MODELS["HEM-7322T"], CLOCK_7322T[:9])  # a short block
