"""The aiomqtt client underneath the MQTT forwarder, extended where aiomqtt falls short for us.

`aiomqtt.Client.publish` drops the PUBACK reason code and costs one awaiting coroutine per message;
`AckingClient.publish_qos1` records (token, reason code) per PUBACK instead and wakes one waiter. It also
keeps the TLS error type that aiomqtt flattens into a string, guards a deferred `add_writer` against a
socket closed in between, and can ask the kernel for quick ACKs. `PublishProperties` packs the PUBLISH
properties in one step. These rely on aiomqtt 2.x internals (`_client`, `_disconnected`, `_on_publish`):
the dependency is pinned below 3 and the tests against a real broker exercise every override.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import ssl
import struct
import sys
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

__all__ = ["CONTENT_TYPE", "IDENTIFIER_PROPERTY", "AckingClient", "PublishProperties", "client_logger", "code_of"]

CONTENT_TYPE = "application/fhir+json"
IDENTIFIER_PROPERTY = "identifier"

_TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


class _QuietAiomqtt(logging.Filter):
    """Keep aiomqtt's and paho's expected chatter out of the logs.

    "There are N pending publish calls" warns about a full window, which is our steady state; "failed to
    receive on socket" is a lost connection, which we report once as a typed event (`mqtt_batch_interrupted`,
    `mqtt_connect_failed`) with the broker named.
    """

    _DROP = ("pending publish calls", "failed to receive on socket")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in self._DROP)


client_logger = logging.getLogger("gateway.forwarders.mqtt.client")
client_logger.addFilter(_QuietAiomqtt())
client_logger.setLevel(logging.WARNING)


def code_of(reason: Any) -> int:
    """paho hands MQTT 5 ReasonCode objects or plain ints (3.1.1); we reason on the number."""
    return int(getattr(reason, "value", reason))


def _utf8(text: str) -> bytes:
    """MQTT UTF-8 string (MQTT 5 section 1.5.4): two-byte length, then the bytes."""
    data = text.encode()
    return _U16.pack(len(data)) + data


def _varint(n: int) -> bytes:
    """MQTT Variable Byte Integer (section 1.5.5)."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


_U16 = struct.Struct(">H")
# MQTT 5 section 3.3.2.3: Payload Format Indicator (0x01) = 1 (UTF-8), Content Type (0x03), then the
# User Property (0x26) name; only the identifier (the property's value) changes per message.
_PUBLISH_PROPS_HEAD = b"\x01\x01" + b"\x03" + _utf8(CONTENT_TYPE) + b"\x26" + _utf8(IDENTIFIER_PROPERTY)


class PublishProperties(Properties):
    """PUBLISH properties packed by us in one step.

    paho's generic Properties object costs more CPU per message (name lookups, validation, packing)
    than everything else on the send path together; these are the same bytes (see the test against
    paho's own packer), built from a constant head and the identifier.
    """

    _packed: bytes

    def __init__(self, identifier: str) -> None:  # deliberately not calling Properties.__init__
        body = _PUBLISH_PROPS_HEAD + _utf8(identifier)
        object.__setattr__(self, "packetType", PacketTypes.PUBLISH)
        object.__setattr__(self, "_packed", _varint(len(body)) + body)

    def pack(self) -> bytes:
        return self._packed

    def __str__(self) -> str:
        return "[PayloadFormatIndicator, ContentType, UserProperty]"


class AckingClient(aiomqtt.Client):
    """aiomqtt client whose QoS 1 publishes report their PUBACK reason code, without a task each."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pending_calls_threshold = sys.maxsize
        self._tokens: dict[int, int] = {}  # packet id -> caller's token
        self.completed: collections.deque[tuple[int, int]] = collections.deque()  # (token, reason code)
        self.progress = asyncio.Event()
        self.tls_failure: ssl.SSLError | None = None
        # False until a bundle publish on this connection got a successful PUBACK; until then only one
        # message is in flight. Mosquitto 2.0 drops the connection right after a denied publish, and a
        # full window in flight makes that PUBACK 0x87 get lost in the reset: probing with one message
        # first turns a misconfigured ACL into a clear PublishRefused instead of "connection lost".
        self.proven = False

    def _client_connect(self) -> None:
        # aiomqtt turns every OSError into a bare MqttError(str); keep the typed TLS error to classify it.
        try:
            super()._client_connect()
        except ssl.SSLError as exc:
            self.tls_failure = exc
            raise

    def _on_socket_register_write(self, client: Any, userdata: Any, sock: Any) -> None:
        # aiomqtt defers add_writer with call_soon_threadsafe; if the broker closes the connection in
        # between, asyncio logs a "Bad file descriptor" traceback. Register only if the socket lives.
        def write() -> None:
            try:
                client.loop_write()
            except Exception as exc:  # as aiomqtt does: a write error means the connection broke
                if not self._disconnected.done():
                    self._disconnected.set_exception(exc)

        def register() -> None:
            current = self._client.socket()
            if current is not None and current is sock and current.fileno() != -1:
                self._loop.add_writer(current.fileno(), write)

        self._loop.call_soon_threadsafe(register)

    def watch_connection(self) -> None:
        """Wake the sender when the connection drops, whichever way aiomqtt learns about it."""
        self._disconnected.add_done_callback(lambda _: self.progress.set())

    def quick_ack(self) -> None:
        """Ask the kernel to ACK the broker's data now instead of delaying it (Linux TCP_QUICKACK).

        A broker with Nagle on (Mosquitto's default) holds each further PUBACK until our TCP ACK of the
        previous one arrives; once we stop sending data there is nothing to piggyback that ACK on, the
        kernel delays it up to 40 ms and the tail of every window stalls. Re-armed at every wait because
        Linux leaves quick-ack mode on its own.
        """
        sock = self._client.socket()
        if _TCP_QUICKACK is not None and isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)

    @property
    def lost(self) -> bool:
        return self._disconnected.done() or not self._client.is_connected()

    def lost_reason(self) -> str:
        fut = self._disconnected
        if not fut.done():
            return "not lost"
        exc = fut.exception()  # also marks it retrieved
        return "closed" if exc is None else str(exc) or type(exc).__name__

    def publish_qos1(self, token: int, topic: str, payload: bytes, retain: bool, props: Properties | None) -> None:
        info = self._client.publish(topic, payload, 1, retain, props)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        self._tokens[info.mid] = token

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        token = self._tokens.pop(mid, None)
        if token is None:
            super()._on_publish(client, userdata, mid, reason_code, properties)
            return
        self.completed.append((token, code_of(reason_code)))
        self.progress.set()
