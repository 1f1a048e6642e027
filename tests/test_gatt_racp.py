"""Record Access Control Point 0x2A52 (GLS 1.0 §3.4) and the RacpSync state machine."""

from __future__ import annotations

import struct

import pytest

from drivers.errors import DeviceProtocolError, LocalProtocolError, MalformedFrameError, UnsupportedError
from drivers.gatt.glucose import parse_glucose_context, parse_glucose_measurement
from drivers.gatt.racp import (
    NumberOfRecords,
    OpCode,
    RacpResponse,
    RacpSync,
    ResponseCode,
    SyncState,
    abort,
    count_all,
    count_from,
    delete_all,
    parse_checkpoint,
    parse_racp,
    report_all,
    report_from,
)


def test_request_encoders() -> None:
    assert report_all() == bytes.fromhex("0101")  # op 1 report stored records, operator 1 all
    # op 1, operator 3 (>=), filter type 1 (sequence number), uint16 LE 0x0123
    assert report_from(0x0123) == bytes.fromhex("0103012301")
    assert count_all() == bytes.fromhex("0401")  # op 4 report number of stored records, all
    assert count_from(5) == bytes.fromhex("0403010500")
    assert abort() == bytes.fromhex("0300")  # op 3 abort, operator 0 null
    assert delete_all() == bytes.fromhex("0201")  # op 2 delete stored records, all
    with pytest.raises(LocalProtocolError):
        report_from(0x10000)


def test_number_of_records_response() -> None:
    # op 5 number of stored records response, operator null, uint16 0x01F4 = 500
    assert parse_racp(bytes.fromhex("0500F401")) == NumberOfRecords(500)


@pytest.mark.parametrize("code", list(ResponseCode))
def test_every_response_code(code: ResponseCode) -> None:
    # op 6 response code, operator null, request op code 1, response code value
    assert parse_racp(bytes([6, 0, 1, code])) == RacpResponse(OpCode.REPORT_STORED_RECORDS, code)


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ("06000100", DeviceProtocolError),  # response code 0: reserved
        ("0600010A", DeviceProtocolError),  # response code 10: reserved
        ("06000501", MalformedFrameError),  # "response" to a response op code
        ("06000701", UnsupportedError),  # request op code 7: reserved for future use, a well-formed frame
        ("06010101", MalformedFrameError),  # operator must be null
        ("0101", MalformedFrameError),  # a request, not a response
        ("06", MalformedFrameError),
        ("060001", MalformedFrameError),
        ("0600010101", MalformedFrameError),
        ("0500F4", MalformedFrameError),
        ("", MalformedFrameError),
    ],
)
def test_bad_indications(frame: str, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        parse_racp(bytes.fromhex(frame))
    assert type(info.value) is error
    assert getattr(info.value, "raw", None) == bytes.fromhex(frame)


def test_parse_checkpoint() -> None:
    assert parse_checkpoint(None) is None
    assert parse_checkpoint("") is None
    assert parse_checkpoint("499") == 499
    with pytest.raises(ValueError):
        parse_checkpoint("65536")
    with pytest.raises(ValueError):
        parse_checkpoint("x")


# ---- a meter's side, encoded here independently of the parser (GLS 1.0 §3.1 / §3.2 layouts) ----

_MEAS = struct.Struct("<BH7sHB")  # flags, sequence, base time, concentration SFLOAT, type/location
_BASE_TIME = bytes.fromhex("EA070B14072D00")  # 2026-11-20 07:45:00


def measurement(seq: int, *, context: bool = False) -> bytes:
    flags = 0x02 | (0x10 if context else 0)  # concentration present (kg/L), context follows
    mg_dl = 80 + seq % 100
    return _MEAS.pack(flags, seq, _BASE_TIME, 0xB000 | mg_dl, 0x11)  # exponent -5: mg/dL as kg/L


def context(seq: int) -> bytes:
    return struct.pack("<BHB", 0x02, seq, 0x01)  # meal present: preprandial


SUCCESS = bytes.fromhex("06000101")  # response to "report stored records": success
NO_RECORDS = bytes.fromhex("06000106")
ABORT_OK = bytes.fromhex("06000301")


class Meter:
    """Stored records; record n has a context when n % 4 == 0. Serves report requests as indications."""

    def __init__(self, last: int) -> None:
        self.records = list(range(1, last + 1))

    def serve(self, request: bytes) -> list[tuple[str, bytes]]:
        if request == report_all():
            selected = self.records
        else:
            assert request[:3] == bytes.fromhex("010301")
            first = struct.unpack_from("<H", request, 3)[0]
            selected = [r for r in self.records if r >= first]
        out: list[tuple[str, bytes]] = []
        for seq in selected:
            out.append(("measurement", measurement(seq, context=seq % 4 == 0)))
            if seq % 4 == 0:
                out.append(("context", context(seq)))
        out.append(("racp", SUCCESS if selected else NO_RECORDS))
        return out


def feed(sync: RacpSync, channel: str, data: bytes) -> None:
    {"measurement": sync.receive_measurement, "context": sync.receive_context, "racp": sync.receive_racp}[channel](data)


def test_first_sync_reports_all_then_later_sync_only_new() -> None:
    meter = Meter(last=10)
    sync = RacpSync(checkpoint=None)
    request = sync.request()
    assert request == bytes.fromhex("0101")
    for channel, data in meter.serve(request):
        feed(sync, channel, data)
    assert sync.state is SyncState.COMPLETE and sync.done and sync.failure is None
    records = sync.take_records()
    assert [r.sequence for r in records] == list(range(1, 11))
    assert records[3].measurement == parse_glucose_measurement(measurement(4, context=True))
    assert records[3].context == parse_glucose_context(context(4))
    assert records[3].raw == measurement(4, context=True) + context(4)
    assert records[0].context is None
    assert sync.checkpoint == 10
    assert sync.take_records() == ()

    meter.records += [11, 12]
    later = RacpSync(checkpoint=sync.checkpoint)
    request = later.request()
    assert request == bytes.fromhex("0103010B00")  # >= 11
    for channel, data in meter.serve(request):
        feed(later, channel, data)
    assert [r.sequence for r in later.take_records()] == [11, 12]
    assert later.checkpoint == 12


def test_no_records_found() -> None:
    sync = RacpSync(checkpoint=12)
    assert sync.request() == bytes.fromhex("0103010D00")
    sync.receive_racp(NO_RECORDS)
    assert (sync.state, sync.no_records, sync.failure) == (SyncState.COMPLETE, True, None)
    assert sync.take_records() == ()
    assert sync.checkpoint == 12


def test_abort_keeps_what_arrived() -> None:
    sync = RacpSync(checkpoint=None)
    sync.request()
    sync.receive_measurement(measurement(1))
    sync.receive_measurement(measurement(4, context=True))  # context still to come
    assert sync.abort() == bytes.fromhex("0300")
    assert sync.state is SyncState.ABORTING
    sync.receive_racp(ABORT_OK)
    assert sync.state is SyncState.ABORTED
    # the pending measurement is released without its context once the transfer ended
    assert [(r.sequence, r.context) for r in sync.take_records()] == [(1, None), (4, None)]
    assert sync.checkpoint == 4


def test_abort_unsuccessful_fails() -> None:
    sync = RacpSync()
    sync.request()
    sync.abort()
    sync.receive_racp(bytes.fromhex("06000307"))  # abort: abort unsuccessful
    assert sync.state is SyncState.FAILED
    assert sync.failure == RacpResponse(OpCode.ABORT_OPERATION, ResponseCode.ABORT_UNSUCCESSFUL)


def test_report_ending_before_the_abort_answer() -> None:
    sync = RacpSync()
    sync.request()
    sync.abort()
    sync.receive_racp(SUCCESS)  # the report had already finished
    assert sync.state is SyncState.COMPLETE
    sync.receive_racp(ABORT_OK)  # the late abort answer changes nothing
    assert sync.state is SyncState.COMPLETE


@pytest.mark.parametrize(
    "code",
    [
        ResponseCode.OP_CODE_NOT_SUPPORTED,
        ResponseCode.INVALID_OPERATOR,
        ResponseCode.OPERATOR_NOT_SUPPORTED,
        ResponseCode.INVALID_OPERAND,
        ResponseCode.PROCEDURE_NOT_COMPLETED,
        ResponseCode.OPERAND_NOT_SUPPORTED,
    ],
)
def test_refused_report_fails(code: ResponseCode) -> None:
    sync = RacpSync(checkpoint=3)
    sync.request()
    sync.receive_racp(bytes([6, 0, 1, code]))
    assert sync.state is SyncState.FAILED
    assert sync.failure == RacpResponse(OpCode.REPORT_STORED_RECORDS, code)
    assert sync.checkpoint == 3


def test_count_answer_is_recorded() -> None:
    sync = RacpSync()
    sync.request()
    sync.receive_racp(bytes.fromhex("0500F401"))
    assert (sync.reported_count, sync.state) == (500, SyncState.TRANSFERRING)


def test_disconnect_mid_transfer_resumes_without_loss_or_duplicates() -> None:
    meter = Meter(last=10)
    committed: list[int] = []
    stored: int | None = None  # the durable checkpoint

    first = RacpSync(stored)
    indications = meter.serve(first.request())
    for channel, data in indications[:4]:  # records 1, 2, 3 and the measurement of 4 (context pending)
        feed(first, channel, data)
    records = first.take_records()
    committed += [r.sequence for r in records]  # "submit" ...
    stored = first.checkpoint  # ... and only then store the checkpoint
    assert (committed, stored) == ([1, 2, 3], 3)
    assert first.take_records() == ()  # record 4 waits for its context: not handed out, not checkpointed
    # -- the link drops here; the session object is discarded --

    second = RacpSync(parse_checkpoint(str(stored)))
    request = second.request()
    assert request == bytes.fromhex("0103010400")  # >= 4
    for channel, data in meter.serve(request):
        feed(second, channel, data)
    records = second.take_records()
    committed += [r.sequence for r in records]
    stored = second.checkpoint
    assert committed == list(range(1, 11))
    assert records[0].context == parse_glucose_context(context(4))  # 4 came back whole
    assert stored == 10


def test_duplicates_from_the_meter_are_dropped_with_their_context() -> None:
    sync = RacpSync(checkpoint=4)
    sync.request()
    sync.receive_measurement(measurement(4, context=True))  # already handed out in an earlier session
    sync.receive_context(context(4))
    sync.receive_measurement(measurement(5))
    sync.receive_measurement(measurement(5))  # repeated within the transfer
    sync.receive_racp(SUCCESS)
    assert [r.sequence for r in sync.take_records()] == [5]
    assert sync.duplicates == 2


def test_checkpoint_at_the_top_of_the_sequence_space() -> None:
    sync = RacpSync(checkpoint=0xFFFF)
    assert sync.request() == bytes.fromhex("010301FFFF")
    sync.receive_measurement(measurement(0xFFFF))
    sync.receive_racp(SUCCESS)
    assert sync.take_records() == ()
    assert sync.checkpoint == 0xFFFF


def test_misuse_and_unsolicited_responses() -> None:
    sync = RacpSync()
    with pytest.raises(LocalProtocolError):
        sync.abort()
    with pytest.raises(DeviceProtocolError):
        sync.receive_racp(SUCCESS)  # nothing was requested
    with pytest.raises(DeviceProtocolError):
        sync.receive_racp(ABORT_OK)
    sync.request()
    with pytest.raises(LocalProtocolError):
        sync.request()
    with pytest.raises(DeviceProtocolError):
        sync.receive_racp(bytes.fromhex("06000401"))  # answer to a count we never asked for
    with pytest.raises(ValueError):
        RacpSync(checkpoint=70000)


def test_malformed_frame_mid_transfer_does_not_stop_it() -> None:
    sync = RacpSync()
    sync.request()
    sync.receive_measurement(measurement(1))
    with pytest.raises(MalformedFrameError):
        sync.receive_measurement(measurement(2)[:-1])
    sync.receive_measurement(measurement(3))
    sync.receive_racp(SUCCESS)
    assert [r.sequence for r in sync.take_records()] == [1, 3]
