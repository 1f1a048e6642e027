"""Tanita body-composition scales: the one-line result a scale prints after each measurement. Pure.

Devices: Tanita professional scales with an RS-232/USB data output (SC-330, SC-240, DC-320, BC-418,
MC-780 and relatives); the scale pushes one line per measurement, nothing is requested.
Port: 9600 baud, 8N1, CR LF line ends (the default in the scales' data-output settings).

The line is comma-separated key,value pairs after a fixed control prefix, for example (SC-330 sample
published in the public "tanita" serial bridge projects, e.g. the TanitaDataModel sample line)::

    {0,16,~0,1,~1,1,~2,1,MO,"SC-330",SN,"00000001",ID,"0000000000",Da,"25/09/2014",TI,"08:20",Bt,0,
    GE,1,AG,34,Hm,191.0,Pt,0.0,Wk,89.2,FW,18.8,...,MI,24.5,...,CS,D9

Keys used here: MO model, SN serial number, Da (DD/MM/YYYY) / DA (YY/MM/DD) / DT (YYYY/MM/DD) date,
TI time HH:MM, Hm height in cm, Pt clothes tare in kg, Wk body weight in kg, FW body fat %, MI BMI.
`~0,1` declares kg and `~1,1` cm; other unit settings are refused (`UnsupportedError`) rather than
guessed. All other keys are kept as text in `fields`.

CS is two hex digits: the low byte of the sum of every byte from the opening brace through the comma
before "CS". We have no Tanita document; the rule is the one that reproduces the CS of the two
independent public sample lines (the SC-330 line above, CS D9, and an MC-780 line in a public MC780A
parser test, CS 24). A trailing "}" after the CS value (seen in one of those logs) is tolerated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from drivers.errors import ChecksumError, MalformedFrameError, UnsupportedError

__all__ = ["BAUDRATE", "PREFIX", "TanitaMeasurement", "checksum", "parse_line"]

BAUDRATE = 9600
PREFIX = b"{0,16,"
_CS = re.compile(rb",CS,(?P<cs>[0-9A-Fa-f]{2})\}?\r?\n?$")
_DATE_FORMATS = {"Da": "%d/%m/%Y", "DA": "%y/%m/%d", "DT": "%Y/%m/%d"}
_UNITS_REQUIRED = {"~0": "1", "~1": "1"}  # kg, cm


@dataclass(frozen=True, slots=True)
class TanitaMeasurement:
    model: str
    serial_number: str | None
    device_time: datetime | None
    weight_kg: float
    height_cm: float | None
    bmi: float | None
    body_fat_percent: float | None
    tare_kg: float | None
    fields: tuple[tuple[str, str], ...]  # every key,value pair in wire order, as text
    raw: bytes


def checksum(data: bytes) -> int:
    return sum(data) & 0xFF


def _number(fields: dict[str, str], key: str, raw: bytes) -> float | None:
    text = fields.get(key)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise MalformedFrameError(f"{key} is not a number", raw) from None
    if value != value or value in (float("inf"), float("-inf")):
        raise MalformedFrameError(f"{key} is not a finite number", raw)
    return value


def _time(fields: dict[str, str], raw: bytes) -> datetime | None:
    for key, fmt in _DATE_FORMATS.items():
        if key in fields:
            text = f"{fields[key]} {fields.get('TI', '00:00')}"
            try:
                return datetime.strptime(text, f"{fmt} %H:%M")
            except ValueError:
                raise MalformedFrameError("impossible date or time", raw) from None
    return None


def parse_line(line: bytes) -> TanitaMeasurement:
    """One result line (with or without CR LF) -> TanitaMeasurement."""
    if not line.startswith(PREFIX):
        raise MalformedFrameError("not a Tanita result line", line)
    match = _CS.search(line)
    if match is None:
        raise MalformedFrameError("no CS checksum at the end of the line", line)
    covered = line[: match.start() + 1]  # through the comma before "CS"
    wire = int(match["cs"], 16)
    calculated = checksum(covered)
    if wire != calculated:
        raise ChecksumError(line, wire, calculated)
    try:
        text = covered[1:-1].decode("ascii")
    except UnicodeDecodeError:
        raise MalformedFrameError("non-ASCII bytes in the line", line) from None
    items = text.split(",")
    if len(items) % 2:
        raise MalformedFrameError("keys and values do not pair up", line)
    pairs = tuple((items[i], items[i + 1].strip('"')) for i in range(0, len(items), 2))
    fields = dict(pairs)
    for key, wanted in _UNITS_REQUIRED.items():
        if fields.get(key, wanted) != wanted:
            raise UnsupportedError(f"unit setting {key}={fields[key]} is not supported", line)
    model = fields.get("MO")
    weight = _number(fields, "Wk", line)
    if not model or weight is None:
        raise MalformedFrameError("model or weight missing", line)
    if not 0.0 < weight < 1000.0:
        raise MalformedFrameError("weight out of range", line)
    return TanitaMeasurement(
        model=model,
        serial_number=fields.get("SN") or None,
        device_time=_time(fields, line),
        weight_kg=weight,
        height_cm=_number(fields, "Hm", line),
        bmi=_number(fields, "MI", line),
        body_fat_percent=_number(fields, "FW", line),
        tare_kg=_number(fields, "Pt", line),
        fields=pairs,
        raw=line,
    )
