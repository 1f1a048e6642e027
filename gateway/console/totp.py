"""TOTP (RFC 6238) over HOTP (RFC 4226): the console's second factor, small enough to read in full.

Tested against the RFC 6238 Appendix B test vectors (SHA-1, SHA-256, SHA-512).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from urllib.parse import quote

__all__ = ["hotp", "new_secret", "provisioning_uri", "totp", "verify"]

_DIGESTS = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}


def hotp(key: bytes, counter: int, digits: int = 6, algorithm: str = "SHA1") -> str:
    """RFC 4226 section 5.3: HMAC, dynamic truncation, modulo 10^digits."""
    mac = hmac.new(key, struct.pack(">Q", counter), _DIGESTS[algorithm]).digest()
    offset = mac[-1] & 0x0F
    code = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(code % 10**digits).zfill(digits)


def totp(key: bytes, at: float, *, step: int = 30, digits: int = 6, algorithm: str = "SHA1") -> str:
    """RFC 6238 section 4: T = floor((now - T0) / X) with T0 = 0."""
    return hotp(key, int(at // step), digits, algorithm)


def verify(key: bytes, code: str, at: float, *, last_counter: int = -1, window: int = 1) -> int | None:
    """The counter `code` matches within +-`window` steps (clock drift), or None. A counter at or below
    `last_counter` is refused, so a code seen once (over a shoulder, in a proxy log) cannot be replayed."""
    code = code.strip().replace(" ", "")
    if not (len(code) == 6 and code.isdigit()):
        return None
    now = int(at // 30)
    for counter in range(now - window, now + window + 1):
        if counter > last_counter and hmac.compare_digest(hotp(key, counter), code):
            return counter
    return None


def new_secret() -> str:
    """160 random bits (RFC 4226 section 4 recommends at least 128), base32 as authenticator apps expect."""
    return base64.b32encode(secrets.token_bytes(20)).decode()


def decode_secret(secret: str) -> bytes:
    return base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))


def provisioning_uri(secret: str, account: str, issuer: str = "VitalGate") -> str:
    """The otpauth:// URI authenticator apps import (Google Authenticator key URI format)."""
    label = quote(f"{issuer}:{account}")
    return f"otpauth://totp/{label}?secret={secret}&issuer={quote(issuer)}&algorithm=SHA1&digits=6&period=30"
