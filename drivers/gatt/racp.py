"""Record Access Control Point (0x2A52) for the Glucose Service, and a sans-I/O record sync.

GLS 1.0 §3.4 / GSS "Record Access Control Point": a request is op code uint8 | operator uint8 | operand.
Op codes: 1 report stored records, 2 delete stored records, 3 abort operation, 4 report number of stored
records, 5 number of stored records response, 6 response code. Operators: 0 null, 1 all records, 2 <=,
3 >=, 4 within range, 5 first, 6 last. A filtered operand starts with the filter type (1 = sequence
number, uint16 LE follows). The server indicates `05 00 <uint16 count>` or `06 00 <request op code>
<response code>`; response codes are listed in `ResponseCode`.

`RacpSync` is the transfer as a state machine in the h11 style: it produces the bytes to write and
consumes the bytes indicated/notified, and never does I/O itself. The checkpoint it reports covers only
records already handed out by `take_records()`, so a session that submits those records and only then
stores the checkpoint loses nothing on a disconnect and, restarting from the stored checkpoint with
"report records >= checkpoint + 1", fetches no duplicates.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum, IntEnum

from drivers.errors import DeviceProtocolError, LocalProtocolError, MalformedFrameError, UnsupportedError
from drivers.gatt.glucose import (
    GlucoseRecord,
    GlucoseRecordJoiner,
    parse_glucose_context,
    parse_glucose_measurement,
)

__all__ = [
    "FilterType",
    "NumberOfRecords",
    "OpCode",
    "Operator",
    "RacpResponse",
    "RacpSync",
    "ResponseCode",
    "SyncState",
    "abort",
    "count_all",
    "count_from",
    "delete_all",
    "parse_checkpoint",
    "parse_racp",
    "report_all",
    "report_from",
]

_U16 = struct.Struct("<H")
_SEQUENCE_MAX = 0xFFFF


class OpCode(IntEnum):
    REPORT_STORED_RECORDS = 1
    DELETE_STORED_RECORDS = 2
    ABORT_OPERATION = 3
    REPORT_NUMBER_OF_STORED_RECORDS = 4
    NUMBER_OF_STORED_RECORDS_RESPONSE = 5
    RESPONSE_CODE = 6


class Operator(IntEnum):
    NULL = 0
    ALL_RECORDS = 1
    LESS_THAN_OR_EQUAL = 2
    GREATER_THAN_OR_EQUAL = 3
    WITHIN_RANGE = 4
    FIRST_RECORD = 5
    LAST_RECORD = 6


class FilterType(IntEnum):
    SEQUENCE_NUMBER = 1
    USER_FACING_TIME = 2


class ResponseCode(IntEnum):
    SUCCESS = 1
    OP_CODE_NOT_SUPPORTED = 2
    INVALID_OPERATOR = 3
    OPERATOR_NOT_SUPPORTED = 4
    INVALID_OPERAND = 5
    NO_RECORDS_FOUND = 6
    ABORT_UNSUCCESSFUL = 7
    PROCEDURE_NOT_COMPLETED = 8
    OPERAND_NOT_SUPPORTED = 9


def _sequence(sequence: int) -> bytes:
    if not 0 <= sequence <= _SEQUENCE_MAX:
        raise LocalProtocolError("RACP sequence number must be 0..65535")
    return bytes([FilterType.SEQUENCE_NUMBER]) + _U16.pack(sequence)


def report_all() -> bytes:
    """`01 01`: report all stored records."""
    return bytes([OpCode.REPORT_STORED_RECORDS, Operator.ALL_RECORDS])


def report_from(sequence: int) -> bytes:
    """`01 03 01 <uint16>`: report records with sequence number >= `sequence`."""
    return bytes([OpCode.REPORT_STORED_RECORDS, Operator.GREATER_THAN_OR_EQUAL]) + _sequence(sequence)


def count_all() -> bytes:
    """`04 01`: report the number of stored records."""
    return bytes([OpCode.REPORT_NUMBER_OF_STORED_RECORDS, Operator.ALL_RECORDS])


def count_from(sequence: int) -> bytes:
    """`04 03 01 <uint16>`: number of records with sequence number >= `sequence`."""
    return bytes([OpCode.REPORT_NUMBER_OF_STORED_RECORDS, Operator.GREATER_THAN_OR_EQUAL]) + _sequence(sequence)


def abort() -> bytes:
    """`03 00`: abort the running procedure (operator null, no operand)."""
    return bytes([OpCode.ABORT_OPERATION, Operator.NULL])


def delete_all() -> bytes:
    """`02 01`: delete all stored records (VitalGate never sends it by itself; for tools and tests)."""
    return bytes([OpCode.DELETE_STORED_RECORDS, Operator.ALL_RECORDS])


@dataclass(frozen=True, slots=True)
class NumberOfRecords:
    """`05 00 <uint16>`: answer to a count request."""

    count: int


@dataclass(frozen=True, slots=True)
class RacpResponse:
    """`06 00 <request op code> <response code>`: how a request ended."""

    request: OpCode
    code: ResponseCode

    @property
    def ok(self) -> bool:
        return self.code is ResponseCode.SUCCESS


def parse_racp(data: bytes) -> NumberOfRecords | RacpResponse:
    """Parse a RACP indication. Anything else a server may not send raises a typed error."""
    raw = bytes(data)
    if len(raw) < 2:
        raise MalformedFrameError("racp: frame too short", raw)
    op, operator = raw[0], raw[1]
    if operator != Operator.NULL:
        raise MalformedFrameError("racp: response operator must be null", raw)
    if op == OpCode.NUMBER_OF_STORED_RECORDS_RESPONSE:
        if len(raw) != 4:
            raise MalformedFrameError("racp: number of records response must be 4 bytes", raw)
        return NumberOfRecords(_U16.unpack_from(raw, 2)[0])
    if op == OpCode.RESPONSE_CODE:
        if len(raw) != 4:
            raise MalformedFrameError("racp: response code must be 4 bytes", raw)
        try:
            request = OpCode(raw[2])
        except ValueError:
            # Well formed, naming an op code the spec reserves (0, 7-255): a later feature, not a broken frame.
            raise UnsupportedError("racp: response to an unsupported op code", raw) from None
        if request not in _REQUESTS:
            raise MalformedFrameError("racp: response to a response op code", raw)
        try:
            code = ResponseCode(raw[3])
        except ValueError:
            raise DeviceProtocolError("racp: reserved response code value", raw) from None
        return RacpResponse(request, code)
    raise MalformedFrameError("racp: not a response op code", raw)


_REQUESTS = frozenset(
    {
        OpCode.REPORT_STORED_RECORDS,
        OpCode.DELETE_STORED_RECORDS,
        OpCode.ABORT_OPERATION,
        OpCode.REPORT_NUMBER_OF_STORED_RECORDS,
    }
)


def parse_checkpoint(text: str | None) -> int | None:
    """A stored checkpoint string back to a sequence number; None when never synced.

    A corrupt value raises ValueError: silently starting over would re-read every record (no loss, but
    duplicates) and hide the corruption."""
    if text is None or text == "":
        return None
    value = int(text)
    if not 0 <= value <= _SEQUENCE_MAX:
        raise ValueError("glucose checkpoint out of range")
    return value


class SyncState(Enum):
    IDLE = "idle"  # nothing requested yet
    TRANSFERRING = "transferring"  # report request written, records coming
    ABORTING = "aborting"  # abort written, waiting for its response
    COMPLETE = "complete"  # report ended with success or "no records found"
    ABORTED = "aborted"
    FAILED = "failed"  # the server refused or could not complete: see `failure`


_DONE = frozenset({SyncState.COMPLETE, SyncState.ABORTED, SyncState.FAILED})


class RacpSync:
    """One glucose record transfer, sans-I/O.

    Use: `write(sync.request())`; feed every Glucose Measurement, Context and RACP indication to the
    matching `receive_*`; call `take_records()` whenever convenient (records come out complete, joined,
    in order, without duplicates); submit them, then store `str(sync.checkpoint)`; stop when `done`.
    Parse errors propagate as typed `DriverError`s (the session rejects that frame and goes on); the
    measurement of a malformed frame is then simply absent, so its record stays with the device's raw
    frame kept by the session.
    """

    def __init__(self, checkpoint: int | None = None) -> None:
        if checkpoint is not None and not 0 <= checkpoint <= _SEQUENCE_MAX:
            raise ValueError("checkpoint must be a uint16 sequence number")
        self._checkpoint = checkpoint  # highest sequence handed out (or restored)
        self._highest = -1 if checkpoint is None else checkpoint  # highest sequence accepted
        self._joiner = GlucoseRecordJoiner()
        self._ready: list[GlucoseRecord] = []
        self._skip_context: int | None = None
        self.state = SyncState.IDLE
        self.failure: RacpResponse | None = None
        self.no_records = False
        self.reported_count: int | None = None
        self.duplicates = 0

    @property
    def checkpoint(self) -> int | None:
        """The highest sequence number handed out by `take_records()` (or the one we started from)."""
        return self._checkpoint

    @property
    def done(self) -> bool:
        return self.state in _DONE

    def request(self) -> bytes:
        """The report request: all records on a first sync, else records >= checkpoint + 1."""
        if self.state is not SyncState.IDLE:
            raise LocalProtocolError("racp: a transfer was already requested")
        self.state = SyncState.TRANSFERRING
        if self._checkpoint is None:
            return report_all()
        # At 0xFFFF there is no "+ 1": ask for >= 0xFFFF and drop the repeat as a duplicate.
        return report_from(min(self._checkpoint + 1, _SEQUENCE_MAX))

    def abort(self) -> bytes:
        """The abort request (e.g. on shutdown); records already received can still be taken."""
        if self.state is not SyncState.TRANSFERRING:
            raise LocalProtocolError("racp: nothing to abort")
        self.state = SyncState.ABORTING
        return abort()

    def receive_measurement(self, data: bytes) -> None:
        m = parse_glucose_measurement(data)
        if m.sequence <= self._highest:
            self.duplicates += 1
            self._skip_context = m.sequence if m.context_follows else None
            self._ready.extend(self._joiner.flush())
            return
        self._skip_context = None
        self._highest = m.sequence
        self._ready.extend(self._joiner.add_measurement(m, data))

    def receive_context(self, data: bytes) -> None:
        c = parse_glucose_context(data)
        if self._skip_context is not None and c.sequence == self._skip_context:
            self._skip_context = None
            return
        self._ready.extend(self._joiner.add_context(c, data))

    def receive_racp(self, data: bytes) -> None:
        event = parse_racp(data)
        if isinstance(event, NumberOfRecords):
            self.reported_count = event.count
            return
        if event.request is OpCode.ABORT_OPERATION:
            if self.state is SyncState.ABORTING:
                self._finish(SyncState.ABORTED if event.ok else SyncState.FAILED, event)
            elif not self.done:
                raise DeviceProtocolError("racp: abort response without an abort", bytes(data))
            return  # a late abort response after the report had already ended
        if event.request is OpCode.REPORT_STORED_RECORDS and self.state in (
            SyncState.TRANSFERRING,
            SyncState.ABORTING,
        ):
            if event.code is ResponseCode.NO_RECORDS_FOUND:
                self.no_records = True
                self._finish(SyncState.COMPLETE, None)
            elif event.ok:
                self._finish(SyncState.COMPLETE, None)
            else:
                self._finish(SyncState.FAILED, event)
            return
        raise DeviceProtocolError("racp: response to a request we did not make", bytes(data))

    def _finish(self, state: SyncState, failure: RacpResponse | None) -> None:
        self.state = state
        self.failure = failure
        self._ready.extend(self._joiner.flush())

    def take_records(self) -> tuple[GlucoseRecord, ...]:
        """Complete records not handed out before, oldest first; advances `checkpoint` past them."""
        out, self._ready = tuple(self._ready), []
        if out:
            self._checkpoint = max(r.sequence for r in out)
        return out
