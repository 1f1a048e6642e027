"""A real, independent FHIR server for the tests: Medplum's request engine over its in-memory repository.

`@medplum/fhir-router` is the engine the Medplum server runs (transactions, conditional create,
placeholder rewriting, search); `server.mjs` only adapts Node's HTTPS server to it. The npm packages
(pinned in package.json / package-lock.json here) are installed with `npm ci` into the gitignored
`.cache/fhir-server/` the first time, and again when the lock file changes. Needs `node` and `npm`
(scripts/test.sh installs Debian's when missing).

`medplum` is a session-scoped fixture: one server for the whole run. Tests tell their data apart by
patient (each test binds its own patient ids), never by emptying the server.
"""

from __future__ import annotations

import hashlib
import os
import select
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.certs import make_ca

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CACHE = ROOT / ".cache" / "fhir-server"
START_SECONDS = 60.0
INSTALL_SECONDS = 600.0


def install() -> Path:
    """`npm ci` into the cache folder unless it already holds this lock file's packages; returns it."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise RuntimeError("node and npm are needed for the FHIR server tests (scripts/test.sh installs them)")
    lock = (HERE / "package-lock.json").read_bytes()
    stamp = CACHE / ".lock-sha256"
    digest = hashlib.sha256(lock).hexdigest()
    CACHE.mkdir(parents=True, exist_ok=True)
    if not (stamp.exists() and stamp.read_text() == digest and (CACHE / "node_modules").is_dir()):
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(HERE / name, CACHE / name)
        subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=CACHE,
            check=True,
            timeout=INSTALL_SECONDS,
            stdout=subprocess.DEVNULL,
        )
        stamp.write_text(digest)
    # ES modules resolve packages next to the script, so the script runs from the cache folder.
    shutil.copyfile(HERE / "server.mjs", CACHE / "server.mjs")
    return CACHE


def _read_port(proc: subprocess.Popen[bytes], deadline: float) -> int:
    """The `PORT n` line, waiting at most until `deadline` (monotonic): the child's output has a deadline."""
    assert proc.stdout is not None
    buffered = b""
    fd = proc.stdout.fileno()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the FHIR server did not report its port in time")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            raise RuntimeError(f"the FHIR server exited with {proc.wait(5)} before listening")
        buffered += chunk
        for line in buffered.splitlines():
            if line.startswith(b"PORT "):
                return int(line.split()[1])


@dataclass(frozen=True)
class FhirServer:
    """A running server: its base URL, the CA that signed its certificate, and a small search client."""

    base_url: str
    ca_file: Path

    def client(self) -> httpx.Client:
        tls = ssl.create_default_context(cafile=self.ca_file)
        return httpx.Client(base_url=self.base_url, verify=tls, timeout=30.0)

    def search(self, resource_type: str, **params: str) -> list[dict[str, Any]]:
        """Every match of a search, following `next` pages."""
        out: list[dict[str, Any]] = []
        with self.client() as http:
            resp = http.get(resource_type, params={**params, "_count": "1000"})
            while True:
                resp.raise_for_status()
                page = resp.json()
                out.extend(e["resource"] for e in page.get("entry", ()))
                nxt = next((link["url"] for link in page.get("link", ()) if link.get("relation") == "next"), None)
                if nxt is None:
                    return out
                resp = http.get(nxt)

    def post(self, bundle: bytes) -> httpx.Response:
        with self.client() as http:
            return http.post("", content=bundle, headers={"Content-Type": "application/fhir+json"})


@pytest.fixture(scope="session")
def medplum(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirServer]:
    folder = install()
    pki = tmp_path_factory.mktemp("medplum-pki")
    ca = make_ca(pki, "medplum-test-ca")
    leaf = ca.issue("localhost")
    proc = subprocess.Popen(
        ["node", str(folder / "server.mjs"), str(leaf.cert_file), str(leaf.key_file)],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        port = _read_port(proc, time.monotonic() + START_SECONDS)
        yield FhirServer(f"https://127.0.0.1:{port}/", ca.cert_file)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
