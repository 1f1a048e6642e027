"""The real queue, mapping and drainer sending through the HTTPS forwarder to the reference receiver."""
# ruff: noqa: F401, F811  (pytest fixtures imported from tests.https_support and tests.conftest)

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.crypto import KeyRing
from gateway.drainer import Backoff, Drainer
from gateway.fhir import GatewayInfo
from gateway.forwarders.base import PermanentError, RetryableError
from gateway.https_tls import TlsRefusedError
from gateway.oauth import AuthRefusedError
from gateway.queue import ReadingQueue, State
from simulators.fhir_receiver import Receiver, server_context
from tests.certs import make_ca
from tests.conftest import bp
from tests.https_support import Pki, forwarder, pki, receiver

GW = GatewayInfo(id="gw-test", version="0.1.0")
N = 6


async def fill(queue: ReadingQueue, n: int = N) -> None:
    await queue.bind("BP123456", 1, "Patient/p1")
    await queue.put([bp(minute=m) for m in range(n)])


async def drain_all(drainer: Drainer) -> None:
    while await drainer.drain_once():
        pass


def observations(rx: Receiver) -> list[str]:
    return sorted(r["identifier"][0]["value"] for r in rx.of_type("Observation"))


async def test_drain_delivers_each_reading_once(pki: Pki, receiver: Receiver, queue: ReadingQueue) -> None:
    await fill(queue)
    async with forwarder(pki, receiver.port, window=4) as fwd:
        drainer = Drainer(queue, fwd, GW, batch_size=100)
        await drain_all(drainer)
    counts = await queue.counts()
    assert (counts[State.DELIVERED], counts[State.PENDING], counts[State.QUARANTINED]) == (N, 0, 0)
    assert receiver.bundles_received == 2  # window 4: batches of 4 and 2
    # each BP reading maps to a panel Observation and a pulse Observation, all validated by the receiver
    assert len(observations(receiver)) == 2 * N
    assert len(set(observations(receiver))) == 2 * N
    assert len(receiver.of_type("Device")) == 2  # the cuff (PHD) and the gateway (PHG), once each


async def test_restart_mid_drain_no_duplicate(pki: Pki, receiver: Receiver, tmp_path: Path, keyring: KeyRing) -> None:
    """Sent and stored, then the gateway dies before the ack: after restart it resends, nothing doubles."""
    db = tmp_path / "restart.db"
    queue = await ReadingQueue.open(db, keyring)
    await fill(queue)
    async with forwarder(pki, receiver.port, window=4) as fwd:
        drainer = Drainer(queue, fwd, GW)
        leased, _ = await queue.lease(4)
        batch, _ = await drainer._map(leased)
        report = await fwd.send(batch)  # the receiver commits ...
    assert len(report.confirmed) == 4
    await queue.close()  # ... and the process dies here: no ack reached the queue
    stored_before = observations(receiver)
    assert len(stored_before) == 8

    queue = await ReadingQueue.open(db, keyring)  # restart: same file, new forwarder, new token
    try:
        async with forwarder(pki, receiver.port, window=4) as fwd:
            await drain_all(Drainer(queue, fwd, GW))
        assert (await queue.counts())[State.DELIVERED] == N
    finally:
        await queue.close()
    assert len(observations(receiver)) == 2 * N
    assert set(stored_before) <= set(observations(receiver))


async def test_dropped_connection_after_commit_then_resend(pki: Pki, receiver: Receiver, queue: ReadingQueue) -> None:
    await fill(queue)
    receiver.faults.drop_after_commit = 1
    async with forwarder(pki, receiver.port) as fwd:
        drainer = Drainer(queue, fwd, GW, backoff=Backoff(initial=0.0, maximum=0.0))  # due again at once
        with pytest.raises(RetryableError):
            await drainer.drain_once()
        assert (await queue.counts())[State.PENDING] == N  # released, not lost
        assert len(observations(receiver)) == 2 * N  # but the receiver had committed them
        await drain_all(drainer)
    assert (await queue.counts())[State.DELIVERED] == N
    assert len(observations(receiver)) == 2 * N


async def test_token_expiring_mid_drain(pki: Pki, receiver: Receiver, queue: ReadingQueue) -> None:
    await fill(queue)
    async with forwarder(pki, receiver.port, window=2) as fwd:
        drainer = Drainer(queue, fwd, GW)
        assert await drainer.drain_once() == 2
        receiver.expire_tokens()
        await drain_all(drainer)
    assert (await queue.counts())[State.DELIVERED] == N
    assert receiver.tokens_issued == 2
    assert len(observations(receiver)) == 2 * N


async def test_revoked_credentials_keep_readings_queued(pki: Pki, receiver: Receiver, queue: ReadingQueue) -> None:
    await fill(queue)
    receiver.faults.revoked.add("gw-basic")
    async with forwarder(pki, receiver.port) as fwd:
        drainer = Drainer(queue, fwd, GW)
        with pytest.raises(AuthRefusedError):
            await drainer.drain_once()
    assert (await queue.counts())[State.PENDING] == N
    assert receiver.resources == {}


async def test_retry_after_defers_the_batch(pki: Pki, receiver: Receiver, queue: ReadingQueue) -> None:
    await fill(queue)
    receiver.faults.statuses.append((429, 120))
    async with forwarder(pki, receiver.port) as fwd:
        drainer = Drainer(queue, fwd, GW)
        with pytest.raises(RetryableError) as info:
            await drainer.drain_once()
    assert info.value.retry_after == 120.0
    assert (await queue.counts())[State.PENDING] == N
    assert (await queue.lease(N))[0] == []  # released with the server's delay, not due yet
    assert receiver.resources == {}


@pytest.mark.parametrize("problem", ["wrong-ca", "expired"])
async def test_tls_refusal_keeps_readings_queued(pki: Pki, queue: ReadingQueue, tmp_path: Path, problem: str) -> None:
    import datetime as dt

    if problem == "wrong-ca":
        leaf = make_ca(tmp_path, "rogue").issue("rogue-server")
    else:
        now = dt.datetime.now(dt.UTC)
        leaf = pki.ca.issue("old", not_before=now - dt.timedelta(days=9), not_after=now - dt.timedelta(days=1))
    rx = Receiver(require_auth=False)
    port = await rx.start(server_context(leaf.cert_file, leaf.key_file))
    await fill(queue)
    try:
        async with forwarder(pki, port, auth=None) as fwd:
            with pytest.raises(TlsRefusedError) as info:
                await Drainer(queue, fwd, GW).drain_once()
    finally:
        await rx.stop()
    assert isinstance(info.value, PermanentError)
    assert (await queue.counts())[State.PENDING] == N
    assert rx.bundles_received == 0
