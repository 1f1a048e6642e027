"""LifeScan binary link layer: framing, CRC and link-control bits. Pure, no I/O.

Used by several LifeScan meters (OneTouch Ultra Easy / Ultra Mini over serial; Verio IQ and the 2015
Verio family wrap the same packets in other transports). Facts from glucometerutils by Diego Elio
Pettenò (MIT, repository glucometers-tech/glucometerutils): `support/lifescan_binary_protocol.py`
(packet layout, link-control bits), `support/lifescan.py` (`crc_ccitt`, seed 0xFFFF) and the vectors in
`support/tests/test_lifescan.py` and `drivers/tests/test_otultraeasy.py`:

    STX 0x02 | length (whole packet, = len(message) + 6) | link control | message | ETX 0x03 | CRC16 LE

The CRC is CRC-16/CCITT (polynomial 0x1021, not reflected, initial 0xFFFF, no final XOR) over everything
from STX through ETX, sent little-endian. The link-control byte carries, from bit 4 down: more (0x10),
disconnect (0x08), acknowledge (0x04), expect-receive E (0x02), sequence S (0x01); bits 5-7 are zero.

The handshake (`LinkState`): the host sends a request with its sequence bit S and the E bit it expects
from the meter, flips S; the meter acknowledges (ack bit set, no message), then answers with its own
sequence bit, which must equal the host's E; the host flips E and acknowledges. A frame with the
disconnect bit (the host's "connect" is an empty disconnect frame) resets the exchange and is exempt
from the sequence check.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from drivers.errors import ChecksumError, DeviceProtocolError, MalformedFrameError

__all__ = [
    "ETX",
    "MAX_FRAME",
    "STX",
    "Frame",
    "FrameDecoder",
    "GarbageError",
    "LinkControl",
    "LinkState",
    "SequenceError",
    "crc_ccitt",
    "encode_frame",
    "parse_frame",
]

STX = 0x02
ETX = 0x03
OVERHEAD = 6  # STX, length, link control, ETX, two CRC bytes
MAX_FRAME = 0xFF  # the length field is one byte
_CRC = struct.Struct("<H")


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return tuple(table)


_TABLE = _crc_table()


def crc_ccitt(data: bytes) -> int:
    """CRC-16/CCITT with LifeScan's 0xFFFF seed (table-driven)."""
    crc = 0xFFFF
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE[(crc >> 8) ^ byte]
    return crc


class SequenceError(DeviceProtocolError):
    """The meter's sequence bit is not the one the exchange expects (a lost or repeated packet)."""


@dataclass(frozen=True, slots=True)
class LinkControl:
    more: bool = False
    disconnect: bool = False
    acknowledge: bool = False
    expect_receive: bool = False
    sequence: bool = False

    _BITS = (("more", 0x10), ("disconnect", 0x08), ("acknowledge", 0x04), ("expect_receive", 0x02), ("sequence", 0x01))

    @classmethod
    def from_byte(cls, value: int) -> LinkControl:
        return cls(**{name: bool(value & bit) for name, bit in cls._BITS})

    def to_byte(self) -> int:
        return sum(bit for name, bit in self._BITS if getattr(self, name))


@dataclass(frozen=True, slots=True)
class Frame:
    link: LinkControl
    message: bytes
    raw: bytes  # the whole frame as received, kept for the record


class GarbageError(MalformedFrameError):
    """Bytes that are not inside any frame (line noise, a partial frame's tail)."""


def encode_frame(message: bytes, link: LinkControl) -> bytes:
    if len(message) + OVERHEAD > MAX_FRAME:
        raise ValueError("message too long for one frame")
    body = bytes((STX, len(message) + OVERHEAD, link.to_byte())) + message + bytes((ETX,))
    return body + _CRC.pack(crc_ccitt(body))


def parse_frame(raw: bytes) -> Frame:
    """One complete frame -> Frame; CRC checked before anything is believed."""
    if len(raw) < OVERHEAD or raw[0] != STX:
        raise MalformedFrameError("not a LifeScan frame", raw)
    if raw[1] != len(raw):
        raise MalformedFrameError("length byte does not match the frame", raw)
    (wire,) = _CRC.unpack_from(raw, len(raw) - 2)
    calculated = crc_ccitt(raw[:-2])
    if wire != calculated:
        raise ChecksumError(raw, wire, calculated)
    if raw[-3] != ETX:
        raise MalformedFrameError("no ETX before the CRC", raw)
    if raw[2] & 0xE0:
        raise MalformedFrameError("reserved link-control bits set", raw)
    return Frame(LinkControl.from_byte(raw[2]), raw[3:-3], raw)


class FrameDecoder:
    """Bytes in, frames out (sans-I/O). A bad frame raises once and decoding resumes after it.

    Bytes before an STX are garbage: they are dropped and reported as one `MalformedFrameError`, so
    nothing vanishes unrecorded.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    def receive_data(self, data: bytes) -> None:
        self._buffer += data

    @property
    def pending(self) -> bytes:
        return bytes(self._buffer)

    def next_frame(self) -> Frame | None:
        buf = self._buffer
        if not buf:
            return None
        if buf[0] != STX:
            cut = buf.find(STX)
            garbage = bytes(buf if cut < 0 else buf[:cut])
            del buf[: len(garbage)]
            raise GarbageError("bytes outside a frame", garbage)
        if len(buf) < 2:
            return None
        length = buf[1]
        if length < OVERHEAD:
            raw = bytes(buf[:2])
            del buf[:2]
            raise MalformedFrameError("impossible frame length", raw)
        if len(buf) < length:
            return None
        raw = bytes(buf[:length])
        del buf[:length]
        return parse_frame(raw)


class LinkState:
    """The host's half of the link-control handshake, as plain state (no I/O)."""

    def __init__(self) -> None:
        self.sequence = False
        self.expect_receive = False

    def connect(self) -> bytes:
        """The empty disconnect frame glucometerutils sends to (re)start a session; resets the bits."""
        self.sequence = False
        self.expect_receive = False
        return encode_frame(b"", LinkControl(disconnect=True))

    def request(self, message: bytes) -> bytes:
        frame = encode_frame(message, LinkControl(sequence=self.sequence, expect_receive=self.expect_receive))
        self.sequence = not self.sequence
        return frame

    def check_ack(self, frame: Frame, raw: bytes = b"") -> None:
        if not frame.link.acknowledge or frame.message:
            raise MalformedFrameError("expected an acknowledge frame", raw)

    def accept_response(self, frame: Frame, raw: bytes = b"") -> bytes:
        """Check a data frame's sequence bit; returns the acknowledge frame to send back."""
        if frame.link.acknowledge:
            raise MalformedFrameError("expected a data frame, got an acknowledge", raw)
        if not frame.link.disconnect and frame.link.sequence != self.expect_receive:
            raise SequenceError("unexpected sequence bit from the meter", raw)
        self.expect_receive = not self.expect_receive
        return encode_frame(
            b"",
            LinkControl(acknowledge=True, sequence=self.sequence, expect_receive=self.expect_receive),
        )
