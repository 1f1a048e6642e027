"""The small contract between a driver session and the gateway core.

A session reads a device and hands readings to `DeviceContext.submit`, which returns only once they are
durably committed: only then may the session acknowledge the device or advance a checkpoint. Bad input
goes to `DeviceContext.reject`, which counts it and keeps the raw bytes (encrypted) for review.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta, tzinfo
from typing import Any, ClassVar, Protocol

from gateway.reading import Reading

__all__ = ["DeviceContext", "Driver", "DriverInfo"]


class DeviceContext(Protocol):
    """What the core offers one device session."""

    @property
    def options(self) -> Mapping[str, Any]:
        """The device's `[[devices]]` table from the config (already checked by the driver's `validate`)."""
        ...

    @property
    def clock_tolerance(self) -> timedelta:
        """How far a device clock may drift before the driver sets it (where the device allows)."""
        ...

    @property
    def local_tz(self) -> tzinfo | None:
        """The zone device clocks are set in (`gateway.timezone`); None: the system's zone.

        Home devices keep local time without a zone: the gateway's clock must be read in the same zone
        before the two are compared, or the offset recorded is off by the zones' difference.
        """
        ...

    async def submit(self, readings: Sequence[Reading]) -> int:
        """Encrypt and commit; returns how many were new (not already queued)."""
        ...

    async def reject(self, raw: bytes, error: Exception, *, source: str) -> None:
        """Count bad input and keep its raw bytes, encrypted, for review."""
        ...

    async def checkpoint(self, name: str) -> str | None:
        """A value the session stored for this device (e.g. the last record number read)."""
        ...

    async def set_checkpoint(self, name: str, value: str) -> None:
        """Store it durably. Call only after the readings it covers were submitted."""
        ...


class DriverInfo(Protocol):
    """Static facts a driver declares as data: what it claims and which options it takes."""

    name: ClassVar[str]
    transport: ClassVar[str]  # "ble" or "serial"
    description: ClassVar[str]


class Driver(DriverInfo, Protocol):
    """One device session. `run` reads what the device has and returns; the core reconnects with backoff.

    A driver whose device deletes what it sent (BLE indications) sets the class attribute
    `rereadable = False`; the core then starts its sessions only while the queue can commit.
    """

    @classmethod
    def validate(cls, options: Mapping[str, Any], where: str) -> None:
        """Raise `gateway.errors.ConfigError` naming `where` + key when options are wrong."""
        ...

    async def run(self, ctx: DeviceContext) -> None: ...
