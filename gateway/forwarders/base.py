"""The forwarder contract.

A forwarder connects, sends one batch and says which items the backend confirmed. It never buffers,
retries or sleeps on its own: the drainer owns the queue, backoff and acks. Anything it cannot say
per item it raises as a typed error for the whole batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

__all__ = [
    "Forwarder",
    "ForwarderError",
    "Outgoing",
    "PermanentError",
    "RetryableError",
    "SendReport",
]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One queue item ready to send.

    `bundle` is a FHIR transaction Bundle (a plain JSON-ready dict) for this one reading; `body` is its
    serialized JSON; `entries` are the bundle's entries, for forwarders that pack several readings into
    one transaction; `identifier` is the deterministic FHIR identifier value used for duplicate detection.
    """

    item_id: int
    identifier: str
    bundle: Mapping[str, Any]
    body: bytes
    entries: Sequence[Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class SendReport:
    """What the backend said about a batch.

    Items in `confirmed` are acknowledged and may leave the queue. Items in `rejected` were refused on
    their own merits (the reason is kept and they are quarantined); the reason is stored and logged in
    the clear, so it must hold no PHI. `echoed` is the backend's own free text about a rejected item,
    which may carry PHI: the queue seals it (gateway.echo), nothing logs it. Items in neither are retried.
    `retry_after` is a backend's hint in seconds for the unconfirmed ones.
    """

    confirmed: frozenset[int]
    rejected: Mapping[int, str] = field(default_factory=dict)
    retry_after: float | None = None
    echoed: Mapping[int, str] = field(default_factory=dict)


class ForwarderError(Exception):
    """Base of forwarder errors; the message must never contain PHI or secrets."""


class RetryableError(ForwarderError):
    """The batch may succeed later (network, broker or server down, 5xx, 429)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(ForwarderError):
    """The backend refuses us as configured (bad credentials, ACL denial, TLS trust failure).

    Readings stay queued: an operator fixes the configuration, and the core retries slowly meanwhile.
    """


@runtime_checkable
class Forwarder(Protocol):
    """Used as `async with forwarder: await forwarder.send(batch)`."""

    name: str

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def send(self, batch: Sequence[Outgoing]) -> SendReport: ...

    @property
    def window(self) -> int:
        """How many items the drainer may hand over in one `send`."""
        ...
