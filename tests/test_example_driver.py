"""The example third-party driver (examples/vitalgate-csv-scale): found through the `vitalgate.drivers`
entry-point group, listed with its package, and run through the whole pipeline.

The package is made discoverable the way pip installs it: a `.dist-info` folder with its METADATA and
entry_points.txt on sys.path next to its source (no pip run, so the shared virtualenv is not changed;
docs/writing-a-driver.md shows `pip install -e`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from drivers import registry
from drivers.errors import MalformedFrameError
from gateway.config import Config, DeviceConfig
from gateway.crypto import KeyRing
from gateway.daemon import Gateway
from gateway.queue import ReadingQueue
from gateway.reading import Reading

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples/vitalgate-csv-scale"


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    site = tmp_path / "site"
    info = site / "vitalgate_csv_scale-0.1.0.dist-info"
    info.mkdir(parents=True)
    info.joinpath("METADATA").write_text("Metadata-Version: 2.1\nName: vitalgate-csv-scale\nVersion: 0.1.0\n")
    # The entry point exactly as the example's pyproject.toml declares it.
    toml = (EXAMPLE / "pyproject.toml").read_text()
    line = next(x for x in toml.splitlines() if x.startswith("csv-scale = "))
    entry = line.replace('"', "")
    info.joinpath("entry_points.txt").write_text(f"[vitalgate.drivers]\n{entry}\n")
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    monkeypatch.syspath_prepend(str(site))
    yield


@pytest.mark.usefixtures("installed")
def test_parser_from_literal_lines() -> None:
    from vitalgate_csv_scale.protocol import WeighIn, parse_line  # type: ignore[import-not-found]

    assert parse_line(b"2026-11-24T08:00:00,SC-1234,72.4,kg\n") == WeighIn(
        datetime(2026, 11, 24, 8, 0), "SC-1234", 72.4, "kg"
    )
    for bad in (b"2026-11-24T08:00:00,SC-1234,72.4\n", b"2026-11-24T08:00:00Z,SC-1,72.4,kg\n", b"x,SC-1,72,kg\n"):
        with pytest.raises(MalformedFrameError) as info:
            parse_line(bad)
        assert info.value.raw == bad


@pytest.mark.usefixtures("installed")
def test_found_through_the_entry_point_and_listed_with_its_package(capsys: Any) -> None:
    from gateway.cli import main

    assert registry.available()["csv-scale"] == "vitalgate_csv_scale.driver:CsvScaleDriver"
    assert registry.load("csv-scale").name == "csv-scale"
    assert (registry.origin("csv-scale"), registry.origin("tanita-bc")) == ("vitalgate-csv-scale 0.1.0", "built in")
    assert main(["drivers"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["csv-scale"].endswith("[vitalgate-csv-scale 0.1.0]")
    assert lines["onetouch-ultra2"].endswith("[built in]")


@pytest.mark.usefixtures("installed")
async def test_runs_through_the_whole_pipeline(tmp_path: Path, keyring: KeyRing, key_file: Path) -> None:
    scale_file = tmp_path / "scale.csv"
    scale_file.write_bytes(
        b"2026-11-24T08:00:00,SC-1234,72.4,kg\nnot a weigh-in\n2026-11-25T08:01:00,SC-1234,160.5,lb\n"
    )
    options = {"path": str(scale_file), "poll_seconds": 0.1}
    registry.load("csv-scale").validate(options, "devices[0]")
    cfg = Config(
        file="<test>", state_dir=tmp_path, key_file=str(key_file), queue_path=tmp_path / "queue.db",
        forwarder_options={"directory": str(tmp_path / "outbox")}, retry_initial=0.05, retry_max=0.5,
        devices=(DeviceConfig("csv-scale", "hall-scale", options, "devices[0]"),),
    )  # fmt: skip
    async with await ReadingQueue.open(cfg.queue_path, keyring) as q:
        await q.bind("SC-1234", None, "Patient/p-scale")
    delivered: list[Reading] = []
    three = asyncio.Event()

    def on_delivered(r: Reading, _f: str) -> None:
        delivered.append(r)
        if len(delivered) == 2:  # the scale is weighed on again: one more line
            with scale_file.open("ab") as f:
                f.write(b"2026-11-26T07:59:00,SC-1234,72.0,kg\n")
        if len(delivered) >= 3:
            three.set()

    gw = Gateway(cfg, keyring, on_delivered=on_delivered)
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop))
    try:
        async with asyncio.timeout(30):
            await three.wait()
    finally:
        stop.set()
        await task
    weights = [
        e["resource"]["valueQuantity"]
        for f in sorted((tmp_path / "outbox").glob("*.ndjson"))
        for b in f.read_bytes().splitlines()
        for e in orjson.loads(b)["entry"]
        if e["resource"]["resourceType"] == "Observation"
    ]
    assert [(w["value"], w["code"]) for w in weights] == [(72.4, "kg"), (160.5, "[lb_av]"), (72.0, "kg")]
    async with await ReadingQueue.open(cfg.queue_path, keyring) as q:
        assert [(source, error, raw) for _, source, error, raw in await q.rejects()] == [
            ("hall-scale:csv-scale:line", "MalformedFrameError", b"not a weigh-in")
        ]
