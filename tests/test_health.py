"""The health model, its alarms, its snapshot, `status` rendering, and the Prometheus scrape over HTTP."""

from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from gateway.alarms import AlarmBoard, Severity, read_snapshot
from gateway.health import ForwarderState, HealthModel, snapshot
from gateway.health.monitor import certificate_expiries, describe_target
from gateway.health.report import render_status, status_document
from gateway.health.rules import DAY, Facts, Thresholds, evaluate
from gateway.logging import configure_logging, stdout_is_journal
from gateway.metrics import metrics_app
from tests.certs import make_ca


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def model(clock: Clock) -> HealthModel:
    return HealthModel(
        version="9.9", gateway_id="gw", forwarder="mqtt", target="mqtts://broker:8883",
        devices=[("cuff", "ble-cuff"), ("scale", "ble-scale")], clock=clock,
    )  # fmt: skip


def test_forwarder_states_and_last_error_without_phi() -> None:
    clock = Clock()
    m = model(clock)
    assert m.forwarder_state is ForwarderState.STARTING
    m.backing_off("connection refused by Patient/123 at AA:BB:CC:DD:EE:FF", 4.0)
    assert m.forwarder_state is ForwarderState.BACKING_OFF
    assert m.forwarder_error == "connection refused by [redacted] at [redacted]"
    assert m.retry_at == clock.t + 4.0
    clock.t += 10
    m.connected()
    assert (m.forwarder_state, m.forwarder_error, m.forwarder_since) == (ForwarderState.READY, None, clock.t)
    assert m.status_line() == "ready to forward to mqtts://broker:8883; 0 pending; 2 devices"
    m.sent(0.03, ["blood-pressure", "blood-pressure", "body-weight"], rejected=1)
    assert m.forwarder_state is ForwarderState.CONNECTED
    assert m.delivered == {"blood-pressure": 2, "body-weight": 1}
    assert (m.last_success, m.quarantined, m.latency.n) == (clock.t, 1, 1)
    m.queue_probed({"pending": 4}, clock.t - 90, 2)
    assert m.oldest_pending_age() == 90
    assert m.status_line() == "forwarding to mqtts://broker:8883; 4 pending; 2 devices"
    m.refused("not authorized", 600)
    assert m.status_line() == "refused: mqtts://broker:8883; 4 pending; 2 devices"


def test_alarms_raise_with_sentences_and_clear(tmp_path: Path) -> None:
    clock = Clock()
    m = model(clock)
    board = AlarmBoard(tmp_path / "alarms.json", clock=clock)
    th = Thresholds(backlog_hours=1, device_silent_days=2, disk_free_percent=10, key_rotation_days=30,
                    credential_expiry_days=14)  # fmt: skip
    m.refused("bad user name or password", 600)
    m.queue_probed({"pending": 3}, clock.t - 2 * 3600, 0)
    m.disk_free_fraction = 0.05
    m.submitted("cuff", ["blood-pressure"], clock.t, None, {"1": True})
    clock.t += 3 * DAY  # the scale was never heard from; the cuff 3 days ago
    m.submitted("scale", ["body-weight"], clock.t, 2.0, {"1": False})
    assert (m.devices["cuff"].bound, m.devices["scale"].bound) == ("yes", "no")
    m.submitted("scale", ["body-weight"], clock.t, 2.0, {"2": True})
    assert m.devices["scale"].bound == "partly"
    expiry = {"output.mqtt.client_cert": clock.t + 5 * DAY, "output.mqtt.ca_file": clock.t + 90 * DAY}
    evaluate(m, board, th, Facts(key_age_days=400, credentials=expiry))
    codes = {a.code: a for a in board.active()}
    assert set(codes) == {
        "forwarder_refused", "backlog_old", "device_silent:cuff", "disk_low", "key_rotation_due",
        "credential_expiring:output.mqtt.client_cert",
    }  # fmt: skip
    assert codes["forwarder_refused"].severity is Severity.CRITICAL
    assert "bad user name or password" in codes["forwarder_refused"].sentence
    assert "3 days" in codes["device_silent:cuff"].sentence and "'cuff'" in codes["device_silent:cuff"].sentence
    assert "5.0% of the disk" in codes["disk_low"].sentence
    assert "vitalgate keys rotate" in codes["key_rotation_due"].sentence
    assert "expires in 5 days" in codes["credential_expiring:output.mqtt.client_cert"].sentence
    assert {a.code for a in read_snapshot(tmp_path / "alarms.json")} == set(codes)
    # Everything fixed: every alarm clears, the snapshot follows.
    m.connected()
    m.queue_probed({"pending": 0}, None, 0)
    m.disk_free_fraction = 0.5
    m.submitted("cuff", ["blood-pressure"], clock.t, None, {"1": True})
    evaluate(m, board, th, Facts(key_age_days=1, credentials={}))
    assert board.active() == []
    assert read_snapshot(tmp_path / "alarms.json") == []


def test_certificate_expiry_read_from_configured_files(tmp_path: Path) -> None:
    ca = make_ca(tmp_path)
    leaf = ca.issue("client", server=False, not_after=dt.datetime(2030, 1, 2, tzinfo=dt.UTC))
    got = certificate_expiries("output.mqtt", {"ca_file": str(ca.cert_file), "client_cert": str(leaf.cert_file),
                                               "host": "x", "token_ca_file": "system"})  # fmt: skip
    assert got["output.mqtt.client_cert"] == dt.datetime(2030, 1, 2, tzinfo=dt.UTC).timestamp()
    assert set(got) == {"output.mqtt.ca_file", "output.mqtt.client_cert"}


def test_target_descriptions_carry_no_secrets() -> None:
    assert describe_target("https", {"base_url": "https://user:pw@fhir.example.org:8443/r4"}) == (
        "https://fhir.example.org:8443/r4"
    )
    assert describe_target("mqtt", {"host": "b", "tls": False}) == "mqtt://b:1883"
    assert describe_target("file", {}) == "file:outbox"


def test_snapshot_tells_running_from_gone_and_stalled(tmp_path: Path) -> None:
    clock = Clock()
    m = model(clock)
    path = tmp_path / "health.json"
    snapshot.write(path, m.as_dict())
    assert path.stat().st_mode & 0o777 == 0o600
    doc = snapshot.read(path)
    assert doc is not None and doc["pid"] == os.getpid()
    state, _ = snapshot.daemon_state(doc, now=doc["written"] + 1)
    assert state == "running"
    assert snapshot.daemon_state(doc, now=doc["written"] + 60)[0] == "stalled"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = {**doc, "pid": int(gone.stdout)}
    assert snapshot.daemon_state(dead)[0] == "not running"
    assert snapshot.daemon_state(None)[0] == "unknown"
    path.write_text("{not json")
    assert snapshot.read(path) is None


def test_status_text_puts_health_first(tmp_path: Path) -> None:
    clock = Clock()
    m = model(clock)
    m.backing_off("timed out", 3)
    m.battery("cuff", 81)
    snapshot.write(tmp_path / "health.json", m.as_dict())
    AlarmBoard(tmp_path / "alarms.json").raise_("backlog_old", "The oldest reading is old.")
    doc = status_document(tmp_path, {"pending": 2, "delivered": 0}, [(7, "mapping: bad")], 1)
    text = render_status(doc).splitlines()
    assert text[0].startswith("daemon           running (pid")
    assert text[1].startswith("forwarder        backing off: mqtt to mqtts://broker:8883")
    assert text[2] == "                 last error: timed out"
    assert "  [warning] The oldest reading is old. (backlog_old)" in text
    assert any(line.split()[:3] == ["cuff", "never", "81%"] for line in text)
    assert text[-1] == "  quarantined #7: mapping: bad"
    odd = {**doc, "health": {"pid": 1}}  # written by another version of the daemon
    assert "unexpected shape" in render_status(odd).splitlines()[1]


async def test_metrics_scraped_over_http_parse_with_prometheus_parser() -> None:
    clock = Clock()
    m = model(clock)
    m.sent(0.02, ["blood-pressure"], rejected=0)
    m.sent(3.0, ["body-weight", "blood-pressure"], rejected=0)
    m.queue_probed({"pending": 1, "delivered": 3}, clock.t - 30, 2)
    m.submitted("cuff", ["blood-pressure"], clock.t, 1.5, {"1": True})
    m.battery("cuff", 55)
    m.input_rejected("scale")
    runner = web.AppRunner(metrics_app(m))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
            text = await r.text()
    finally:
        await runner.cleanup()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }
    assert samples[("vitalgate_build_info", (("version", "9.9"),))] == 1
    assert samples[("vitalgate_queue_readings", (("state", "pending"),))] == 1
    assert samples[("vitalgate_queue_oldest_pending_age_seconds", ())] == 30
    assert samples[("vitalgate_readings_delivered_total", (("kind", "blood-pressure"),))] == 2
    assert samples[("vitalgate_readings_received_total", (("kind", "blood-pressure"),))] == 1
    assert samples[("vitalgate_input_rejected_total", (("device", "scale"),))] == 1
    assert samples[("vitalgate_forward_latency_seconds_bucket", (("le", "0.025"),))] == 1
    assert samples[("vitalgate_forward_latency_seconds_bucket", (("le", "5.0"),))] == 2
    assert samples[("vitalgate_forward_latency_seconds_count", ())] == 2
    assert samples[("vitalgate_forwarder_connected", ())] == 1
    assert samples[("vitalgate_last_delivery_timestamp_seconds", ())] == clock.t
    assert samples[("vitalgate_device_last_seen_timestamp_seconds", (("device", "cuff"),))] == clock.t
    assert samples[("vitalgate_device_battery_percent", (("device", "cuff"),))] == 55
    # Labels are kinds, states and configured device names only: nothing that identifies a person or device.
    assert {k for (_, ls) in samples for k, _ in ls} <= {"version", "state", "kind", "device", "le"}
    assert {v for (_, ls) in samples for k, v in ls if k == "device"} == {"cuff", "scale"}


def test_journal_priorities_prefix_every_line(tmp_path: Path) -> None:
    import structlog

    out = io.StringIO()
    configure_logging("debug", "json", out, journal=True)
    log = structlog.get_logger("t")
    log.error("e")
    log.warning("w")
    log.info("i")
    log.debug("d")
    assert [line[:3] for line in out.getvalue().splitlines()] == ["<3>", "<4>", "<6>", "<7>"]
    f = tmp_path / "stream"
    with f.open("w") as stream:
        st = os.fstat(stream.fileno())
        assert stdout_is_journal(stream, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not stdout_is_journal(stream, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
        assert not stdout_is_journal(stream, {})
    configure_logging("info", "json", io.StringIO(), journal=False)


def test_status_text_shows_the_quirks_applied_to_a_device(tmp_path: Path) -> None:
    m = model(Clock())
    m.battery("cuff", 81)
    m.quirks("cuff", ["clock at 0x2A08", "waits 1 s after connecting"])
    snapshot.write(tmp_path / "health.json", m.as_dict())
    doc = status_document(tmp_path, {"pending": 0}, [], 0)
    assert doc["health"]["devices"][0]["quirks"] == ["clock at 0x2A08", "waits 1 s after connecting"]
    text = render_status(doc).splitlines()
    row = next(i for i, line in enumerate(text) if line.split()[:1] == ["cuff"])
    assert text[row + 1].split() == ["quirks:", "clock", "at", "0x2A08;", "waits", "1", "s", "after", "connecting"]
