"""structlog set-up: JSON to stdout for journald, a readable renderer on a terminal, and a PHI guard.

The guard is the last processor before rendering, so no code path can log around it: fields named like
PHI or secrets are redacted whatever their value, and strings that look like patient references,
bearer tokens or FHIR payloads are redacted wherever they appear.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

__all__ = ["REDACTED", "configure_logging", "redact_text", "scrub_phi", "stdout_is_journal", "use_colors"]

REDACTED = "[redacted]"

# Field names whose values are PHI or secrets. Matched on the lower-cased name, also as a word in it
# (`patient_id`, `mqtt_password`).
_SENSITIVE_WORDS = (
    "patient",
    "subject",
    "name",
    "birth",
    "value",
    "values",
    "systolic",
    "diastolic",
    "pulse",
    "glucose",
    "weight",
    "bmi",
    "reading",
    "measurement",
    "bundle",
    "body",
    "payload",
    "raw",
    "serial",
    "serial_number",
    "system_id",
    "address",  # Bluetooth address: a device identifier, kept out of the database in plaintext too
    "mrn",
    "dob",
    "password",
    "secret",
    "token",
    "authorization",
    "assertion",
    "key",
)
_ALLOWED = {"event", "level", "timestamp", "logger", "driver", "forwarder", "device_name", "key_id", "kind"}
_SENSITIVE = re.compile(r"(^|_)(" + "|".join(_SENSITIVE_WORDS) + r")(_|$)")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")  # patientId -> patient_Id, serialNumber -> serial_Number
_PATTERNS = re.compile(
    r"Patient/[A-Za-z0-9\-.]+"  # FHIR patient references
    r"|Bearer\s+\S+"  # bearer tokens
    r"|\"resourceType\""  # a FHIR payload pasted into a message
    r"|eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]+"  # JWTs
    r"|(?<![0-9A-Fa-f:])[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}(?![0-9A-Fa-f:])"  # Bluetooth addresses
)


def _sensitive(key: object) -> bool:
    return isinstance(key, str) and bool(_SENSITIVE.search(_CAMEL.sub("_", key).lower()))


def _clean(value: Any) -> Any:
    """A value with patterns redacted, bytes summarised, and nested containers cleaned all the way down."""
    if isinstance(value, str):
        return _PATTERNS.sub(REDACTED, value) if _PATTERNS.search(value) else value
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if isinstance(value, Mapping):
        return {k: REDACTED if _sensitive(k) else _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_clean(v) for v in value]
    return value


def redact_text(text: str) -> str:
    """A sentence (e.g. a backend's error) with patient references, tokens and addresses redacted."""
    return _PATTERNS.sub(REDACTED, text)


def scrub_phi(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Redact by field name (any depth, snake_case or camelCase) and by pattern inside strings."""
    for key in list(event):
        if key in _ALLOWED:
            continue
        event[key] = REDACTED if _sensitive(key) else _clean(event[key])
    msg = event.get("event")
    if isinstance(msg, str) and _PATTERNS.search(msg):
        event["event"] = _PATTERNS.sub(REDACTED, msg)
    return event


def use_colors(out: TextIO) -> bool:
    """Colour codes only for a person at a terminal: never into a file, a pipe or journald, and never when
    NO_COLOR is set (no-color.org), so logs stay plain text wherever they are kept."""
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return out.isatty()
    except (AttributeError, ValueError):  # a stream without a file behind it, or closed
        return False


# syslog(3) priorities: journald reads a leading "<N>" on each stdout line (SyslogLevelPrefix=, default on),
# so `journalctl -p warning` filters our lines.
_PRIORITY = {"critical": 2, "exception": 3, "error": 3, "warning": 4, "warn": 4, "info": 6, "debug": 7}


def stdout_is_journal(out: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """True when `out` is the stream systemd connected to the journal (`$JOURNAL_STREAM` = device:inode)."""
    spec = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in spec.split(":"))
        st = os.fstat(out.fileno())
    except (ValueError, OSError, AttributeError, io.UnsupportedOperation):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


class _WithPriority:
    """Wraps the renderer: the rendered line gets the syslog priority of its level as a prefix."""

    def __init__(self, renderer: Any) -> None:
        self.renderer = renderer

    def __call__(self, logger: Any, name: str, event: MutableMapping[str, Any]) -> str:
        prio = _PRIORITY.get(str(event.get("level", "info")), 6)
        return f"<{prio}>{self.renderer(logger, name, event)}"


def configure_logging(
    level: str = "info", fmt: str = "auto", stream: TextIO | None = None, *, journal: bool | None = None
) -> None:
    """`journal`: prefix priorities; None decides by `$JOURNAL_STREAM` (set by systemd for its stdout)."""
    out = stream or sys.stdout
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=use_colors(out)) if use_console else structlog.processors.JSONRenderer()
    )
    if journal if journal is not None else stdout_is_journal(out):
        renderer = _WithPriority(renderer)
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        scrub_phi,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # Libraries that use stdlib logging (aiomqtt, bleak, bumble) go through a quiet handler: warnings only,
    # and never their payload-level debug output.
    root = logging.getLogger()
    root.handlers[:] = [_StructlogHandler()]
    root.setLevel(logging.WARNING)


class _StructlogHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        structlog.get_logger(record.name).warning("library_log", logger=record.name, message=record.getMessage())
