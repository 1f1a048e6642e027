"""The console shows what `vitalgate status` shows: over real HTTP, from the daemon's own health model.

The Bundle size comes from a real HTTPS forwarder that the reference receiver made shrink (413 naming a
maximum); the clock-flagged count goes through the model's own call (the device context's path to it is
tested in test_clock_plausibility). Login is tested in test_console_http; here a viewer's session is put
in place directly, so the pages are what a viewer (the least privileged role) sees.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from gateway.health.report import bundle_size_text, render_status, status_document
from simulators.fhir_receiver import Receiver
from tests.https_support import Pki, item, pki, receiver

__all__ = ["pki", "receiver"]  # fixtures, imported for pytest

CLOCK_PROBLEM = "the device time stamp is before 2010 (a default or reset clock)"


def https_config(tmp_path: Path, pki: Pki, port: int) -> dict[str, Any]:
    return {
        "gateway": {"state_dir": str(tmp_path / "state")},
        "output": {
            "forwarder": "https",
            "https": {
                "base_url": f"https://localhost:{port}/fhir",
                "ca_file": str(pki.ca.cert_file),
                "max_entries": 8,
                "auth": {
                    "method": "client_secret_basic",
                    "token_url": f"https://localhost:{port}/token",
                    "client_id": "gw-basic",
                    "client_secret_file": str(pki.secret_file),
                    "scope": "system/Observation.write system/Device.write",
                },
            },
        },
        "devices": [
            {"driver": "simulated", "name": "cuff", "kind": "blood-pressure", "serial": "SER-CUFF"},
            {"driver": "simulated", "name": "meter", "kind": "blood-glucose", "serial": "SER-METER"},
        ],
    }


@asynccontextmanager
async def viewer_console(gw: Any) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    import time

    from gateway.console.app import COOKIE, Console, Session, build_app
    from gateway.console.settings import ConsoleSettings
    from gateway.console.users import Role

    console = Console(gw, ConsoleSettings(), tls=False)
    console.sessions["viewer-sid"] = Session("vic", Role.VIEWER, "csrf-token", time.monotonic())
    async with (
        TestServer(build_app(console), host="127.0.0.1") as server,
        aiohttp.ClientSession(cookies={COOKIE: "viewer-sid"}) as http,
    ):
        yield http, str(server.make_url("")).rstrip("/")


async def get(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url, allow_redirects=False) as r:
        assert r.status == 200, (r.status, url)
        return await r.text()


async def test_console_shows_lowered_bundle_size_and_clock_flagged_devices(
    pki: Pki, receiver: Receiver, tmp_path: Path
) -> None:
    from gateway.config import parse_config
    from gateway.crypto import KeyRing
    from gateway.daemon import Gateway
    from gateway.health import snapshot
    from gateway.health.rules import Facts, Thresholds, evaluate

    receiver.faults.max_entries = 5
    gw = Gateway(parse_config(https_config(tmp_path, pki, receiver.port)), KeyRing.generate())
    async with viewer_console(gw) as (http, base):
        page = await get(http, f"{base}/")
        assert "at most 8 entries per Bundle (output.https.max_entries)" in page  # configured, not lowered
        assert "set the device&#x27;s clock" not in page
        async with gw.forwarder:
            report = await gw.forwarder.send([item(i) for i in range(10)])  # 8 entries refused: halved to 4
        assert report.confirmed == frozenset(range(10))
        gw.model.clock_judged("cuff", 3, CLOCK_PROBLEM)
        gw.model.queue_probed({"pending": 2, "delivered": 10, "withheld": 4}, None, 0)
        gw.model.disk_free_fraction = 0.42
        evaluate(gw.model, gw.alarms, Thresholds(), Facts())
        health = gw.model.as_dict()
        # The same sentence `vitalgate status` prints, from the same model.
        sentence = bundle_size_text(health["forwarder"])
        assert sentence is not None and sentence[1]
        (tmp_path / "state").mkdir(exist_ok=True)
        snapshot.write(tmp_path / "state" / snapshot.SNAPSHOT_NAME, health)
        status = render_status(status_document(tmp_path / "state", {"pending": 2}, [], 0))
        assert f"bundle size      {sentence[0]}" in status.splitlines()
        assert "3 readings: set the device's clock" in status
        quoted = (
            "at most 4 entries per Bundle (8 configured): the FHIR server refused a larger one; "
            "set output.https.max_entries to match it"
        )
        assert sentence[0] == quoted
        for path in ("/", "/fragment/health"):
            page = await get(http, base + path)
            assert quoted in page, path
            assert '<p class="big" data-k="Bundle size"><span class="warn">4</span></p>' in page, path
            # The device's row says how many readings were flagged and why; the other device says none.
            cuff = page[page.index("<td>cuff</td>") :].split("</tr>")[0]
            meter = page[page.index("<td>meter</td>") :].split("</tr>")[0]
            assert "3 readings: set the device&#x27;s clock" in cuff and CLOCK_PROBLEM in cuff, cuff
            assert meter.endswith("<td>-</td>"), meter
            # The alarm the rules raised for it is on the dashboard too.
            assert "3 readings" in page[page.index('class="alarms"') :].split("</ul>")[0]
            assert '<p class="big" data-k="Withheld">4</p>' in page
            assert "42% of the queue&#x27;s disk free" in page
        devices = await get(http, f"{base}/devices")
        cuff = devices[devices.index("<td>cuff</td>") :].split("</tr>")[0]
        assert "3 readings: set the device&#x27;s clock" in cuff and CLOCK_PROBLEM in cuff, cuff
        assert '<th scope="col">Rejected</th>' in devices and '<th scope="col">Readings</th>' in devices


async def test_no_bundle_size_for_a_forwarder_without_one(tmp_path: Path) -> None:
    """The file forwarder has no Bundle size: the dashboard does not invent one."""
    from gateway.config import parse_config
    from gateway.crypto import KeyRing
    from gateway.daemon import Gateway

    cfg = parse_config(
        {
            "gateway": {"state_dir": str(tmp_path / "state")},
            "output": {"forwarder": "file", "file": {"allow_plaintext": True}},
        }
    )
    gw = Gateway(cfg, KeyRing.generate())
    async with viewer_console(gw) as (http, base):
        page = await get(http, f"{base}/")
    assert "Forwarder" in page and "Bundle size" not in page and "entries per Bundle" not in page


async def test_devices_page_shows_a_scale_that_fell_back_to_an_active_scan(tmp_path: Path) -> None:
    """The listener's scan (drivers/ble/adv_scale.py reports it through the device context; the Bumble path
    is tested in tests/ble/test_adv_scale.py) on the Devices page, as `status` words it: the fallback as a
    warning with the stack's reason, a passive listener as such, a connected device without one; the
    fallback's alarm on the dashboard."""
    from html import escape

    from gateway.config import parse_config
    from gateway.crypto import KeyRing
    from gateway.daemon import Gateway
    from gateway.health.report import scan_text
    from gateway.health.rules import Facts, Thresholds, evaluate

    cfg = parse_config(
        {
            "gateway": {"state_dir": str(tmp_path / "state")},
            "output": {"forwarder": "file", "file": {"allow_plaintext": True}},
            "devices": [
                {"driver": "simulated", "name": "cuff", "kind": "blood-pressure", "serial": "SER-CUFF"},
                {"driver": "simulated", "name": "mi", "kind": "blood-glucose", "serial": "SER-MI"},
                {"driver": "simulated", "name": "mi2", "kind": "blood-glucose", "serial": "SER-MI2"},
            ],
        }
    )
    gw = Gateway(cfg, KeyRing.generate())
    refusal = "passive scan refused: passive scanning on Linux requires BlueZ >= 5.55 with --experimental enabled"
    gw.model.scan("mi", "active-fallback", refusal)
    gw.model.scan("mi2", "passive")
    evaluate(gw.model, gw.alarms, Thresholds(), Facts())
    health = {d["name"]: d for d in gw.model.as_dict()["devices"]}
    fallback = scan_text(health["mi"])
    assert fallback is not None and fallback[1] and refusal in fallback[0]
    async with viewer_console(gw) as (http, base):
        devices = await get(http, f"{base}/devices")
        page = await get(http, f"{base}/")
    assert '<th scope="col">Scan</th>' in devices
    row = {name: devices[devices.index(f"<td>{name}</td>") :].split("</tr>")[0] for name in ("cuff", "mi", "mi2")}
    assert row["mi"].endswith(f'<td><span class="warn">{escape(fallback[0])}</span></td>'), row["mi"]
    assert row["mi2"].endswith("<td>passive (no scan requests)</td>"), row["mi2"]
    assert row["cuff"].endswith("<td>-</td>"), row["cuff"]
    alarms = page[page.index('class="alarms"') :].split("</ul>")[0]
    assert "Scale &#x27;mi&#x27; listens with an active scan" in alarms and "mi2" not in alarms
