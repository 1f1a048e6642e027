"""LifeScan OneTouch Ultra 2 / Ultra family ASCII protocol: pure parsing, no I/O.

Devices: OneTouch Ultra 2 (and the older Ultra / UltraSmart that share the `DM` command set).
Features: firmware version (`DM?`), serial number (`DM@`), meter clock (`DMF`), full memory dump (`DMP`).
Port: 9600 baud, 8 data bits, no parity, 1 stop bit, no flow control (the LifeScan cable is 3.5 mm jack
RS-232 or its PL2303 USB variant, so expect /dev/ttyUSB0 or a /dev/serial/by-id/ path).

Wire facts, taken from glucometerutils by Diego Elio Pettenò (MIT), `glucometerutils/drivers/otultra2.py`
and its tests `drivers/tests/test_otultra2.py` (repository glucometers-tech/glucometerutils):

- a command is sent as DC1 (0x11), CR, the command text, CR;
- every reply line is ``<body> <four upper-case hex digits>`` ended by CR LF; the hex number is the
  16-bit sum of the body's bytes (the space before it is not summed);
- `DMT<MM/DD/YY HH:MM:SS>` sets the clock and answers like `DMF` with a leading T;
- `DM?` answers ``?<version>``; `DM@` answers ``@ "<9 chars>"``; `DMF` answers
  ``F "DOW","MM/DD/YY","HH:MM:SS   "`` (two-digit year, 2000-based: the firmware is not Y2K-clean);
- `DMP` answers a header ``P nnn,"<serial>","MG/DL "`` (or ``"MMOL/L"``, the display unit) followed by
  nnn record lines ``P "DOW","MM/DD/YY","HH:MM:SS   ","C vvv?","M","cc", 00``: C is 'C' for control
  solution, vvv the value in mg/dL (the meter stores mg/dL whatever it displays), '?' flags a record that
  failed the meter's own parity check, M is the meal flag N/B/A, cc a comment code 00..11.
  Records come most recent first (as the meter shows them; an assumption the session does not rely on
  for correctness, only for stopping early).

Every parser verifies the checksum first and raises `ChecksumError(raw, wire, calculated)`; anything
else off-format raises `MalformedFrameError` carrying the raw line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from drivers.errors import ChecksumError, MalformedFrameError

__all__ = [
    "BAUDRATE",
    "DumpHeader",
    "Meal",
    "Ultra2Record",
    "checksum",
    "encode_command",
    "parse_clock",
    "parse_dump_header",
    "parse_record",
    "parse_serial_number",
    "parse_version",
    "set_clock_command",
    "strip_checksum",
]

BAUDRATE = 9600
_COMMAND_PREFIX = b"\x11\r"
_LINE = re.compile(rb"^(?P<body>[\x20-\x7e]+) (?P<sum>[0-9A-F]{4})\r?\n?$")
_DATETIME = r'"[A-Z]{3}","(?P<mo>\d\d)/(?P<d>\d\d)/(?P<y>\d\d)","(?P<h>\d\d):(?P<mi>\d\d):(?P<s>\d\d)   "'
_CLOCK = re.compile(r"^[FT] " + _DATETIME + r"$")
_SERIAL = re.compile(r'^@ "(?P<serial>[0-9A-Z]{9})"$')
_HEADER = re.compile(r'^P (?P<count>\d{3}),"(?P<serial>[0-9A-Z]{9})","(?P<unit>MG/DL |MMOL/L)"$')
_RECORD = re.compile(
    r"^P "
    + _DATETIME
    + r',"(?P<control>[C ]) (?P<value>\d{3})(?P<parity>[? ])","(?P<meal>[NBA])","(?P<comment>0\d|1[01])", 00$'
)


class Meal(StrEnum):
    NONE = "N"
    BEFORE = "B"
    AFTER = "A"


@dataclass(frozen=True, slots=True)
class DumpHeader:
    count: int
    serial_number: str
    display_unit: str  # "mg/dL" or "mmol/L": what the meter shows; records are mg/dL regardless


@dataclass(frozen=True, slots=True)
class Ultra2Record:
    device_time: datetime  # the meter's own wall clock, no zone
    value_mg_dl: int
    control_solution: bool
    parity_error: bool  # the meter flagged this record as failing its own memory check
    meal: Meal
    comment: int
    raw: bytes


def checksum(data: bytes) -> int:
    """16-bit sum of the bytes; the whole integrity check this protocol has."""
    return sum(data) & 0xFFFF


def set_clock_command(when: datetime) -> str:
    """`DMT` with the new time (two-digit year, as the meter keeps it); the reply is parsed by `parse_clock`."""
    return "DMT" + when.strftime("%m/%d/%y %H:%M:%S")


def encode_command(command: str) -> bytes:
    """`DM?` -> the bytes to send (DC1 CR wakes the meter's command parser, CR ends the command)."""
    return _COMMAND_PREFIX + command.encode("ascii") + b"\r"


def strip_checksum(line: bytes) -> str:
    """Verify one reply line's checksum and return its body as text."""
    match = _LINE.match(line)
    if match is None:
        raise MalformedFrameError("reply line without a checksum", line)
    body = match.group("body")
    wire = int(match.group("sum"), 16)
    calculated = checksum(body)
    if wire != calculated:
        raise ChecksumError(line, wire, calculated)
    return body.decode("ascii")


def _datetime(match: re.Match[str], line: bytes) -> datetime:
    try:
        return datetime(
            2000 + int(match["y"]),
            int(match["mo"]),
            int(match["d"]),
            int(match["h"]),
            int(match["mi"]),
            int(match["s"]),
        )
    except ValueError:
        raise MalformedFrameError("impossible date or time", line) from None


def _match(pattern: re.Pattern[str], line: bytes, what: str) -> re.Match[str]:
    match = pattern.match(strip_checksum(line))
    if match is None:
        raise MalformedFrameError(f"not a {what} reply", line)
    return match


def parse_version(line: bytes) -> str:
    body = strip_checksum(line)
    if not body.startswith("?") or len(body) < 2:
        raise MalformedFrameError("not a version reply", line)
    return body[1:]


def parse_serial_number(line: bytes) -> str:
    return _match(_SERIAL, line, "serial number")["serial"]


def parse_clock(line: bytes) -> datetime:
    """The reply to `DMF` (read clock) or `DMT` (set clock)."""
    return _datetime(_match(_CLOCK, line, "clock"), line)


def parse_dump_header(line: bytes) -> DumpHeader:
    match = _match(_HEADER, line, "dump header")
    unit = "mg/dL" if match["unit"] == "MG/DL " else "mmol/L"
    return DumpHeader(count=int(match["count"]), serial_number=match["serial"], display_unit=unit)


def parse_record(line: bytes) -> Ultra2Record:
    match = _match(_RECORD, line, "record")
    return Ultra2Record(
        device_time=_datetime(match, line),
        value_mg_dl=int(match["value"]),
        control_solution=match["control"] == "C",
        parity_error=match["parity"] == "?",
        meal=Meal(match["meal"]),
        comment=int(match["comment"]),
        raw=line,
    )
