"""`Retry-After` (RFC 9110 10.2.3): delay-seconds or an HTTP-date, turned into seconds from now."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

__all__ = ["MAX_RETRY_AFTER", "parse_retry_after"]

MAX_RETRY_AFTER = 3600.0  # a server asking for more than an hour is capped; the core backs off anyway


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait, capped at an hour; None when absent or unreadable (the core's backoff applies)."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # delay-seconds = 1*DIGIT (ASCII only; '¹'.isdigit() is True)
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    delta = when.timestamp() - (time.time() if now is None else now)
    return min(max(delta, 0.0), MAX_RETRY_AFTER)
