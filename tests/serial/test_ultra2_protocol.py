"""OneTouch Ultra 2 ASCII protocol: literal lines in, whole results compared.

Vectors marked [gmu] are from glucometerutils (glucometers-tech/glucometerutils,
glucometerutils/drivers/tests/test_otultra2.py); the line layouts are from glucometerutils/drivers/otultra2.py.
"""

from __future__ import annotations

import contextlib
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.errors import ChecksumError, DriverError, MalformedFrameError
from drivers.serial import onetouch_ultra2 as p


def test_checksum_vectors_from_glucometerutils() -> None:
    # [gmu] test_checksum / test_checksum_full
    assert p.checksum(b"T") == 0x0054
    assert p.checksum(b'T "SAT","08/03/13","22:12:00   "') == 0x0608


def test_command_bytes() -> None:
    # [gmu] otultra2._send_command: DC1 CR <command> CR
    assert p.encode_command("DMP") == b"\x11\rDMP\r"


def test_set_clock_command() -> None:
    # [gmu] otultra2.set_datetime: 'DMT' + date.strftime('%m/%d/%y %H:%M:%S')
    assert p.encode_command(p.set_clock_command(datetime(2013, 8, 3, 22, 12, 0))) == b"\x11\rDMT08/03/13 22:12:00\r"


def test_serial_number_line_from_glucometerutils() -> None:
    # [gmu] '_invalid_serial_number' case: the checksum 0297 is valid (that test fails later, on the 'Y' rule)
    assert p.parse_serial_number(b'@ "12345678O" 0297\r') == "12345678O"


def test_clock_line() -> None:
    # body and sum from [gmu] test_checksum_full; DMT/DMF reply layout from otultra2._parse_datetime
    assert p.parse_clock(b'T "SAT","08/03/13","22:12:00   " 0608\r\n') == datetime(2013, 8, 3, 22, 12, 0)


def test_version_line() -> None:
    # "?P02.00.00 30/08/06" is the example in otultra2.get_version; 0x03BC = byte sum of that body
    assert p.parse_version(b"?P02.00.00 30/08/06 03BC\r\n") == "P02.00.00 30/08/06"


def test_dump_header_and_record() -> None:
    # layouts from otultra2 _DUMP_HEADER_RE / _DUMP_LINE_RE; each sum is the 16-bit byte sum of the body
    assert p.parse_dump_header(b'P 002,"AB123456Y","MG/DL " 0566\r\n') == p.DumpHeader(2, "AB123456Y", "mg/dL")
    line = b'P "SAT","08/03/13","22:12:00   ","  123 ","B","05", 00 099D\r\n'
    assert p.parse_record(line) == p.Ultra2Record(
        device_time=datetime(2013, 8, 3, 22, 12, 0),
        value_mg_dl=123,
        control_solution=False,
        parity_error=False,
        meal=p.Meal.BEFORE,
        comment=5,
        raw=line,
    )
    control = b'P "SAT","08/03/13","22:12:00   ","C 123?","N","00", 00 09E6\r\n'
    rec = p.parse_record(control)
    assert (rec.control_solution, rec.parity_error, rec.meal, rec.comment) == (True, True, p.Meal.NONE, 0)


@pytest.mark.parametrize(
    ("line", "error", "wire", "calculated"),
    [
        (b"% 1337\r", ChecksumError, 0x1337, 0x25),  # [gmu] '_invalid_checksum'
        (b"% 13AZ\r", MalformedFrameError, None, None),  # [gmu] '_broken_checksum' (no valid hex)
        (b"INVALID", MalformedFrameError, None, None),  # [gmu] '_missing_checksum'
        (b".\r", MalformedFrameError, None, None),  # [gmu] '_short'
    ],
)
def test_bad_lines(line: bytes, error: type[Exception], wire: int | None, calculated: int | None) -> None:
    with pytest.raises(error) as info:
        p.parse_serial_number(line)
    assert info.value.raw == line  # type: ignore[attr-defined]
    if wire is not None:
        assert (info.value.wire, info.value.calculated) == (wire, calculated)  # type: ignore[attr-defined]


def test_valid_checksum_wrong_shape_and_impossible_date() -> None:
    with pytest.raises(MalformedFrameError):
        p.parse_serial_number(b"% 0025\r\n")  # [gmu] '_generic': checksum fine, not a serial reply
    with pytest.raises(MalformedFrameError):
        p.parse_clock(b'F "SAT","13/45/13","22:12:00   " 05FC\r\n')  # month 13: sum is right, date is not


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_fuzz_any_bytes_only_typed_errors(data: bytes) -> None:
    for parse in (p.parse_record, p.parse_clock, p.parse_dump_header, p.parse_serial_number, p.parse_version):
        with contextlib.suppress(DriverError):
            parse(data)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 63), st.integers(0, 255))
def test_fuzz_one_byte_changed(position: int, value: int) -> None:
    line = bytearray(b'P "SAT","08/03/13","22:12:00   ","  123 ","B","05", 00 099D\r\n')
    line[position % len(line)] = value
    with contextlib.suppress(DriverError):
        p.parse_record(bytes(line))
