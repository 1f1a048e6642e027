"""HTTPS forwarder against the reference receiver over real TLS (certificates minted per test)."""
# ruff: noqa: F811  (pytest fixtures imported from tests.https_support)

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from gateway.forwarders.base import PermanentError, RetryableError
from gateway.oauth import AuthRefusedError
from simulators.fhir_receiver import Receiver
from tests.https_support import (  # noqa: F401  (fixtures)
    CLIENT_SECRET,
    Pki,
    forwarder,
    item,
    pki,
    receiver,
)


def stored_without_server_fields(rx: Receiver, rtype: str) -> list[dict[str, Any]]:
    out = []
    for res in rx.of_type(rtype):
        res = copy.deepcopy(res)
        del res["id"], res["meta"]["versionId"], res["meta"]["lastUpdated"]
        if not res["meta"]:
            del res["meta"]
        out.append(res)
    return sorted(out, key=lambda r: str(r.get("identifier")))


def expected(items: list[Any], rtype: str, device_ref: str | None = None) -> list[dict[str, Any]]:
    out = []
    for it in items:
        for entry in it.entries:
            if entry["resource"]["resourceType"] == rtype:
                res = copy.deepcopy(entry["resource"])
                if device_ref is not None and "device" in res:
                    res["device"]["reference"] = device_ref
                if res not in out:
                    out.append(res)
    return sorted(out, key=lambda r: str(r.get("identifier")))


async def test_happy_path_exact_resources(pki: Pki, receiver: Receiver) -> None:
    batch = [item(1), item(2), item(3)]
    async with forwarder(pki, receiver.port, window=3) as fwd:
        report = await fwd.send(batch)
    assert report.confirmed == frozenset({1, 2, 3})
    assert report.rejected == {}
    assert receiver.bundles_received == 1  # one transaction for the whole batch
    devices = receiver.of_type("Device")
    assert len(devices) == 1  # the shared Device entry was sent once and created once
    device_ref = f"Device/{devices[0]['id']}"
    assert stored_without_server_fields(receiver, "Device") == expected(batch, "Device")
    # urn:uuid references were resolved by the receiver to the created Device.
    assert stored_without_server_fields(receiver, "Observation") == expected(batch, "Observation", device_ref)


async def test_resend_after_restart_creates_no_duplicate(pki: Pki, receiver: Receiver) -> None:
    """A gateway restarted mid-drain resends what it had not acked; conditional create absorbs it."""
    async with forwarder(pki, receiver.port) as fwd:
        assert (await fwd.send([item(1), item(2)])).confirmed == {1, 2}
    # "restart": a brand-new forwarder (new token, new connection) leases 2 again plus a new one
    async with forwarder(pki, receiver.port) as fwd:
        assert (await fwd.send([item(2), item(3)])).confirmed == {2, 3}
    assert len(receiver.of_type("Observation")) == 3
    assert len(receiver.of_type("Device")) == 1


async def test_commit_then_dropped_connection_resend_exactly_one(pki: Pki, receiver: Receiver) -> None:
    receiver.faults.drop_after_commit = 1
    batch = [item(1), item(2)]
    async with forwarder(pki, receiver.port) as fwd:
        with pytest.raises(RetryableError):
            await fwd.send(batch)
        assert len(receiver.of_type("Observation")) == 2  # it did commit
        report = await fwd.send(batch)  # the drainer's retry
    assert report.confirmed == {1, 2}
    assert len(receiver.of_type("Observation")) == 2
    assert len(receiver.of_type("Device")) == 1


@pytest.mark.parametrize(
    ("status", "header", "hint"),
    [
        (429, "7", 7.0),
        (503, "120", 120.0),
        (500, None, None),
        (502, None, None),
    ],
)
async def test_server_busy_is_retryable_with_hint(
    pki: Pki, receiver: Receiver, status: int, header: str | None, hint: float | None
) -> None:
    receiver.faults.statuses.append((status, int(header) if header else None))
    async with forwarder(pki, receiver.port) as fwd:
        with pytest.raises(RetryableError) as info:
            await fwd.send([item(1)])
        assert info.value.retry_after == hint
        assert receiver.resources == {}
        assert (await fwd.send([item(1)])).confirmed == {1}


def test_retry_after_http_date() -> None:
    from gateway.retry_after import parse_retry_after

    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp()) == 90.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now.timestamp()) == 0.0
    assert parse_retry_after("999999", now=now.timestamp()) == 3600.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


async def test_slow_server_times_out_retryable_then_no_duplicate(pki: Pki, receiver: Receiver) -> None:
    receiver.faults.delay_seconds = 1.5
    async with forwarder(pki, receiver.port, timeout_seconds=1) as fwd:
        with pytest.raises(RetryableError, match="timed out"):
            await fwd.send([item(1)])
    receiver.faults.delay_seconds = 0
    async with forwarder(pki, receiver.port) as fwd:
        assert (await fwd.send([item(1)])).confirmed == {1}
    assert len(receiver.of_type("Observation")) == 1


PHI_VALUE = "Jane-Doe-1962"


def bad_item(item_id: int) -> Any:
    """Invalid: a quantity value that is not a number, echoed back by the receiver's diagnostics."""
    it = item(item_id)
    obs = it.entries[1]["resource"]
    obs["component"][0]["valueQuantity"]["value"] = PHI_VALUE
    return it


async def test_transaction_bad_entry_rejects_only_its_item(pki: Pki, receiver: Receiver) -> None:
    batch = [item(1), bad_item(2), item(3)]
    async with forwarder(pki, receiver.port) as fwd:
        report = await fwd.send(batch)
        assert report.confirmed == frozenset()  # all-or-nothing: nothing was stored
        assert set(report.rejected) == {2}
        assert receiver.resources == {}
        reason = report.rejected[2]
        assert reason.startswith("HTTP 422: error invalid (server text withheld)")
        assert PHI_VALUE not in reason and "1962" not in reason
        assert len(reason) < 400
        assert (await fwd.send([batch[0], batch[2]])).confirmed == {1, 3}
    assert len(receiver.of_type("Observation")) == 2


async def test_transaction_unlocated_refusal_isolates(pki: Pki, receiver: Receiver) -> None:
    """When the server does not say which entry failed, the window drops to 1 to find it."""
    receiver.faults.omit_entry_location = True
    batch = [item(1), bad_item(2), item(3)]
    async with forwarder(pki, receiver.port, window=10) as fwd:
        report = await fwd.send(batch)
        assert report.confirmed == frozenset() and report.rejected == {}
        assert fwd.window == 1
        # what a drainer does next: lease one at a time until the batch's size is worked off
        outcomes = [await fwd.send([it]) for it in batch]
        assert fwd.window == 10
    assert [o.confirmed for o in outcomes] == [{1}, frozenset(), {3}]
    assert set(outcomes[1].rejected) == {2}
    assert len(receiver.of_type("Observation")) == 2


async def test_batch_bundle_gives_per_entry_outcomes(pki: Pki, receiver: Receiver) -> None:
    """bundle_type = "batch": per-entry outcomes; references between entries become logical ones."""
    batch = [item(1), bad_item(2)]
    async with forwarder(pki, receiver.port, bundle_type="batch") as fwd:
        report = await fwd.send(batch)
    assert report.confirmed == {1}
    assert set(report.rejected) == {2}
    assert report.rejected[2].startswith("entry 2: HTTP 422: error invalid (server text withheld)")
    assert PHI_VALUE not in report.rejected[2]
    (obs,) = receiver.of_type("Observation")
    device = batch[0].entries[0]["resource"]
    # the receiver refuses urn:uuid references in a batch, so this also shows they were rewritten
    assert obs["device"] == {"type": "Device", "identifier": device["identifier"][0]}
    assert batch[0].entries[1]["resource"]["device"]["reference"].startswith("urn:uuid:")  # input untouched


async def test_batch_entry_busy_leaves_only_its_item_for_retry(pki: Pki, receiver: Receiver) -> None:
    receiver.faults.batch_entry_statuses = {2: 503}  # entries: Device, Observation 1, Observation 2
    batch = [item(1), item(2)]
    async with forwarder(pki, receiver.port, bundle_type="batch") as fwd:
        report = await fwd.send(batch)
        assert (report.confirmed, report.rejected) == ({1}, {})  # item 2 neither: the drainer retries it
        assert (await fwd.send([batch[1]])).confirmed == {2}
    assert len(receiver.of_type("Observation")) == 2
    assert len(receiver.of_type("Device")) == 1


async def test_token_expiring_mid_drain_refreshes_once(pki: Pki, receiver: Receiver) -> None:
    async with forwarder(pki, receiver.port) as fwd:
        assert (await fwd.send([item(1)])).confirmed == {1}
        receiver.expire_tokens()  # the server forgets the token before our cached expiry
        with capture_logs() as logs:
            assert (await fwd.send([item(2)])).confirmed == {2}
            assert (await fwd.send([item(3)])).confirmed == {3}
    assert receiver.tokens_issued == 2  # one refresh, then the new token is reused
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["fhir_unauthorized_refreshing_token"]
    assert len(receiver.of_type("Observation")) == 3


async def test_revoked_credentials_permanent_alert_nothing_stored(pki: Pki, receiver: Receiver) -> None:
    async with forwarder(pki, receiver.port) as fwd:
        assert (await fwd.send([item(1)])).confirmed == {1}
        receiver.faults.revoked.add("gw-basic")
        with capture_logs() as logs, pytest.raises(AuthRefusedError) as info:
            await fwd.send([item(2)])
    assert isinstance(info.value, PermanentError)
    assert info.value.error == "invalid_client"
    critical = [e for e in logs if e["log_level"] == "critical"]
    assert [e["event"] for e in critical] == ["oauth_invalid_client"]
    assert len(receiver.of_type("Observation")) == 1


async def test_401_with_fresh_token_is_permanent(pki: Pki, receiver: Receiver) -> None:
    receiver.faults.statuses.extend([(401, None), (401, None)])
    async with forwarder(pki, receiver.port) as fwd:
        with pytest.raises(PermanentError, match="401 with a freshly issued token"):
            await fwd.send([item(1)])
    assert receiver.tokens_issued == 2  # the one refresh, no loop
    assert receiver.resources == {}


async def test_secrets_and_tokens_never_logged(pki: Pki, receiver: Receiver) -> None:
    structlog.reset_defaults()
    with capture_logs() as logs:
        async with forwarder(pki, receiver.port) as fwd:
            await fwd.send([item(1)])
            receiver.expire_tokens()
            await fwd.send([item(2)])
            receiver.faults.revoked.add("gw-basic")
            receiver.expire_tokens()
            with pytest.raises(AuthRefusedError) as info:
                await fwd.send([item(3)])
    text = repr(logs) + str(info.value)
    assert logs  # something was logged, so the check below means something
    assert CLIENT_SECRET not in text
    for token in receiver.issued_tokens:
        assert token not in text
