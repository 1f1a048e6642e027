"""Errors drivers raise. "The device broke the protocol" is told apart from "we did"."""

from __future__ import annotations

__all__ = [
    "ChecksumError",
    "DeviceProtocolError",
    "DriverError",
    "HostSetupError",
    "LocalProtocolError",
    "MalformedFrameError",
    "UnsupportedError",
]


class DriverError(Exception):
    """Base of every driver error."""


class DeviceProtocolError(DriverError):
    """The device sent something the specification does not allow; `raw` keeps the bytes."""

    def __init__(self, message: str, raw: bytes = b"") -> None:
        super().__init__(message)
        self.raw = raw


class MalformedFrameError(DeviceProtocolError):
    """A frame too short, too long, or with fields that cannot be decoded."""


class ChecksumError(DeviceProtocolError):
    """The frame's checksum does not match; both values are kept for diagnosis."""

    def __init__(self, raw: bytes, wire: int, calculated: int) -> None:
        super().__init__(f"checksum mismatch: wire {wire:#06x}, calculated {calculated:#06x}", raw)
        self.wire = wire
        self.calculated = calculated


class UnsupportedError(DeviceProtocolError):
    """Valid per the specification, but a feature this driver does not support (e.g. reserved flags)."""


class LocalProtocolError(DriverError):
    """We tried to do something the protocol does not allow (a bug on our side)."""


class HostSetupError(DriverError):
    """The host lacks what the driver needs (a Bluetooth stack, D-Bus, a permission): not the device's fault.

    `hint` is a sentence an operator can act on; the daemon logs it once, then retries quietly.
    """

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint
