"""How bad device input is kept for review: sealed, with its source inside the seal and only its day outside.

The queue's reject methods and the schema-1 migration both build and open these rows, so their format is
defined here, in one place (gateway.queue stores them, gateway.queue_schema migrates old ones).
"""

from __future__ import annotations

MAX_REJECTS = 10_000  # kept bad frames beyond this are purged oldest first (a flooding device)


def _reject_aad(created: float, source: str) -> bytes:
    return f"{created:.6f}|{source}".encode()


def _reject_doc(source: str, raw: bytes) -> bytes:
    """Schema 2's sealed reject: the source's length (2 bytes), the source, then the raw frame."""
    name = source.encode()[:0xFFFF]
    return len(name).to_bytes(2, "big") + name + raw


def _reject_open(source: str, plain: bytes) -> tuple[str, bytes]:
    """(source, raw) of a reject row: a schema-1 row has its source in the clear (`source` not empty)."""
    if source:
        return source, plain
    n = int.from_bytes(plain[:2], "big")
    return plain[2 : 2 + n].decode(errors="replace"), plain[2 + n :]
