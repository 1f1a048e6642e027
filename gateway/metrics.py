"""Prometheus metrics from the health model, read at scrape time (no second bookkeeping).

Off by default and on loopback unless configured (`[metrics]`). Labels carry only reading kinds, queue
states and configured device names: no addresses, serial numbers or patient references.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import accumulate

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.registry import Collector

from gateway.console.settings import MetricsSettings
from gateway.health import ForwarderState, HealthModel

__all__ = ["HealthCollector", "metrics_app", "registry_for", "start_metrics"]


class HealthCollector(Collector):
    def __init__(self, model: HealthModel) -> None:
        self.model = model

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | HistogramMetricFamily | InfoMetricFamily]:
        m = self.model
        yield InfoMetricFamily("vitalgate_build", "VitalGate version", value={"version": m.version})
        yield GaugeMetricFamily("vitalgate_start_time_seconds", "When the daemon started (Unix time)", m.started_at)
        depth = GaugeMetricFamily("vitalgate_queue_readings", "Readings in the queue by state", labels=["state"])
        for state, n in sorted(m.counts.items()):
            depth.add_metric([state], n)
        yield depth
        age = m.oldest_pending_age()
        yield GaugeMetricFamily(
            "vitalgate_queue_oldest_pending_age_seconds", "Age of the oldest reading waiting to be sent", age or 0.0
        )
        for name, doc, table in (
            ("vitalgate_readings_received", "Readings committed to the queue since start, by kind", m.received),
            ("vitalgate_readings_delivered", "Readings the backend confirmed since start, by kind", m.delivered),
        ):
            c = CounterMetricFamily(name, doc, labels=["kind"])
            for kind, n in sorted(table.items()):
                c.add_metric([kind], n)
            yield c
        yield CounterMetricFamily(
            "vitalgate_readings_quarantined", "Readings set aside for review since start", value=m.quarantined
        )
        rejected = CounterMetricFamily(
            "vitalgate_input_rejected", "Malformed device frames kept for review since start", labels=["device"]
        )
        for dev, n in sorted(m.rejected_by_device.items()):
            rejected.add_metric([dev], n)
        yield rejected
        yield GaugeMetricFamily("vitalgate_input_rejected_kept", "Rejected frames kept in the queue", m.rejected_total)
        h = m.latency
        bounds = (*h.buckets, float("inf"))
        buckets = [(_go_float(b), float(n)) for b, n in zip(bounds, accumulate(h.counts), strict=True)]
        yield HistogramMetricFamily(
            "vitalgate_forward_latency_seconds",
            "Time for the backend to confirm a batch",
            buckets=buckets,
            sum_value=h.total,
        )
        yield GaugeMetricFamily(
            "vitalgate_forwarder_connected",
            "1 while the forwarder is connected to the backend",
            1.0 if m.forwarder_state is ForwarderState.CONNECTED else 0.0,
        )
        if m.max_entries is not None:
            yield GaugeMetricFamily(
                "vitalgate_forwarder_bundle_max_entries",
                "Entries per FHIR Bundle in use (lowered after the server refused a larger one)",
                m.max_entries,
            )
        states = GaugeMetricFamily(
            "vitalgate_forwarder_state", "Forwarder state (1 for the current one)", labels=["state"]
        )
        for fs in ForwarderState:
            states.add_metric([fs.value.replace(" ", "_")], 1.0 if fs is m.forwarder_state else 0.0)
        yield states
        if m.last_success is not None:
            yield GaugeMetricFamily(
                "vitalgate_last_delivery_timestamp_seconds", "Last time the backend confirmed a reading", m.last_success
            )
        seen = GaugeMetricFamily(
            "vitalgate_device_last_seen_timestamp_seconds", "Last time a device session reached it", labels=["device"]
        )
        battery = GaugeMetricFamily("vitalgate_device_battery_percent", "Battery level last read", labels=["device"])
        passive = GaugeMetricFamily(
            "vitalgate_device_passive_scan",
            "Advertisement listeners: 1 scanning passively, 0 fallen back to an active scan",
            labels=["device"],
        )
        for d in m.devices.values():
            if d.last_seen is not None:
                seen.add_metric([d.name], d.last_seen)
            if d.battery is not None:
                battery.add_metric([d.name], d.battery)
            if d.scan_mode is not None:
                passive.add_metric([d.name], 1.0 if d.scan_mode == "passive" else 0.0)
        yield seen
        yield battery
        yield passive


def _go_float(b: float) -> str:
    """Bucket bounds as Prometheus writes them ("0.5", "5.0", "+Inf")."""
    return "+Inf" if b == float("inf") else repr(float(b))


def registry_for(model: HealthModel) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HealthCollector(model))
    return registry


def metrics_app(model: HealthModel) -> web.Application:
    registry = registry_for(model)

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app


async def start_metrics(model: HealthModel, settings: MetricsSettings) -> web.AppRunner:
    runner = web.AppRunner(metrics_app(model), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.listen, settings.port)
    await site.start()
    return runner
