"""MQTT through the real queue and drainer, and the daemon as a process: SIGKILLs, sd_notify."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle

from gateway.crypto import KeyRing, create_key_file
from gateway.drainer import Backoff, Drainer
from gateway.fhir import GatewayInfo
from gateway.forwarders.base import PermanentError
from gateway.forwarders.mqtt import build
from gateway.queue import ReadingQueue, State
from tests.certs import write_secret
from tests.conftest import bp
from tests.mosquitto import GATEWAY_ID, MOSQUITTO, PASSWORD, USER, Mosquitto, Pki
from tests.mqtt_helpers import Received, context, subscriber

pytestmark = pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="mosquitto is not installed")

ROOT = Path(__file__).resolve().parent.parent
GW = GatewayInfo(id=GATEWAY_ID, version="0.1.0")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def broker(tmp_path: Path, pki: Pki) -> Iterator[Mosquitto]:
    (tmp_path / "broker").mkdir()
    with Mosquitto(tmp_path / "broker", pki) as b:
        yield b


async def test_acl_denial_keeps_rows_queued_until_fixed(
    broker: Mosquitto, pki: Pki, tmp_path: Path, queue: ReadingQueue
) -> None:
    """The real drainer and queue: a refused topic leaves every row pending; the fixed config drains them."""
    pw = write_secret(tmp_path / "mqtt.password", PASSWORD)
    base = {"host": "localhost", "port": broker.ports["tls"], "ca_file": str(pki.ca.cert_file), "username": USER,
            "password_file": str(pw), "client_id": "e2e-acl"}  # fmt: skip
    await queue.bind("BP123456", 1, "Patient/p1")
    await queue.put([bp(minute=m) for m in range(40)])
    received = Received()
    async with subscriber(broker, received):
        denied = build({**base, "topic": "vitalgate/{gateway_id}/elsewhere"}, context(tmp_path))
        drainer = Drainer(queue, denied, GW, batch_size=50, backoff=Backoff(0.01, 0.01))
        async with denied:
            with pytest.raises(PermanentError, match="not authorized"):
                await drainer.drain_once()
        counts = await queue.counts()
        assert (counts[State.PENDING], counts[State.DELIVERED]) == (40, 0)
        await asyncio.sleep(0.05)  # released with a short backoff
        fixed = build(base, context(tmp_path))
        drainer = Drainer(queue, fixed, GW, batch_size=50, backoff=Backoff(0.01, 0.01))
        async with fixed:
            async with asyncio.timeout(20):
                while (await queue.counts())[State.DELIVERED] < 40:
                    if not await drainer.drain_once():
                        await asyncio.sleep(0.02)
        await received.wait_for_count(40)
    assert len(received.counts) == 40
    for body in received.bodies.values():
        Bundle.model_validate_json(body)


def _config(tmp: Path, broker: Mosquitto, pki: Pki, count: int) -> Path:
    key = tmp / "data.key"
    if not key.exists():
        create_key_file(key)
    pw = write_secret(tmp / "mqtt.password", PASSWORD)
    cfg = tmp / "vitalgate.toml"
    cfg.write_text(f"""
[gateway]
id = "{GATEWAY_ID}"
state_dir = "state"
key_file = "{key}"
test_data = true
[queue]
batch_size = 200
retry_initial_seconds = 0.05
retry_max_seconds = 0.3
retry_permanent_seconds = 1
[logging]
level = "info"
format = "json"
[output]
forwarder = "mqtt"
[output.mqtt]
host = "localhost"
port = {broker.ports["tls"]}
ca_file = "{pki.ca.cert_file}"
username = "{USER}"
password_file = "{pw}"
client_id = "e2e-daemon"
window = 64
[[devices]]
driver = "simulated"
name = "cuff"
kind = "blood-pressure"
serial = "SIM-E2E-BP"
users = [1]
interval_seconds = 0.004
count = {count}
""")
    return cfg


def _vitalgate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], capture_output=True, text=True, cwd=ROOT, timeout=60
    )


def _spawn(cfg: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "--config", str(cfg)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


async def _counts(cfg: Path, tmp: Path) -> dict[State, int]:
    async with await ReadingQueue.open(tmp / "state" / "queue.db", KeyRing.load(str(tmp / "data.key"))) as q:
        return await q.counts()


@pytest.mark.timeout(1800)  # four daemon runs through 600 readings: minutes at a quarter of one core
async def test_gateway_sigkilled_mid_stream_every_committed_reading_arrives(
    broker: Mosquitto, pki: Pki, tmp_path: Path
) -> None:
    """`vitalgate run` as a process, SIGKILLed three times while readings flow; then run to completion.

    Also checks the systemd handshake of the real daemon: READY=1, then WATCHDOG=1 while healthy.
    """
    total = 600
    cfg = _config(tmp_path, broker, pki, total)
    bound = _vitalgate("bind", "SIM-E2E-BP", "Patient/e2e-1", "--user", "1", "--config", str(cfg))
    assert bound.returncode == 0, bound.stderr
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.setblocking(False)
    received = Received()
    kills = 0
    async with subscriber(broker, received):
        env = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "400000"}
        proc = _spawn(cfg, env)
        try:
            for threshold in (60, 200, 350):
                await received.wait_for_count(threshold, seconds=300)  # a bound for a hang, not a rate
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills += 1
                proc = _spawn(cfg)
            # the last run: the simulator finishes its count, the drainer empties the queue
            async with asyncio.timeout(600):
                while True:
                    counts = await _counts(cfg, tmp_path)
                    committed = sum(counts.values())
                    if counts[State.DELIVERED] == committed and len(received.counts) >= committed >= total:
                        break
                    await asyncio.sleep(0.2)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=20)
            assert proc.returncode == 0, err.decode()[-2000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    messages = []
    with contextlib.suppress(BlockingIOError):
        while True:
            messages.append(notify.recv(4096))
    notify.close()
    assert kills == 3
    counts = await _counts(cfg, tmp_path)
    committed = sum(counts.values())
    assert committed >= total and counts[State.DELIVERED] == committed
    # every committed reading arrived (at least once); the identifier dedups the repeats after kills
    assert len(received.counts) == committed
    for body in list(received.bodies.values())[:50]:
        Bundle.model_validate_json(body)
    # presence: each SIGKILL let the broker publish the last will; every start said "online"
    states = [orjson.loads(payload)["state"] for payload, _ in received.presence]
    assert states.count("offline") >= kills
    assert states.count("online") >= kills + 1
    assert messages and messages[0].startswith(b"READY=1")
    assert b"WATCHDOG=1" in messages


async def test_demo_publishes_to_a_broker(broker: Mosquitto, pki: Pki, tmp_path: Path) -> None:
    pw = write_secret(tmp_path / "mqtt.password", PASSWORD)
    received = Received()
    async with subscriber(broker, received):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "demo", "--until-each-device", "1", "--seconds", "300",
            "--out", str(tmp_path / "demo"),
            "--mqtt", f"mqtts://localhost:{broker.ports['tls']}", "--mqtt-ca", str(pki.ca.cert_file),
            "--mqtt-user", USER, "--mqtt-password-file", str(pw),
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 400)  # bounds a hang; the demo stops when done
        assert proc.returncode == 0, err.decode()
        total = next(line for line in out.decode().splitlines() if line.startswith("total")).split()
        forwarded = int(total[3])
        assert forwarded > 0
        await received.wait_for_count(forwarded)
    assert len(received.counts) == forwarded
    assert out.decode().count("  -> mqtt ") == forwarded
    for body in received.bodies.values():
        assert b'"HTEST"' in body
        Bundle.model_validate_json(body)


def test_demo_mqtt_url_rules() -> None:
    from gateway.demo_mqtt import mqtt_options
    from gateway.errors import ConfigError

    assert mqtt_options("mqtts://broker.example") == {"host": "broker.example", "port": 8883, "tls": True}
    assert mqtt_options("mqtt://10.0.0.2:1884", username="u") == {
        "host": "10.0.0.2", "port": 1884, "tls": False, "allow_plaintext_remote": True, "username": "u",
    }  # fmt: skip
    for bad in ("http://x", "mqtts://user:secret@host", "mqtts://", "mqtts://h:99999"):
        with pytest.raises(ConfigError) as err:
            mqtt_options(bad)
        assert "secret" not in str(err.value)
