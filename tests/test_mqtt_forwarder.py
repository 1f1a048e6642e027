"""The MQTT forwarder against a real Mosquitto (TLS, passwords, ACL) started by the tests."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.errors import ConfigError
from gateway.forwarders import FORWARDERS, build_forwarder
from gateway.forwarders.base import PermanentError, RetryableError
from gateway.forwarders.mqtt import CONTENT_TYPE, MqttForwarder, PublishRefused, build
from tests.certs import write_secret
from tests.mosquitto import GATEWAY_ID, MOSQUITTO, PASSWORD, USER, Mosquitto, Pki
from tests.mqtt_helpers import Received, assert_valid_fhir, context, drain, outgoing, subscriber

pytestmark = pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="mosquitto is not installed")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path_factory.mktemp("broker"), pki) as b:
        yield b


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    return write_secret(tmp_path / "mqtt.password", PASSWORD)


def section(broker: Mosquitto, pki: Pki, password_file: Path, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "host": "localhost",
        "port": broker.ports["tls"],
        "ca_file": str(pki.ca.cert_file),
        "username": USER,
        "password_file": str(password_file),
        "window": 64,
        "connect_timeout": 5,
        "ack_timeout": 5,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def forwarder(broker: Mosquitto, pki: Pki, password_file: Path, tmp: Path, **overrides: Any) -> MqttForwarder:
    return build(section(broker, pki, password_file, **overrides), context(tmp))


async def test_registered_and_built_through_the_registry(
    broker: Mosquitto, pki: Pki, password_file: Path, tmp_path: Path
) -> None:
    assert FORWARDERS["mqtt"] == "gateway.forwarders.mqtt"
    fwd = build_forwarder("mqtt", section(broker, pki, password_file), context(tmp_path))
    assert isinstance(fwd, MqttForwarder)
    assert fwd.window == 4 * 64  # a batch holds several in-flight windows
    assert fwd.settings.topic == f"vitalgate/{GATEWAY_ID}/bundles"
    assert fwd.settings.client_id == f"vitalgate-{GATEWAY_ID}"


async def test_delivers_every_reading_once_as_fhir_with_properties(
    broker: Mosquitto, pki: Pki, password_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    items = outgoing(600)
    received = Received()
    async with subscriber(broker, received):
        async with forwarder(broker, pki, password_file, tmp_path, client_id="t-deliver") as fwd:
            errors = await drain(fwd, items)
            await received.wait_for({i.identifier for i in items})
        await received.wait_for_presence(2)  # the "offline" presence message from __aexit__
    assert errors == []
    assert {i.identifier for i in items} == set(received.counts)
    assert set(received.counts.values()) == {1}
    assert received.content_types == {CONTENT_TYPE}
    assert_valid_fhir(received, items)
    states = [orjson.loads(p)["state"] for p, _ in received.presence]
    assert states == ["online", "offline"]
    assert not [r for r in caplog.records if "pending publish" in r.getMessage()]


async def test_mqtt_311_delivers_with_identifier_in_payload(
    broker: Mosquitto, pki: Pki, password_file: Path, tmp_path: Path
) -> None:
    items = outgoing(50)
    received = Received()
    async with (
        subscriber(broker, received),
        forwarder(broker, pki, password_file, tmp_path, protocol="3.1.1", client_id="t-311") as fwd,
    ):
        assert await drain(fwd, items) == []
        await received.wait_for({i.identifier for i in items})
    assert received.content_types == {None}  # no properties in 3.1.1
    assert_valid_fhir(received, items)


async def test_client_certificate_on_a_listener_that_requires_one(
    broker: Mosquitto, pki: Pki, password_file: Path, tmp_path: Path
) -> None:
    items = outgoing(10)
    received = Received()
    without = forwarder(
        broker,
        pki,
        password_file,
        tmp_path,
        port=broker.ports["mtls"],
        client_id="t-nocert",
        connect_timeout=1,
    )
    async with without:
        with pytest.raises((PermanentError, RetryableError)):
            await without.send(items)
    cert, key = pki.client.cert_file, pki.client.key_file
    with_cert = forwarder(
        broker, pki, password_file, tmp_path, port=broker.ports["mtls"], client_cert=str(cert),
        client_key=str(key), client_id="t-cert",
    )  # fmt: skip
    async with subscriber(broker, received), with_cert:
        assert await drain(with_cert, items) == []
        await received.wait_for({i.identifier for i in items})


async def test_broker_killed_and_restarted_mid_stream_loses_nothing(
    tmp_path: Path, pki: Pki, password_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Three SIGKILLs of the broker with a window of publishes in flight; the test plays the drainer.

    Each outage: SIGSTOP the broker (our publishes are on the wire, unacknowledged), let the backend
    catch up with what the broker already acknowledged (a broker loses acked-but-undelivered messages
    when killed: that is the broker's durability, not ours), SIGKILL it, restart it, resume.
    """
    items = outgoing(3000)
    wanted = {i.identifier for i in items}
    received = Received()
    confirmed: set[str] = set()
    broker_up = asyncio.Event()
    broker_up.set()
    (tmp_path / "broker").mkdir()
    with Mosquitto(tmp_path / "broker", pki) as b:
        fwd = forwarder(b, pki, password_file, tmp_path, client_id="t-kill", ack_timeout=25)

        async def backoff(_: Exception) -> None:
            await broker_up.wait()
            await asyncio.sleep(0.02)

        async with fwd:
            sub = subscriber(b, received)
            await sub.__aenter__()
            sender = asyncio.create_task(
                drain(fwd, items, on_error=backoff, batch=256, confirmed=confirmed), name="sender"
            )
            for threshold in (300, 1200, 2100):
                async with asyncio.timeout(30):
                    while len(confirmed) < threshold:  # noqa: ASYNC110 - polling the sender's progress
                        await asyncio.sleep(0.001)
                broker_up.clear()
                b.freeze()
                await asyncio.sleep(0.1)
                async with asyncio.timeout(10):
                    while not confirmed <= received.counts.keys():
                        received.changed.clear()
                        await received.changed.wait()
                in_flight = len(wanted - confirmed)
                b.kill()
                await sub.__aexit__(None, None, None)
                b.start()
                sub = subscriber(b, received)
                await sub.__aenter__()  # the backend is listening again before the gateway may resume
                broker_up.set()
                assert in_flight > 0
            errors = await asyncio.wait_for(sender, 60)
            await received.wait_for(wanted)
            await sub.__aexit__(None, None, None)
    assert wanted == set(received.counts)
    assert len(errors) >= 3, "the outages were not noticed"
    assert all(isinstance(e, RetryableError) for e in errors)
    assert_valid_fhir(received, items)
    # outages are reported by our typed events, not by library tracebacks or error records
    noisy = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith(("asyncio", "gateway"))]
    assert not noisy, [r.getMessage() for r in noisy]


FAULTS = {
    "wrong CA": ({"ca_file": "other_ca"}, "server certificate not trusted"),
    "expired server certificate": ({"port": "expired"}, "certificate has expired"),
    "hostname mismatch": ({"port": "wrong_host"}, "hostname mismatch"),
    # Mosquitto answers a wrong password with 0x87 "not authorized" rather than 0x86.
    "bad password": ({"password": "not-the-password"}, "refused the connection"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_faults_raise_clear_errors_keep_readings_and_recover(
    fault: str,
    broker: Mosquitto,
    pki: Pki,
    password_file: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    change, expected = FAULTS[fault]
    overrides: dict[str, Any] = {"client_id": f"t-fault-{fault.replace(' ', '-')}"}
    if "ca_file" in change:
        overrides["ca_file"] = str(pki.other_ca.cert_file)
    if "port" in change:
        overrides["port"] = broker.ports[change["port"]]
    wrong_pw = write_secret(tmp_path / "wrong.password", change.get("password", PASSWORD))
    items = outgoing(20, start=10_000)
    received = Received()
    async with subscriber(broker, received):
        bad = forwarder(broker, pki, wrong_pw, tmp_path, **overrides)
        async with bad:
            with pytest.raises(PermanentError) as err:
                await bad.send(items)
            # A second attempt fails the same way: no silent downgrade to plain TCP or no-verify.
            with pytest.raises(PermanentError):
                await bad.send(items)
        message = str(err.value)
        assert expected in message.lower()
        assert PASSWORD not in message and "not-the-password" not in message
        await asyncio.sleep(0.2)
        assert not received.counts, "nothing may reach the backend while the fault lasts"
        # The operator fixes the fault: same items (still queued), correct configuration.
        good = forwarder(broker, pki, password_file, tmp_path, client_id=overrides["client_id"])
        async with good:
            assert await drain(good, items) == []
        await received.wait_for({i.identifier for i in items})
    assert not [r for r in caplog.records if PASSWORD in r.getMessage() or "not-the-password" in r.getMessage()]


async def test_topic_denied_by_acl_is_a_typed_refusal_and_nothing_is_acked(
    broker: Mosquitto, pki: Pki, password_file: Path, tmp_path: Path
) -> None:
    items = outgoing(30, start=20_000)
    received = Received()
    async with subscriber(broker, received):
        denied = forwarder(broker, pki, password_file, tmp_path, topic="vitalgate/{gateway_id}/elsewhere",
                           client_id="t-acl")  # fmt: skip
        async with denied:
            with pytest.raises(PublishRefused) as err:
                await denied.send(items)
        assert err.value.reason_code == 0x87
        assert "not authorized" in str(err.value)
        await asyncio.sleep(0.2)
        assert not received.counts
        fixed = forwarder(broker, pki, password_file, tmp_path, client_id="t-acl")
        async with fixed:
            assert await drain(fixed, items) == []
        await received.wait_for({i.identifier for i in items})


async def test_broker_down_is_retryable(pki: Pki, password_file: Path, tmp_path: Path) -> None:
    pytest.importorskip("aiomqtt")
    from tests.mosquitto import free_port

    sec = {"host": "127.0.0.1", "port": free_port(), "ca_file": str(pki.ca.cert_file), "username": USER,
           "password_file": str(password_file), "connect_timeout": 2}  # fmt: skip
    async with build(sec, context(tmp_path)) as fwd:
        with pytest.raises(RetryableError, match="cannot connect"):
            await fwd.send(outgoing(1))


# -- configuration ---------------------------------------------------------------------------------------


def test_config_errors_name_the_key(tmp_path: Path, pki: Pki, password_file: Path) -> None:
    ctx = context(tmp_path)
    good = {
        "host": "broker.example",
        "ca_file": str(pki.ca.cert_file),
        "username": USER,
        "password_file": str(password_file),
    }
    cases: dict[str, dict[str, Any]] = {
        "output.mqtt.host": {"host": ""},
        "output.mqtt.tls": {"tls": False, "ca_file": None},
        "output.mqtt.ca_file": {"tls": False},
        "output.mqtt.port": {"port": 0},
        "output.mqtt.window": {"window": 70000},
        "output.mqtt.protocol": {"protocol": "4"},
        "output.mqtt.topic": {"topic": "vitalgate/{patient}/x"},
        "output.mqtt.presence_topic": {"presence_topic": "vitalgate/+/status"},
        "output.mqtt.client_id": {"client_id": "bad id with spaces"},
        "output.mqtt.client_key": {"client_cert": str(pki.client.cert_file)},
        "output.mqtt.nonsense": {"nonsense": 1},
        "output.mqtt.keepalive": {"keepalive": True},
    }
    for key, change in cases.items():
        sec = {k: v for k, v in {**good, **change}.items() if v is not None}
        with pytest.raises(ConfigError) as err:
            build(sec, ctx)
        assert err.value.key == key, (key, err.value)
        assert err.value.file == ctx.config_file


def test_password_file_must_be_private_and_never_shown(tmp_path: Path, pki: Pki) -> None:
    ctx = context(tmp_path)
    loose = write_secret(tmp_path / "loose.password", PASSWORD)
    loose.chmod(0o644)
    with pytest.raises(ConfigError) as err:
        build({"host": "localhost", "username": USER, "password_file": str(loose)}, ctx)
    assert err.value.key == "output.mqtt.password_file"
    assert PASSWORD not in str(err.value)
    loose.chmod(0o600)
    fwd = build({"host": "localhost", "username": USER, "password_file": str(loose)}, ctx)
    assert fwd.settings.password == PASSWORD.encode()
    assert PASSWORD not in repr(fwd.settings) and PASSWORD not in str(fwd.settings)


def test_password_from_systemd_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-password").write_text(PASSWORD)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    fwd = build({"host": "localhost", "username": USER, "password_file": "credential:mqtt-password"},
                context(tmp_path))  # fmt: skip
    assert fwd.settings.password == PASSWORD.encode()


def test_plaintext_needs_an_explicit_opt_out(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    assert build({"host": "localhost"}, ctx).settings.tls is True
    assert build({"host": "localhost"}, ctx).settings.port == 8883
    local = build({"host": "127.0.0.1", "tls": False}, ctx).settings
    assert (local.tls, local.port) == (False, 1883)
    with pytest.raises(ConfigError) as err:
        build({"host": "10.0.0.5", "tls": False}, ctx)
    assert err.value.key == "output.mqtt.tls"
    with pytest.raises(ConfigError):
        build({"host": "10.0.0.5", "tls": "false"}, ctx)  # a string is not an opt-out
    remote = build({"host": "10.0.0.5", "tls": False, "allow_plaintext_remote": True}, ctx).settings
    assert remote.tls is False


async def test_explicit_plaintext_to_loopback_broker(broker: Mosquitto, tmp_path: Path) -> None:
    items = outgoing(5, start=30_000)
    received = Received()
    pw = write_secret(tmp_path / "pw", PASSWORD)
    sec = {"host": "127.0.0.1", "port": broker.ports["plain"], "tls": False, "username": USER,
           "password_file": str(pw), "client_id": "t-plain"}  # fmt: skip
    async with subscriber(broker, received), build(sec, context(tmp_path)) as fwd:
        assert await drain(fwd, items) == []
        await received.wait_for({i.identifier for i in items})


async def test_sighup_reload_picks_up_a_fixed_password(broker: Mosquitto, pki: Pki, tmp_path: Path) -> None:
    pw = write_secret(tmp_path / "mqtt.password", "an-old-password")
    items = outgoing(5, start=40_000)
    received = Received()
    async with subscriber(broker, received), forwarder(broker, pki, pw, tmp_path, client_id="t-reload") as fwd:
        with pytest.raises(PermanentError):
            await fwd.send(items)
        write_secret(pw, PASSWORD)
        fwd.reload()
        assert await drain(fwd, items) == []
        await received.wait_for({i.identifier for i in items})


@pytest.mark.parametrize("identifier", ["0" * 64, "x", "é" * 200])
def test_prepacked_publish_properties_match_paho(identifier: str) -> None:
    """Our one-step packer must produce exactly what paho's generic Properties would."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from gateway.forwarders.mqtt_client import PublishProperties

    reference = Properties(PacketTypes.PUBLISH)
    reference.PayloadFormatIndicator = 1
    reference.ContentType = CONTENT_TYPE
    reference.UserProperty = [("identifier", identifier)]
    assert PublishProperties(identifier).pack() == reference.pack()


def test_example_config_documents_every_mqtt_key(tmp_path: Path, pki: Pki) -> None:
    import tomllib

    from gateway.forwarders.mqtt_config import _KNOWN_KEYS

    text = (Path(__file__).resolve().parent.parent / "config/vitalgate.example.toml").read_text()
    lines = text.split("# [output.mqtt]\n", 1)[1].split("\n\n", 1)[0].splitlines()
    block = "\n".join(line.removeprefix("# ") for line in lines)
    doc = tomllib.loads(block)
    assert set(doc) == _KNOWN_KEYS
    # the documented values are valid (paths replaced by real files, placeholders by real values)
    doc["ca_file"] = str(pki.ca.cert_file)
    doc["client_cert"], doc["client_key"] = str(pki.client.cert_file), str(pki.client.key_file)
    doc["password_file"] = str(write_secret(tmp_path / "pw", PASSWORD))
    doc["client_id"] = "vitalgate-gw-test"
    settings = build(doc, context(tmp_path)).settings
    assert settings.topic == f"vitalgate/{GATEWAY_ID}/bundles" and settings.window == 128


def test_library_chatter_is_filtered_but_real_errors_pass() -> None:
    from gateway.forwarders.mqtt_client import client_logger as _client_logger

    def record(msg: str, *args: object) -> logging.LogRecord:
        return logging.LogRecord(_client_logger.name, logging.ERROR, __file__, 1, msg, args, None)

    assert not _client_logger.filter(record("There are %d pending publish calls.", 300))
    assert not _client_logger.filter(record("failed to receive on socket: %s", "EOF occurred"))
    assert _client_logger.filter(record('Unexpected message ID "%d" in on_subscribe callback', 7))


def test_unusable_tls_material_is_a_config_error_at_start_up(tmp_path: Path, pki: Pki) -> None:
    ctx = context(tmp_path)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError) as err:
        build({"host": "localhost", "ca_file": str(junk)}, ctx)
    assert err.value.key == "output.mqtt.ca_file"
    cert, other_key = str(pki.client.cert_file), str(pki.server.key_file)
    with pytest.raises(ConfigError) as err:
        build({"host": "localhost", "ca_file": str(pki.ca.cert_file), "client_cert": cert, "client_key": other_key},
              ctx)  # fmt: skip
    assert err.value.key == "output.mqtt.client_key"
    binary = tmp_path / "binary.password"
    binary.write_bytes(b"\xff\xfe\x00")
    binary.chmod(0o600)
    with pytest.raises(ConfigError) as err:
        build({"host": "localhost", "username": USER, "password_file": str(binary)}, ctx)
    assert err.value.key == "output.mqtt.password_file"


def test_tls_context_verifies_and_requires_tls_1_2(tmp_path: Path, pki: Pki) -> None:
    import ssl

    ctx = build({"host": "localhost", "ca_file": str(pki.ca.cert_file)}, context(tmp_path))._tls()
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


def test_client_key_must_be_private_and_may_be_a_systemd_credential(
    tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The TLS client key is a secret like the password: loose modes are refused, credentials work."""
    ctx = context(tmp_path)
    cert, key = pki.client.cert_file, pki.client.key_file
    loose = tmp_path / "loose.key"
    loose.write_bytes(key.read_bytes())
    loose.chmod(0o644)
    with pytest.raises(ConfigError) as err:
        build(
            {"host": "localhost", "ca_file": str(pki.ca.cert_file), "client_cert": str(cert), "client_key": str(loose)},
            ctx,
        )
    assert err.value.key == "output.mqtt.client_key" and "0644" in err.value.problem
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-client.key").write_bytes(key.read_bytes())
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    tls = {"ca_file": str(pki.ca.cert_file), "client_cert": str(cert), "client_key": "credential:mqtt-client.key"}
    fwd = build({"host": "localhost", **tls}, ctx)
    assert fwd.settings.client_key == creds / "mqtt-client.key"
