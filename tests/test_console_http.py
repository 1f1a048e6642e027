"""The console over real HTTP(S) from a client that is not a browser: login with TOTP, roles, CSRF, TLS,
cookies and headers, bad input on the page and in the audit trail. The browser test drives the rest."""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from gateway.console.tlscert import fingerprint
from tests.console_support import PASSWORD, Accounts, add_accounts, daemon, free_port
from tests.test_daemon import ROOT, write_config


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html[:500]
    return m.group(1)


async def login(http: aiohttp.ClientSession, base: str, accounts: Accounts, name: str, code: str | None = None) -> str:
    async with http.get(f"{base}/login") as r:
        token = csrf_of(await r.text())
    form = {"csrf": token, "name": name, "password": PASSWORD, "code": code or accounts.code(name)}
    async with http.post(f"{base}/login", data=form) as r:
        return await r.text()


async def test_login_roles_csrf_and_bad_input_over_tls(tmp_path: Path) -> None:
    port = free_port()
    cfg = write_config(
        tmp_path,
        count=4,
        extra=f"""
[console]
enabled = true
listen = "127.0.0.1"
port = {port}
tls = true
max_failed_logins = 3
""",
    )
    accounts = add_accounts(cfg, {"ada": "admin", "olu": "operator", "vic": "viewer"})
    fp = subprocess.run(  # noqa: ASYNC221 (set-up, before the loop has work)
        [sys.executable, "-m", "gateway", "console", "fingerprint", "--json", "--config", str(cfg)],
                        capture_output=True, text=True, cwd=ROOT, timeout=60)  # fmt: skip
    shown = json.loads(fp.stdout)
    cert = Path(shown["certificate"])
    assert shown["sha256_fingerprint"] == fingerprint(cert) and len(shown["sha256_fingerprint"]) == 95
    trust = ssl.create_default_context(cafile=str(cert))  # the operator trusts exactly this certificate
    base = f"https://localhost:{port}"
    with daemon(cfg, port):
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar, connector=aiohttp.TCPConnector(ssl=trust)) as http:
            async with http.get(f"{base}/", allow_redirects=False) as r:
                assert r.status == 303 and r.headers["Location"] == "/login"
            page = await login(http, base, accounts, "olu", code="000000")
            assert "Wrong name, password or code." in page
            page = await login(http, base, accounts, "olu")
            assert "Dashboard" in page and "Pair a device" in page
            cookie = next(c for c in jar if c.key == "vg_session")
            assert cookie["httponly"] and cookie["secure"] and cookie["samesite"] == "Strict"
            async with http.get(f"{base}/devices") as r:
                html = await r.text()
                assert r.headers["Content-Security-Policy"].startswith("default-src 'self'")
                assert r.headers["Cache-Control"] == "no-store" and r.headers["X-Frame-Options"] == "DENY"
            token = csrf_of(html)
            # Bad input: an invalid patient id is explained on the page, and audited.
            async with http.post(f"{base}/bind", data={"csrf": token, "device": "SER-X", "patient": "a b;c"}) as r:
                assert r.status == 200 and "Not bound: " in (page := await r.text()) and "use a FHIR id" in page
            # CSRF: the right session cookie without the form's token is refused.
            async with http.post(f"{base}/bind", data={"device": "SER-X", "patient": "p-1"}) as r:
                assert r.status == 403 and "CSRF check failed" in await r.text()
            async with http.post(f"{base}/bind", data={"csrf": token, "device": "SER-X", "patient": "p-1"},
                                 headers={"Origin": "https://evil.example"}) as r:  # fmt: skip
                assert r.status == 403
            async with http.post(f"{base}/bind", data={"csrf": token, "device": "SERIAL-NEEDLE-GL",
                                                       "patient": "p-9"}) as r:  # fmt: skip
                assert "Bound; its readings now flow" in await r.text()
            async with http.get(f"{base}/audit") as r:
                trail = await r.text()
            for action in ("console-login-failed", "console-login", "console-bind-refused", "console-csrf-refused",
                           "console-bind"):  # fmt: skip
                assert f"<td>{action}</td>" in trail, action
            assert "Patient/" not in trail and "SERIAL-NEEDLE" not in trail  # the trail itself carries no PHI
            async with http.get(f"{base}/users") as r:
                assert r.status == 403  # accounts are for admins
            async with http.get(f"{base}/devices") as r:
                html = await r.text()
            assert "Patient/p-9" in html and html.count(">Unbind</button>") == 1
            async with http.post(f"{base}/unbind", data={"csrf": token, "device": "SERIAL-NEEDLE-GL", "user": ""}) as r:
                html = await r.text()
            assert "Unbound." in html and "Patient/p-9" not in html
        # An admin: accounts (made here, unlocked, removed) and the data key.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                         connector=aiohttp.TCPConnector(ssl=trust)) as http:  # fmt: skip
            await login(http, base, accounts, "ada")
            async with http.get(f"{base}/users") as r:
                token = csrf_of(await r.text())
            new = {"csrf": token, "name": "kim", "role": "viewer", "password": "short"}
            async with http.post(f"{base}/users/add", data=new) as r:
                assert "Not added: the password must be at least 12 characters" in await r.text()
            async with http.post(f"{base}/users/add", data={**new, "password": PASSWORD}) as r:
                html = await r.text()
            accounts.secrets["kim"] = re.search(r"it is not shown again: <code>([A-Z2-7]+)</code>", html).group(1)  # type: ignore[union-attr]
            async with http.post(f"{base}/users/remove", data={"csrf": token, "name": "ada"}) as r:
                assert "You cannot remove your own account." in await r.text()
            async with http.post(f"{base}/keys/rotate", data={"csrf": token}) as r:
                assert "is now current." in await r.text()
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                         connector=aiohttp.TCPConnector(ssl=trust)) as http:  # fmt: skip
            assert "Dashboard" in await login(http, base, accounts, "kim")
        # A viewer: health and counts, no patient references, no operator actions.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                         connector=aiohttp.TCPConnector(ssl=trust)) as http:  # fmt: skip
            await login(http, base, accounts, "vic")
            async with http.get(f"{base}/devices") as r:
                html = await r.text()
            assert "Configured devices" in html and "Patient/" not in html and "SERIAL-NEEDLE" not in html
            async with http.post(f"{base}/requeue", data={"csrf": csrf_of(html), "all": "1"}) as r:
                assert r.status == 403 and "needs the operator role" in await r.text()
            async with http.get(f"{base}/fragment/health") as r:
                assert r.status == 200 and "Forwarder" in await r.text()
        # Lockout: three wrong codes lock the account; the right code is then refused with a clear message.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                         connector=aiohttp.TCPConnector(ssl=trust)) as http:  # fmt: skip
            for _ in range(2):
                assert "Wrong name" in await login(http, base, accounts, "vic", code="000000")
            assert "now locked for 15 min" in await login(http, base, accounts, "vic", code="000000")
            assert "locked after too many failed logins" in await login(http, base, accounts, "vic")
    unlocked = subprocess.run(  # noqa: ASYNC221 (the daemon is gone; nothing else runs)
        [sys.executable, "-m", "gateway", "users", "unlock", "vic", "--config", str(cfg)],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)  # fmt: skip
    assert unlocked.returncode == 0 and "unlocked vic" in unlocked.stdout


def test_console_off_loopback_without_tls_is_a_config_error(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, count=1, extra='[console]\nenabled = true\nlisten = "0.0.0.0"\n')
    done = subprocess.run([sys.executable, "-m", "gateway", "check-config", "--config", str(cfg)],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert "console.tls" in done.stderr and "set tls = true" in done.stderr


def test_idle_sessions_expire(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from aiohttp.test_utils import make_mocked_request

    from gateway.console.app import COOKIE, Console, Session
    from gateway.console.settings import ConsoleSettings
    from gateway.console.users import Role
    from gateway.crypto import KeyRing

    gw = SimpleNamespace(config=SimpleNamespace(state_dir=tmp_path), keyring=KeyRing.generate())
    console = Console(gw, ConsoleSettings(session_idle_minutes=1), tls=False)  # type: ignore[arg-type]
    now = time.monotonic()
    console.sessions["fresh"] = Session("ann", Role.VIEWER, "t1", now - 50)
    console.sessions["stale"] = Session("bob", Role.VIEWER, "t2", now - 61)

    def request(sid: str) -> web.Request:
        return make_mocked_request("GET", "/", headers={"Cookie": f"{COOKIE}={sid}"})

    assert console.session_of(request("fresh")) is console.sessions["fresh"]
    assert console.session_of(request("stale")) is None and "stale" not in console.sessions
    assert console.session_of(request("forged")) is None
