"""MQTT forwarder: FHIR Bundles to a broker at QoS 1, acked per item only on a successful PUBACK.

aiomqtt owns the socket and its event-loop integration; we publish through a small subclass
(`mqtt_client.AckingClient`) because `aiomqtt.Client.publish` drops the PUBACK reason code (MQTT 5
brokers answer an ACL denial with a PUBACK carrying 0x87 "Not authorized": counting that as delivered
would silently lose readings) and awaiting one coroutine per message costs more than the broker does.
A batch is published through a sliding window of `window` in-flight messages: bursts of unacknowledged
publishes stall on Nagle's algorithm at the broker, a steady window keeps the pipe full.

Over MQTT 3.1.1 a broker cannot say "not authorized" in a PUBACK (Mosquitto acks and drops): use MQTT 5.

The forwarder never retries: a failed connect raises RetryableError / PermanentError, a connection lost
mid-batch returns what was confirmed so far (or raises when nothing was), and the next `send` reconnects.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import ssl
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import aiomqtt
import orjson
import paho.mqtt.client as paho
import structlog
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway import __version__
from gateway.errors import ConfigError, KeyFileError
from gateway.forwarders import ForwarderContext
from gateway.forwarders.base import (
    ForwarderError,
    Outgoing,
    PermanentError,
    RetryableError,
    SendReport,
)
from gateway.forwarders.mqtt_client import (
    CONTENT_TYPE,
    AckingClient,
    PublishProperties,
    client_logger,
    code_of,
)
from gateway.forwarders.mqtt_config import MqttSettings, parse_settings
from gateway.secrets import read_secret
from gateway.tls import tls_client_context

__all__ = ["CONTENT_TYPE", "MqttForwarder", "PublishRefused", "build"]

log = structlog.get_logger(__name__)

BATCH_WINDOWS = 4  # a send takes up to this many in-flight windows' worth of items
STOP_BUDGET = 1.0  # seconds the goodbye (offline presence + DISCONNECT) may take when the daemon stops


class PublishRefused(PermanentError):
    """The broker refused our publishes (MQTT 5 PUBACK reason code), e.g. 0x87 Not authorized (ACL)."""

    def __init__(self, message: str, *, reason_code: int) -> None:
        super().__init__(message)
        self.reason_code = reason_code


# MQTT 5 section 3.4.2.1: PUBACK reason codes >= 0x80 are failures. What each one means for the item:
# "reject" = this item can never be delivered as is (quarantine it), "refuse" = configuration problem,
# nothing goes through until an operator acts (PermanentError), anything else = try again later.
_PUBACK_REJECT = {0x95: "packet too large", 0x99: "payload format invalid"}
_PUBACK_REFUSE = {0x87: "not authorized", 0x90: "topic name invalid"}

# CONNACK codes (MQTT 3.1.1 section 3.2.2.3 and MQTT 5 section 3.2.2.2) that retrying cannot fix.
_CONNACK_PERMANENT = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    4: "bad user name or password",
    5: "not authorized",
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x8A: "banned",
    0x8C: "bad authentication method",
}

# SSL errors that mean "the connection broke during the handshake", not "we do not trust each other".
_TLS_TRANSIENT = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)


class MqttForwarder:
    """Publishes each Outgoing's body to one topic; see the module docstring for the delivery rules."""

    name = "mqtt"

    def __init__(self, settings: MqttSettings) -> None:
        self.settings = settings
        self._client: AckingClient | None = None
        self._tls_context: ssl.SSLContext | None = None
        self._stale = False  # set by reload(): reconnect before the next send
        self._plaintext_warned = False  # said once per forwarder (per config), not on every reconnect

    @property
    def window(self) -> int:
        """Items per `send`: several in-flight windows, so the window slides inside a batch and the
        wait for the last PUBACKs of a batch (when nothing else is in flight) is paid less often."""
        return self.settings.window * BATCH_WINDOWS

    def reload(self) -> None:
        """SIGHUP: re-read the password and certificates; the next send reconnects with them.

        A password file that became unreadable keeps the old one (and says so) rather than dropping it.
        """
        s = self.settings
        if s.password_spec is not None:
            try:
                password = read_secret(s.password_spec)
            except KeyFileError as exc:
                log.error("mqtt_reload_failed", error=str(exc))
                return
            self.settings = dataclasses.replace(s, password=password)
        self._tls_context = None
        self._stale = True

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client, self._client = self._client, None
        if client is None or client.lost:
            return
        # Cancelled means the daemon is stopping: the whole goodbye must fit the stop budget (SIGTERM ends
        # the process within 2 s), and a broker that does not answer gets its last will instead.
        stopping = exc_type is not None and issubclass(exc_type, asyncio.CancelledError)
        budget = min(self.settings.connect_timeout, STOP_BUDGET / 2) if stopping else self.settings.connect_timeout
        try:
            # A graceful DISCONNECT suppresses the will, so say "offline" ourselves.
            async with asyncio.timeout(budget):
                await self._publish_and_wait(client, self.settings.presence_topic, _presence("offline"), True)
        except (TimeoutError, ForwarderError, aiomqtt.MqttError):
            pass
        await self._close(client, budget)

    # -- connection ------------------------------------------------------------------------------------

    def _tls(self) -> ssl.SSLContext:
        if self._tls_context is None:
            s = self.settings
            self._tls_context = tls_client_context(s.ca_file, s.client_cert, s.client_key)
        return self._tls_context

    def _new_client(self) -> AckingClient:
        s = self.settings
        v5 = s.protocol == "5"
        connect_props: Properties | None = None
        if v5:
            connect_props = _new_properties(PacketTypes.CONNECT)
            connect_props.SessionExpiryInterval = s.session_expiry
        return AckingClient(
            s.host,
            s.port,
            username=s.username,
            password=s.password.decode() if s.password is not None else None,
            logger=client_logger,
            identifier=s.client_id,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            will=aiomqtt.Will(s.presence_topic, _presence("offline"), qos=1, retain=True),
            clean_session=None if v5 else False,
            clean_start=False if v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,  # 3.1.1: clean_session
            timeout=s.connect_timeout,
            keepalive=s.keepalive,
            max_inflight_messages=s.window,
            properties=connect_props,
            tls_context=self._tls() if s.tls else None,
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )

    async def _connect(self) -> AckingClient:
        if self._stale and self._client is not None:
            client, self._client = self._client, None
            await self._close(client)
        self._stale = False
        if self._client is not None and not self._client.lost:
            return self._client
        if self._client is not None:
            await self._close(self._client)
            self._client = None
        s = self.settings
        where = f"{s.host}:{s.port}"
        if not s.tls and not self._plaintext_warned:
            log.warning("mqtt_plaintext", broker=where)
            self._plaintext_warned = True
        try:
            client = self._new_client()
        except (ssl.SSLError, OSError, ValueError) as exc:  # TLS files changed since start-up (reload)
            log.error("mqtt_tls_setup_failed", error=_reason(exc))
            raise PermanentError(f"TLS set-up for {where} failed: {_reason(exc)}") from None
        try:
            await client.__aenter__()
        except MqttConnectError as exc:
            code = code_of(exc.rc)
            reason = _CONNACK_PERMANENT.get(code)
            log.error("mqtt_connect_refused", broker=where, reason_code=code, permanent=reason is not None)
            if reason is not None:
                raise PermanentError(f"broker {where} refused the connection: {reason} ({code:#04x})") from None
            raise RetryableError(f"broker {where} refused the connection ({code:#04x})") from None
        except aiomqtt.MqttError as exc:
            tls = client.tls_failure
            if tls is not None and not isinstance(tls, _TLS_TRANSIENT):
                if isinstance(tls, ssl.SSLCertVerificationError):
                    detail = f"server certificate not trusted: {tls.verify_message}"
                else:
                    detail = f"handshake refused: {tls.reason}"
                log.error("mqtt_tls_failed", broker=where, detail=detail)
                raise PermanentError(f"TLS with {where} failed: {detail}") from None
            # debug: the drainer's one `forwarder_unavailable` warning carries this same sentence.
            log.debug("mqtt_connect_failed", broker=where, error=str(exc))
            raise RetryableError(f"cannot connect to {where}: {exc}") from None
        client.watch_connection()
        try:
            async with asyncio.timeout(s.ack_timeout):
                await self._publish_and_wait(client, s.presence_topic, _presence("online"), True)
            client.proven = False  # the presence topic's ACL says nothing about the bundle topic's
        except BaseException:
            await self._close(client)
            raise
        self._client = client
        log.info("mqtt_connected", broker=where, protocol=s.protocol, client_id=s.client_id)
        return client

    async def _close(self, client: AckingClient, budget: float | None = None) -> None:
        try:
            async with asyncio.timeout(self.settings.connect_timeout if budget is None else budget):
                await client.__aexit__(None, None, None)
        except (TimeoutError, aiomqtt.MqttError, OSError):
            pass
        client.lost_reason()  # retrieve any exception so asyncio does not log it

    async def _publish_and_wait(self, client: AckingClient, topic: str, payload: bytes, retain: bool) -> None:
        """One presence message; reuses the batch path so reason codes are checked the same way."""
        report = await self._publish_window(client, [(0, topic, payload, retain, None)])
        if 0 not in report.confirmed:
            raise RetryableError("presence message not acknowledged")

    # -- sending ---------------------------------------------------------------------------------------

    def _properties(self, item: Outgoing) -> Properties | None:
        if self.settings.protocol != "5":
            return None
        return PublishProperties(item.identifier)

    async def send(self, batch: Sequence[Outgoing]) -> SendReport:
        if not batch:
            return SendReport(confirmed=frozenset())
        client = await self._connect()
        topic = self.settings.topic
        messages = [(item.item_id, topic, item.body, False, self._properties(item)) for item in batch]
        return await self._publish_window(client, messages)

    async def _publish_window(
        self,
        client: AckingClient,
        messages: Sequence[tuple[int, str, bytes, bool, Properties | None]],
    ) -> SendReport:
        """Keep up to `window` publishes in flight; classify each PUBACK as it arrives."""
        confirmed: set[int] = set()
        rejected: dict[int, str] = {}
        refused: dict[int, int] = {}  # reason code -> count
        failed = 0
        in_flight = 0
        next_index = 0
        broken: str | None = None
        while True:
            window = self.settings.window if client.proven else 1
            try:
                while in_flight < window and next_index < len(messages) and not client.lost:
                    token, topic, payload, retain, props = messages[next_index]
                    client.publish_qos1(token, topic, payload, retain, props)
                    next_index += 1
                    in_flight += 1
            except aiomqtt.MqttError as exc:
                broken = f"publish failed: {exc}"
            drained = bool(client.completed)
            while client.completed:
                token, code = client.completed.popleft()
                in_flight -= 1
                if code < 0x80:  # 0x00 success, 0x10 no matching subscribers: both delivered
                    confirmed.add(token)
                    client.proven = True
                elif code in _PUBACK_REJECT:
                    rejected[token] = f"broker rejected the message: {_PUBACK_REJECT[code]} ({code:#04x})"
                elif code in _PUBACK_REFUSE:
                    refused[code] = refused.get(code, 0) + 1
                else:
                    failed += 1
            if broken is None and client.lost:
                broken = f"connection lost: {client.lost_reason()}"
            if broken is not None or (in_flight == 0 and next_index == len(messages)):
                break
            if drained:
                continue  # the window has room again: refill before waiting
            client.progress.clear()
            client.quick_ack()
            try:
                async with asyncio.timeout(self.settings.ack_timeout):
                    await client.progress.wait()
            except TimeoutError:
                broken = f"no PUBACK within {self.settings.ack_timeout:g} s"
                break

        where = f"{self.settings.host}:{self.settings.port}"
        if failed:
            log.warning("mqtt_publish_failed", broker=where, count=failed)
        if broken is not None:
            log.warning("mqtt_batch_interrupted", broker=where, reason=broken, confirmed=len(confirmed),
                        unconfirmed=len(messages) - len(confirmed) - len(rejected))  # fmt: skip
            if client is self._client:
                self._client = None
            await self._close(client)
        if refused:
            code, count = max(refused.items(), key=lambda kv: kv[1])
            log.error("mqtt_publish_refused", broker=where, reason_code=code, count=count,
                      topic=messages[0][1])  # fmt: skip
            if not confirmed:
                what = f"{_PUBACK_REFUSE[code]} ({code:#04x})"
                raise PublishRefused(
                    f"broker {where} refused publishing to {messages[0][1]}: {what}",
                    reason_code=code,
                )
        if broken is not None and not confirmed and not rejected:
            raise RetryableError(f"MQTT to {where}: {broken}")
        return SendReport(confirmed=frozenset(confirmed), rejected=rejected)


def _new_properties(packet_type: int) -> Properties:
    return Properties(packet_type)  # type: ignore[no-untyped-call]


def _presence(state: str) -> bytes:
    """Birth / will payload: who and what, never whose data."""
    return orjson.dumps({"state": state, "software": f"vitalgate/{__version__}"})


def build(section: Mapping[str, Any], ctx: ForwarderContext) -> MqttForwarder:
    """Entry point named in FORWARDERS: validate `[output.mqtt]` and make the forwarder (no network I/O).

    The TLS material is loaded here, so an unreadable CA file or a key that does not match its
    certificate stops the daemon at start-up with the key named, not at the first send.
    """
    forwarder = MqttForwarder(parse_settings(section, ctx))
    s = forwarder.settings
    if s.tls:
        try:
            tls_client_context(s.ca_file)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ConfigError(ctx.config_file, "output.mqtt.ca_file", f"cannot load: {_reason(exc)}") from None
        try:
            forwarder._tls()
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ConfigError(
                ctx.config_file, "output.mqtt.client_key", f"client certificate and key: {_reason(exc)}"
            ) from None
    return forwarder


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__)
