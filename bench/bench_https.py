"""HTTPS forwarder benchmark: Observations/s to the reference receiver over TLS, per batch size.

The receiver runs in its own process (`python -m simulators.fhir_receiver`), so sender and receiver
each get a core. Readings are mapped once with the real FHIR mapping; each blood-pressure reading
gives a panel and a pulse Observation plus the two Devices, which a batch sends once. Every batch size
gets a fresh receiver (so every conditional create creates). Two receiver modes: validating every
resource with fhir.resources (as the tests do, usually the bottleneck) and not validating (the cost
of the gateway side: packing, TLS, HTTP, response mapping). OAuth client_secret_basic, one token.

    python -m bench.bench_https [--readings 2000] [--batches 1,10,50,100,200]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import machine, reading
from gateway.fhir import GatewayInfo, map_reading
from gateway.forwarders.base import Outgoing
from gateway.forwarders.https import HttpsForwarder, HttpsSettings
from gateway.logging import configure_logging
from gateway.oauth import OAuthSettings
from tests.certs import make_ca, write_private

GW = GatewayInfo(id="bench", version="bench")
SECRET = "bench-secret-0123456789"


def items(n: int) -> list[Outgoing]:
    out = []
    for i in range(n):
        m = map_reading(reading(i), "Patient/bench", GW)
        out.append(Outgoing(i + 1, m.identifier, m.bundle, m.body, m.entries))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ReceiverProcess:
    def __init__(self, cert: Path, key: Path, secret_file: Path, validate: bool) -> None:
        self.port = free_port()
        args = [sys.executable, "-m", "simulators.fhir_receiver", "--port", str(self.port), "--cert", str(cert)]
        args += ["--key", str(key), "--client-secret", f"bench={secret_file}"]
        if not validate:
            args.append("--no-validate")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # printed once it listens
        if "FHIR base" not in line:
            self.stop()
            raise RuntimeError("receiver did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


async def run_one(settings: HttpsSettings, batch: list[Outgoing], size: int) -> tuple[float, int]:
    timed = batch[1:]
    observations = sum(1 for it in timed for e in it.entries if e["resource"]["resourceType"] == "Observation")
    async with HttpsForwarder(settings) as fwd:
        await fwd.send(batch[:1])  # token, TLS handshake and connection outside the timing
        t = time.perf_counter()
        confirmed = 1
        for i in range(1, len(batch), size):
            report = await fwd.send(batch[i : i + size])
            confirmed += len(report.confirmed)
        elapsed = time.perf_counter() - t
    assert confirmed == len(batch), f"only {confirmed} of {len(batch)} confirmed"
    return elapsed, observations


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--readings", type=int, default=2000)
    parser.add_argument("--batches", default="1,10,50,100,200")
    args = parser.parse_args()
    configure_logging("warning", "console", sys.stderr)
    sizes = [int(s) for s in args.batches.split(",")]
    batch = items(args.readings)
    print(f"machine: {machine()}")
    print(f"{args.readings} BP readings ({2 * args.readings} Observations) per run, TLS 1.3 over 127.0.0.1\n")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        ca = make_ca(directory)
        leaf = ca.issue("server")
        secret_file = write_private(directory / "secret", SECRET.encode())
        print(f"{'receiver':12} {'batch':>5} {'seconds':>8} {'Obs/s':>8} {'readings/s':>10}")
        for validate in (True, False):
            for size in sizes:
                rx = ReceiverProcess(leaf.cert_file, leaf.key_file, secret_file, validate)
                try:
                    settings = HttpsSettings(
                        base_url=f"https://localhost:{rx.port}/fhir",
                        ca_file=ca.cert_file,
                        window=size,
                        auth=OAuthSettings(
                            "client_secret_basic", f"https://localhost:{rx.port}/token", "bench", str(secret_file)
                        ),
                    )
                    elapsed, obs = asyncio.run(run_one(settings, batch, size))
                finally:
                    rx.stop()
                mode = "validating" if validate else "no-validate"
                print(
                    f"{mode:12} {size:>5} {elapsed:>8.2f} {obs / elapsed:>8.0f} {(len(batch) - 1) / elapsed:>10.0f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
