"""Where the data key file's text comes from, and how a rotated one is written back.

- a path: a plain key file, mode 0600, read and replaced through `gateway.safefiles`;
- `credential:NAME`: a systemd credential under `$CREDENTIALS_DIRECTORY`, decrypted by systemd at start
  (`LoadCredentialEncrypted=`, sealed with the host key and the TPM2 where there is one). It is a copy made
  at start: it cannot be written back, and a rotated key is seen only after a restart;
- `clevis:PATH`: PATH holds a Clevis JWE of the key file, decrypted at start by `clevis decrypt` (for
  example bound to a Tang server on the clinic's network: a Raspberry Pi without a TPM then never holds
  its key at rest; a stolen card, or a box taken away from that network, cannot decrypt the queue).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import KeyFileError
from gateway.safefiles import UnsafeFileError, write_atomic
from gateway.secrets import CREDENTIAL_PREFIX, read_private_secret, resolve_secret_path

__all__ = ["CLEVIS_PREFIX", "KeySource", "source_for"]

CLEVIS_PREFIX = "clevis:"
CLEVIS_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class KeySource:
    spec: str
    path: Path
    kind: str  # "file", "credential" or "clevis"

    def read(self) -> str:
        data = read_private_secret(self.path)
        if self.kind == "clevis":
            data = _clevis("decrypt", data, self.path)
        return data.decode("ascii", errors="replace")

    def write(self, text: str) -> None:
        """Replace the key file atomically (mkstemp beside it, fsync, rename)."""
        if self.kind == "credential":
            raise KeyFileError(
                f"{self.spec} is the copy systemd decrypted at start and cannot be changed: rotate a plain copy "
                "on tmpfs, seal it again with systemd-creds encrypt (README: key custody), then restart vitalgate"
            )
        data = text.encode("ascii")
        if self.kind == "clevis":
            data = _clevis("encrypt", data, self.path, config=_pin_config(read_private_secret(self.path), self.path))
        try:
            write_atomic(self.path, data)
        except UnsafeFileError as exc:
            raise KeyFileError(str(exc)) from None


def source_for(spec: str) -> KeySource:
    if spec.startswith(CLEVIS_PREFIX):
        return KeySource(spec, Path(spec[len(CLEVIS_PREFIX) :]), "clevis")
    kind = "credential" if spec.startswith(CREDENTIAL_PREFIX) else "file"
    return KeySource(spec, resolve_secret_path(spec), kind)


def _pin_config(jwe: bytes, path: Path) -> tuple[str, str]:
    """The pin and its config from the JWE's protected header, so a rotated key is bound the same way."""
    try:
        header = jwe.split(b".", 1)[0]
        doc = json.loads(base64.urlsafe_b64decode(header + b"=" * (-len(header) % 4)))
        clevis = doc["clevis"]
        pin = clevis["pin"]
    except (ValueError, KeyError, TypeError):
        raise KeyFileError(f"{path}: not a Clevis JWE (compact form expected)") from None
    if pin != "tang":
        raise KeyFileError(
            f"{path}: bound with the Clevis {pin!r} pin; rotate a plain copy on tmpfs and `clevis encrypt` it again"
        )
    tang = clevis["tang"]
    # Bound again to the same server, trusting the same signing key (its thumbprint), fetched online.
    signing = next((k for k in tang["adv"]["keys"] if "verify" in k.get("key_ops", ())), None)
    jose = shutil.which("jose")
    if signing is None or jose is None:
        raise KeyFileError(f"{path}: cannot find the Tang server's signing key (is `jose` installed?)")
    thp = (
        subprocess.run([jose, "jwk", "thp", "-i-"], input=json.dumps(signing).encode(), capture_output=True, timeout=30)
        .stdout.decode()
        .strip()
    )
    if not thp:
        raise KeyFileError(f"{path}: cannot compute the Tang signing key's thumbprint")
    return pin, json.dumps({"url": tang["url"], "thp": thp})


def _clevis(action: str, data: bytes, path: Path, config: tuple[str, str] | None = None) -> bytes:
    exe = shutil.which("clevis")
    if exe is None:
        raise KeyFileError(f"{path}: a Clevis-bound key needs the `clevis` program (apt-get install clevis)")
    cmd = [exe, action] if config is None else [exe, action, *config]
    try:
        proc = subprocess.run(
            cmd, input=data, capture_output=True, timeout=CLEVIS_TIMEOUT, env={**os.environ, "LC_ALL": "C"}
        )
    except subprocess.TimeoutExpired:
        raise KeyFileError(f"{path}: clevis {action} did not finish in {CLEVIS_TIMEOUT:.0f} s") from None
    if proc.returncode != 0 or not proc.stdout:
        first = (proc.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[0][:200]
        raise KeyFileError(
            f"{path}: clevis {action} failed ({first}); the key server (Tang) must be reachable for the "
            "gateway to open its queue"
        )
    return proc.stdout
