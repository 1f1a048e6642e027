"""Moves readings from the queue to the forwarder: lease, map to FHIR, send, ack or release.

The core owns retry: a forwarder reports what the backend confirmed or raises, and the drainer decides
what waits how long. Nothing leaves the queue until the backend confirmed it; what cannot be mapped or
decrypted is quarantined with a reason, never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta, tzinfo
from typing import Protocol

import structlog

from gateway.clockcheck import DEFAULT_LIMIT
from gateway.fhir import GatewayInfo, MappingError, map_reading
from gateway.forwarders.base import Forwarder, Outgoing, PermanentError, RetryableError, SendReport
from gateway.queue import Leased, ReadingQueue, State
from gateway.reading import Reading

__all__ = ["Backoff", "DrainObserver", "DrainStats", "Drainer"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with full jitter, so a fleet of gateways does not retry in step."""

    initial: float = 1.0
    maximum: float = 300.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.maximum, self.initial * (2 ** min(attempt, 30)))
        return (rng or random).uniform(ceiling / 2, ceiling)


@dataclass(slots=True)
class DrainStats:
    delivered: int = 0
    rejected: int = 0
    retried: int = 0
    quarantined: int = 0
    unassigned: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


Delivered = Callable[[Reading, str], None]

SUMMARY_EVERY = 60.0  # seconds between `delivered` summaries at info level


class DrainObserver(Protocol):
    """Who wants to know how forwarding goes (the health model); every call is cheap and never raises."""

    def connected(self) -> None: ...
    def backing_off(self, error: str, retry_in: float) -> None: ...
    def refused(self, error: str, retry_in: float) -> None: ...
    def sent(self, seconds: float, delivered_kinds: Iterable[str], rejected: int) -> None: ...
    def quarantine(self, rows: int) -> None: ...


class Drainer:
    def __init__(
        self,
        queue: ReadingQueue,
        forwarder: Forwarder,
        gateway: GatewayInfo,
        *,
        batch_size: int = 100,
        backoff: Backoff | None = None,
        permanent_retry: float = 600.0,
        local_tz: tzinfo | None = None,
        test_data: bool = False,
        clock_limit: timedelta = DEFAULT_LIMIT,
        retention_seconds: float = 7 * 86400,
        on_delivered: Delivered | None = None,
        heartbeat: Callable[[], None] | None = None,
        send_timeout: float = 300.0,
        may_send: Callable[[], bool] | None = None,
        may_purge: Callable[[], bool] | None = None,
        observer: DrainObserver | None = None,
    ) -> None:
        self.queue = queue
        self.forwarder = forwarder
        self.gateway = gateway
        self.batch_size = batch_size
        self.backoff = backoff or Backoff()
        self.permanent_retry = permanent_retry
        self.local_tz = local_tz
        self.test_data = test_data
        self.clock_limit = clock_limit  # config `gateway.clock_implausible_seconds` (gateway.clockcheck)
        self.retention_seconds = retention_seconds
        self.on_delivered = on_delivered
        self.heartbeat = heartbeat
        self.send_timeout = send_timeout
        # gateway.clock: nothing is sent or purged while the wall clock is implausible.
        self.may_send = may_send or (lambda: True)
        self.may_purge = may_purge or (lambda: True)
        self.stats = DrainStats()
        self.observer = observer
        self._failures = 0
        self._summary: dict[str, int] = {}  # delivered by kind since the last `delivered` line
        self._summary_batches = 0
        self._summary_at = -SUMMARY_EVERY  # monotonic; the first delivery is reported at once

    def beat(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat()

    async def run(self) -> None:
        """Forever: connect, drain, and on failure back off and reconnect. Cancel to stop."""
        next_purge = 0.0
        while True:
            self.beat()
            try:
                async with self.forwarder:
                    log.info("forwarder_connected", forwarder=self.forwarder.name)
                    if self.observer is not None:
                        self.observer.connected()
                    while True:
                        self.beat()
                        if time.monotonic() >= next_purge and self.may_purge():
                            purged = await self.queue.purge_delivered(self.retention_seconds)
                            if purged:
                                log.info("delivered_purged", rows=purged)
                            withheld = await self.queue.purge_withheld(self.retention_seconds)
                            if withheld:
                                log.info("withheld_purged", rows=withheld)
                            dropped = await self.queue.purge_rejects(self.retention_seconds)
                            if dropped:
                                log.info("rejects_purged", rows=dropped)
                            next_purge = time.monotonic() + 3600
                        if not self.may_send():
                            await self._sleep_beating(1.0)  # the clock is wrong: keep, do not stamp
                            continue
                        if not await self.drain_once():
                            await self._idle()
            except RetryableError as exc:
                delay = self.backoff.delay(self._failures)
                self._failures += 1
                log.warning(
                    "forwarder_unavailable", forwarder=self.forwarder.name, error=str(exc), retry_in=round(delay, 2)
                )
                if self.observer is not None:
                    self.observer.backing_off(str(exc), max(delay, exc.retry_after or 0))
                await self._sleep_beating(max(delay, exc.retry_after or 0))
            except PermanentError as exc:
                log.error(
                    "forwarder_refused",
                    forwarder=self.forwarder.name,
                    error=str(exc),
                    retry_in=self.permanent_retry,
                    hint="fix the configuration; readings stay queued",
                )
                if self.observer is not None:
                    self.observer.refused(str(exc), self.permanent_retry)
                await self._sleep_beating(self.permanent_retry)
            except Exception as exc:  # a full disk or a bug must not stop device sessions: log, wait, go on
                delay = self.backoff.delay(self._failures)
                self._failures += 1
                log.error("drainer_failed", error=type(exc).__name__, detail=str(exc)[:200], retry_in=round(delay, 2))
                if self.observer is not None:
                    self.observer.backing_off(f"internal error ({type(exc).__name__})", delay)
                await self._sleep_beating(delay)

    async def _idle(self) -> None:
        """Wait for new readings, or a second for released ones to come due."""
        self._summarise()
        event = self.queue.new_data
        # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that lands as the event is set,
        # and the supervisor's shutdown then waits for the drainer forever.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await event.wait()
        event.clear()

    async def _sleep_beating(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.beat()
            await asyncio.sleep(min(left, 1.0))

    async def _send(self, batch: list[Outgoing]) -> SendReport:
        """The forwarder's send, bounded in time and beating while it waits.

        A slow backend (token refresh, then a slow POST) is not a hung gateway, so the watchdog keeps being
        fed; a send that never ends is, so it is cut off at `send_timeout` and its batch retried later.
        """
        ticker = asyncio.create_task(self._tick(), name="drainer-heartbeat")
        try:
            async with asyncio.timeout(self.send_timeout):
                return await self.forwarder.send(batch)
        except TimeoutError:
            raise RetryableError(f"send did not finish within {self.send_timeout:g} s") from None
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

    async def _tick(self) -> None:
        while True:
            self.beat()
            await asyncio.sleep(1.0)

    async def drain_once(self) -> int:
        """One batch through the forwarder; returns how many rows it handled (0: nothing due).

        Stop-and-wait on purpose. Overlapping the stages (lease + map batch N+1 while N is sent, N's ack
        commit during N+1's send, up to 3 batches in flight) did not pay off on 2 cores: 5-16% slower in
        interleaved A/B runs, within noise in the full benches. The drain is CPU-bound on the event loop
        thread (FHIR mapping is about half of it), so there is little idle time to fill, and SQLite's
        worker threads then fight the busy loop for the GIL.
        """
        if await self.queue.bindings_changed():
            await self.queue.reload_bindings()
            moved = await self.queue.assign_unassigned()
            if moved:
                log.info("unassigned_released", rows=moved)
        leased, broken = await self.queue.lease(min(self.batch_size, self.forwarder.window))
        if broken:
            await self.queue.set_state(dict(broken), State.QUARANTINED)
            self.stats.quarantined += len(broken)
            if self.observer is not None:
                self.observer.quarantine(len(broken))
            log.error("rows_quarantined", rows=len(broken), reason="cannot open payload")
        if not leased:
            return len(broken)
        batch, by_id = await self._map(leased)
        if not batch:
            return len(leased)
        started = time.monotonic()
        try:
            report = await self._send(batch)
        except (RetryableError, PermanentError) as exc:
            delay = exc.retry_after if isinstance(exc, RetryableError) and exc.retry_after else None
            await self.queue.release({o.item_id: delay or self.backoff.delay(by_id[o.item_id].attempts) for o in batch})
            self.stats.retried += len(batch)
            raise
        except Exception:  # a forwarder bug or an unexpected OS error: the rows back off too, never a tight loop
            await self.queue.release({o.item_id: self.backoff.delay(by_id[o.item_id].attempts) for o in batch})
            self.stats.retried += len(batch)
            raise
        confirmed = [o.item_id for o in batch if o.item_id in report.confirmed]
        await self.queue.ack(confirmed)
        if report.rejected:
            await self.queue.set_state(dict(report.rejected), State.QUARANTINED, echoed=report.echoed)
            self.stats.rejected += len(report.rejected)
            log.error("backend_rejected", rows=len(report.rejected), reasons=sorted(set(report.rejected.values()))[:3])
        rest = {
            o.item_id: report.retry_after or self.backoff.delay(by_id[o.item_id].attempts)
            for o in batch
            if o.item_id not in report.confirmed and o.item_id not in report.rejected
        }
        if rest:
            await self.queue.release(rest)
            self.stats.retried += len(rest)
        self._failures = 0
        for item_id in confirmed:
            reading = by_id[item_id].reading
            self.stats.delivered += 1
            self.stats.by_kind[reading.kind.value] = self.stats.by_kind.get(reading.kind.value, 0) + 1
            if self.on_delivered:
                self.on_delivered(reading, self.forwarder.name)
        kinds = [by_id[i].reading.kind.value for i in confirmed]
        if self.observer is not None:
            self.observer.sent(time.monotonic() - started, kinds, len(report.rejected))
        if confirmed:
            for kind in kinds:
                self._summary[kind] = self._summary.get(kind, 0) + 1
            self._summary_batches += 1
            self._summarise()
        return len(leased)

    def _summarise(self) -> None:
        """`delivered` at info level at most once a minute: counts by kind, never what was in them."""
        if not self._summary or time.monotonic() - self._summary_at < SUMMARY_EVERY:
            return
        log.info(
            "delivered",
            forwarder=self.forwarder.name,
            rows=sum(self._summary.values()),
            batches=self._summary_batches,
            kinds=",".join(f"{k}={n}" for k, n in sorted(self._summary.items())),
        )
        self._summary.clear()
        self._summary_batches = 0
        self._summary_at = time.monotonic()

    async def _map(self, leased: list[Leased]) -> tuple[list[Outgoing], dict[int, Leased]]:
        batch: list[Outgoing] = []
        by_id: dict[int, Leased] = {}
        unbound: dict[int, str | None] = {}
        unmappable: dict[int, str | None] = {}
        for item in leased:
            binding = self.queue.binding_for(item.reading)
            if binding is None:
                unbound[item.item_id] = "no patient binding for this device slot"
                continue
            try:
                mapped = map_reading(
                    item.reading,
                    binding.patient,
                    self.gateway,
                    local_tz=self.local_tz,
                    test_data=self.test_data,
                    clock_limit=self.clock_limit,
                )
            except MappingError as exc:
                unmappable[item.item_id] = f"mapping: {exc}"
                continue
            except Exception as exc:  # a bug or a damaged reading: this row only, the rest flow
                unmappable[item.item_id] = f"mapping: {type(exc).__name__}"
                continue
            by_id[item.item_id] = item
            batch.append(Outgoing(item.item_id, mapped.identifier, mapped.bundle, mapped.body, mapped.entries))
        if unbound:
            self.stats.unassigned += len(unbound)
            await self.queue.set_state(unbound, State.UNASSIGNED)
        if unmappable:
            self.stats.quarantined += len(unmappable)
            if self.observer is not None:
                self.observer.quarantine(len(unmappable))
            await self.queue.set_state(unmappable, State.QUARANTINED)
            log.error("rows_quarantined", rows=len(unmappable), reason="cannot map to FHIR")
        return batch, by_id
