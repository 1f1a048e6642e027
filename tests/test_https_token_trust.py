"""The token endpoint may live under another CA than the FHIR server (a public IdP, a private FHIR CA)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gateway.forwarders.base import PermanentError
from gateway.forwarders.https import HttpsForwarder, HttpsSettings
from simulators.fhir_receiver import Client, Receiver, server_context
from tests.https_support import CLIENT_SECRET, Pki, item, make_pki, settings


@pytest.fixture
async def split(tmp_path: Path) -> AsyncIterator[tuple[Pki, Pki, Receiver, Receiver]]:
    """A FHIR server under CA "fhir" that trusts tokens blindly, and a token server under CA "idp"."""
    (tmp_path / "fhir").mkdir()
    (tmp_path / "idp").mkdir()
    fhir_pki, idp_pki = make_pki(tmp_path / "fhir"), make_pki(tmp_path / "idp")
    fhir = Receiver(require_auth=False)
    idp = Receiver([Client("gw-basic", secret=CLIENT_SECRET)])
    await fhir.start(server_context(fhir_pki.server.cert_file, fhir_pki.server.key_file))
    await idp.start(server_context(idp_pki.server.cert_file, idp_pki.server.key_file))
    yield fhir_pki, idp_pki, fhir, idp
    await fhir.stop()
    await idp.stop()


def split_settings(fhir_pki: Pki, idp_pki: Pki, fhir: Receiver, idp: Receiver, **kw: Any) -> HttpsSettings:
    base = settings(fhir_pki, fhir.port)
    assert base.auth is not None
    auth = replace(base.auth, token_url=f"https://localhost:{idp.port}/token", secret=str(idp_pki.secret_file))
    return replace(base, auth=auth, **kw)


async def test_token_endpoint_under_its_own_ca(split: tuple[Pki, Pki, Receiver, Receiver]) -> None:
    fhir_pki, idp_pki, fhir, idp = split
    fwd = HttpsForwarder(split_settings(fhir_pki, idp_pki, fhir, idp, token_ca_file=idp_pki.ca.cert_file))
    async with fwd:
        report = await fwd.send([item(1)])
    assert report.confirmed == frozenset({1})
    assert idp.tokens_issued == 1 and fhir.bundles_received == 1


async def test_without_its_own_trust_the_token_endpoint_is_refused(split: tuple[Pki, Pki, Receiver, Receiver]) -> None:
    fhir_pki, idp_pki, fhir, idp = split
    fwd = HttpsForwarder(split_settings(fhir_pki, idp_pki, fhir, idp))  # FHIR's CA only: the IdP is untrusted
    async with fwd:
        with pytest.raises(PermanentError):
            await fwd.send([item(1)])
    assert idp.tokens_issued == 0 and fhir.bundles_received == 0
