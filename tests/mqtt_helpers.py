"""Test-side pieces for the MQTT tests: a backend-like subscriber and FHIR Outgoing items."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
from fhir.resources.R4B.bundle import Bundle

from gateway.forwarders import ForwarderContext
from gateway.forwarders.base import Forwarder, Outgoing, RetryableError
from tests.mosquitto import GATEWAY_ID, READER, READER_PASSWORD, Mosquitto


def outgoing(n: int, start: int = 0) -> list[Outgoing]:
    """FHIR transaction bundles, one heart-rate Observation each, with a deterministic identifier."""
    items = []
    for i in range(start, start + n):
        identifier = hashlib.sha256(f"test-reading-{i}".encode()).hexdigest()
        resource = {
            "resourceType": "Observation",
            "status": "final",
            "identifier": [{"system": "urn:ietf:rfc:3986", "value": f"urn:vitalgate:{identifier}"}],
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "vital-signs",
                        }
                    ]
                }
            ],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "effectiveDateTime": "2026-11-24T10:00:00+00:00",
            "valueQuantity": {
                "value": 60 + i % 40,
                "unit": "/min",
                "system": "http://unitsofmeasure.org",
                "code": "/min",
            },
        }
        entry = {
            "fullUrl": f"urn:uuid:00000000-0000-4000-8000-{i:012x}",
            "resource": resource,
            "request": {
                "method": "POST",
                "url": "Observation",
                "ifNoneExist": f"identifier=urn:ietf:rfc:3986|urn:vitalgate:{identifier}",
            },
        }
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
        items.append(
            Outgoing(item_id=i, identifier=identifier, bundle=bundle, body=orjson.dumps(bundle), entries=[entry])
        )
    return items


def context(tmp: Path) -> ForwarderContext:
    return ForwarderContext(config_file=str(tmp / "vitalgate.toml"), gateway_id=GATEWAY_ID, state_dir=tmp)


@dataclass
class Received:
    """What the backend saw, by identifier (from the MQTT 5 user property)."""

    counts: Counter[str] = field(default_factory=Counter)
    bodies: dict[str, bytes] = field(default_factory=dict)
    content_types: set[str | None] = field(default_factory=set)
    presence: list[tuple[bytes, bool]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, message: aiomqtt.Message) -> None:
        payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
        if message.topic.matches("vitalgate/+/status"):
            self.presence.append((payload, message.retain))
        else:
            props = message.properties
            user = dict(props.UserProperty) if props is not None and hasattr(props, "UserProperty") else {}
            # MQTT 3.1.1 has no user properties: the identifier is in the payload as well.
            identifier = user.get("identifier") or _identifier_in(payload)
            self.counts[identifier] += 1
            self.bodies[identifier] = payload
            self.content_types.add(getattr(props, "ContentType", None))
        self.changed.set()

    async def wait_for_count(self, n: int, seconds: float = 120) -> None:
        async with asyncio.timeout(seconds):
            while len(self.counts) < n:
                self.changed.clear()
                await self.changed.wait()

    async def wait_for_presence(self, n: int, seconds: float = 120) -> None:
        async with asyncio.timeout(seconds):
            while len(self.presence) < n:
                self.changed.clear()
                await self.changed.wait()

    async def wait_for(self, identifiers: set[str], seconds: float = 120) -> None:
        async with asyncio.timeout(seconds):
            while not identifiers <= self.counts.keys():
                self.changed.clear()
                await self.changed.wait()


def _identifier_in(body: bytes) -> str:
    value: str = orjson.loads(body)["entry"][0]["resource"]["identifier"][0]["value"]
    return value.removeprefix("urn:vitalgate:")


@contextlib.asynccontextmanager
async def subscriber(broker: Mosquitto, received: Received) -> AsyncIterator[None]:
    """The backend: reads everything under vitalgate/# on the plain loopback listener, QoS 1."""
    async with aiomqtt.Client(
        "127.0.0.1",
        broker.ports["plain"],
        username=READER,
        password=READER_PASSWORD,
        protocol=aiomqtt.ProtocolVersion.V5,
    ) as client:
        await client.subscribe("vitalgate/#", qos=1)

        async def pump() -> None:
            async for message in client.messages:
                received.add(message)

        task = asyncio.create_task(pump(), name="test-subscriber")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task


def assert_valid_fhir(received: Received, items: Sequence[Outgoing]) -> None:
    for item in items:
        body = received.bodies[item.identifier]
        assert body == item.body
        bundle = Bundle.model_validate_json(body)
        assert bundle.type == "transaction"


async def drain(
    forwarder: Forwarder,
    items: Sequence[Outgoing],
    *,
    on_error: Callable[[Exception], Any] | None = None,
    batch: int = 512,
    max_errors: int = 100,
    confirmed: set[str] | None = None,
) -> list[Exception]:
    """What the core's drainer does, minus the queue: send until every item is confirmed.

    Retryable errors go to `on_error` (the test's stand-in for backoff), which may be async.
    """
    pending = {item.item_id: item for item in items}
    errors: list[Exception] = []
    while pending:
        chunk = list(pending.values())[:batch]
        try:
            report = await forwarder.send(chunk)
        except RetryableError as exc:
            errors.append(exc)
            assert len(errors) <= max_errors, errors[-3:]
            result = on_error(exc) if on_error else asyncio.sleep(0.05)
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                await result
            continue
        assert not report.rejected
        for item_id in report.confirmed:
            if confirmed is not None:
                confirmed.add(pending[item_id].identifier)
            del pending[item_id]
    return errors
