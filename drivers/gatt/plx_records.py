"""Stored PLX spot-checks over the Record Access Control Point (PLXS 1.0 §3.4), sans-I/O.

The Pulse Oximeter Service's RACP knows only the operator "all records" (PLXS 1.0 §3.4: report, delete,
abort, count; no filter), and spot-check records carry no sequence number. So the checkpoint is the newest
device time stamp committed: every sync asks for all records, and those at or before the checkpoint are
dropped as already committed (`duplicates`). Records without a usable time stamp cannot be told apart
from the ones committed last time; they are handed out each time (the queue's identifier then makes them
distinct by receive time), which is why a session may delete the device's records once they are
committed (`delete_after_sync`), and only then.

Same rule as glucose (drivers/gatt/racp.py): `checkpoint` covers only records already handed out by
`take_records()`; the session submits them and stores the checkpoint after.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum

from drivers.errors import DeviceProtocolError, LocalProtocolError
from drivers.gatt.plx import PlxSpotCheck, parse_spot_check
from drivers.gatt.racp import NumberOfRecords, OpCode, ResponseCode, delete_all, parse_racp, report_all

__all__ = ["PlxRecordSync", "PlxSyncState", "StoredSpotCheck", "parse_time_checkpoint"]


class PlxSyncState(Enum):
    IDLE = "idle"
    TRANSFERRING = "transferring"
    COMPLETE = "complete"
    FAILED = "failed"


StoredSpotCheck = tuple[PlxSpotCheck, bytes]


def parse_time_checkpoint(text: str | None) -> datetime | None:
    """A stored checkpoint back to the device time it names; ValueError when corrupt (never silently 0)."""
    if text is None or text == "":
        return None
    return datetime.fromisoformat(text)


def _time(m: PlxSpotCheck) -> datetime | None:
    return None if m.clock_not_set else m.time_stamp


class PlxRecordSync:
    """One stored spot-check transfer: `request()` to write, `receive_*` what arrives, `take_records()`."""

    def __init__(self, checkpoint: datetime | None = None) -> None:
        self._checkpoint = checkpoint
        self._floor = checkpoint  # fixed for this transfer: stored records need not arrive in time order
        self._ready: list[StoredSpotCheck] = []
        self.state = PlxSyncState.IDLE
        self.failure: ResponseCode | None = None
        self.duplicates = 0
        self.no_records = False

    @property
    def checkpoint(self) -> datetime | None:
        return self._checkpoint

    @property
    def done(self) -> bool:
        return self.state in (PlxSyncState.COMPLETE, PlxSyncState.FAILED)

    def request(self) -> bytes:
        if self.state is not PlxSyncState.IDLE:
            raise LocalProtocolError("plx racp: a transfer was already requested")
        self.state = PlxSyncState.TRANSFERRING
        return report_all()

    @staticmethod
    def delete_request() -> bytes:
        """`02 01`: delete all stored records; write it only after the records were committed."""
        return delete_all()

    def receive_spot_check(self, data: bytes) -> None:
        """A spot-check (stored or live); parse errors propagate for the session to reject."""
        m = parse_spot_check(data)
        t = _time(m)
        if t is not None and self._floor is not None and t <= self._floor:
            self.duplicates += 1
            return
        self._ready.append((m, bytes(data)))

    def receive_racp(self, data: bytes) -> None:
        event = parse_racp(data)
        if isinstance(event, NumberOfRecords):
            return
        if event.request is OpCode.REPORT_STORED_RECORDS and self.state is PlxSyncState.TRANSFERRING:
            if event.code is ResponseCode.NO_RECORDS_FOUND:
                self.no_records = True
                self.state = PlxSyncState.COMPLETE
            elif event.ok:
                self.state = PlxSyncState.COMPLETE
            else:
                self.state, self.failure = PlxSyncState.FAILED, event.code
            return
        if event.request is OpCode.DELETE_STORED_RECORDS:
            return  # the answer to our delete; the session logs it
        raise DeviceProtocolError("plx racp: response to a request we did not make", bytes(data))

    def take_records(self) -> tuple[StoredSpotCheck, ...]:
        """Records not handed out before, in arrival order; advances `checkpoint` to the newest time."""
        out, self._ready = tuple(self._ready), []
        times = [t for m, _ in out if (t := _time(m)) is not None]
        if times:
            newest = max(times)
            if self._checkpoint is None or newest > self._checkpoint:
                self._checkpoint = newest
        return out
