"""The console server: sessions, TOTP login, roles, CSRF, security headers; pages in gateway.console.views.

Runs inside the daemon (aiohttp on the daemon's event loop) and reads the health model directly. Sessions
live in memory (a restart logs everyone out), expire after `session_idle_minutes` idle, and are bound to a
CSRF token that every form posts back. Cookies: HttpOnly, SameSite=Strict, Secure when served over TLS.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from gateway.console import pages
from gateway.console.settings import ConsoleSettings
from gateway.console.users import LoginError, Role, UserStore
from gateway.errors import GatewayError

if TYPE_CHECKING:
    from gateway.daemon import Gateway

__all__ = ["Console", "Session", "build_app", "start_console"]

log = structlog.get_logger(__name__)

STATIC = Path(__file__).parent / "static"
COOKIE = "vg_session"
LOGIN_COOKIE = "vg_login"
IP_WINDOW = 900.0  # seconds; failed logins per client address counted over this window
IP_LIMIT = 20
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SESSION_KEY = "vg.session"  # request[SESSION_KEY]: the caller's Session, set by the guard middleware


@dataclass(slots=True)
class Session:
    user: str
    role: Role
    csrf: str
    last_active: float
    scan: list[Any] = field(default_factory=list)  # the last BLE scan's adverts, for the pairing form


class Console:
    def __init__(self, gw: Gateway, settings: ConsoleSettings, *, tls: bool) -> None:
        self.gw = gw
        self.settings = settings
        self.tls = tls
        self.sessions: dict[str, Session] = {}
        self.failures: dict[str, deque[float]] = {}
        c = settings
        self.users = UserStore(
            gw.config.state_dir, gw.keyring, max_failed=c.max_failed_logins, lockout_seconds=c.lockout_minutes * 60
        )

    # ------------------------------------------------------------ audit

    async def audit(self, actor: str, action: str, detail: str = "") -> None:
        """Every console action goes to the same audit trail as the CLI's (no PHI in `detail`)."""
        if self.gw.queue is not None:
            await self.gw.queue.audit(f"console:{actor}", action, detail)

    # ------------------------------------------------------------ sessions

    def session_of(self, request: web.Request) -> Session | None:
        sid = request.cookies.get(COOKIE)
        s = self.sessions.get(sid) if sid else None
        if s is None or sid is None:
            return None
        now = time.monotonic()
        if now - s.last_active > self.settings.session_idle_minutes * 60:
            del self.sessions[sid]
            return None
        s.last_active = now
        return s

    def set_cookie(self, response: web.StreamResponse, name: str, value: str, max_age: int | None = None) -> None:
        response.set_cookie(name, value, httponly=True, samesite="Strict", secure=self.tls, path="/", max_age=max_age)

    # ------------------------------------------------------------ login

    def _ip_blocked(self, ip: str) -> bool:
        q = self.failures.setdefault(ip, deque())
        while q and time.monotonic() - q[0] > IP_WINDOW:
            q.popleft()
        return len(q) >= IP_LIMIT

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        # Keep a token already issued: a second tab (or the browser's favicon request redirected here) must
        # not invalidate the form the person is filling in.
        token = request.cookies.get(LOGIN_COOKIE, "")
        if len(token) != 32:
            token = secrets.token_urlsafe(24)
        response = web.Response(text=pages.login_page(token), content_type="text/html")
        self.set_cookie(response, LOGIN_COOKIE, token, max_age=900)
        return response

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        name, password, code = (str(form.get(k, "")) for k in ("name", "password", "code"))
        ip = request.remote or "?"
        token = request.cookies.get(LOGIN_COOKIE, "")
        if not token or not secrets.compare_digest(token, str(form.get("csrf", ""))):
            await self.audit(name or "?", "console-login-refused", "login form token missing or wrong (CSRF)")
            return self._login_again("The login form expired; please try again.", name, 403)
        if self._ip_blocked(ip):
            await self.audit(name or "?", "console-login-refused", "too many failed logins from this address")
            return self._login_again("Too many failed logins from this address; wait 15 minutes.", name, 429)
        try:
            account = self.users.authenticate(name, password, code)
        except LoginError as exc:
            self.failures[ip].append(time.monotonic())
            await self.audit(name[:32] or "?", "console-login-failed", str(exc)[:80])
            log.warning("console_login_failed", reason=str(exc)[:80])
            return self._login_again(str(exc), name, 401)
        except GatewayError as exc:  # an unreadable account file or secret: say so, do not crash
            await self.audit(name[:32] or "?", "console-login-failed", "account store unreadable")
            log.error("console_accounts_unreadable", error=str(exc)[:200])
            return self._login_again("Logins are not possible right now: the account store is unreadable. "
                                     "See the gateway's log.", name, 503)  # fmt: skip
        idle = self.settings.session_idle_minutes * 60
        for old in [k for k, v in self.sessions.items() if time.monotonic() - v.last_active > idle]:
            del self.sessions[old]  # expired sessions nobody came back to
        sid = secrets.token_urlsafe(32)
        self.sessions[sid] = Session(account.name, account.role, secrets.token_urlsafe(24), time.monotonic())
        await self.audit(account.name, "console-login", f"role {account.role.value}")
        log.info("console_login", role=account.role.value)
        response = web.HTTPSeeOther("/")
        self.set_cookie(response, COOKIE, sid)
        response.del_cookie(LOGIN_COOKIE, path="/")
        return response

    def _login_again(self, error: str, name: str, status: int) -> web.StreamResponse:
        token = secrets.token_urlsafe(24)
        response = web.Response(text=pages.login_page(token, error, name[:32]), content_type="text/html", status=status)
        self.set_cookie(response, LOGIN_COOKIE, token, max_age=900)
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        sid = request.cookies.get(COOKIE, "")
        s = self.sessions.pop(sid, None)
        if s is not None:
            await self.audit(s.user, "console-logout")
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        return response


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None
    return origin == f"{request.scheme}://{request.host}"


def build_app(console: Console) -> web.Application:
    from gateway.console import views

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path == "/favicon.ico":
            return web.Response(status=204)
        if path.startswith("/static/") or path == "/login":
            if request.method == "POST" and not _same_origin(request):
                return web.Response(status=403, text="cross-site request refused")
            response = await handler(request)
        else:
            session = console.session_of(request)
            if session is None:
                if request.method == "GET" and not path.startswith("/fragment/"):
                    return web.HTTPSeeOther("/login")
                return web.Response(status=401, text="log in first")
            if request.method == "POST":
                form = await request.post()
                if not _same_origin(request) or not secrets.compare_digest(str(form.get("csrf", "")), session.csrf):
                    await console.audit(session.user, "console-csrf-refused", path[:40])
                    log.warning("console_csrf_refused", path=path[:40])
                    return web.Response(
                        status=403,
                        content_type="text/html",
                        text=pages.layout("Refused", pages.message("This form was not sent from this console's own "
                                          "page (CSRF check failed). Reload the page and try again.")),
                    )  # fmt: skip
            request[SESSION_KEY] = session
            try:
                response = await handler(request)
            except web.HTTPException:
                raise
            except Exception as exc:  # a page must never take the daemon down; say so on the page
                log.error("console_page_failed", path=path[:40], error=type(exc).__name__)
                response = web.Response(
                    status=500,
                    content_type="text/html",
                    text=pages.layout("Error", pages.message(f"That did not work ({type(exc).__name__}); "
                                      "the gateway keeps running. Details are in the log.")),
                )  # fmt: skip
        h = response.headers
        h["Content-Security-Policy"] = "default-src 'self'; frame-ancestors 'none'; form-action 'self'"
        h["X-Frame-Options"] = "DENY"
        h["X-Content-Type-Options"] = "nosniff"
        # same-origin, not no-referrer: with no-referrer Chromium sends `Origin: null` on our own form posts.
        h["Referrer-Policy"] = "same-origin"
        h["Cache-Control"] = "no-store"
        if console.tls:
            h["Strict-Transport-Security"] = "max-age=31536000"
        return response

    app = web.Application(middlewares=[guard], client_max_size=64 * 1024)
    app.router.add_get("/login", console.login_form)
    app.router.add_post("/login", console.login)
    app.router.add_post("/logout", console.logout)
    app.router.add_static("/static/", STATIC, show_index=False)
    views.add_routes(app, console)
    return app


async def start_console(gw: Gateway) -> web.AppRunner:
    from gateway.console.tlscert import ensure_certificate, fingerprint, server_context

    settings = gw.config.surfaces.console
    ssl_ctx = None
    if settings.tls:
        cert, key = ensure_certificate(settings, gw.config.state_dir)
        ssl_ctx = server_context(cert, key)
        log.info("console_certificate", sha256=fingerprint(cert))
    console = Console(gw, settings, tls=ssl_ctx is not None)
    runner = web.AppRunner(build_app(console), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.listen, settings.port, ssl_context=ssl_ctx).start()
    scheme = "https" if ssl_ctx else "http"
    log.info("console_listening", url=f"{scheme}://{settings.listen}:{settings.port}/")
    return runner
