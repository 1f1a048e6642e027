"""`vitalgate demo --mqtt URL`: turn a broker URL into an `[output.mqtt]` section for the demo.

`mqtts://host[:port]` is TLS (verified, TLS 1.2+); `mqtt://host[:port]` is the explicit plaintext
opt-out (the demo sends test data only). A password in the URL is refused: command lines are visible
to every local user through `ps`; use `--mqtt-password-file`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from gateway.errors import ConfigError

__all__ = ["mqtt_options"]

_SCHEMES = {"mqtts": (True, 8883), "mqtt": (False, 1883)}


def mqtt_options(
    url: str, *, ca_file: str | None = None, username: str | None = None, password_file: str | None = None
) -> dict[str, Any]:
    parts = urlsplit(url)
    where = "--mqtt"
    if parts.scheme not in _SCHEMES:
        raise ConfigError("<command line>", where, "use mqtts://host[:port] (TLS) or mqtt://host[:port] (plaintext)")
    if parts.password is not None:
        raise ConfigError("<command line>", where, "no password in the URL (visible in ps); use --mqtt-password-file")
    if not parts.hostname:
        raise ConfigError("<command line>", where, "the URL names no host")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError("<command line>", where, "the port is not a number between 1 and 65535") from None
    tls, default_port = _SCHEMES[parts.scheme]
    options: dict[str, Any] = {"host": parts.hostname, "port": port or default_port, "tls": tls}
    if not tls:
        options["allow_plaintext_remote"] = True  # mqtt:// typed on purpose is the explicit opt-out
    elif ca_file:
        options["ca_file"] = ca_file
    user = username or parts.username
    if user:
        options["username"] = user
    if password_file:
        options["password_file"] = password_file
    return options
