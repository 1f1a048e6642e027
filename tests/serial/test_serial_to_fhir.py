"""A whole meter dump through a pty, the real queue, the drainer and the file forwarder: exact FHIR values."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from drivers.serial.session_ultra2 import OneTouchUltra2Driver
from gateway.drainer import Drainer
from gateway.fhir import GatewayInfo
from gateway.forwarders.file import FileForwarder
from gateway.queue import ReadingQueue
from simulators.serial.base import PtyDevice
from simulators.serial.ultra2 import Ultra2Simulator
from tests.serial.conftest import METER_NOW, RECORDS, ctx_for

GATEWAY_NOW = datetime(2026, 11, 24, 8, 58, 30)  # meter 90 s fast


def observations(outbox: Path) -> list[dict[str, Any]]:
    out = []
    for file in sorted(outbox.glob("bundles-*.ndjson")):
        for line in file.read_bytes().splitlines():
            for entry in orjson.loads(line)["entry"]:
                if entry["resource"]["resourceType"] == "Observation":
                    out.append(entry["resource"])
    return out


async def test_dump_reaches_file_output_with_exact_values(
    queue: ReadingQueue, started: list[PtyDevice], tmp_path: Path
) -> None:
    sim = Ultra2Simulator(RECORDS, now=lambda: METER_NOW).start()
    started.append(sim)
    await queue.bind("AB123456Y", None, "Patient/p-17")
    driver = OneTouchUltra2Driver(clock=lambda: GATEWAY_NOW)
    await driver.run(ctx_for(queue, "onetouch-ultra2", {"port": sim.path, "timeout_seconds": 0.5}))
    outbox = tmp_path / "outbox"
    drainer = Drainer(queue, FileForwarder(outbox), GatewayInfo(id="gw-test", version="0"), local_tz=UTC)
    async with drainer.forwarder:
        while await drainer.drain_once():
            pass
    glucose = [o for o in observations(outbox) if any(c["code"] == "41653-7" for c in o["code"]["coding"])]
    assert len(glucose) == 8
    by_time = {o["effectiveDateTime"]: o for o in glucose}
    # Record 2026-11-23 21:05:12 on a meter 90 s fast, zone UTC: effective 21:03:42 UTC; 187 mg/dL as reported.
    obs = by_time["2026-11-23T21:03:42+00:00"]
    assert obs["valueQuantity"] == {
        "value": 187,
        "unit": "mg/dL",
        "system": "http://unitsofmeasure.org",
        "code": "mg/dL",
    }
    assert obs["subject"] == {"reference": "Patient/p-17"}
    assert obs["status"] == "final"
    assert sorted(by_time) == [
        "2026-11-21T19:19:00+00:00",
        "2026-11-22T06:58:29+00:00",
        "2026-11-22T12:58:31+00:00",
        "2026-11-22T22:13:30+00:00",
        "2026-11-23T07:00:33+00:00",
        "2026-11-23T12:43:29+00:00",
        "2026-11-23T21:03:42+00:00",
        "2026-11-24T07:28:30+00:00",
    ]
    assert sorted(o["valueQuantity"]["value"] for o in glucose) == [71, 92, 104, 118, 131, 156, 187, 244]
