"""Shared fixtures: real key files, real SQLite files on disk."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.crypto import KeyRing, create_key_file
from gateway.queue import ReadingQueue
from gateway.reading import DeviceIdentity, Kind, Measurement, Metric, Reading, Unit
from tests.fhir_server import medplum  # noqa: F401  (session fixture: one real FHIR server per run)


def pytest_configure(config: pytest.Config) -> None:
    """A test run by a normal user (a newcomer with sudo, not root) cannot read the host's credential secret
    (/var/lib/systemd/credential.secret is root's), so `systemd-creds encrypt` would fail in `vitalgate
    setup` and the credential tests. systemd-creds reads the secret from $SYSTEMD_CREDENTIAL_SECRET when set:
    such a run gets a secret of its own (created by systemd-creds on first use), the same code path."""
    if os.geteuid() != 0 and "SYSTEMD_CREDENTIAL_SECRET" not in os.environ:
        folder = tempfile.mkdtemp(prefix="vitalgate-creds-")
        atexit.register(shutil.rmtree, folder, True)
        os.environ["SYSTEMD_CREDENTIAL_SECRET"] = os.path.join(folder, "credential.secret")


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "data.key"
    create_key_file(path)
    return path


@pytest.fixture
def keyring(key_file: Path) -> KeyRing:
    return KeyRing.load(str(key_file))


@pytest.fixture
async def queue(tmp_path: Path, keyring: KeyRing) -> AsyncIterator[ReadingQueue]:
    q = await ReadingQueue.open(tmp_path / "queue.db", keyring)
    try:
        yield q
    finally:
        await q.close()


CUFF = DeviceIdentity(
    "ble-blood-pressure",
    address="C0:FF:EE:00:00:01",
    serial_number="BP123456",
    system_id="0123456789abcdef",
    manufacturer="Acme",
    model="Cuff 9",
)


def bp(
    systolic: float = 128,
    diastolic: float = 82,
    pulse: float | None = 71,
    *,
    user: int | None = 1,
    minute: int = 0,
    device: DeviceIdentity = CUFF,
) -> Reading:
    ms = [Measurement(Metric.SYSTOLIC, systolic, Unit.MMHG), Measurement(Metric.DIASTOLIC, diastolic, Unit.MMHG)]
    if pulse is not None:
        ms.append(Measurement(Metric.PULSE_RATE, pulse, Unit.PER_MIN))
    return Reading(
        kind=Kind.BLOOD_PRESSURE,
        measurements=tuple(ms),
        device=device,
        received_at=datetime(2026, 11, 24, 12, minute, 30, tzinfo=UTC),
        device_time=datetime(2026, 11, 24, 7, minute, 0),
        user_slot=user,
    )
