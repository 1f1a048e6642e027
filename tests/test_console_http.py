"""The console over real HTTP(S) from a client that is not a browser: login with TOTP, roles, CSRF, TLS,
cookies and headers, bad input on the page and in the audit trail. The browser test drives the rest."""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import sys
from pathlib import Path

import aiohttp

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
                assert r.status == 200 and "Not bound: use a FHIR id" in await r.text()
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
            async with http.get(f"{base}/users") as r:
                assert r.status == 403  # accounts are for admins
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
