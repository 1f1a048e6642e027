"""Key files and AES-256-GCM sealing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.crypto import DecryptError, KeyRing, create_key_file, rotate_key_file
from gateway.errors import KeyFileError


def test_key_file_is_created_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "data.key"
    create_key_file(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    ring = KeyRing.load(str(path))
    assert len(ring.current_id) == 8
    with pytest.raises(FileExistsError):
        create_key_file(path)


def test_group_or_world_readable_key_is_refused(key_file: Path) -> None:
    key_file.chmod(0o640)
    with pytest.raises(KeyFileError, match="chmod 600"):
        KeyRing.load(str(key_file))


def test_missing_key_and_malformed_key_are_clear(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        KeyRing.load(str(tmp_path / "nope.key"))
    bad = tmp_path / "bad.key"
    bad.write_text("k1 c2hvcnQ=\n")
    bad.chmod(0o600)
    with pytest.raises(KeyFileError, match="line 1: key is 40 bits, expected 256"):
        KeyRing.load(str(bad))


def test_systemd_credential_is_read_from_credentials_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    create_key_file(creds / "data-key")
    (creds / "data-key").chmod(0o440)  # systemd serves credentials read-only to the unit
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    ring = KeyRing.load("credential:data-key")
    assert ring.open(ring.seal(b"x", b"aad"), b"aad") == b"x"


def test_seal_binds_associated_data_and_detects_tampering(keyring: KeyRing) -> None:
    sealed = keyring.seal(b"systolic=128", b"readings|row-1")
    assert b"128" not in sealed.ciphertext
    assert keyring.open(sealed, b"readings|row-1") == b"systolic=128"
    with pytest.raises(DecryptError, match="authentication failed"):
        keyring.open(sealed, b"readings|row-2")
    flipped = bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:]
    with pytest.raises(DecryptError):
        keyring.open(type(sealed)(sealed.key_id, sealed.nonce, flipped), b"readings|row-1")


def test_fresh_nonce_per_seal(keyring: KeyRing) -> None:
    nonces = {keyring.seal(b"same", b"a").nonce for _ in range(200)}
    assert len(nonces) == 200


def test_rotation_keeps_old_rows_readable_and_index_tags_stable(key_file: Path) -> None:
    old = KeyRing.load(str(key_file))
    sealed = old.seal(b"old row", b"aad")
    new_id = rotate_key_file(key_file)
    assert os.stat(key_file).st_mode & 0o777 == 0o600
    new = KeyRing.load(str(key_file))
    assert new.current_id == new_id != old.current_id
    assert new.open(sealed, b"aad") == b"old row"
    assert new.seal(b"x", b"a").key_id == new_id
    assert new.tag("reading|abc") == old.tag("reading|abc")
    with pytest.raises(DecryptError, match="unknown key id"):
        old.open(new.seal(b"x", b"a"), b"a")


def test_reload_picks_up_rotated_keys_and_refuses_a_replaced_file(key_file: Path, tmp_path: Path) -> None:
    ring = KeyRing.load(str(key_file))
    assert ring.reload() is False  # nothing new
    new_id = rotate_key_file(key_file)
    assert new_id not in ring
    assert ring.reload() is True
    assert new_id in ring and ring.current_id == new_id
    other = tmp_path / "other.key"
    create_key_file(other)
    key_file.write_text(other.read_text())  # a different key file put in place: not an extension
    with pytest.raises(KeyFileError, match=r"look-up key .* changed or went"):
        ring.reload()
    assert ring.current_id == new_id  # the loaded keys are kept
