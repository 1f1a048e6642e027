"""A glucose meter: Glucose service 0x1808 with stored records fetched over RACP (0x2A52).

Bonding is required (LE Secure Connections, passkey shown on the device): the measurement, context,
feature and RACP characteristics need an encrypted link. RACP supports Report Stored Records (all, >=
sequence number), Report Number of Stored Records, and Abort (Glucose Profile 1.0 §4.9, GSS §3.182).

Fault injection: `fail_after` drops the link after that many records of the next transfer (then clears
itself, like a one-off walk out of range); `pause_after` stalls the next transfer there until the gateway
aborts it; `malformed` holds sequence numbers whose measurement is sent truncated.
"""

from __future__ import annotations

import asyncio
import struct
from datetime import datetime, timedelta

import structlog
from bumble import gatt
from bumble.device import Connection

from simulators.ble import encoding
from simulators.ble.encoding import GlucoseRecord
from simulators.ble.peripheral import SimulatedPeripheral, uuid16

__all__ = ["GlucoseMeter", "make_records"]

log = structlog.get_logger(__name__)

# RACP opcodes, operators, response codes (GSS §3.182)
REPORT, DELETE, ABORT, COUNT = 1, 2, 3, 4
OP_NULL, OP_ALL, OP_LE, OP_GE, OP_RANGE, OP_FIRST, OP_LAST = 0, 1, 2, 3, 4, 5, 6
FILTER_SEQUENCE = 1
SUCCESS, OPCODE_NOT_SUPPORTED, INVALID_OPERATOR, OPERATOR_NOT_SUPPORTED = 1, 2, 3, 4
INVALID_OPERAND, NO_RECORDS, ABORT_UNSUCCESSFUL = 5, 6, 7
PROCEDURE_NOT_COMPLETED, OPERAND_NOT_SUPPORTED = 8, 9

FEATURES = 0x0400  # multiple bond supported (Glucose Feature 0x2A51 bit 10)


def make_records(count: int, *, start: datetime, first_sequence: int = 1) -> list[GlucoseRecord]:
    """Deterministic records: one every 4 h, values cycling 70..249 mg/dL, some with meal context."""
    return [
        GlucoseRecord(
            sequence=first_sequence + i,
            time=start + timedelta(hours=4 * i),
            mg_dl=70 + (i * 37) % 180,
            time_offset_min=0 if i % 2 else None,
            meal=(1 + i % 2) if i % 3 == 0 else None,
        )
        for i in range(count)
    ]


class GlucoseMeter(SimulatedPeripheral):
    kind = "ble-glucose"
    service_uuids = (0x1808,)

    def __init__(
        self,
        records: list[GlucoseRecord] | None = None,
        *,
        fail_after: int | None = None,
        pause_after: int | None = None,
        malformed: set[int] | None = None,
        **kwargs: object,
    ) -> None:
        kwargs.setdefault("name", "VG-Glucose")
        kwargs.setdefault("address", "C3:00:00:00:00:03")
        kwargs.setdefault("serial", "GLU00003")
        kwargs.setdefault("model", "SIM-GL")
        kwargs.setdefault("passkey", 123456)
        kwargs.setdefault("system_id", (0x0000_0003, 0x00_1B_DC))
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.records: list[GlucoseRecord] = list(records or [])
        self.fail_after = fail_after
        self.pause_after = pause_after  # stall the next transfer after this many records (until aborted)
        self.paused = asyncio.Event()
        self.malformed = set(malformed or ())
        self.sent_sequences: list[int] = []
        self.requests: list[bytes] = []
        self._transfer: asyncio.Task[None] | None = None
        self._measurement: gatt.Characteristic[bytes] | None = None
        self._context: gatt.Characteristic[bytes] | None = None
        self._racp: gatt.Characteristic[bytes] | None = None

    def add(self, record: GlucoseRecord) -> None:
        self.records.append(record)

    def next_sequence(self) -> int:
        return max((r.sequence for r in self.records), default=0) + 1

    def services(self) -> list[gatt.Service]:
        props = gatt.Characteristic.Properties
        perms = gatt.Characteristic.Permissions
        self._measurement = gatt.Characteristic(uuid16(0x2A18), props.NOTIFY, self._enc(), b"")
        self._context = gatt.Characteristic(uuid16(0x2A34), props.NOTIFY, self._enc(), b"")
        write_perm = perms.WRITE_REQUIRES_ENCRYPTION if self.passkey is not None else perms.WRITEABLE
        self._racp = gatt.Characteristic(
            uuid16(0x2A52),
            props.WRITE | props.INDICATE,
            write_perm,
            gatt.CharacteristicValue(write=self._on_racp),
        )
        feature = gatt.Characteristic(uuid16(0x2A51), props.READ, self._enc(), struct.pack("<H", FEATURES))
        return [gatt.Service(uuid16(0x1808), [self._measurement, self._context, feature, self._racp])]

    def _on_racp(self, connection: Connection, value: bytes) -> None:
        """Write handler: answer fast, run the procedure in a device-side task."""
        self.requests.append(bytes(value))
        opcode = value[0] if value else 0
        if opcode == ABORT:
            if self._transfer is not None and not self._transfer.done():
                self._transfer.cancel()
            self.spawn(self._respond(connection, encoding.racp_response(ABORT, SUCCESS)))
            return
        if self._transfer is not None and not self._transfer.done():
            self.spawn(self._respond(connection, encoding.racp_response(opcode, PROCEDURE_NOT_COMPLETED)))
            return
        task = asyncio.ensure_future(self._procedure(connection, bytes(value)))
        self._transfer = task
        self.spawn(task)

    async def _respond(self, connection: Connection, frame: bytes) -> None:
        assert self.device is not None and self._racp is not None
        await self.device.indicate_subscriber(connection, self._racp, frame)

    def _select(self, operator: int, operand: bytes) -> list[GlucoseRecord] | int:
        """Matching records, or an RACP response code."""
        if operator == OP_ALL:
            return sorted(self.records, key=lambda r: r.sequence)
        if operator in (OP_GE, OP_LE):
            if len(operand) != 3:
                return INVALID_OPERAND
            if operand[0] != FILTER_SEQUENCE:
                return OPERAND_NOT_SUPPORTED
            (seq,) = struct.unpack("<H", operand[1:3])
            ge = operator == OP_GE
            keep = [r for r in self.records if (r.sequence >= seq if ge else r.sequence <= seq)]
            return sorted(keep, key=lambda r: r.sequence)
        if operator == OP_NULL:
            return INVALID_OPERATOR
        return OPERATOR_NOT_SUPPORTED

    async def _procedure(self, connection: Connection, request: bytes) -> None:
        assert self.device is not None and self._measurement is not None and self._context is not None
        if len(request) < 2:
            opcode = request[0] if request else 0
            await self._respond(connection, encoding.racp_response(opcode, INVALID_OPERATOR))
            return
        opcode, operator, operand = request[0], request[1], request[2:]
        if opcode not in (REPORT, COUNT):
            await self._respond(connection, encoding.racp_response(opcode, OPCODE_NOT_SUPPORTED))
            return
        selected = self._select(operator, operand)
        if isinstance(selected, int):
            await self._respond(connection, encoding.racp_response(opcode, selected))
            return
        if opcode == COUNT:
            await self._respond(connection, encoding.racp_count(len(selected)))
            return
        if not selected:
            await self._respond(connection, encoding.racp_response(REPORT, NO_RECORDS))
            return
        for n, record in enumerate(selected):
            if self.pause_after is not None and n == self.pause_after:
                self.pause_after = None
                self.paused.set()
                await asyncio.Event().wait()  # only an RACP abort (which cancels this task) ends it
            if self.fail_after is not None and n == self.fail_after:
                self.fail_after = None
                log.info("sim_glucose_drop_link", sent=n)
                await self.drop_connection()
                return
            frame = encoding.encode_glucose(record)
            if record.sequence in self.malformed:
                frame = frame[:5]  # truncated: flags + sequence + 2 bytes of the base time
            await self.device.notify_subscriber(connection, self._measurement, frame)
            if record.meal is not None:
                context = encoding.encode_glucose_context(record)
                await self.device.notify_subscriber(connection, self._context, context)
            self.sent_sequences.append(record.sequence)
        await self._respond(connection, encoding.racp_response(REPORT, SUCCESS))
