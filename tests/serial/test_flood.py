"""A serial device that never sends a newline (issue 11, must-have 6): on a real pty, what the port holds
stays bounded, the flood is refused with a typed error, and the next proper line is read."""

from __future__ import annotations

import asyncio
import os
import pty
import tty

import pytest

from drivers.serial import transport
from drivers.serial.transport import LineTooLongError, PortSettings, SerialPort


async def test_attack_serial_flood_without_newline_is_bounded() -> None:
    master, slave = pty.openpty()
    tty.setraw(slave)
    name = os.ttyname(slave)
    try:
        port = await SerialPort.open(PortSettings(path=name, timeout=5.0))
        async with port:
            chunk = b"A" * 4096
            sent = 0
            refused = 0

            async def flood() -> None:
                nonlocal sent
                os.set_blocking(master, False)
                while sent < 2_000_000:
                    try:
                        sent += os.write(master, chunk)
                    except BlockingIOError:
                        await asyncio.sleep(0.001)

            writer = asyncio.create_task(flood())
            try:
                while not writer.done() or port._buffer:
                    try:
                        await port.read_until(b"\n", idle=1.0)
                    except LineTooLongError as exc:
                        refused += 1
                        assert exc.head == b"A" * 256
                    except transport.ReadTimeoutError:
                        break
                    assert len(port._buffer) <= transport.MAX_BUFFER
            finally:
                await writer
            assert sent >= 2_000_000
            assert refused >= 1
            assert port.high_water <= transport.MAX_BUFFER
            # The device (or a person fixing its baud rate) sends a proper line: it is read as usual.
            port.discard_input()
            os.write(master, b"DMP 12 OK\r\n")
            assert await port.read_until(b"\n", idle=5.0) == b"DMP 12 OK\r\n"
    finally:
        os.close(master)
        os.close(slave)


async def test_serial_input_beyond_the_buffer_cap_is_dropped_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nobody reading while the device talks: the port keeps MAX_BUFFER bytes and counts the rest."""
    monkeypatch.setattr(transport, "MAX_BUFFER", 8192)
    master, slave = pty.openpty()
    tty.setraw(slave)
    try:
        async with await SerialPort.open(PortSettings(path=os.ttyname(slave))) as port:
            for _ in range(8):
                os.write(master, b"B" * 2048)
                await asyncio.sleep(0.02)
            async with asyncio.timeout(10):
                while port.dropped < 16384 - 8192:  # noqa: ASYNC110 - polling a counter the reader callback bumps
                    await asyncio.sleep(0.02)
            assert len(port._buffer) == 8192 and port.high_water == 8192
    finally:
        os.close(master)
        os.close(slave)
