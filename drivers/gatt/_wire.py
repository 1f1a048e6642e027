"""A bounds-checked little-endian cursor: every short read is a `MalformedFrameError` carrying the frame."""

from __future__ import annotations

import struct
from datetime import datetime

from drivers.errors import MalformedFrameError
from drivers.gatt.date_time import DATE_TIME_SIZE, parse_date_time
from drivers.gatt.sfloat import SFloat, decode_sfloat

_U16 = struct.Struct("<H")
_S16 = struct.Struct("<h")
_U32 = struct.Struct("<I")


class Reader:
    """Reads fields in order from one frame; `end()` rejects trailing bytes."""

    __slots__ = ("_data", "_pos", "_what")

    def __init__(self, data: bytes, what: str) -> None:
        self._data = bytes(data)
        self._pos = 0
        self._what = what

    @property
    def raw(self) -> bytes:
        return self._data

    def malformed(self, problem: str) -> MalformedFrameError:
        return MalformedFrameError(f"{self._what}: {problem}", self._data)

    def take(self, n: int) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise self.malformed(f"frame too short ({len(self._data)} bytes, field at {self._pos} needs {n})")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        value: int = _U16.unpack(self.take(2))[0]
        return value

    def s16(self) -> int:
        value: int = _S16.unpack(self.take(2))[0]
        return value

    def u32(self) -> int:
        value: int = _U32.unpack(self.take(4))[0]
        return value

    def sfloat(self, scale: int = 0) -> SFloat:
        return decode_sfloat(self.u16(), scale)

    def date_time(self) -> datetime | None:
        return parse_date_time(self.take(DATE_TIME_SIZE), raw=self._data)

    def end(self) -> None:
        if self._pos != len(self._data):
            raise self.malformed(f"{len(self._data) - self._pos} trailing bytes after the last field")
