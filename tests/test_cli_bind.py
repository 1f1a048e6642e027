"""`vitalgate bind` (issue 12): it applies the FHIR mapping's patient rule before writing, and says when the
device was never seen. In process against a real config, key file and SQLite queue."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import load_config
from gateway.crypto import KeyRing, create_key_file
from gateway.fhir.errors import MappingError
from gateway.fhir.patient import patient_reference
from gateway.queue import ReadingQueue


def make_config(tmp_path: Path) -> Path:
    create_key_file(tmp_path / "data.key")
    cfg = tmp_path / "vitalgate.toml"
    cfg.write_text(f"""
[gateway]
id = "gw-bind"
state_dir = "state"
key_file = "{tmp_path / "data.key"}"
[[devices]]
driver = "simulated"
name = "cuff"
kind = "blood-pressure"
serial = "SIM-BP-0001"
users = [1]
""")
    return cfg


def bindings(cfg: Path) -> list[tuple[str, int | None, str]]:
    async def go() -> list[tuple[str, int | None, str]]:
        c = load_config(cfg)
        q = await ReadingQueue.open(c.queue_path, KeyRing.load(c.key_file))
        try:
            return [(b.device, b.user_slot, b.patient) for b in await q.reload_bindings()]
        finally:
            await q.close()

    return asyncio.run(go())


# The case first; each is refused by the FHIR mapping, so `bind` must refuse it too.
REFUSED = ["Patient/has space", "has space", "Patient/", "", "x" * 65, "Patient/a_b", "notauri|v", "urn:x|", "urn:x| v"]
ACCEPTED = {
    "Patient/p-1.2": "Patient/p-1.2",
    "p-1.2": "Patient/p-1.2",
    "urn:oid:1.2.3|MRN 42": "urn:oid:1.2.3|MRN 42",
    "https://clinic.example/mrn|A-7": "https://clinic.example/mrn|A-7",
}


@pytest.mark.parametrize("patient", REFUSED)
def test_bind_refuses_what_the_fhir_mapping_refuses(
    patient: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(MappingError):
        patient_reference(patient)  # the shared rule
    cfg = make_config(tmp_path)
    assert main(["bind", "SIM-BP-0001", patient, "--user", "1", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "PATIENT" in err and "patient binding" in err
    assert "has space" not in err and "xxxx" not in err  # a patient identifier is never echoed
    assert bindings(cfg) == []


@pytest.mark.parametrize(("patient", "stored"), ACCEPTED.items())
def test_bind_stores_the_form_the_mapping_accepts(
    patient: str, stored: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    patient_reference(stored)  # does not raise
    cfg = make_config(tmp_path)
    assert main(["bind", "SIM-BP-0001", patient, "--user", "1", "--config", str(cfg)]) == 0
    assert bindings(cfg) == [("SIM-BP-0001", 1, stored)]
    capsys.readouterr()


def test_bind_on_a_device_never_seen_is_accepted_with_a_notice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = make_config(tmp_path)
    assert main(["bind", "NOSUCHDEVICE", "999", "--config", str(cfg)]) == 0
    out, err = capsys.readouterr()
    assert out == "bound NOSUCHDEVICE; its readings will flow once the gateway has seen it\n"
    assert "notice: this gateway has not seen 'NOSUCHDEVICE' yet" in err and "vitalgate devices" in err
    assert bindings(cfg) == [("NOSUCHDEVICE", None, "Patient/999")]
