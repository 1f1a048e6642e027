"""The `[output.mqtt]` section, validated into one frozen settings object.

Validation happens once at start-up so a typo stops the daemon with the file and key named, instead of
surfacing later as a vague connection error. TLS is the default; plain TCP needs `tls = false` *and*,
unless the broker is on this machine (a local bridge), `allow_plaintext_remote = true`: PHI must not
cross a network unencrypted because one boolean was flipped.
"""

from __future__ import annotations

import ipaddress
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from gateway.errors import ConfigError, KeyFileError
from gateway.forwarders import ForwarderContext
from gateway.secrets import check_private, read_secret, resolve_secret_path

__all__ = ["DEFAULT_PRESENCE_TOPIC", "DEFAULT_TOPIC", "MqttSettings", "parse_settings", "render_topic"]

DEFAULT_TOPIC = "vitalgate/{gateway_id}/bundles"
DEFAULT_PRESENCE_TOPIC = "vitalgate/{gateway_id}/status"
SECTION = "output.mqtt"

Protocol = Literal["5", "3.1.1"]
_PROTOCOLS: dict[str, Protocol] = {"5": "5", "5.0": "5", "3.1.1": "3.1.1"}
# MQTT 3.1.1 section 3.1.3.1 only guarantees [0-9a-zA-Z] up to 23 bytes; brokers accept more, we allow
# a conservative superset that never needs escaping in logs or ACL patterns.
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_LOCAL_NAMES = {"localhost", "localhost.localdomain"}
_KNOWN_KEYS = {
    "host", "port", "protocol", "tls", "ca_file", "client_cert", "client_key", "allow_plaintext_remote",
    "username", "password_file", "client_id", "session_expiry", "keepalive", "topic", "presence_topic",
    "window", "connect_timeout", "ack_timeout",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """Everything the forwarder needs; `password` is kept out of `repr` so it never reaches a log."""

    host: str
    port: int
    protocol: Protocol
    tls: bool
    ca_file: Path | None
    client_cert: Path | None
    client_key: Path | None
    username: str | None
    client_id: str
    session_expiry: int
    keepalive: int
    topic: str
    presence_topic: str
    window: int
    connect_timeout: float
    ack_timeout: float
    password: bytes | None = None
    password_spec: str | None = None  # where the password came from, for reload on SIGHUP

    def __repr__(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        return f"MqttSettings({scheme}://{self.host}:{self.port}, client_id={self.client_id!r})"

    __str__ = __repr__


def render_topic(template: str, gateway_id: str) -> str:
    """Fill `{gateway_id}`; the only placeholder, so no reading field (PHI) can ever end up in a topic."""
    return template.format(gateway_id=gateway_id)


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Section:
    """Typed getters that name the offending key in a ConfigError."""

    def __init__(self, data: Mapping[str, Any], file: str) -> None:
        self.data = data
        self.file = file

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.file, f"{SECTION}.{key}", problem)

    def get(self, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        value = self.data.get(key, default)
        # bool is an int in Python; a number where a flag is expected (or the reverse) is a typo.
        if value is not None and (
            not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind))
        ):
            names = " or ".join(t.__name__ for t in _as_tuple(kind))
            raise self.fail(key, f"must be {names}, got {type(value).__name__}")
        return value

    def number(self, key: str, default: float, low: float, high: float, integer: bool = False) -> Any:
        value = self.get(key, int if integer else (int, float), default)
        if not low <= value <= high:
            raise self.fail(key, f"must be between {low:g} and {high:g}, got {value}")
        return value

    def path(self, key: str, check: Callable[[Path], bool] = Path.is_file, private: bool = False) -> Path | None:
        """A file named by path or `credential:NAME`; `private` files must be readable by us alone."""
        value = self.get(key, str, None)
        if value is None:
            return None
        try:
            path = resolve_secret_path(value)
            if private:
                check_private(path)
        except KeyFileError as exc:
            raise self.fail(key, str(exc)) from None
        if not check(path):
            raise self.fail(key, f"{path} does not exist or is not a file")
        return path


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _topic(section: _Section, key: str, default: str, gateway_id: str) -> str:
    template = section.get(key, str, default)
    for _, field, _, _ in string.Formatter().parse(template):
        if field is not None and field != "gateway_id":
            raise section.fail(key, f"unknown placeholder {{{field}}}; only {{gateway_id}} is allowed")
    try:
        topic = render_topic(template, gateway_id)
    except (ValueError, IndexError) as exc:
        raise section.fail(key, f"bad template ({exc})") from None
    if not topic or any(c in topic for c in "+#\0") or len(topic.encode()) > 65535:
        raise section.fail(key, "topic must be non-empty, without wildcards (+ #) or NUL")
    if topic.startswith("$"):
        raise section.fail(key, "topics starting with $ are the broker's own ($SYS/...); choose another")
    return topic


def parse_settings(data: Mapping[str, Any], ctx: ForwarderContext) -> MqttSettings:
    """Validate `[output.mqtt]`; raises ConfigError naming `output.mqtt.<key>`."""
    s = _Section(data, ctx.config_file)
    unknown = sorted(set(data) - _KNOWN_KEYS)
    if unknown:
        raise s.fail(unknown[0], "unknown key")
    host = s.get("host", str, None)
    if not host:
        raise s.fail("host", "required: the broker's host name or address")
    tls = s.get("tls", bool, True)
    port = s.number("port", 8883 if tls else 1883, 1, 65535, integer=True)
    protocol_name = s.get("protocol", str, "5")
    if protocol_name not in _PROTOCOLS:
        raise s.fail("protocol", f'must be "5" or "3.1.1", got {protocol_name!r}')

    ca_file, client_cert, client_key = s.path("ca_file"), s.path("client_cert"), s.path("client_key", private=True)
    if (client_cert is None) != (client_key is None):
        raise s.fail("client_key" if client_key is None else "client_cert", "client_cert and client_key go together")
    if not tls:
        for key in ("ca_file", "client_cert", "client_key"):
            if key in data:
                raise s.fail(key, "set, but tls = false: remove it or turn TLS on")
        if not _is_loopback(host) and not s.get("allow_plaintext_remote", bool, False):
            raise s.fail(
                "tls",
                f"tls = false sends PHI unencrypted to {host}; allowed only to a loopback broker "
                "unless allow_plaintext_remote = true is set as well",
            )

    username = s.get("username", str, None)
    password_spec = s.get("password_file", str, None)
    password: bytes | None = None
    if password_spec is not None:
        if username is None:
            raise s.fail("password_file", "set without username")
        try:
            password = read_secret(password_spec)
        except KeyFileError as exc:
            raise s.fail("password_file", str(exc)) from None
        if not password:
            raise s.fail("password_file", "the file is empty")
        try:
            password.decode()
        except UnicodeDecodeError:
            raise s.fail("password_file", "the password is not UTF-8 text (MQTT section 3.1.3.5)") from None

    client_id = s.get("client_id", str, f"vitalgate-{ctx.gateway_id}")
    if not _CLIENT_ID.match(client_id):
        raise s.fail("client_id", "1-128 characters from A-Z a-z 0-9 . _ -")

    topic = _topic(s, "topic", DEFAULT_TOPIC, ctx.gateway_id)
    presence_topic = _topic(s, "presence_topic", DEFAULT_PRESENCE_TOPIC, ctx.gateway_id)
    if presence_topic == topic:
        raise s.fail("presence_topic", "must differ from topic")

    return MqttSettings(
        host=host,
        port=port,
        protocol=_PROTOCOLS[protocol_name],
        tls=tls,
        ca_file=ca_file,
        client_cert=client_cert,
        client_key=client_key,
        username=username,
        password=password,
        password_spec=password_spec,
        client_id=client_id,
        # MQTT 5 Session Expiry Interval is a four-byte integer (section 3.1.2.11.2).
        session_expiry=s.number("session_expiry", 86400, 0, 0xFFFFFFFF, integer=True),
        keepalive=s.number("keepalive", 60, 5, 65535, integer=True),
        topic=topic,
        presence_topic=presence_topic,
        # Packet identifiers are 16-bit: never more in flight than there are ids.
        window=s.number("window", 128, 1, 65535, integer=True),
        connect_timeout=float(s.number("connect_timeout", 10.0, 0.5, 60.0)),
        # Below the supervisor's 30 s health deadline, so a stalled broker never starves the watchdog.
        ack_timeout=float(s.number("ack_timeout", 20.0, 0.5, 25.0)),
    )
