"""What `vitalgate status` prints: the daemon's health (from its snapshot) first, then the queue's counts.

The text is for a person at a terminal; `--json` gives the same facts under stable keys (README,
"Status and JSON output"). Both come from one document built here.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.alarms import SNAPSHOT_NAME as ALARMS_SNAPSHOT
from gateway.alarms import read_snapshot as read_alarms
from gateway.health import snapshot

__all__ = ["ago", "bundle_size_text", "clock_flagged_text", "render_status", "scan_text", "status_document", "when"]


def status_document(
    state_dir: Path,
    counts: dict[str, int],
    quarantined: list[tuple[int, str]],
    rejected: int,
    now: float | None = None,
) -> dict[str, Any]:
    health = snapshot.read(state_dir / snapshot.SNAPSHOT_NAME)
    state, detail = snapshot.daemon_state(health, now)
    return {
        "daemon": {"state": state, "detail": detail},
        "health": health,
        "alarms": [asdict(a) for a in read_alarms(state_dir / ALARMS_SNAPSHOT)] if health is not None else [],
        "queue": {
            "counts": counts,
            "rejected_input": rejected,
            "quarantined": [{"id": i, "reason": r} for i, r in quarantined],
        },
    }


def when(t: float | None) -> str:
    return "never" if t is None else f"{datetime.fromtimestamp(t, UTC):%Y-%m-%d %H:%M:%S}Z"


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(max(seconds, 0))
    if s >= 2 * 86400:
        return f"{s // 86400} d"
    if s >= 2 * 3600:
        return f"{s // 3600} h"
    if s >= 120:
        return f"{s // 60} min"
    return f"{s} s"


def bundle_size_text(forwarder: dict[str, Any]) -> tuple[str, bool] | None:
    """The HTTPS Bundle size sentence (shared by `status` and the console) and whether the server lowered
    it below what was configured; None for forwarders without a Bundle size."""
    size, configured = forwarder.get("max_entries"), forwarder.get("max_entries_configured")
    if size is None:
        return None
    if size != configured:
        was = "no cap" if configured is None else f"{configured} configured"
        return (
            f"at most {size} entries per Bundle ({was}): the FHIR server refused a larger one; "
            "set output.https.max_entries to match it",
            True,
        )
    return f"at most {size} entries per Bundle (output.https.max_entries)", False


def clock_flagged_text(device: dict[str, Any]) -> str | None:
    """A device's readings flagged for an implausible clock, as `status` and the console say it; None: none."""
    flagged = device.get("clock_flagged_readings") or 0
    return f"{flagged} readings: set the device's clock" if flagged else None


def scan_text(device: dict[str, Any]) -> tuple[str, bool] | None:
    """An advertisement listener's scan, as `status` and the console say it, and whether it fell back to
    an active scan (a warning); None for connected devices and until the listener has scanned."""
    scan = device.get("scan")
    if not scan:
        return None
    if scan.get("mode") == "passive":
        return "passive (no scan requests)", False
    reason = f" ({scan['reason']})" if scan.get("reason") else ""
    return (
        f"active, fallback: the Bluetooth stack refused a passive scan{reason}; start bluetoothd with "
        "--experimental (BlueZ >= 5.56) and it listens passively again at its next cycle",
        True,
    )


def render_status(doc: dict[str, Any], now: float | None = None) -> str:
    try:
        return _render(doc, now)
    except (KeyError, TypeError, ValueError):  # a snapshot from another version: the facts we can be sure of
        h, doc = doc.get("health"), {**doc, "health": None}
        note = "" if h is None else f"\n{'':16} (health snapshot in an unexpected shape; see `status --json`)"
        return _render(doc, now).replace("\n", note + "\n", 1)


def _render(doc: dict[str, Any], now: float | None = None) -> str:
    now = time.time() if now is None else now
    lines = [f"{'daemon':16} {doc['daemon']['detail']}"]
    h = doc.get("health")
    if h is not None:
        f = h["forwarder"]
        lines.append(f"{'forwarder':16} {f['state']}: {f['name']} to {f['target']} (since {when(f['since'])})")
        if f.get("last_error"):
            lines.append(f"{'':16} last error: {f['last_error']}")
        last = f.get("last_success")
        lines.append(f"{'last delivery':16} {when(last)}" + (f" ({ago(now - last)} ago)" if last else ""))
        lines.append(f"{'oldest pending':16} {ago(h['queue'].get('oldest_pending_age_seconds'))}")
        bundle = bundle_size_text(f)
        if bundle is not None:
            lines.append(f"{'bundle size':16} {bundle[0]}")
    alarms = doc.get("alarms") or []
    lines.append(f"{'alarms':16} {len(alarms) or 'none'}")
    lines.extend(f"  [{a['severity']}] {a['sentence']} ({a['code']})" for a in alarms)
    if h is not None and h.get("devices"):
        head = f"{'DEVICE':20} {'LAST SEEN':10} {'BATTERY':>7} {'CLOCK':>8} {'BOUND':6} {'ERRORS':>6}"
        lines.append(f"{head} CLOCK FLAGGED")
        for d in h["devices"]:
            seen = ago(now - d["last_seen"]) if d.get("last_seen") else "never"
            battery = "-" if d.get("battery_percent") is None else f"{d['battery_percent']}%"
            clock = "-" if d.get("clock_offset_seconds") is None else f"{d['clock_offset_seconds']:+.0f} s"
            bound = d.get("bound") or "?"
            lines.append(
                f"  {d['name']:18} {seen:10} {battery:>7} {clock:>8} {bound:6} {d['session_errors']:>6} "
                + (clock_flagged_text(d) or "-")
            )
            if d.get("quirks"):
                lines.append(f"  {'':18} quirks: {'; '.join(d['quirks'])}")
            scan = scan_text(d)
            if scan is not None:
                lines.append(f"  {'':18} scan: {scan[0]}")
    q = doc["queue"]
    lines.append("queue:")
    lines.extend(f"  {state:12} {n}" for state, n in q["counts"].items())
    lines.append(f"  {'rejected input':12} {q['rejected_input']} frames kept for review")
    lines.extend(f"  quarantined #{item['id']}: {item['reason']}" for item in q["quarantined"][:20])
    return "\n".join(lines)
