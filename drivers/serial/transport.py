"""An asyncio serial port: pyserial opens and configures it, the event loop watches its descriptor.

Why not `pyserial-asyncio-fast`: it is the same design (pyserial for termios set-up plus
`loop.add_reader` on the file descriptor), and our sessions only need "read until", "read exactly",
"write" with deadlines, which is a page of code we can type-check strictly and test on real ptys. A
thread bridge would be the fallback for platforms without selectable serial fds (Windows); the gateway
runs on Linux. Nothing here blocks the loop: the fd is non-blocking and read only when readable.

Port loss (cable pulled, USB adapter gone, pty master closed) shows as EIO / end of file on read:
`PortLostError`, which ends the session; the core reconnects with backoff, and `open` raises
`PortUnavailableError` until the port is back. Data a session already submitted stays committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import serial
import structlog

from drivers.errors import DriverError
from gateway.errors import ConfigError

__all__ = [
    "LineTooLongError",
    "PortLostError",
    "PortSettings",
    "PortUnavailableError",
    "ReadTimeoutError",
    "SerialPort",
    "SerialTransportError",
    "validate_port_options",
]

log = structlog.get_logger(__name__)

_PARITY = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}
_STOPBITS = {1: serial.STOPBITS_ONE, 1.5: serial.STOPBITS_ONE_POINT_FIVE, 2: serial.STOPBITS_TWO}
_BYTESIZE = (7, 8)
_BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
PORT_KEYS = ("port", "baudrate", "parity", "stopbits", "bytesize", "timeout_seconds")
# Bounds on what a device can make us hold (issue 11): the longest line any supported meter sends is far
# below MAX_LINE; input beyond MAX_BUFFER while nobody reads is dropped and counted.
MAX_LINE = 4096
MAX_BUFFER = 64 * 1024


class SerialTransportError(DriverError):
    """Base of transport failures (not protocol errors: no device bytes to keep)."""


class PortUnavailableError(SerialTransportError):
    """The port cannot be opened (absent, busy, permission); the core retries with backoff."""


class PortLostError(SerialTransportError):
    """The port went away while in use (EIO / end of file)."""


class LineTooLongError(DriverError):
    """The device sent `MAX_LINE` bytes without the separator (a flood, or the wrong baud rate); those
    bytes are discarded, `head` holds the first of them. The session ends; the core reconnects with backoff."""

    def __init__(self, message: str, head: bytes = b"") -> None:
        super().__init__(message)
        self.head = head


class ReadTimeoutError(SerialTransportError):
    """The device stayed silent past the deadline; `partial` holds what did arrive."""

    def __init__(self, message: str, partial: bytes = b"") -> None:
        super().__init__(message)
        self.partial = partial


@dataclass(frozen=True, slots=True)
class PortSettings:
    path: str
    baudrate: int = 9600
    parity: str = "N"
    stopbits: float = 1
    bytesize: int = 8
    timeout: float = 3.0  # seconds of silence before a reply counts as missing

    @classmethod
    def from_options(cls, options: Mapping[str, Any], defaults: PortSettings | None = None) -> PortSettings:
        """Driver defaults, overridden by the device's config options."""
        base = defaults or cls(path="")
        return cls(
            path=str(options.get("port", base.path)),
            baudrate=int(options.get("baudrate", base.baudrate)),
            parity=str(options.get("parity", base.parity)),
            stopbits=float(options.get("stopbits", base.stopbits)),
            bytesize=int(options.get("bytesize", base.bytesize)),
            timeout=float(options.get("timeout_seconds", base.timeout)),
        )


def validate_port_options(options: Mapping[str, Any], where: str, extra: tuple[str, ...] = ()) -> None:
    """Check the port keys shared by every serial driver; unknown keys are errors, not ignored."""

    def bad(key: str, problem: str) -> ConfigError:
        return ConfigError("", f"{where}.{key}", problem)

    for key in options:
        if key not in PORT_KEYS and key not in extra:
            raise bad(key, f"unknown option; serial drivers take {', '.join(PORT_KEYS + extra)}")
    port = options.get("port")
    if not isinstance(port, str) or not port.startswith("/"):
        raise bad("port", "required: the device path, e.g. /dev/serial/by-id/usb-Prolific...-port0")
    checks: dict[str, tuple[Any, str]] = {
        "baudrate": (_BAUDRATES, "one of " + ", ".join(map(str, _BAUDRATES))),
        "parity": (tuple(_PARITY), '"N", "E" or "O"'),
        "stopbits": (tuple(_STOPBITS), "1, 1.5 or 2"),
        "bytesize": (_BYTESIZE, "7 or 8"),
    }
    for key, (allowed, text) in checks.items():
        if key in options and (isinstance(options[key], bool) or options[key] not in allowed):
            raise bad(key, f"must be {text}")
    timeout = options.get("timeout_seconds", 3.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0.05 <= timeout <= 120:
        raise bad("timeout_seconds", "must be a number of seconds between 0.05 and 120")


class SerialPort:
    """One open port. Use `async with await SerialPort.open(settings) as port:`."""

    def __init__(self, settings: PortSettings, handle: serial.Serial) -> None:
        self.settings = settings
        self._serial = handle
        self._fd: int = handle.fileno()
        self._buffer = bytearray()
        self.dropped = 0  # bytes that arrived while MAX_BUFFER were already waiting
        self.high_water = 0  # the most bytes ever buffered
        self._readable = asyncio.Event()
        self._lost: BaseException | None = None
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._on_readable)

    @classmethod
    async def open(cls, settings: PortSettings) -> SerialPort:
        def _open() -> serial.Serial:
            return serial.Serial(
                port=settings.path,
                baudrate=settings.baudrate,
                bytesize=settings.bytesize,
                parity=_PARITY[settings.parity],
                stopbits=_STOPBITS[settings.stopbits],
                timeout=0,
                write_timeout=None,
                xonxoff=False,
                rtscts=False,
                dsrdtr=False,
                exclusive=True,
            )

        try:
            handle = await asyncio.to_thread(_open)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PortUnavailableError(f"cannot open serial port: {type(exc).__name__}") from None
        log.info("serial_port_opened", port=settings.path, baudrate=settings.baudrate)
        return cls(settings, handle)

    async def __aenter__(self) -> SerialPort:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._serial.is_open:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(self._fd)
            with contextlib.suppress(OSError, serial.SerialException):
                self._serial.close()

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            data = b""
            self._lost = exc
        if not data:
            self._lost = self._lost or EOFError()
            self._loop.remove_reader(self._fd)
        room = MAX_BUFFER - len(self._buffer)
        if len(data) > room:
            if not self.dropped:
                log.warning("serial_input_dropped", port=self.settings.path, limit=MAX_BUFFER)
            self.dropped += len(data) - max(room, 0)
            data = data[: max(room, 0)]
        self._buffer += data
        self.high_water = max(self.high_water, len(self._buffer))
        self._readable.set()

    async def _wait(self, deadline: float) -> None:
        if self._lost is not None:
            raise PortLostError("serial port lost")
        self._readable.clear()
        remaining = deadline - self._loop.time()
        if remaining <= 0:
            raise ReadTimeoutError("device did not answer in time", bytes(self._buffer))
        try:
            async with asyncio.timeout(remaining):
                await self._readable.wait()
        except TimeoutError:
            raise ReadTimeoutError("device did not answer in time", bytes(self._buffer)) from None

    def _deadline(self, idle: float | None) -> float:
        return self._loop.time() + (self.settings.timeout if idle is None else idle)

    async def read_until(self, separator: bytes = b"\n", idle: float | None = None, max_line: int = MAX_LINE) -> bytes:
        """Bytes up to and including `separator`; the deadline restarts with every byte received.

        `LineTooLongError` after `max_line` bytes without one: those bytes are discarded, so a device that
        never sends a newline cannot grow memory, and the next line is read normally.
        """
        while True:
            cut = self._buffer.find(separator)
            if 0 <= cut < max_line:
                end = cut + len(separator)
                line = bytes(self._buffer[:end])
                del self._buffer[:end]
                return line
            if len(self._buffer) >= max_line:
                head = bytes(self._buffer[:256])
                del self._buffer[:max_line]
                raise LineTooLongError(f"no line end in {max_line} bytes", head)
            await self._wait(self._deadline(idle))

    async def read_exactly(self, count: int, idle: float | None = None) -> bytes:
        while len(self._buffer) < count:
            await self._wait(self._deadline(idle))
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    async def read_some(self, idle: float | None = None) -> bytes:
        """Whatever is buffered, waiting for at least one byte."""
        if not self._buffer:
            await self._wait(self._deadline(idle))
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    def take_buffered(self) -> bytes:
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    def discard_input(self) -> None:
        self._buffer.clear()

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._lost is not None:
                raise PortLostError("serial port lost")
            try:
                written = os.write(self._fd, view)
            except BlockingIOError:
                await asyncio.sleep(0.005)  # output buffer full: tiny backoff, never a busy spin
                continue
            except OSError:
                raise PortLostError("serial port lost while writing") from None
            view = view[written:]
