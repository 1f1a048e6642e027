"""TLS refusals over real handshakes: wrong CA, expired or misnamed certificate, TLS 1.1, mTLS."""
# ruff: noqa: F401, F811  (pytest fixtures imported from tests.https_support)

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
import threading
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.drainer import Drainer
from gateway.errors import KeyFileError
from gateway.fhir import GatewayInfo
from gateway.forwarders.base import PermanentError, RetryableError
from gateway.forwarders.https import HttpsForwarder
from gateway.https_tls import TlsRefusedError, client_context
from gateway.queue import ReadingQueue, State
from simulators.fhir_receiver import Receiver, server_context
from tests.certs import Leaf, make_ca
from tests.conftest import bp
from tests.https_support import Pki, item, pki, settings


async def serve(rx: Receiver, cert: Path, key: Path, client_ca: Path | None = None) -> int:
    return await rx.start(server_context(cert, key, client_ca))


async def refused_by(pki: Pki, server: Leaf) -> tuple[TlsRefusedError, int]:
    """Send one item to a receiver presenting `server`: the refusal raised, and the bundles it received."""
    rx = Receiver(require_auth=False)
    port = await serve(rx, server.cert_file, server.key_file)
    try:
        async with HttpsForwarder(settings(pki, port, auth=None)) as fwd:
            with pytest.raises(TlsRefusedError) as info:
                await fwd.send([item(1)])
    finally:
        await rx.stop()
    return info.value, rx.bundles_received


async def test_wrong_ca_refused_nothing_sent(pki: Pki, tmp_path: Path) -> None:
    error, received = await refused_by(pki, make_ca(tmp_path, "rogue-ca").issue("rogue-server"))
    assert isinstance(error, PermanentError)  # the drainer keeps the reading queued
    assert error.reason == "unable to get local issuer certificate"
    assert received == 0


async def test_expired_server_certificate_refused(pki: Pki) -> None:
    now = dt.datetime.now(dt.UTC)
    expired = pki.ca.issue("expired", not_before=now - dt.timedelta(days=10), not_after=now - dt.timedelta(days=1))
    error, received = await refused_by(pki, expired)
    assert error.reason == "certificate has expired"
    assert received == 0


async def test_hostname_mismatch_refused(pki: Pki) -> None:
    error, received = await refused_by(pki, pki.ca.issue("other-host", hosts=("backend.example",)))
    assert "Hostname mismatch" in error.reason
    assert received == 0


@pytest.fixture
def tls11_server(pki: Pki) -> Iterator[tuple[int, list[str]]]:
    """A real TLS server capped at TLS 1.1 (OpenSSL 3 still runs it at @SECLEVEL=0).

    Blocking stdlib sockets in a thread on purpose: asyncio's server aborts the transport on a failed
    handshake before OpenSSL's protocol_version alert is flushed, so the client would only see EOF
    (which is rightly treated as a transient network failure). A blocking server sends the alert the
    way nginx or Apache do.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.load_cert_chain(str(pki.server.cert_file), str(pki.server.key_file))
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    seen: list[str] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            with conn:
                try:
                    with ctx.wrap_socket(conn, server_side=True) as tls:
                        seen.append(str(tls.version()))
                except ssl.SSLError as exc:
                    seen.append(str(exc.reason))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield listener.getsockname()[1], seen
    stop.set()
    thread.join(5)
    listener.close()


async def test_tls11_server_is_really_tls11(pki: Pki, tls11_server: tuple[int, list[str]]) -> None:
    """Control: a client that still allows TLS 1.1 does complete a handshake with this server."""
    port, _ = tls11_server
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(pki.ca.cert_file))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
    assert writer.get_extra_info("ssl_object").version() == "TLSv1.1"
    writer.close()


async def test_tls11_only_server_refused(pki: Pki, tls11_server: tuple[int, list[str]]) -> None:
    port, seen = tls11_server
    async with HttpsForwarder(settings(pki, port, auth=None)) as fwd:
        with pytest.raises(TlsRefusedError) as info:
            await fwd.send([item(1)])
    assert info.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION"
    # The server thread records its side after sending the alert we already read: wait for it, do not race it.
    async with asyncio.timeout(60):
        while not seen:  # noqa: ASYNC110 - a list another thread fills
            await asyncio.sleep(0.01)
    assert seen == ["UNSUPPORTED_PROTOCOL"]  # the server saw our hello demand >= 1.2


def test_client_context_floor_and_checks(pki: Pki) -> None:
    ctx = client_context(pki.ca.cert_file)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.check_hostname is True
    assert ctx.verify_mode == ssl.CERT_REQUIRED


async def test_mtls_client_certificate(pki: Pki) -> None:
    client = pki.ca.issue("gateway-client", server=False, hosts=())
    rx = Receiver(require_auth=False)
    port = await serve(rx, pki.server.cert_file, pki.server.key_file, client_ca=pki.ca.cert_file)
    try:
        async with HttpsForwarder(settings(pki, port, auth=None)) as fwd:
            # No client certificate. In TLS 1.3 the server checks it after our side of the handshake is
            # done and aiohttp's asyncio server closes without flushing its alert, so this arrives as a
            # broken read: retryable, indistinguishable from a reset. Nothing reaches the store.
            with pytest.raises(RetryableError):
                await fwd.send([item(1)])
        assert rx.bundles_received == 0
        mtls = settings(pki, port, auth=None, client_cert_file=client.cert_file, client_key_file=client.key_file)
        async with HttpsForwarder(mtls) as fwd:
            assert (await fwd.send([item(1)])).confirmed == {1}
    finally:
        await rx.stop()
    assert len(rx.of_type("Observation")) == 1


def test_client_key_with_loose_permissions_refused(pki: Pki) -> None:
    client = pki.ca.issue("gateway-client", server=False, hosts=())
    client.key_file.chmod(0o644)
    loose = settings(pki, 1, auth=None, client_cert_file=client.cert_file, client_key_file=client.key_file)
    with pytest.raises(KeyFileError, match="group/others"):
        HttpsForwarder(loose)


async def test_reload_rereads_ca_bundle(pki: Pki, tmp_path: Path) -> None:
    """SIGHUP after the operator installs the right CA bundle: the same forwarder then connects."""
    rx = Receiver(require_auth=False)
    port = await serve(rx, pki.server.cert_file, pki.server.key_file)
    bundle = tmp_path / "trust.pem"
    bundle.write_bytes(make_ca(tmp_path, "old-ca").cert_file.read_bytes())
    try:
        fwd = HttpsForwarder(replace(settings(pki, port, auth=None), ca_file=bundle))
        async with fwd:
            with pytest.raises(TlsRefusedError):
                await fwd.send([item(1)])
            bundle.write_bytes(pki.ca.cert_file.read_bytes())
            fwd.reload()
            assert (await fwd.send([item(1)])).confirmed == {1}
    finally:
        await rx.stop()


async def test_tls11_refusal_keeps_readings_queued(
    pki: Pki, tls11_server: tuple[int, list[str]], queue: ReadingQueue
) -> None:
    port, _ = tls11_server
    await queue.bind("BP123456", 1, "Patient/p1")
    await queue.put([bp(minute=m) for m in range(3)])
    async with HttpsForwarder(settings(pki, port, auth=None)) as fwd:
        with pytest.raises(TlsRefusedError):
            await Drainer(queue, fwd, GatewayInfo(id="gw-test", version="0")).drain_once()
    counts = await queue.counts()
    assert (counts[State.PENDING], counts[State.DELIVERED], counts[State.QUARANTINED]) == (3, 0, 0)
