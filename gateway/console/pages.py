"""Server-rendered HTML for the console: plain forms and tables, escaped everywhere, no inline script.

Pages work without JavaScript; `console.js` only refreshes the dashboard's health panel. Every form field
has a label, the navigation is a list of links, and the layout collapses to one column on a phone.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from html import escape
from typing import Any

from gateway.alarms import Alarm
from gateway.console.users import Role
from gateway.health.report import ago, bundle_size_text, clock_flagged_text, scan_text, when

__all__ = [
    "clock_flagged_cell",
    "csrf_field",
    "health_panel",
    "layout",
    "login_page",
    "message",
    "scan_cell",
    "table",
]


def e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def csrf_field(token: str) -> str:
    return f'<input type="hidden" name="csrf" value="{e(token)}">'


def message(text: str | None, kind: str = "error") -> str:
    if not text:
        return ""
    role = "alert" if kind == "error" else "status"
    return f'<p class="msg {e(kind)}" role="{role}">{e(text)}</p>'


_NAV = (
    ("/", "Dashboard", Role.VIEWER),
    ("/devices", "Devices", Role.VIEWER),
    ("/pair", "Pair a device", Role.OPERATOR),
    ("/quarantine", "Quarantine", Role.VIEWER),
    ("/audit", "Audit trail", Role.OPERATOR),
    ("/users", "Accounts", Role.ADMIN),
)


def layout(title: str, body: str, *, user: str | None = None, role: Role | None = None, csrf: str = "",
           active: str = "") -> str:  # fmt: skip
    nav = ""
    if user is not None and role is not None:
        links = "".join(
            f'<li><a href="{href}"{" aria-current=page" if href == active else ""}>{e(text)}</a></li>'
            for href, text, needed in _NAV
            if role.allows(needed)
        )
        nav = (
            f'<nav aria-label="Main"><ul>{links}</ul></nav>'
            f'<form class="logout" method="post" action="/logout">{csrf_field(csrf)}'
            f'<span>{e(user)} ({e(role.value)})</span> <button type="submit">Log out</button></form>'
        )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)} - VitalGate</title>"
        '<link rel="stylesheet" href="/static/console.css"><script src="/static/console.js" defer></script>'
        f'</head><body><header><a class="brand" href="/">VitalGate</a>{nav}</header>'
        f'<main id="main"><h1>{e(title)}</h1>{body}</main></body></html>'
    )


def login_page(token: str, error: str | None = None, name: str = "") -> str:
    body = (
        f"{message(error)}"
        f'<form method="post" action="/login" class="card login">{csrf_field(token)}'
        f'<label for="name">Account</label><input id="name" name="name" autocomplete="username" required '
        f'value="{e(name)}" autofocus>'
        '<label for="password">Password</label><input id="password" name="password" type="password" '
        'autocomplete="current-password" required>'
        '<label for="code">Code from the authenticator app</label><input id="code" name="code" '
        'inputmode="numeric" autocomplete="one-time-code" pattern="[0-9 ]{6,7}" required>'
        '<button type="submit">Log in</button></form>'
    )
    return layout("Log in", body)


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], caption: str) -> str:
    names = list(headers)
    head = "".join(f'<th scope="col">{e(h)}</th>' for h in names)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<div class="scroll"><table><caption>{e(caption)}</caption><thead><tr>{head}</tr></thead>' \
           f"<tbody>{body or f'<tr><td colspan={len(names)}>none</td></tr>'}</tbody></table></div>"  # fmt: skip


def health_panel(h: dict[str, Any], alarms: list[Alarm], now: float | None = None) -> str:
    """The dashboard's live part (also served alone as /fragment/health). Viewer-safe: no patient data."""
    now = time.time() if now is None else now
    f, q = h["forwarder"], h["queue"]
    classes = {"connected": "ok", "ready": "ok", "starting": "warn", "backing off": "warn", "refused": "bad"}
    state_class = classes.get(f["state"], "warn")
    last = f.get("last_success")
    retry = f.get("retry_at")
    forwarder_sub = f"{e(f['name'])} to {e(f['target'])}, since {e(when(f.get('since')))}" + (
        f"; next try in {e(ago(retry - now))}" if retry is not None else ""
    )
    counts = q["counts"]
    tiles = [
        ("Forwarder", f'<span class="{state_class}">{e(f["state"])}</span>', forwarder_sub),
        ("Last delivery", e(ago(now - last) + " ago") if last else "never", e(when(last))),
        ("Oldest pending", e(ago(q.get("oldest_pending_age_seconds"))), f"{q['counts'].get('pending', 0)} pending"),
        (
            "Delivered",
            str(q["counts"].get("delivered", 0)),
            f"{sum(h['since_start']['delivered'].values())} since start",
        ),
        ("Quarantined", str(q["counts"].get("quarantined", 0)), f"{q['rejected_input_total']} bad frames kept"),
        ("Unassigned", str(q["counts"].get("unassigned", 0)), "waiting for a binding"),
        ("Withheld", str(counts.get("withheld", 0)), "kept, never sent (control solution, sensor fault)"),
    ]
    bundle = bundle_size_text(f)
    if bundle is not None:  # HTTPS only: entries per Bundle, lowered when the FHIR server refused a size
        sentence, lowered = bundle
        size = f'<span class="warn">{f["max_entries"]}</span>' if lowered else str(f["max_entries"])
        tiles.append(("Bundle size", size, e(sentence)))
    tiles_html = "".join(
        f'<div class="tile"><h2>{e(t)}</h2><p class="big" data-k="{e(t)}">{v}</p><p>{sub}</p></div>'
        for t, v, sub in tiles
    )
    err = f'<p class="msg error">Last error: {e(f["last_error"])}</p>' if f.get("last_error") else ""
    alarm_items = "".join(f'<li class="{e(a.severity.value)}">{e(a.sentence)}</li>' for a in alarms)
    alarm_html = f'<ul class="alarms">{alarm_items}</ul>' if alarms else '<p class="ok">No alarms.</p>'
    devices = table(
        ("Device", "Last seen", "Battery", "Clock offset", "Bound", "Session errors", "Clock flagged"),
        (
            (
                e(d["name"]),
                e(ago(now - d["last_seen"]) + " ago") if d.get("last_seen") else "never",
                "-" if d.get("battery_percent") is None else f"{d['battery_percent']}%",
                "-" if d.get("clock_offset_seconds") is None else f"{d['clock_offset_seconds']:+.0f} s",
                d.get("bound") or "not yet known",
                str(d["session_errors"]),
                clock_flagged_cell(d),
            )
            for d in h["devices"]
        ),
        "Configured devices",
    )
    up = ago(now - h["started_at"])
    disk = h.get("disk_free_fraction")
    disk_text = "" if disk is None else f", {disk * 100:.0f}% of the queue's disk free"
    return (
        f'<section aria-labelledby="alarms-h"><h2 id="alarms-h">Alarms</h2>{alarm_html}</section>'
        f'<div class="tiles">{tiles_html}</div>{err}{devices}'
        f'<p class="small">Gateway {e(h["gateway_id"])}, version {e(h["version"])}, up {e(up)}{e(disk_text)}; '
        f"updated {e(when(now))}</p>"
    )


def clock_flagged_cell(d: dict[str, Any]) -> str:
    """Readings flagged for an implausible device clock (as `status` says it), with the latest finding."""
    text = clock_flagged_text(d)
    if text is None:
        return "-"
    problem = f" ({e(d['clock_problem'])})" if d.get("clock_problem") else ""
    return f'<span class="warn">{e(text)}</span>{problem}'


def scan_cell(d: dict[str, Any]) -> str:
    """An advertisement listener's scan (as `status` says it): a fallback to an active scan is a warning."""
    text = scan_text(d)
    if text is None:
        return "-"
    sentence, fallback = text
    return f'<span class="warn">{e(sentence)}</span>' if fallback else e(sentence)
