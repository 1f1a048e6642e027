"""`vitalgate demo --fhir` against the reference receiver started by hand, as a user would."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from gateway.cli import main
from tests.certs import make_ca, write_private
from tests.childio import ChildLines


@pytest.fixture
def receiver_process(tmp_path: Path) -> Iterator[tuple[str, Path, Path, Path]]:
    ca = make_ca(tmp_path)
    leaf = ca.issue("server")
    secret = write_private(tmp_path / "secret", b"demo-secret-xyz")
    ndjson = tmp_path / "received.ndjson"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "simulators.fhir_receiver", "--port", "0", "--cert", str(leaf.cert_file)),
            *("--key", str(leaf.key_file), "--client-secret", f"demo={secret}", "--ndjson", str(ndjson)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = ChildLines.of(proc, "fhir_receiver").wait_for("FHIR base", 60)
        match = re.search(r"FHIR base https://127\.0\.0\.1:(\d+)/fhir", line)
        assert match, line
        yield f"https://localhost:{match.group(1)}/fhir", ca.cert_file, secret, ndjson
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()  # the demo pointed structlog at pytest's captured stderr, closed after the test


def test_demo_posts_to_the_receiver(
    receiver_process: tuple[str, Path, Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    restore_logging: None,
) -> None:
    url, ca, secret, ndjson = receiver_process
    # Until every device reported, not for a fixed time: a slow CPU takes longer, the assertions stay the same.
    # --seconds: a bound for a hang (no backend reachable), below the per-test limit so the demo says why.
    args = ["demo", "--until-each-device", "1", "--seconds", "300", "--out", str(tmp_path / "demo"), "--fhir", url]
    args += ["--fhir-ca", str(ca)]
    assert main([*args, "--fhir-client-id", "demo", "--fhir-secret-file", str(secret)]) == 0
    out = capsys.readouterr().out
    total = re.search(r"^total\s+(\d+)\s+(\d+)\s+(\d+)$", out, re.M)
    assert total, out
    generated, committed, forwarded = map(int, total.groups())
    assert forwarded > 0 and committed == generated
    stored = [json.loads(line) for line in ndjson.read_text().splitlines()]
    kinds = Counter(r["resourceType"] for r in stored)
    assert kinds["Device"] == 7  # six simulated devices (one serial) and the gateway, each created once
    idents = [r["identifier"][0]["value"] for r in stored if r["resourceType"] == "Observation"]
    assert len(idents) == len(set(idents)) >= forwarded
    assert all(r["meta"]["security"][0]["code"] == "HTEST" for r in stored if r["resourceType"] == "Observation")
