"""The console's pages: dashboard, devices (pair, bind, unbind), quarantine, audit trail, accounts.

Roles decide what a page shows, not only what it allows: a viewer sees health and counts with configured
device names only; patient references and device identifiers appear for operators and admins. Every
change is written to the audit trail; a bad input gets a message on the page and an audit entry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from gateway.console import pages
from gateway.console.pages import csrf_field, e, message, table
from gateway.console.users import Role
from gateway.crypto import DecryptError
from gateway.errors import ConfigError
from gateway.health.report import when

if TYPE_CHECKING:
    from gateway.console.app import Console, Session

__all__ = ["add_routes", "patient_reference", "user_slot"]

log = structlog.get_logger(__name__)


def patient_reference(text: str) -> str:
    """The CLI's patient validation (the FHIR mapping's own rule), so both surfaces accept the same input."""
    from gateway.patients import binding_patient

    return binding_patient(text.strip(), source="<console>", key="patient")


def user_slot(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or not 0 <= int(text) <= 255:
        raise ConfigError("<console>", "user slot", "a user slot is a number from 0 to 255, or empty")
    return int(text)


def add_routes(app: web.Application, console: Console) -> None:
    from gateway.console.app import SESSION_KEY

    def page(needed: Role, fn: Callable[[web.Request, Session], Awaitable[web.StreamResponse]]) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            s: Session = request[SESSION_KEY]
            if not s.role.allows(needed):
                await console.audit(s.user, "console-refused", f"{request.method} {request.path[:40]} needs {needed}")
                return render(s, "Not allowed", message(f"Your role ({s.role.value}) may not do this; it needs the "
                                                        f"{needed.value} role."), status=403)  # fmt: skip
            return await fn(request, s)

        return handler

    def render(s: Session, title: str, body: str, *, active: str = "", status: int = 200) -> web.Response:
        html = pages.layout(title, body, user=s.user, role=s.role, csrf=s.csrf, active=active)
        return web.Response(text=html, content_type="text/html", status=status)

    gw = console.gw

    def panel() -> str:
        return pages.health_panel(gw.model.as_dict(), gw.alarms.active())

    async def dashboard(request: web.Request, s: Session) -> web.StreamResponse:
        return render(s, "Dashboard", f'<div id="health" data-refresh="/fragment/health">{panel()}</div>', active="/")

    async def fragment(request: web.Request, s: Session) -> web.StreamResponse:
        return web.Response(text=panel(), content_type="text/html")

    async def devices(request: web.Request, s: Session, note: str = "", error: str = "") -> web.StreamResponse:
        body = message(note, "ok") + message(error)
        h = gw.model.as_dict()
        body += table(
            ("Device", "Driver", "Last seen", "Last reading", "Battery", "Clock offset", "Bound", "Readings",
             "Rejected", "Errors", "Clock flagged", "Scan"),
            (
                (
                    e(d["name"]), e(d["driver"]),
                    e(when(d["last_seen"])) if d["last_seen"] else "never",
                    e(when(d["last_reading"])) if d["last_reading"] else "-",
                    "-" if d["battery_percent"] is None else f"{d['battery_percent']}%",
                    "-" if d["clock_offset_seconds"] is None else f"{d['clock_offset_seconds']:+.0f} s",
                    d["bound"] or "not yet known",
                    str(d["readings"]), str(d["rejected"]),
                    f"{d['session_errors']}" + (f" ({e(d['last_error'])})" if d["last_error"] else ""),
                    pages.clock_flagged_cell(d),
                    pages.scan_cell(d),
                )
                for d in h["devices"]
            ),
            "Configured devices",
        )  # fmt: skip
        if s.role.allows(Role.OPERATOR) and gw.queue is not None:
            slots = await gw.queue.devices()
            bindings = await gw.queue.reload_bindings()
            await console.audit(s.user, "console-devices", f"{len(slots)} slots listed")
            from gateway.queue import identity_selectors
            from gateway.reading import DeviceIdentity

            rows = []
            for d in slots:
                ident = d["system_id"] or d["serial_number"] or d["address"] or d["key"]
                names = identity_selectors(DeviceIdentity(d["driver"], address=d["address"],
                                                          serial_number=d["serial_number"], system_id=d["system_id"],
                                                          manufacturer=d["manufacturer"]))  # fmt: skip
                b = next((b for b in bindings if b.device in names and b.user_slot == d["user"]), None)
                action = ""
                if b is not None:
                    action = (f'<form method="post" action="/unbind">{csrf_field(s.csrf)}'
                              f'<input type="hidden" name="device" value="{e(b.device)}">'
                              f'<input type="hidden" name="user" value="{e(b.user_slot)}">'
                              '<button type="submit">Unbind</button></form>')  # fmt: skip
                rows.append((e(ident), e("-" if d["user"] is None else d["user"]), e(d["model"] or d["driver"]),
                             str(d["readings"]), e(when(d["last_seen"])),
                             e(b.patient) if b else "(unassigned)", action))  # fmt: skip
            body += table(("Identifier", "User", "Model", "Readings", "Last seen", "Patient", ""), rows,
                          "Device slots seen, with their patient (operators only)")  # fmt: skip
            body += _bind_form(s.csrf, "", "")
        return render(s, "Devices", body, active="/devices")

    async def bind(request: web.Request, s: Session) -> web.StreamResponse:
        form = await request.post()
        device = str(form.get("device", "")).strip()
        try:
            if not device:
                raise ConfigError("<console>", "device", "name the device (address, serial number or System ID)")
            patient = patient_reference(str(form.get("patient", "")))
            slot = user_slot(str(form.get("user", "")))
        except ConfigError as exc:
            await console.audit(s.user, "console-bind-refused", f"invalid input: {exc.key}")
            return await devices(request, s, error=f"Not bound: {exc.problem}.")
        assert gw.queue is not None
        await gw.queue.bind(device, slot, patient)
        await console.audit(s.user, "console-bind", f"binding {gw.queue.reference_tag(device, slot)}")
        return await devices(request, s, note="Bound; its readings now flow to the backend.")

    async def unbind(request: web.Request, s: Session) -> web.StreamResponse:
        form = await request.post()
        device = str(form.get("device", ""))
        try:
            slot = user_slot(str(form.get("user", "")))
        except ConfigError as exc:
            return await devices(request, s, error=exc.problem)
        assert gw.queue is not None
        removed = await gw.queue.unbind(device, slot)
        await console.audit(s.user, "console-unbind", f"binding {gw.queue.reference_tag(device, slot)}")
        return await devices(
            request, s, note="Unbound." if removed else "", error="" if removed else "No such binding."
        )

    async def quarantine(
        request: web.Request, s: Session, note: str = "", error: str = "", revealed: str = ""
    ) -> web.StreamResponse:
        assert gw.queue is not None
        rows = await gw.queue.quarantined()
        sealed = await gw.queue.sealed_echoes()
        body = message(note, "ok") + message(error) + f"<p>{len(rows)} readings are set aside for review.</p>"
        if revealed:
            body += f'<pre class="revealed" aria-label="What the server said">{e(revealed)}</pre>'
        if s.role.allows(Role.OPERATOR):

            def reveal_form(i: int) -> str:
                if i not in sealed:
                    return ""
                return (
                    f'<form method="post" action="/quarantine/reveal">{csrf_field(s.csrf)}'
                    f'<input type="hidden" name="id" value="{i}"><button type="submit" aria-label="Show what the '
                    f'server said about row {i} (recorded in the audit trail)">Show server text</button></form>'
                )

            body += table(
                ("Row", "Reason", "", ""),
                (
                    (f"#{i}", e(reason), f'<form method="post" action="/requeue">{csrf_field(s.csrf)}'
                     f'<input type="hidden" name="id" value="{i}"><button type="submit" aria-label="Send row {i} '
                     'again">Send again</button></form>', reveal_form(i))
                    for i, reason in rows[:200]
                ),
                "Quarantined readings",
            )  # fmt: skip
            if rows:
                body += (f'<form method="post" action="/requeue">{csrf_field(s.csrf)}'
                         '<input type="hidden" name="all" value="1">'
                         '<button type="submit">Send all again</button></form>')  # fmt: skip
        return render(s, "Quarantine", body, active="/quarantine")

    async def requeue(request: web.Request, s: Session) -> web.StreamResponse:
        form = await request.post()
        assert gw.queue is not None
        if form.get("all"):
            moved = await gw.queue.requeue(None)
            await console.audit(s.user, "console-requeue", "all")
            return await quarantine(request, s, note=f"{moved} readings queued again.")
        text = str(form.get("id", ""))
        if not (text.isascii() and text.isdigit() and len(text) <= 18):  # as in reveal: "²", past 64 bits
            return await quarantine(request, s, error="Pick a row to send again.")
        moved = await gw.queue.requeue([int(text)])
        await console.audit(s.user, "console-requeue", "1 rows")
        if not moved:
            return await quarantine(request, s, error=f"Row #{text} is not quarantined (already sent again?).")
        return await quarantine(request, s, note=f"Row #{text} queued again.")

    async def reveal(request: web.Request, s: Session) -> web.StreamResponse:
        """The sealed server text of one row (may name a patient): audited before it is shown."""
        form = await request.post()
        assert gw.queue is not None
        text = str(form.get("id", ""))
        if not (text.isascii() and text.isdigit() and len(text) <= 18):  # "²" is a digit; SQLite ints are 64-bit
            return await quarantine(request, s, error="Pick a row.")
        await console.audit(s.user, "console-quarantine-reveal", f"reveal #{int(text)}: server text shown")
        try:
            said = await gw.queue.reveal(int(text))
        except DecryptError:  # copied from another row or edited (gateway.echo binds it to its row)
            why = "does not open (edited, or moved from another row); the reason shown is all that is left."
            return await quarantine(request, s, error=f"Row #{int(text)}'s sealed server text {why}")
        if said is None:
            return await quarantine(request, s, error=f"Row #{int(text)} has no sealed server text.")
        return await quarantine(request, s, note=f"What the server said about row #{int(text)}:", revealed=said)

    async def audit(request: web.Request, s: Session) -> web.StreamResponse:
        assert gw.queue is not None
        trail = await gw.queue.audit_trail(200)
        await console.audit(s.user, "audit", "viewed")
        rows = ((e(f"{datetime.fromtimestamp(at, UTC):%Y-%m-%d %H:%M:%S}Z"), e(actor), e(action), e(detail))
                for at, actor, action, detail in trail)  # fmt: skip
        return render(s, "Audit trail", table(("When", "Who", "What", "Detail"), rows, "Newest first"), active="/audit")

    from gateway.console.admin import add_admin_routes
    from gateway.console.pairing import add_pairing_routes

    app.router.add_get("/", page(Role.VIEWER, dashboard))
    app.router.add_get("/fragment/health", page(Role.VIEWER, fragment))
    app.router.add_get("/devices", page(Role.VIEWER, devices))
    app.router.add_post("/bind", page(Role.OPERATOR, bind))
    app.router.add_post("/unbind", page(Role.OPERATOR, unbind))
    app.router.add_get("/quarantine", page(Role.VIEWER, quarantine))
    app.router.add_post("/requeue", page(Role.OPERATOR, requeue))
    app.router.add_post("/quarantine/reveal", page(Role.OPERATOR, reveal))
    app.router.add_get("/audit", page(Role.OPERATOR, audit))
    add_admin_routes(app, console, page, render)
    add_pairing_routes(app, console, page, render)


def _patient_fields() -> str:
    return ('<label for="patient">Patient (FHIR id such as Patient/123, or system|value)</label>'
            '<input id="patient" name="patient" required autocomplete="off">'
            '<label for="user">User slot on the device (empty if it has none)</label>'
            '<input id="user" name="user" inputmode="numeric" autocomplete="off">')  # fmt: skip


def _bind_form(csrf: str, device: str, error: str) -> str:
    return (f'<form method="post" action="/bind" class="card"><h2>Bind a device already paired</h2>{csrf_field(csrf)}'
            '<label for="device">Device (address, serial number or System ID)</label>'
            f'<input id="device" name="device" required value="{e(device)}" autocomplete="off">'
            + _patient_fields() + '<button type="submit">Bind</button></form>')  # fmt: skip
