"""Console accounts: TOTP against RFC 6238's own test vectors, argon2id hashes, lockout, sealed secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.console import totp
from gateway.console.users import LoginError, Role, UserStore
from gateway.crypto import KeyRing
from gateway.errors import GatewayError

# RFC 6238 Appendix B: seeds are the ASCII digits, 20 / 32 / 64 bytes for SHA-1 / SHA-256 / SHA-512, 8 digits.
SEEDS = {
    "SHA1": b"12345678901234567890",
    "SHA256": b"12345678901234567890123456789012",
    "SHA512": b"1234567890123456789012345678901234567890123456789012345678901234",
}
VECTORS = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]


@pytest.mark.parametrize(("at", "sha1", "sha256", "sha512"), VECTORS)
def test_rfc6238_appendix_b_vectors(at: int, sha1: str, sha256: str, sha512: str) -> None:
    got = [totp.totp(SEEDS[alg], at, digits=8, algorithm=alg) for alg in ("SHA1", "SHA256", "SHA512")]
    assert got == [sha1, sha256, sha512]


def test_rfc4226_appendix_d_hotp_values() -> None:
    # RFC 4226 Appendix D, secret "12345678901234567890", counters 0..9.
    expected = ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"]
    assert [totp.hotp(SEEDS["SHA1"], c) for c in range(10)] == expected


def test_verify_allows_one_step_of_drift_and_refuses_replay() -> None:
    key = SEEDS["SHA1"]
    at = 1_111_111_111.0
    now_code = totp.totp(key, at)
    assert totp.verify(key, now_code, at) == int(at // 30)
    assert totp.verify(key, totp.totp(key, at - 30), at) == int(at // 30) - 1
    assert totp.verify(key, totp.totp(key, at - 90), at) is None
    assert totp.verify(key, now_code, at, last_counter=int(at // 30)) is None  # used once already
    assert totp.verify(key, "12345", at) is None and totp.verify(key, "abcdef", at) is None
    secret = totp.new_secret()
    assert len(totp.decode_secret(secret)) == 20
    assert totp.provisioning_uri(secret, "ann@gw").startswith("otpauth://totp/VitalGate%3Aann%40gw?secret=")


def test_accounts_hash_with_argon2id_seal_the_totp_secret_and_lock_out(tmp_path: Path) -> None:
    ring = KeyRing.generate()
    store = UserStore(tmp_path, ring, max_failed=3, lockout_seconds=600)
    secret = store.add("nurse.ann", Role.OPERATOR, "correct horse battery")
    raw = (tmp_path / "console-users.json").read_text()
    assert (tmp_path / "console-users.json").stat().st_mode & 0o777 == 0o600
    account = json.loads(raw)["accounts"][0]
    assert account["password_hash"].startswith("$argon2id$")
    assert secret not in raw and "correct horse" not in raw
    key = totp.decode_secret(secret)
    t = 1_800_000_000.0
    assert store.authenticate("nurse.ann", "correct horse battery", totp.totp(key, t), now=t).role is Role.OPERATOR
    with pytest.raises(LoginError, match="Wrong name, password or code"):  # the same code again: a replay
        store.authenticate("nurse.ann", "correct horse battery", totp.totp(key, t), now=t)
    with pytest.raises(LoginError, match="Wrong name, password or code"):
        store.authenticate("nurse.ann", "wrong password here", totp.totp(key, t + 30), now=t + 30)
    with pytest.raises(LoginError, match="now locked for 10 min"):
        store.authenticate("nurse.ann", "wrong password here", totp.totp(key, t + 60), now=t + 60)
    with pytest.raises(LoginError, match="locked after too many failed logins"):  # right factors, still locked
        store.authenticate("nurse.ann", "correct horse battery", totp.totp(key, t + 90), now=t + 90)
    assert store.unlock("nurse.ann")
    assert store.authenticate("nurse.ann", "correct horse battery", totp.totp(key, t + 120), now=t + 120)
    with pytest.raises(LoginError, match="Wrong name, password or code"):
        store.authenticate("nobody", "correct horse battery", "000000", now=t)
    # A copy of the file with another data key yields no second factor.
    with pytest.raises(GatewayError):
        UserStore(tmp_path, KeyRing.generate()).authenticate("nurse.ann", "correct horse battery", "000000", now=t)
    with pytest.raises(GatewayError, match="at least 12"):
        store.add("bob", Role.VIEWER, "short")
    with pytest.raises(GatewayError, match="account names"):
        store.add("Bob Smith", Role.VIEWER, "long enough password")
    with pytest.raises(GatewayError, match="exists already"):
        store.add("nurse.ann", Role.VIEWER, "long enough password")
