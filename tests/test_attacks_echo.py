"""A compromised or echoing FHIR backend (issue 11, must-have 7): the server's words are sealed, not
stored, logged or shown in the clear; an operator reveals them on purpose, and the reveal is audited.

The backend is a real HTTPS server on loopback (stdlib `http.server` behind TLS, certificate from a test
CA) that refuses every Bundle with an OperationOutcome (FHIR R4 OperationOutcome.issue: severity, code,
details.text, diagnostics, expression) echoing a planted patient name in its free text and in its
FHIRPath expressions; the gateway is the real daemon (`vitalgate run`) with a simulated cuff.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gateway.crypto import KeyRing
from gateway.forwarders.https import outcome_summary, outcome_text, safe_expression
from gateway.queue import ReadingQueue, State
from simulators.fhir_receiver import server_context
from tests.certs import make_ca
from tests.conftest import bp
from tests.faults.common import simulated, start, stop, vitalgate, wait_for, write_config

NAME = "Zelda Quixotica-Planted"
NEEDLES = (b"Zelda", b"Quixotica", b"zelda", b"quixotica")

HOSTILE_OUTCOME: dict[str, Any] = {
    "resourceType": "OperationOutcome",
    "issue": [
        {
            "severity": "error",
            "code": "business-rule",
            "details": {"text": f"Patient {NAME} has no active enrolment"},
            "diagnostics": f"Subject {NAME} (born 1961-03-02) is not enrolled at Riverside",
            "expression": [f"Bundle.entry[1].resource.subject.where(display = '{NAME}')"],
        },
        {"severity": "error", "code": "invalid", "expression": ["Zelda.Quixotica"]},
    ],
}


class _Hostile(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = json.dumps(HOSTILE_OUTCOME).encode()
        self.send_response(422)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    (tmp_path / "pki").mkdir()
    ca = make_ca(tmp_path / "pki")
    leaf = ca.issue("server")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    ctx: ssl.SSLContext = server_context(leaf.cert_file, leaf.key_file)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, name="hostile-fhir", daemon=True)
    thread.start()
    try:
        yield server.server_address[1], ca.cert_file
    finally:
        server.shutdown()
        server.server_close()


def _db_bytes(state: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(state.glob("*.db*")) if p.is_file())


def test_attack_hostile_fhir_server_echoing_a_patient_name_is_sealed_and_revealed_only_on_purpose(
    tmp_path: Path, hostile: tuple[int, Path]
) -> None:
    port, ca_file = hostile
    cfg = write_config(
        tmp_path,
        f"""
[output]
forwarder = "https"
[output.https]
base_url = "https://localhost:{port}/fhir"
ca_file = "{ca_file}"
[output.https.auth]
method = "none"
""",
        devices=simulated("cuff", "SIM-ECHO", count=2),
    )
    cfg.write_text(cfg.read_text().replace('level = "info"', 'level = "debug"'))  # every log line there is
    assert vitalgate("bind", "SIM-ECHO", "p-echo", "--config", str(cfg)).returncode == 0
    proc = start(["run", "--config", str(cfg)])
    status: dict[str, Any] = {}
    try:

        def quarantined() -> bool:
            nonlocal status
            status = json.loads(vitalgate("status", "--json", "--config", str(cfg)).stdout)
            return bool(status["queue"]["counts"]["quarantined"] == 2)

        wait_for(quarantined, 60, "the hostile server's refusals quarantining both readings")
        running = _db_bytes(tmp_path / "state")  # with the daemon up: the WAL holds the latest commits
    finally:
        code, out, err = stop(proc)
    assert code == 0, err.decode()[-2000:]
    logs = out + err
    assert b"backend_rejected" in logs  # the refusal was logged, in structured words only
    text = vitalgate("status", "--config", str(cfg))
    json_text = vitalgate("status", "--json", "--config", str(cfg))
    listing = vitalgate("quarantine", "--config", str(cfg))
    for blob in (running, _db_bytes(tmp_path / "state"), logs, text.stdout.encode(), text.stderr.encode(),
                 json_text.stdout.encode(), listing.stdout.encode(), json.dumps(status).encode()):  # fmt: skip
        for needle in NEEDLES:
            assert needle not in blob
    doc = json.loads(json_text.stdout)
    rows = doc["queue"]["quarantined"]
    assert [r["server_text_sealed"] for r in rows] == [True, True]
    # What is kept in the clear: status, severity, code, and the expression cut before its quoted text.
    assert rows[0]["reason"] == (
        "HTTP 422: error business-rule (server text withheld) at Bundle.entry[#].resource.subject.…; error invalid"
    )
    assert "vitalgate quarantine --reveal ID" in text.stdout

    row = rows[0]["id"]
    revealed = vitalgate("quarantine", "--reveal", str(row), "--json", "--config", str(cfg))
    assert revealed.returncode == 0, revealed.stderr
    said = json.loads(revealed.stdout)["server_text"]
    assert said.splitlines() == [
        f"error business-rule: Subject {NAME} (born 1961-03-02) is not enrolled at Riverside | "
        f"Patient {NAME} has no active enrolment | Bundle.entry[1].resource.subject.where(display = '{NAME}')",
        "error invalid: Zelda.Quixotica",
    ]
    trail = json.loads(vitalgate("audit", "--json", "--config", str(cfg)).stdout)["audit"]
    reveals = [e for e in trail if e["action"] == "quarantine" and e["detail"].startswith(f"reveal #{row}")]
    assert len(reveals) == 1
    assert all(needle.decode() not in json.dumps(trail) for needle in NEEDLES)
    assert vitalgate("audit", "--verify", "--config", str(cfg)).returncode == 0


async def test_sealed_echo_is_bound_to_its_row_and_cleared_on_requeue(tmp_path: Path, keyring: KeyRing) -> None:
    """A sealed text copied onto another row does not open there; a requeue or delivery drops it."""
    q = await ReadingQueue.open(tmp_path / "q.db", keyring)
    try:
        await q.bind("BP123456", 1, "Patient/p1")
        await q.put([bp(minute=1), bp(minute=2)])
        leased, _ = await q.lease(10)
        a, b = (item.item_id for item in leased)
        await q.set_state({a: "HTTP 422", b: "HTTP 422"}, State.QUARANTINED, echoed={a: f"about {NAME}"})
        assert await q.reveal(a) == f"about {NAME}"
        assert await q.reveal(b) is None and await q.sealed_echoes() == {a}

        async def copy(db: Any) -> None:  # an attacker with write access moves the sealed text to row b
            await db.execute("UPDATE readings SET echo = (SELECT echo FROM readings WHERE id = ?) WHERE id = ?", (a, b))

        await q.transaction(copy)
        with pytest.raises(Exception, match="authentication failed"):
            await q.reveal(b)
        assert await q.requeue([a]) == 1
        assert await q.sealed_echoes() == {b}
    finally:
        await q.close()


async def test_queue_from_before_sealed_echoes_is_migrated(tmp_path: Path, keyring: KeyRing) -> None:
    """An existing queue gains the column on open; its rows keep their reasons and open as before."""
    import sqlite3

    path = tmp_path / "old.db"
    q = await ReadingQueue.open(path, keyring)
    await q.bind("BP123456", 1, "Patient/p1")
    await q.put([bp(minute=1)])
    (item,), _ = await q.lease(1)
    await q.set_state({item.item_id: "HTTP 400: error invalid"}, State.QUARANTINED)
    await q.close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE readings DROP COLUMN echo")  # the file as an older release left it
    db.commit()
    db.close()
    q = await ReadingQueue.open(path, keyring)
    try:
        assert await q.quarantined() == [(item.item_id, "HTTP 400: error invalid")]
        assert await q.reveal(item.item_id) is None
        await q.set_state({item.item_id: "HTTP 422"}, State.QUARANTINED, echoed={item.item_id: "words"})
        assert await q.reveal(item.item_id) == "words"
    finally:
        await q.close()


@pytest.mark.parametrize(
    ("expression", "kept"),
    [
        ("Bundle.entry[3].resource.subject", "Bundle.entry[#].resource.subject"),
        ("Observation.subject.where(display='Zelda Quixotica')", "Observation.subject.…"),
        ("Zelda.Quixotica", None),  # not a resource type we send
        ("Observation.zelda", "Observation.…"),  # not an element of the Bundle sent
        ("Observation.valueQuantity.value", "Observation.valueQuantity.value"),
        ("Observation." + "a" * 300, "Observation.…"),
        ("", None),
    ],
)
def test_expression_keeps_only_a_plain_path_of_names_we_sent(expression: str, kept: str | None) -> None:
    vocabulary = frozenset({"entry", "resource", "subject", "valueQuantity", "value", "a" * 60})
    assert safe_expression(expression, vocabulary) == kept


def test_outcome_text_collects_every_word_and_summary_none() -> None:
    assert outcome_summary(HOSTILE_OUTCOME, "HTTP 422") == (
        "HTTP 422: error business-rule (server text withheld) at Bundle.entry[#].resource.subject.…; error invalid"
    )
    assert NAME in outcome_text(HOSTILE_OUTCOME)
    assert outcome_text({"resourceType": "OperationOutcome", "issue": [{"severity": "error"}]}) == ""
    assert outcome_text("not an outcome") == ""


def test_sealed_echo_follows_its_row_through_keys_retire(tmp_path: Path) -> None:
    """`keys rotate --retire` re-seals the server's words under the new key and the row's new identity."""
    import asyncio

    from gateway.crypto import create_key_file

    key = tmp_path / "data.key"
    old = create_key_file(key)
    cfg = tmp_path / "vg.toml"
    cfg.write_text(f'[gateway]\nstate_dir = "state"\nkey_file = "{key}"\n')
    (tmp_path / "state").mkdir(mode=0o700)

    async def fill() -> int:
        async with await ReadingQueue.open(tmp_path / "state/queue.db", KeyRing.load(str(key))) as q:
            await q.bind("BP123456", 1, "Patient/p1")
            await q.put([bp(minute=1)])
            (item,), _ = await q.lease(1)
            await q.set_state({item.item_id: "HTTP 422"}, State.QUARANTINED, echoed={item.item_id: NAME})
            return item.item_id

    row = asyncio.run(fill())
    done = vitalgate("keys", "rotate", "--retire", old, "--config", str(cfg))
    assert done.returncode == 0, done.stderr
    assert old not in key.read_text()
    revealed = vitalgate("quarantine", "--reveal", str(row), "--json", "--config", str(cfg))
    assert json.loads(revealed.stdout)["server_text"] == NAME


async def test_console_reveal_is_for_operators_and_audited(tmp_path: Path) -> None:
    """The console's quarantine page: an operator opens the sealed text on purpose (audited first), a
    viewer cannot, and the page lists it only as a button until then."""
    import re

    import aiohttp

    from tests.console_support import PASSWORD, add_accounts, daemon, free_port
    from tests.test_daemon import write_config

    port = free_port()
    cfg = write_config(tmp_path, count=0, extra=f'[console]\nenabled = true\nlisten = "127.0.0.1"\nport = {port}\n')
    (tmp_path / "state").mkdir(mode=0o700, exist_ok=True)
    q = await ReadingQueue.open(tmp_path / "state/queue.db", KeyRing.load(str(tmp_path / "data.key")))
    try:
        await q.bind("BP123456", 1, "Patient/p1")
        await q.put([bp(minute=1)])
        (item,), _ = await q.lease(1)
        await q.set_state({item.item_id: "HTTP 422: error invalid"}, State.QUARANTINED, echoed={item.item_id: NAME})
    finally:
        await q.close()
    accounts = add_accounts(cfg, {"olu": "operator", "vic": "viewer"})
    base = f"http://127.0.0.1:{port}"

    async def session(http: aiohttp.ClientSession, name: str) -> str:
        async with http.get(f"{base}/login") as r:
            token = re.search(r'name="csrf" value="([^"]+)"', await r.text()).group(1)  # type: ignore[union-attr]
        form = {"csrf": token, "name": name, "password": PASSWORD, "code": accounts.code(name)}
        async with http.post(f"{base}/login", data=form) as r:
            assert "Dashboard" in await r.text()
        async with http.get(f"{base}/quarantine") as r:
            return await r.text()

    with daemon(cfg, port):
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            page = await session(http, "vic")
            assert NAME not in page and "Show server text" not in page
            token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
            async with http.post(f"{base}/quarantine/reveal", data={"csrf": token, "id": str(item.item_id)}) as r:
                assert r.status == 403 and NAME not in await r.text()
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            page = await session(http, "olu")
            assert NAME not in page and "Show server text" in page
            token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
            async with http.post(f"{base}/quarantine/reveal", data={"csrf": token, "id": str(item.item_id)}) as r:
                assert r.status == 200 and NAME in await r.text()
            async with http.get(f"{base}/audit") as r:
                trail = await r.text()
    assert "<td>console-quarantine-reveal</td>" in trail and f"reveal #{item.item_id}" in trail
    assert NAME not in trail


def test_attack_patient_name_in_issue_severity_and_code_is_not_kept_in_the_clear() -> None:
    """A hostile server puts the name where a code belongs. OperationOutcome.issue.severity and .code are
    required codes from closed value sets (FHIR R4 IssueSeverity, IssueType); anything else is its own
    words: withheld from the plaintext reason (shown as `?`), kept in the sealed text."""
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": NAME, "code": f"Patient {NAME}", "expression": ["Observation.subject"]},
            {"severity": "fatal", "code": "too-costly"},
        ],
    }
    summary = outcome_summary(outcome, "HTTP 422", frozenset({"subject"}))
    assert summary == "HTTP 422: ? ? at Observation.subject; fatal too-costly"
    assert f"{NAME} Patient {NAME}" in outcome_text(outcome)


async def test_attack_sealed_echo_moved_to_another_row_shows_a_sentence_in_the_console(tmp_path: Path) -> None:
    """Someone with write access copies one row's sealed text onto another (gateway.echo binds it to its
    row, so it does not open there), and posts row ids no form offers (a superscript digit, a number past
    SQLite's integers) to reveal or to requeue: the console answers each with a sentence on the quarantine
    page, not a server error, and the attempted reveal is still audited."""
    import re

    import aiohttp

    from tests.console_support import PASSWORD, add_accounts, daemon, free_port
    from tests.test_daemon import write_config

    port = free_port()
    cfg = write_config(tmp_path, count=0, extra=f'[console]\nenabled = true\nlisten = "127.0.0.1"\nport = {port}\n')
    (tmp_path / "state").mkdir(mode=0o700, exist_ok=True)
    q = await ReadingQueue.open(tmp_path / "state/queue.db", KeyRing.load(str(tmp_path / "data.key")))
    try:
        await q.bind("BP123456", 1, "Patient/p1")
        await q.put([bp(minute=1), bp(minute=2)])
        leased, _ = await q.lease(10)
        a, b = (item.item_id for item in leased)
        await q.set_state({a: "HTTP 422", b: "HTTP 422"}, State.QUARANTINED, echoed={a: NAME})

        async def copy(db: Any) -> None:
            await db.execute("UPDATE readings SET echo = (SELECT echo FROM readings WHERE id = ?) WHERE id = ?", (a, b))

        await q.transaction(copy)
    finally:
        await q.close()
    accounts = add_accounts(cfg, {"olu": "operator"})
    base = f"http://127.0.0.1:{port}"
    with daemon(cfg, port):
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(f"{base}/login") as r:
                token = re.search(r'name="csrf" value="([^"]+)"', await r.text()).group(1)  # type: ignore[union-attr]
            form = {"csrf": token, "name": "olu", "password": PASSWORD, "code": accounts.code("olu")}
            async with http.post(f"{base}/login", data=form) as r:
                page = await r.text()
            token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
            for row in (str(b), "²", "9" * 30):
                async with http.post(f"{base}/quarantine/reveal", data={"csrf": token, "id": row}) as r:
                    body = await r.text()
                    assert r.status == 200, (row, body[-500:])
                    assert "readings are set aside for review" in body and NAME not in body
            for row in ("²", "9" * 30):  # the requeue form's id likewise (a server error before)
                async with http.post(f"{base}/requeue", data={"csrf": token, "id": row}) as r:
                    body = await r.text()
                    assert r.status == 200 and "Pick a row to send again." in body, (row, body[-500:])
            async with http.get(f"{base}/audit") as r:
                trail = await r.text()
    assert f"reveal #{b}" in trail


@pytest.mark.parametrize("planted", ["Zelda Quixotica", 3.5, -1])
async def test_attack_sealed_echo_edited_to_another_type_is_refused_and_retire_goes_on(
    tmp_path: Path, planted: object
) -> None:
    """Someone with write access puts text or a number where the sealed blob was (SQLite keeps any type in
    any column): a reveal says it does not open (DecryptError: the CLI's and console's sentence), and
    `keys rotate --retire` re-seals everything else and drops only that text, as for any that does not open."""
    from gateway.crypto import DecryptError, create_key_file, rotate_key_source
    from gateway.rekey import retire

    key, path = tmp_path / "data.key", tmp_path / "q.db"
    old = create_key_file(key)
    async with await ReadingQueue.open(path, KeyRing.load(str(key))) as q:
        await q.bind("BP123456", 1, "Patient/p1")
        await q.put([bp(minute=1), bp(minute=2)])
        leased, _ = await q.lease(10)
        a, b = (item.item_id for item in leased)
        await q.set_state({a: "HTTP 422", b: "HTTP 422"}, State.QUARANTINED, echoed={a: NAME, b: "kept"})

        async def plant(db: Any) -> None:
            await db.execute("UPDATE readings SET echo = ? WHERE id = ?", (planted, a))

        await q.transaction(plant)
        with pytest.raises(DecryptError):
            await q.reveal(a)
    rotate_key_source(str(key))
    async with await ReadingQueue.open(path, KeyRing.load(str(key))) as q:
        await retire(q, old)
        assert await q.reveal(b) == "kept" and await q.reveal(a) is None


async def test_attack_name_in_a_reason_stored_by_an_earlier_release_is_cut_on_upgrade(
    tmp_path: Path, keyring: KeyRing
) -> None:
    """Releases before sealed server text kept an OperationOutcome's severity, code and expression in the
    quarantine reason, only lightly scrubbed: a hostile backend's `Patient.name.JaneDoe` stayed in the clear
    (found by review). Opening such a queue once cuts every such reason to its HTTP status and zeroes the old
    text where it lay; local reasons (a row that does not open) are kept as they were."""
    import sqlite3

    path = tmp_path / "state" / "queue.db"
    name = "JaneQuietpatient"
    old = {  # reasons as the earlier release's outcome_summary wrote them
        1: f"HTTP 422: error invalid (server text not kept) at Patient.name.{name}",
        2: f"entry 0: HTTP 400: {name} required",
        3: "DecryptError: unknown key id k9",
    }
    async with await ReadingQueue.open(path, keyring) as q:
        await q.bind("BP123456", 1, "Patient/p1")
        await q.put([bp(minute=m) for m in (1, 2, 3)])
        leased, _ = await q.lease(10)
        await q.set_state({lease.item_id: old[n] for n, lease in enumerate(leased, 1)}, State.QUARANTINED)
    db = sqlite3.connect(path)  # as the earlier release left the file: no mark that reasons were cut
    db.execute("DELETE FROM meta WHERE k = 'server_reasons'")
    db.commit()
    db.close()
    assert name.encode() in _db_bytes(path.parent)

    async with await ReadingQueue.open(path, keyring) as q:
        reasons = sorted(reason for _, reason in await q.quarantined())
    assert reasons == sorted(
        [
            "DecryptError: unknown key id k9",
            "HTTP 422: the server's details, stored by an earlier release, withheld",
            "entry 0: HTTP 400: the server's details, stored by an earlier release, withheld",
        ]
    )
    assert name.encode() not in _db_bytes(path.parent)
    # Done once: a reason written by this release after the upgrade is left as it is.
    async with await ReadingQueue.open(path, keyring) as q:
        await q.put([bp(minute=4)])
        leased, _ = await q.lease(10)
        await q.set_state({leased[0].item_id: "HTTP 422: error invalid at Observation.subject"}, State.QUARANTINED)
    async with await ReadingQueue.open(path, keyring) as q:
        assert "HTTP 422: error invalid at Observation.subject" in [r for _, r in await q.quarantined()]
