"""The console in a real browser (Debian's Chromium driven by Playwright): log in with TOTP by keyboard,
watch the dashboard refresh, pair a simulated BLE cuff (Bumble, served over HCI/TCP by `vitalgate simulate`)
and bind it, see its readings delivered, requeue, a viewer refused, a CSRF-less form refused, a phone screen.

Set VITALGATE_SCREENSHOT_DIR to keep the dashboard screenshot (docs/console-dashboard.png is made so).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gateway.crypto import KeyRing
from gateway.queue import ReadingQueue, State
from tests.console_support import PASSWORD, Accounts, add_accounts, daemon, free_port
from tests.test_daemon import ROOT

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = Path("/usr/bin/chromium")
# The last three keep Chromium to the processes it needs: under qemu-user (the arm64 fresh-machine check,
# scripts/check-fresh-debian.sh arm64) there is no ptrace, and a separate GPU process or zygote aborts it.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--in-process-gpu", "--disable-crash-reporter", "--no-zygote"]  # fmt: skip
CUFF = "C1:00:00:00:00:01"
METER = "C3:00:00:00:00:03"  # LE Secure Connections with passkey entry: the meter shows 123456
TIMEOUT = 60_000  # ms, for conditions the page reaches on its own (pairing, delivery)

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (scripts/test.sh installs it)")


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[str, Accounts, Path]]:
    hci = free_port()
    env = {**os.environ, "VITALGATE_BLE_HCI": f"tcp-client:127.0.0.1:{hci}",
           "VITALGATE_BLE_KEYSTORE": str(tmp_path / "bonds.json")}  # fmt: skip
    sim = subprocess.Popen(
        [sys.executable, "-m", "gateway", "simulate", "ble-cuff", "ble-glucose", "--port", str(hci)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**env, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert sim.stdout is not None
        deadline = time.monotonic() + 30
        while "served on" not in sim.stdout.readline():
            assert time.monotonic() < deadline and sim.poll() is None, "simulator did not start"
        from gateway.crypto import create_key_file

        create_key_file(tmp_path / "data.key")
        port = free_port()
        cfg = tmp_path / "vitalgate.toml"
        cfg.write_text(f"""
[gateway]
id = "clinic-gw-1"
state_dir = "state"
key_file = "{tmp_path / "data.key"}"
test_data = true
[queue]
retry_initial_seconds = 0.05
retry_max_seconds = 0.5
[output.file]
allow_plaintext = true
retention_days = 7
[logging]
format = "json"
[console]
enabled = true
port = {port}
[[devices]]
driver = "ble-blood-pressure"
name = "cuff"
address = "{CUFF}"
allow_unbonded = true  # the simulated cuff, like many real ones, pairs without keeping a bond
connect_timeout = 2
idle_timeout = 2
poll_seconds = 1
""")
        accounts = add_accounts(cfg, {"olu": "operator", "vic": "viewer"}, env)
        with daemon(cfg, port, env):
            yield f"http://127.0.0.1:{port}", accounts, cfg
    finally:
        sim.terminate()
        sim.wait(timeout=10)


def _login_by_keyboard(page: object, base: str, accounts: Accounts, name: str) -> None:
    p: playwright.Page = page  # type: ignore[name-defined]
    p.goto(f"{base}/")
    assert p.url.endswith("/login")
    p.wait_for_function("document.activeElement && document.activeElement.id === 'name'")  # autofocus
    p.keyboard.type(name)  # the name field has focus (autofocus); then Tab through the form in order
    p.keyboard.press("Tab")
    p.keyboard.type(PASSWORD)
    p.keyboard.press("Tab")
    p.keyboard.type(accounts.code(name))
    p.keyboard.press("Enter")
    p.get_by_role("heading", name="Dashboard").wait_for()


def test_operator_pairs_a_cuff_and_sees_its_readings_delivered(gateway: tuple[str, Accounts, Path]) -> None:
    base, accounts, cfg = gateway
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.set_default_timeout(TIMEOUT)
            # A wrong code first: a clear message, no session.
            page.goto(f"{base}/login")
            page.get_by_label("Account").fill("olu")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_label("Code from the authenticator app").fill("000000")
            page.get_by_role("button", name="Log in").click()
            assert page.get_by_role("alert").inner_text() == "Wrong name, password or code."
            _login_by_keyboard(page, base, accounts, "olu")

            # Pairing: scan, pick the cuff, bind user slot 1 to a patient.
            page.get_by_role("link", name="Pair a device").click()
            page.get_by_role("button", name="Scan for health devices").click()
            page.get_by_label(f"VG-Cuff ({CUFF}", exact=False).check()
            page.get_by_label("Patient (FHIR id", exact=False).fill("not a valid id!")
            page.get_by_role("button", name="Pair and bind").click()
            refused = page.get_by_role("alert").inner_text()
            assert refused.startswith("Not paired: ") and "use a FHIR id" in refused
            page.get_by_label(f"VG-Cuff ({CUFF}", exact=False).check()
            page.get_by_label("Patient (FHIR id", exact=False).fill("Patient/p-42")
            page.get_by_label("User slot", exact=False).fill("1")
            page.get_by_role("button", name="Pair and bind").click()
            page.get_by_text(f"Paired with VG-Cuff ({CUFF}) and bound").wait_for()  # the page reloads until done
            page.get_by_role("link", name="Devices").click()
            assert "Patient/p-42" in page.content()  # operators see the patient they bound

            # A meter that shows a passkey once pairing starts: the page asks for it then. Wrong, then right.
            for typed, outcome in (("654321", "Pairing with VG-Glucose failed"), ("123456", "Paired with VG-Glucose")):
                page.get_by_role("link", name="Pair a device").click()
                page.get_by_role("button", name="Scan for health devices").click()
                page.get_by_label(f"VG-Glucose ({METER}", exact=False).check()
                page.get_by_label("Patient (FHIR id", exact=False).fill("p-43")
                page.get_by_role("button", name="Pair and bind").click()
                page.get_by_label("Passkey shown on the device").fill(typed)
                page.get_by_role("button", name="Send passkey").click()
                page.get_by_text(outcome).wait_for()
            assert "not in the configuration yet" in page.content()

            # The dashboard refreshes by itself until the cuff's readings are delivered.
            page.get_by_role("link", name="Dashboard").click()
            page.wait_for_function(
                "() => parseInt(document.querySelector('[data-k=\"Delivered\"]').textContent) >= 1", timeout=TIMEOUT
            )
            page.get_by_role("cell", name="partly", exact=True).wait_for()  # user slot 1 bound, slot 2 not
            if shots := os.environ.get("VITALGATE_SCREENSHOT_DIR"):
                page.screenshot(path=str(Path(shots) / "console-dashboard.png"), full_page=True)

            # Requeue. Stand-in for a backend's rejection (the file forwarder never rejects): a delivered row
            # quarantined through the queue's own API, as the drainer does when a backend answers 4xx (a plain
            # SQL edit would now be refused as tampering: gateway.rowguard).
            db = sqlite3.connect(cfg.parent / "state" / "queue.db")
            with db:
                row = db.execute("SELECT id FROM readings WHERE state = 1 ORDER BY id LIMIT 1").fetchone()[0]
            db.close()

            async def quarantine() -> None:
                ring = KeyRing.load(str(cfg.parent / "data.key"))
                q = await ReadingQueue.open(cfg.parent / "state" / "queue.db", ring)
                try:
                    await q.set_state({row: "backend: 422 invalid"}, State.QUARANTINED)
                finally:
                    await q.close()

            with ThreadPoolExecutor(1) as pool:  # Playwright's sync API holds this thread's event loop
                pool.submit(asyncio.run, quarantine()).result(timeout=60)
            page.get_by_role("link", name="Quarantine").click()
            assert "backend: 422 invalid" in page.content()
            # CSRF: the same form without its token (as a forged cross-site post would be) is refused.
            page.evaluate("document.querySelectorAll('form[action=\"/requeue\"] input[name=csrf]')"
                          ".forEach(e => e.remove())")  # fmt: skip
            page.get_by_role("button", name=f"Send row {row} again").click()
            assert "CSRF check failed" in page.get_by_role("alert").inner_text()
            page.goto(f"{base}/quarantine")
            page.get_by_role("button", name=f"Send row {row} again").click()
            page.get_by_text(f"Row #{row} queued again.").wait_for()
            deadline = time.monotonic() + 60
            while True:  # delivered again (the backend drops the repeat by its identifier)
                page.goto(f"{base}/quarantine")
                if "0 readings are set aside" in page.content():
                    break
                assert time.monotonic() < deadline
                time.sleep(0.5)
            page.get_by_role("link", name="Audit trail").click()
            for action in ("console-login-failed", "console-pair-refused", "console-pair-start", "console-pair",
                           "console-pair-failed", "console-csrf-refused", "console-requeue"):  # fmt: skip
                assert page.get_by_role("cell", name=action, exact=True).count() >= 1, action

            # A viewer on a phone: health and counts, no patient references, operator pages refused.
            phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
            phone.set_default_timeout(TIMEOUT)
            _login_by_keyboard(phone, base, accounts, "vic")
            assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            phone.goto(f"{base}/devices")
            assert "Patient/" not in phone.content() and CUFF not in phone.content()
            phone.goto(f"{base}/pair")
            assert "needs the operator role" in phone.get_by_role("alert").inner_text()
        finally:
            browser.close()
