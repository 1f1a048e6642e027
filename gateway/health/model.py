"""What the daemon knows about itself, in one place, with no PHI in it.

Everything here is a count, a time, a state or a sentence. Devices appear by their configured names only:
never an address, serial number or patient reference, so the model can go to a viewer, a metrics scrape
or a snapshot file as it is.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gateway.logging import redact_text

__all__ = ["LATENCY_BUCKETS", "DeviceHealth", "ForwarderState", "HealthModel", "LatencyHistogram"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ForwarderState(StrEnum):
    STARTING = "starting"
    READY = "ready"  # opened; a lazy forwarder (MQTT) connects at its first send
    CONNECTED = "connected"  # the backend confirmed a send since the last failure
    BACKING_OFF = "backing off"
    REFUSED = "refused"


@dataclass(slots=True)
class LatencyHistogram:
    """Send round trips in seconds, in fixed buckets (cumulative counts are made when exported)."""

    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0
    n: int = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.buckets, seconds)] += 1
        self.total += seconds
        self.n += 1


@dataclass(slots=True)
class DeviceHealth:
    name: str  # the configured name: the only device label that leaves the model
    driver: str
    last_seen: float | None = None  # wall clock of the last session that reached the device
    last_reading: float | None = None  # wall clock the newest reading was taken (device clock corrected)
    battery: int | None = None  # percent
    clock_offset: float | None = None  # seconds the device clock was ahead of ours
    session_errors: int = 0
    last_error: str | None = None  # a type name or a sentence, never device data
    slots: dict[str, bool] = field(default_factory=dict)  # user slot ("None" if none) -> bound to a patient
    readings: int = 0
    rejected: int = 0
    clock_flagged: int = 0  # readings since start whose device clock was implausible (gateway.clockcheck)
    clock_problem: str | None = None  # what was wrong with the latest judged clock (no PHI); None: plausible
    quirks: list[str] = field(default_factory=list)  # what a quirks row changes for this device (BLE)
    # Advertisement listeners only (drivers/ble/adv_scale.py): "passive", or "active-fallback" while the BLE
    # stack refuses a passive scan, with the stack's reason; None for connected devices and until known.
    scan_mode: str | None = None
    scan_reason: str | None = None

    @property
    def bound(self) -> str | None:
        if not self.slots:
            return None
        n = sum(self.slots.values())
        return "yes" if n == len(self.slots) else "no" if n == 0 else "partly"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "driver": self.driver,
            "last_seen": self.last_seen,
            "last_reading": self.last_reading,
            "battery_percent": self.battery,
            "clock_offset_seconds": self.clock_offset,
            "session_errors": self.session_errors,
            "last_error": self.last_error,
            "bound": self.bound,  # "yes", "no", "partly" (some user slots), None until a reading came
            "readings": self.readings,
            "rejected": self.rejected,
            "clock_flagged_readings": self.clock_flagged,
            "clock_problem": self.clock_problem,
            "quirks": list(self.quirks),
            "scan": None if self.scan_mode is None else {"mode": self.scan_mode, "reason": self.scan_reason},
        }


class HealthModel:
    """Mutated only on the daemon's event loop; readers take `as_dict()` or read attributes."""

    def __init__(
        self,
        *,
        version: str,
        gateway_id: str,
        forwarder: str,
        target: str,
        devices: Iterable[tuple[str, str]] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.clock = clock
        self.version = version
        self.gateway_id = gateway_id
        self.pid = os.getpid()
        self.started_at = clock()
        self.ready_at: float | None = None
        self.forwarder = forwarder
        self.target = target
        self.forwarder_state = ForwarderState.STARTING
        self.forwarder_error: str | None = None
        self.forwarder_since = self.started_at
        self.retry_at: float | None = None
        self.last_success: float | None = None
        # HTTPS: entries per Bundle, as configured and as in use (lowered after the server refused a size).
        self.max_entries_configured: int | None = None
        self.max_entries: int | None = None
        self.counts: dict[str, int] = {}
        self.oldest_pending: float | None = None  # created_at of the oldest pending row
        self.rejected_total = 0  # bad frames kept for review (from the queue)
        self.received: dict[str, int] = {}  # by reading kind, since start
        self.delivered: dict[str, int] = {}
        self.quarantined = 0
        self.backend_rejected = 0
        self.rejected_by_device: dict[str, int] = {}  # by device name
        self.latency = LatencyHistogram()
        self.disk_free_fraction: float | None = None
        self.devices: dict[str, DeviceHealth] = {name: DeviceHealth(name, driver) for name, driver in devices}

    # ------------------------------------------------------------ forwarder (called by the drainer)

    def _forwarder(self, state: ForwarderState, error: str | None, retry_in: float | None = None) -> None:
        now = self.clock()
        if state != self.forwarder_state:
            self.forwarder_since = now
        self.forwarder_state = state
        self.forwarder_error = redact_text(error)[:300] if error else None
        self.retry_at = now + retry_in if retry_in is not None else None

    def connected(self) -> None:
        """The forwarder opened (the drainer's `forwarder_connected`); proven connected at the first send."""
        self._forwarder(ForwarderState.READY, None)

    def backing_off(self, error: str, retry_in: float) -> None:
        self._forwarder(ForwarderState.BACKING_OFF, error, retry_in)

    def refused(self, error: str, retry_in: float) -> None:
        self._forwarder(ForwarderState.REFUSED, error, retry_in)

    def sent(self, seconds: float, delivered_kinds: Iterable[str], rejected: int) -> None:
        self.latency.observe(seconds)
        kinds = list(delivered_kinds)
        for kind in kinds:
            self.delivered[kind] = self.delivered.get(kind, 0) + 1
        if kinds:
            self.last_success = self.clock()
            self._forwarder(ForwarderState.CONNECTED, None)
        self.backend_rejected += rejected
        self.quarantined += rejected

    def bundle_limit(self, configured: int | None, effective: int | None) -> None:
        """The HTTPS forwarder's Bundle size: `configured` (None: no cap) and the one in use."""
        self.max_entries_configured = configured
        self.max_entries = effective

    def quarantine(self, rows: int) -> None:
        self.quarantined += rows

    # ------------------------------------------------------------ devices (called by device contexts)

    def device(self, name: str, driver: str = "?") -> DeviceHealth:
        dev = self.devices.get(name)
        if dev is None:
            dev = self.devices[name] = DeviceHealth(name, driver)
        return dev

    def submitted(
        self,
        name: str,
        kinds: Iterable[str],
        taken_at: float | None,
        clock_offset: float | None,
        bound: dict[str, bool] | None = None,
    ) -> None:
        dev = self.device(name)
        dev.last_seen = self.clock()
        for kind in kinds:
            self.received[kind] = self.received.get(kind, 0) + 1
            dev.readings += 1
        if taken_at is not None and (dev.last_reading is None or taken_at > dev.last_reading):
            dev.last_reading = taken_at
        if clock_offset is not None:
            dev.clock_offset = clock_offset
        dev.slots.update(bound or {})

    def seen(self, name: str) -> None:
        self.device(name).last_seen = self.clock()

    def battery(self, name: str, percent: int) -> None:
        self.device(name).battery = percent

    def clock_judged(self, name: str, flagged: int, problem: str | None) -> None:
        """A batch of readings with device times was judged: `flagged` were implausible; `problem` is the
        latest batch's finding (None once the clock looks right again, which ends the alarm)."""
        dev = self.device(name)
        dev.clock_flagged += flagged
        dev.clock_problem = problem

    def clock_checked(self, name: str, offset: float | None) -> None:
        if offset is not None:
            self.device(name).clock_offset = offset

    def quirks(self, name: str, effects: list[str]) -> None:
        self.device(name).quirks = list(effects)

    def scan(self, name: str, mode: str, reason: str | None = None) -> None:
        """How an advertisement listener scans: "passive", or "active-fallback" with the stack's refusal."""
        dev = self.device(name)
        dev.scan_mode = mode
        dev.scan_reason = None if reason is None else redact_text(reason)[:200]

    def input_rejected(self, name: str) -> None:
        self.device(name).rejected += 1
        self.rejected_by_device[name] = self.rejected_by_device.get(name, 0) + 1

    def session_failed(self, name: str, error: str) -> None:
        dev = self.device(name)
        dev.session_errors += 1
        dev.last_error = redact_text(error)[:200]

    # ------------------------------------------------------------ queue probe (called by the daemon)

    def queue_probed(self, counts: dict[str, int], oldest_pending: float | None, rejected_total: int) -> None:
        self.counts = dict(counts)
        self.oldest_pending = oldest_pending
        self.rejected_total = rejected_total

    def oldest_pending_age(self) -> float | None:
        return None if self.oldest_pending is None else max(0.0, self.clock() - self.oldest_pending)

    def status_line(self) -> str:
        """One line for systemd's STATUS= (`systemctl status`): what an operator checks first."""
        pending = self.counts.get("pending", 0)
        state = self.forwarder_state.value
        if self.forwarder_state is ForwarderState.CONNECTED:
            head = f"forwarding to {self.target}"
        elif self.forwarder_state is ForwarderState.READY:
            head = f"ready to forward to {self.target}"
        else:
            head = f"{state}: {self.target}"
        return f"{head}; {pending} pending; {len(self.devices)} devices"

    def as_dict(self) -> dict[str, Any]:
        """The stable shape of `health.json` and `vitalgate status --json` (keys documented in README)."""
        return {
            "version": self.version,
            "gateway_id": self.gateway_id,
            "pid": self.pid,
            "started_at": self.started_at,
            "ready_at": self.ready_at,
            "forwarder": {
                "name": self.forwarder,
                "target": self.target,
                "state": self.forwarder_state.value,
                "since": self.forwarder_since,
                "last_error": self.forwarder_error,
                "retry_at": self.retry_at,
                "last_success": self.last_success,
                "max_entries": self.max_entries,
                "max_entries_configured": self.max_entries_configured,
            },
            "queue": {
                "counts": self.counts,
                "oldest_pending_created": self.oldest_pending,
                "oldest_pending_age_seconds": self.oldest_pending_age(),
                "rejected_input_total": self.rejected_total,
            },
            "since_start": {
                "received": self.received,
                "delivered": self.delivered,
                "quarantined": self.quarantined,
                "backend_rejected": self.backend_rejected,
                "input_rejected": self.rejected_by_device,
            },
            "disk_free_fraction": self.disk_free_fraction,
            "devices": [d.as_dict() for d in self.devices.values()],
        }
