"""Alarms derived from the health model: each a sentence that says what is wrong and what to do.

Pure over the model and a few facts the daemon gathers (disk space, key file age, certificate expiry);
the board (gateway.alarms) keeps them and writes `alarms.json`. Codes are stable for scripts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.alarms import AlarmBoard, Severity
from gateway.health.model import ForwarderState, HealthModel

__all__ = ["Facts", "Thresholds", "evaluate"]

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Thresholds:
    """`[alarms]` in the config (documented in config/vitalgate.example.toml)."""

    backlog_hours: float = 6.0
    device_silent_days: float = 3.0
    disk_free_percent: float = 10.0
    key_rotation_days: float = 365.0
    credential_expiry_days: float = 30.0


@dataclass(frozen=True, slots=True)
class Facts:
    key_age_days: float | None = None
    credentials: Mapping[str, float] | None = None  # label (e.g. "output.mqtt.client_cert") -> not-after, epoch


def _ago(seconds: float) -> str:
    if seconds >= 2 * DAY:
        return f"{seconds / DAY:.0f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} hours"
    return f"{max(seconds, 0) / 60:.0f} minutes"


def evaluate(model: HealthModel, board: AlarmBoard, th: Thresholds, facts: Facts) -> None:
    now = model.clock()
    if model.forwarder_state is ForwarderState.REFUSED:
        board.raise_(
            "forwarder_refused",
            f"The backend ({model.target}) refuses this gateway: {model.forwarder_error or 'no reason given'}. "
            "Fix the credentials, certificates or permissions in [output]; readings stay queued meanwhile.",
            Severity.CRITICAL,
        )
    else:
        board.clear("forwarder_refused")

    age = model.oldest_pending_age()
    if age is not None and age > th.backlog_hours * 3600:
        board.raise_(
            "backlog_old",
            f"The oldest reading waiting to be sent is {_ago(age)} old (limit {th.backlog_hours:g} hours). "
            f"Check the network and the backend ({model.target}); nothing is lost, but care teams see it late.",
            Severity.WARNING,
        )
    else:
        board.clear("backlog_old")

    limit = th.device_silent_days * DAY
    for dev in model.devices.values():
        code = f"device_silent:{dev.name}"
        quiet = now - (dev.last_seen if dev.last_seen is not None else model.started_at)
        if quiet > limit:
            board.raise_(
                code,
                f"Device '{dev.name}' has not been heard from for {_ago(quiet)}. Check that it is switched on, "
                "has battery and is within reach of the gateway, and that the patient still uses it.",
            )
        else:
            board.clear(code)

    for dev in model.devices.values():
        code = f"device_clock:{dev.name}"
        if dev.clock_problem is not None:
            board.raise_(
                code,
                f"Device '{dev.name}' has an implausible clock ({dev.clock_problem}); {dev.clock_flagged} readings "
                "since start are flagged in FHIR (time corrected or marked untrustworthy). Set the device's clock "
                "(see its manual; the gateway sets it itself where the device lets it).",
            )
        else:
            board.clear(code)

    for dev in model.devices.values():
        code = f"scan_fallback:{dev.name}"
        if dev.scan_mode == "active-fallback":
            board.raise_(
                code,
                f"Scale '{dev.name}' listens with an active scan: the Bluetooth stack refused a passive one (start "
                "bluetoothd with --experimental, BlueZ >= 5.56) — readings still arrive, but the gateway sends "
                "scan requests.",
                Severity.WARNING,
            )
        else:
            board.clear(code)

    if model.disk_free_fraction is not None and model.disk_free_fraction * 100 < th.disk_free_percent:
        board.raise_(
            "disk_low",
            f"Only {model.disk_free_fraction * 100:.1f}% of the disk holding the queue is free. Free space or "
            "check why readings are not leaving; when it is full, new readings cannot be stored.",
            Severity.CRITICAL,
        )
    else:
        board.clear("disk_low")

    if facts.key_age_days is not None and facts.key_age_days > th.key_rotation_days:
        board.raise_(
            "key_rotation_due",
            f"The data key is {facts.key_age_days:.0f} days old (policy {th.key_rotation_days:g} days). "
            "Run `vitalgate keys rotate`, then reload the daemon (systemctl reload vitalgate).",
        )
    else:
        board.clear("key_rotation_due")

    active = {a.code for a in board.active() if a.code.startswith("credential_expiring:")}
    for label, not_after in (facts.credentials or {}).items():
        code = f"credential_expiring:{label}"
        left = not_after - now
        if left < th.credential_expiry_days * DAY:
            when = f"expired {_ago(-left)} ago" if left < 0 else f"expires in {_ago(left)}"
            board.raise_(
                code,
                f"The certificate in {label} {when}. Install a renewed one before it stops the gateway "
                "from connecting.",
                Severity.CRITICAL if left < 0 else Severity.WARNING,
            )
            active.discard(code)
    for code in active:
        board.clear(code)
