"""Console accounts: argon2id password hashes, a TOTP secret sealed with the data key, a role, lockout.

Kept in `console-users.json` in the state folder (mode 0600, atomic replace). The TOTP secret is
encrypted with the gateway's data key (AES-256-GCM, the account name as associated data), so a copy
of the file alone does not yield second factors. `vitalgate users ...` and the console's admin page
both go through `UserStore`.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.console import totp
from gateway.crypto import DecryptError, KeyRing, Sealed
from gateway.errors import GatewayError

__all__ = ["USERS_FILE", "Account", "LoginError", "Role", "UserStore"]

USERS_FILE = "console-users.json"
NAME = re.compile(r"^[a-z][a-z0-9._-]{1,31}$")
MIN_PASSWORD = 12

# argon2id at OWASP's minimum (m=19 MiB, t=2, p=1) rather than the library's 64 MiB default: each login
# allocates `m` on a Pi that may have 512 MiB in all. Hashes made with other parameters are upgraded at login.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


class Role(StrEnum):
    VIEWER = "viewer"  # health and counts, no patient references
    OPERATOR = "operator"  # + pairing, binding, requeue, audit trail
    ADMIN = "admin"  # + accounts and keys

    def allows(self, needed: Role) -> bool:
        order = [Role.VIEWER, Role.OPERATOR, Role.ADMIN]
        return order.index(self) >= order.index(needed)


class LoginError(GatewayError):
    """A refused login; the message is what the page shows (never which factor was wrong)."""


@dataclass(slots=True)
class Account:
    name: str
    role: Role
    password_hash: str
    totp_key_id: str
    totp_nonce: str
    totp_sealed: str
    last_counter: int = -1
    failed: int = 0
    locked_until: float = 0.0
    created: float = 0.0


class UserStore:
    def __init__(self, state_dir: Path, keyring: KeyRing, *, max_failed: int = 5, lockout_seconds: float = 900) -> None:
        self.path = state_dir / USERS_FILE
        self.keyring = keyring
        self.max_failed = max_failed
        self.lockout_seconds = lockout_seconds

    def load(self) -> dict[str, Account]:
        try:
            doc: Any = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise GatewayError(f"{self.path}: unreadable ({exc})") from None
        return {a["name"]: Account(**{**a, "role": Role(a["role"])}) for a in doc.get("accounts", [])}

    def save(self, accounts: dict[str, Account]) -> None:
        body = json.dumps({"accounts": [asdict(a) for a in accounts.values()]}, indent=1).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".users.", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, body)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)

    def add(self, name: str, role: Role, password: str) -> str:
        """Create an account; returns its TOTP secret (base32) to show once."""
        if not NAME.match(name):
            raise GatewayError("account names: 2-32 characters, lower-case letters, digits, '.', '_' or '-'")
        if len(password) < MIN_PASSWORD:
            raise GatewayError(f"the password must be at least {MIN_PASSWORD} characters")
        accounts = self.load()
        if name in accounts:
            raise GatewayError(f"account {name!r} exists already")
        secret = totp.new_secret()
        sealed = self.keyring.seal(secret.encode(), b"console-totp|" + name.encode())
        accounts[name] = Account(
            name,
            role,
            _HASHER.hash(password),
            sealed.key_id,
            base64.b64encode(sealed.nonce).decode(),
            base64.b64encode(sealed.ciphertext).decode(),
            created=time.time(),
        )
        self.save(accounts)
        return secret

    def remove(self, name: str) -> bool:
        accounts = self.load()
        if accounts.pop(name, None) is None:
            return False
        self.save(accounts)
        return True

    def unlock(self, name: str) -> bool:
        accounts = self.load()
        if name not in accounts:
            return False
        accounts[name].failed, accounts[name].locked_until = 0, 0.0
        self.save(accounts)
        return True

    def secret(self, account: Account) -> bytes:
        sealed = Sealed(
            account.totp_key_id, base64.b64decode(account.totp_nonce), base64.b64decode(account.totp_sealed)
        )
        try:
            plain = self.keyring.open(sealed, b"console-totp|" + account.name.encode())
        except DecryptError:
            raise GatewayError(
                f"the TOTP secret of {account.name!r} does not open with this gateway's data key "
                "(key file replaced?); remove and add the account again"
            ) from None
        return totp.decode_secret(plain.decode())

    def authenticate(self, name: str, password: str, code: str, now: float | None = None) -> Account:
        """The account when password and TOTP code are right; LoginError otherwise (counted, then locked)."""
        now = time.time() if now is None else now
        accounts = self.load()
        account = accounts.get(name)
        if account is None:
            with contextlib.suppress(VerificationError, InvalidHashError):
                _HASHER.verify(_dummy_hash(), password)  # same work as for a real account: names are not revealed
            raise LoginError("Wrong name, password or code.")
        if account.locked_until > now:
            minutes = max(1, round((account.locked_until - now) / 60))
            raise LoginError(f"This account is locked after too many failed logins; try again in {minutes} min "
                             "or ask an administrator to unlock it.")  # fmt: skip
        ok = False
        with contextlib.suppress(VerifyMismatchError, VerificationError, InvalidHashError):
            ok = _HASHER.verify(account.password_hash, password)
        counter = totp.verify(self.secret(account), code, now, last_counter=account.last_counter) if ok else None
        if counter is None:
            account.failed += 1
            locked = account.failed >= self.max_failed
            if locked:
                account.locked_until, account.failed = now + self.lockout_seconds, 0
            self.save(accounts)
            raise LoginError(
                f"Too many failed logins: this account is now locked for {self.lockout_seconds / 60:.0f} min."
                if locked
                else "Wrong name, password or code."
            )
        account.last_counter, account.failed = counter, 0
        if _HASHER.check_needs_rehash(account.password_hash):
            account.password_hash = _HASHER.hash(password)
        self.save(accounts)
        return account


@functools.cache
def _dummy_hash() -> str:
    return _HASHER.hash("not a real account's password")
