"""Pairing from the console: scan, pick a device, and type the passkey when the device shows it.

A real meter shows a fresh random passkey only once pairing has begun, so the passkey cannot be asked for
up front: the pairing runs as a job in the daemon, and when the device asks, the page asks the person (the
progress page reloads itself each second until then). One pairing at a time: the BLE passkey provider is
process-wide. The job binds the device (and user slot) only after the bond is made; every outcome is audited.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from gateway.console.pages import csrf_field, e, message
from gateway.console.users import Role
from gateway.errors import ConfigError

if TYPE_CHECKING:
    from gateway.console.app import Console, Session

__all__ = ["PairingJob", "add_pairing_routes"]

log = structlog.get_logger(__name__)

PASSKEY_WAIT = 60.0  # seconds the page waits for the person to type the passkey (SMP itself allows 30 s per step)


@dataclass
class PairingJob:
    user: str
    address: str
    name: str
    slot: int | None
    patient: str
    state: str = "connecting"  # connecting | passkey | done | failed
    text: str = ""
    passkey: asyncio.Future[int | None] | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)


def add_pairing_routes(app: web.Application, console: Console, page: Any, render: Any) -> None:
    from gateway.console.views import patient_reference, user_slot

    gw = console.gw
    jobs: dict[str, PairingJob] = {}  # one at most, under key "current"

    async def pair_page(request: web.Request, s: Session, error: str = "", note: str = "") -> Any:
        body = message(note, "ok") + message(error)
        body += (f'<form method="post" action="/pair/scan" class="card">{csrf_field(s.csrf)}'
                 "<p>Wake the device (press its button) so it advertises, then scan.</p>"
                 '<button type="submit">Scan for health devices</button></form>')  # fmt: skip
        if s.scan:
            options = "".join(
                f'<div class="choice"><input type="radio" name="address" id="dev{i}" value="{e(a.address)}"'
                f'{" checked" if i == 0 else ""}><label for="dev{i}">{e(a.name or "unnamed")} ({e(a.address)}, '
                f"signal {a.rssi} dBm)</label></div>"
                for i, a in enumerate(s.scan)
            )
            body += (f'<form method="post" action="/pair" class="card">{csrf_field(s.csrf)}'
                     f"<fieldset><legend>Device found</legend>{options}</fieldset>"
                     '<label for="patient">Patient (FHIR id such as Patient/123, or system|value)</label>'
                     '<input id="patient" name="patient" required autocomplete="off">'
                     '<label for="user">User slot on the device (empty if it has none)</label>'
                     '<input id="user" name="user" inputmode="numeric" autocomplete="off">'
                     '<button type="submit">Pair and bind</button></form>')  # fmt: skip
        return render(s, "Pair a device", body, active="/pair")

    async def scan(request: web.Request, s: Session) -> Any:
        from drivers.ble import runtime
        from drivers.ble.transport import BleError, ScanFilter
        from drivers.gatt import uuids

        try:
            s.scan = await runtime.get_transport().scan(4.0, ScanFilter(services=tuple(uuids.HEALTH_SERVICES)))
        except (BleError, OSError) as exc:
            await console.audit(s.user, "console-scan-failed", type(exc).__name__)
            return await pair_page(request, s, error=f"Scanning failed: {exc}. Is the Bluetooth adapter up?")
        await console.audit(s.user, "console-scan", f"{len(s.scan)} devices found")
        if not s.scan:
            return await pair_page(request, s, error="No health device advertised; wake it and scan again.")
        return await pair_page(request, s, note=f"{len(s.scan)} health devices found.")

    async def run(job: PairingJob) -> None:
        from drivers.ble import runtime
        from drivers.ble.transport import BleError

        async def provide() -> int | None:
            job.passkey = asyncio.get_running_loop().create_future()
            job.state = "passkey"
            try:
                async with asyncio.timeout(PASSKEY_WAIT):
                    return await job.passkey
            except TimeoutError:
                return None
            finally:
                job.state = "connecting"

        assert gw.queue is not None
        tag = gw.queue.reference_tag(job.address, job.slot)
        runtime.set_passkey_provider(provide)
        try:
            session = await runtime.get_transport().connect(job.address, timeout=20.0, pair=True)
            await session.disconnect()
            await gw.queue.bind(job.address, job.slot, job.patient)
        except (BleError, OSError) as exc:
            job.state, job.text = "failed", f"Pairing with {job.name} failed: {exc}. Check the passkey, wake the " \
                                            "device and try again."  # fmt: skip
            await console.audit(job.user, "console-pair-failed", f"binding {tag}: {type(exc).__name__}")
            return
        except Exception as exc:  # never let a pairing take the daemon down; say so on the page
            log.error("console_pairing_failed", error=type(exc).__name__)
            job.state, job.text = "failed", f"Pairing with {job.name} failed ({type(exc).__name__}); see the log."
            await console.audit(job.user, "console-pair-failed", f"binding {tag}: {type(exc).__name__}")
            return
        finally:
            runtime.set_passkey_provider(None)
        configured = any(str(d.options.get("address", "")).upper() == job.address.upper() for d in gw.config.devices)
        job.state = "done"
        job.text = f"Paired with {job.name} ({job.address}) and bound; its readings now flow." + (
            "" if configured else " It is not in the configuration yet: add a [[devices]] entry with this address "
            "so the gateway reads it."
        )  # fmt: skip
        await console.audit(job.user, "console-pair", f"binding {tag}")

    async def start(request: web.Request, s: Session) -> Any:
        form = await request.post()
        address = str(form.get("address", ""))
        advert = next((a for a in s.scan if a.address == address), None)
        if advert is None:
            return await pair_page(request, s, error="Pick a device from the scan.")
        try:
            patient = patient_reference(str(form.get("patient", "")))
            slot = user_slot(str(form.get("user", "")))
        except ConfigError as exc:
            await console.audit(s.user, "console-pair-refused", f"invalid input: {exc.key}")
            return await pair_page(request, s, error=f"Not paired: {exc.problem}.")
        current = jobs.get("current")
        if current is not None and current.state in ("connecting", "passkey"):
            return await pair_page(request, s, error="Another pairing is in progress; wait for it to finish.")
        job = PairingJob(s.user, address, advert.name or address, slot, patient)
        job.task = asyncio.create_task(run(job), name="console-pairing")
        jobs["current"] = job
        await console.audit(s.user, "console-pair-start", f"binding {gw.queue.reference_tag(address, slot)}")  # type: ignore[union-attr]
        return web.HTTPSeeOther("/pair/progress")

    async def progress(request: web.Request, s: Session) -> Any:
        job = jobs.get("current")
        if job is None or job.user != s.user:
            return await pair_page(request, s)
        if job.state == "passkey":
            body = (f'<form method="post" action="/pair/passkey" class="card">{csrf_field(s.csrf)}'
                    f"<p>{e(job.name)} asks for its passkey. Type the 6 digits it shows now.</p>"
                    '<label for="passkey">Passkey shown on the device</label>'
                    '<input id="passkey" name="passkey" inputmode="numeric" pattern="[0-9]{6}" required '
                    'autocomplete="off" autofocus><button type="submit">Send passkey</button></form>')  # fmt: skip
            return render(s, "Pair a device", body, active="/pair")
        if job.state in ("done", "failed"):
            jobs.pop("current", None)
            s.scan = [] if job.state == "done" else s.scan
            if job.state == "done":
                return await pair_page(request, s, note=job.text)
            return await pair_page(request, s, error=job.text)
        response = render(s, "Pair a device", f'<p role="status">Connecting to {e(job.name)}...</p>', active="/pair")
        response.headers["Refresh"] = "1"  # no script needed: the browser asks again each second
        return response

    async def passkey(request: web.Request, s: Session) -> Any:
        job = jobs.get("current")
        text = str((await request.post()).get("passkey", "")).strip()
        if job is None or job.user != s.user or job.passkey is None or job.passkey.done():
            return web.HTTPSeeOther("/pair/progress")
        if not (len(text) == 6 and text.isdigit()):
            body = message("The passkey is the 6 digits the device shows.") + (
                f'<form method="post" action="/pair/passkey" class="card">{csrf_field(s.csrf)}'
                '<label for="passkey">Passkey shown on the device</label><input id="passkey" name="passkey" '
                'inputmode="numeric" required autocomplete="off" autofocus><button type="submit">Send passkey</button>'
                "</form>"
            )
            return render(s, "Pair a device", body, active="/pair")
        job.passkey.set_result(int(text))
        return web.HTTPSeeOther("/pair/progress")

    async def stop(_: web.Application) -> None:
        job = jobs.get("current")
        if job is not None and job.task is not None:
            job.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job.task

    app.on_shutdown.append(stop)
    app.router.add_get("/pair", page(Role.OPERATOR, pair_page))
    app.router.add_post("/pair/scan", page(Role.OPERATOR, scan))
    app.router.add_post("/pair", page(Role.OPERATOR, start))
    app.router.add_get("/pair/progress", page(Role.OPERATOR, progress))
    app.router.add_post("/pair/passkey", page(Role.OPERATOR, passkey))
