"""MQTT benchmark: queue -> drainer -> FHIR -> MQTT forwarder (TLS, QoS 1) -> PUBACK -> ack.

Starts its own Mosquitto (TLS listener, password, ACL; certificates minted on the spot) so it never
touches a broker someone else runs. Prints:
  * a steady offered rate: readings/s achieved and p50 / p99 latency from `queue.put` to PUBACK + ack;
  * the drain rate of a backlog (default 100,000 readings);
  * `mosquitto_pub` publishing the same number of messages of the same size at QoS 1 over the same TLS
    listener (the broker's own ceiling on this machine), and our drain rate as a ratio of it.

    python -m bench.bench_mqtt [--backlog 100000] [--rate 2000] [--seconds 10] [--window 128]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import Latencies, machine, print_rows, reading
from gateway.crypto import KeyRing
from gateway.drainer import Drainer
from gateway.fhir import GatewayInfo, map_reading
from gateway.forwarders import ForwarderContext
from gateway.forwarders.base import Outgoing
from gateway.forwarders.mqtt import MqttForwarder, build
from gateway.logging import configure_logging
from gateway.queue import ReadingQueue, State
from tests.certs import write_secret
from tests.mosquitto import GATEWAY_ID, PASSWORD, USER, Mosquitto, Pki

GW = GatewayInfo(id=GATEWAY_ID, version="bench")
MOSQUITTO_PUB = "/usr/bin/mosquitto_pub"


def forwarder(broker: Mosquitto, pki: Pki, tmp: Path, window: int, client_id: str) -> MqttForwarder:
    pw = write_secret(tmp / "mqtt.password", PASSWORD)
    section = {"host": "localhost", "port": broker.ports["tls"], "ca_file": str(pki.ca.cert_file), "username": USER,
               "password_file": str(pw), "window": window, "client_id": client_id}  # fmt: skip
    return build(section, ForwarderContext(str(tmp / "bench.toml"), GATEWAY_ID, tmp))


async def steady(
    broker: Mosquitto, pki: Pki, tmp: Path, ring: KeyRing, rate: float, seconds: float, window: int, batch: int
) -> tuple[float, float, float, int]:
    """Readings put at `rate`/s in small groups while the drainer runs; latency put -> PUBACK + ack."""
    n = int(rate * seconds)
    q = await ReadingQueue.open(tmp / "steady.db", ring)
    await q.bind("BENCH-1", 1, "Patient/bench")
    latencies = Latencies()
    readings = [reading(i) for i in range(n)]

    async with forwarder(broker, pki, tmp, window, "bench-steady") as fwd:
        drainer = Drainer(q, fwd, GW, batch_size=batch, on_delivered=latencies.delivered)
        group = max(1, int(rate / 100))  # a put every 10 ms

        async def produce() -> None:
            start = time.perf_counter()
            for k, i in enumerate(range(0, n, group)):
                chunk = readings[i : i + group]
                latencies.put(chunk)
                await q.put(chunk)
                delay = start + (k + 1) * group / rate - time.perf_counter()
                await asyncio.sleep(max(0.0, delay))

        t = time.perf_counter()
        await asyncio.gather(produce(), latencies.drain(drainer, n))
        elapsed = time.perf_counter() - t
    await q.close()
    return (n / elapsed, *latencies.p50_p99_ms(), n)


async def drain_backlog(
    broker: Mosquitto, pki: Pki, tmp: Path, ring: KeyRing, backlog: int, window: int, batch: int
) -> float:
    q = await ReadingQueue.open(tmp / "backlog.db", ring)
    await q.bind("BENCH-1", 1, "Patient/bench")
    for i in range(0, backlog, 1000):
        await q.put([reading(j) for j in range(i, min(backlog, i + 1000))])
    async with forwarder(broker, pki, tmp, window, "bench-backlog") as fwd:
        drainer = Drainer(q, fwd, GW, batch_size=batch)
        t = time.perf_counter()
        while await drainer.drain_once():
            pass
        elapsed = time.perf_counter() - t
    assert (await q.counts())[State.DELIVERED] == backlog
    await q.close()
    return backlog / elapsed


async def forwarder_alone(broker: Mosquitto, pki: Pki, tmp: Path, n: int, window: int) -> float:
    """The forwarder on its own: pre-mapped Bundles straight into `send`, no queue, no mapping."""
    batch = []
    for i in range(n):
        m = map_reading(reading(i), "Patient/bench", GW)
        batch.append(Outgoing(i, m.identifier, m.bundle, m.body, m.entries))
    async with forwarder(broker, pki, tmp, window, "bench-alone") as fwd:
        t = time.perf_counter()
        for i in range(0, n, fwd.window):
            report = await fwd.send(batch[i : i + fwd.window])
            assert len(report.confirmed) == len(batch[i : i + fwd.window])
        return n / (time.perf_counter() - t)


def mosquitto_pub(broker: Mosquitto, pki: Pki, n: int, size: int, window: int) -> float:
    """The broker's own client: n QoS 1 messages of `size` bytes over the same TLS listener."""
    payload = "x" * size
    cmd = [MOSQUITTO_PUB, "-h", "localhost", "-p", str(broker.ports["tls"]), "--cafile", str(pki.ca.cert_file),
           "-u", USER, "-P", PASSWORD, "-i", "bench-mosquitto-pub", "-t", f"vitalgate/{GATEWAY_ID}/bundles",
           "-q", "1", "-M", str(window), "-m", payload, "--repeat", str(n)]  # fmt: skip
    t = time.perf_counter()
    subprocess.run(cmd, check=True, timeout=600, stdout=subprocess.DEVNULL)
    return n / (time.perf_counter() - t)


async def main(args: argparse.Namespace) -> None:
    configure_logging("warning", "console")
    with tempfile.TemporaryDirectory(prefix="vg-bench-mqtt-", dir=os.environ.get("BENCH_DIR")) as d:
        tmp = Path(d)
        (tmp / "pki").mkdir()
        (tmp / "broker").mkdir()
        pki = Pki(tmp / "pki")
        ring = KeyRing.generate()
        size = len(map_reading(reading(1), "Patient/bench", GW).body)
        rows: list[tuple[str, str]] = []
        with Mosquitto(tmp / "broker", pki, nodelay=args.nodelay) as broker:
            rate, p50, p99, n = await steady(broker, pki, tmp, ring, args.rate, args.seconds, args.window, args.batch)
            rows.append((f"steady, offered {args.rate:,.0f}/s x {args.seconds:g} s ({n:,} readings), achieved/s",
                         f"{rate:,.0f}"))  # fmt: skip
            rows.append(("  latency put -> PUBACK + ack, p50 / p99 (ms)", f"{p50:.1f} / {p99:.1f}"))
            ours = await drain_backlog(broker, pki, tmp, ring, args.backlog, args.window, args.batch)
            rows.append((f"drain {args.backlog:,} backlog -> MQTT QoS 1 TLS (readings/s)", f"{ours:,.0f}"))
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            alone = await forwarder_alone(broker, pki, tmp, min(args.backlog, 50_000), args.window)
            rows.append(("MQTT forwarder alone, pre-mapped Bundles (msg/s)", f"{alone:,.0f}"))
            theirs = mosquitto_pub(broker, pki, args.backlog, size, args.window)
            rows.append((f"mosquitto_pub {args.backlog:,} x {size} B QoS 1 TLS, -M {args.window} (msg/s)",
                         f"{theirs:,.0f}"))  # fmt: skip
            rows.append(("ratio: our drain / mosquitto_pub", f"{ours / theirs:.2f}"))
            rows.append(("ratio: forwarder alone / mosquitto_pub", f"{alone / theirs:.2f}"))
        rows.append(("peak RSS through the backlog drain (MiB)", f"{rss:.0f}"))

    print_rows(f"VitalGate MQTT benchmark on {machine()}; window {args.window}, drainer batch {args.batch}, "
               f"broker set_tcp_nodelay {str(args.nodelay).lower()}", rows, 10)  # fmt: skip


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backlog", type=int, default=100_000)
    p.add_argument("--rate", type=float, default=2000.0, help="offered readings/s for the steady run")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--window", type=int, default=128, help="MQTT in-flight window")
    p.add_argument("--batch", type=int, default=512, help="drainer batch size (capped at 4 x window)")
    p.add_argument("--nodelay", action="store_true", help="run Mosquitto with set_tcp_nodelay true")
    asyncio.run(main(p.parse_args()))
