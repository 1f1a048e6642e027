"""The supervisor: one TaskGroup owning the queue writer, the drainer and one task per device.

Shutdown is cancel-and-wait: device sessions are cancelled, every write already handed to the queue is
committed, then the database is closed. A device session that fails is restarted with backoff; it never
takes the daemon down. The watchdog is fed only while the parts that matter are alive and making progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta, tzinfo
from typing import Any

import structlog

from drivers import registry
from gateway import __version__
from gateway.alarms import SNAPSHOT_NAME as ALARMS_SNAPSHOT
from gateway.alarms import AlarmBoard
from gateway.config import Config, DeviceConfig
from gateway.crypto import KeyRing
from gateway.drainer import Backoff, Delivered, Drainer
from gateway.errors import GatewayError
from gateway.fhir import GatewayInfo
from gateway.fhir.selfcheck import self_check
from gateway.forwarders import ForwarderContext, build_forwarder
from gateway.forwarders.base import Forwarder
from gateway.health import HealthModel
from gateway.health.monitor import HealthMonitor, certificate_expiries, describe_target
from gateway.queue import ReadingQueue, State
from gateway.reading import Reading
from gateway.secrets import resolve_secret_path
from gateway.systemd import Health, Notifier

__all__ = ["Gateway", "QueueDeviceContext"]

log = structlog.get_logger(__name__)

HEALTH_DEADLINE = 30.0  # seconds without a drainer heartbeat before the watchdog starves


@dataclass
class QueueDeviceContext:
    """The core's side of one device session (drivers.base.DeviceContext)."""

    queue: ReadingQueue
    device: DeviceConfig
    clock_tolerance: timedelta
    on_submitted: Callable[[Sequence[Reading], int], None] | None = None
    local_tz: tzinfo | None = None  # config `gateway.timezone`; None: the system's zone
    rejected: int = 0
    submitted: int = 0
    health: HealthModel | None = None
    latest: dict[int | None, Reading] = field(default_factory=dict)  # newest per user slot, in memory only

    @property
    def options(self) -> Mapping[str, Any]:
        return self.device.options

    async def submit(self, readings: Sequence[Reading]) -> int:
        result = await self.queue.put(readings)
        self.submitted += len(readings)
        for r in readings:
            self.latest[r.user_slot] = r
        if self.health is not None and readings:
            newest = max(readings, key=lambda r: r.effective_time(self.local_tz))
            offset = newest.clock_offset.total_seconds() if newest.clock_offset is not None else None
            self.health.submitted(
                self.device.name,
                [r.kind.value for r in readings],
                newest.effective_time(self.local_tz).timestamp(),
                offset,
                {str(r.user_slot): self.queue.binding_for(r) is not None for r in readings},
            )
        if self.on_submitted:
            self.on_submitted(readings, result.new)
        return result.new

    async def reject(self, raw: bytes, error: Exception, *, source: str) -> None:
        self.rejected += 1
        if self.health is not None:
            self.health.input_rejected(self.device.name)
        await self.queue.reject(raw, error, source=f"{self.device.name}:{source}")
        log.warning("device_input_rejected", device_name=self.device.name, source=source, error=type(error).__name__)

    def report_battery(self, percent: int) -> None:
        """A session reached the device and read its battery (optional for drivers)."""
        if self.health is not None:
            self.health.seen(self.device.name)
            self.health.battery(self.device.name, percent)

    def report_clock(self, offset: timedelta | None) -> None:
        """A session reached the device and compared its clock with ours (optional for drivers)."""
        if self.health is not None:
            self.health.seen(self.device.name)
            self.health.clock_checked(self.device.name, offset.total_seconds() if offset is not None else None)

    async def checkpoint(self, name: str) -> str | None:
        return await self.queue.checkpoint(self.device.name, name)

    async def set_checkpoint(self, name: str, value: str) -> None:
        await self.queue.set_checkpoint(self.device.name, name, value)


class Gateway:
    def __init__(
        self,
        config: Config,
        keyring: KeyRing,
        *,
        forwarder: Forwarder | None = None,
        on_delivered: Delivered | None = None,
        on_submitted: Callable[[Sequence[Reading], int], None] | None = None,
        notifier: Notifier | None = None,
        drain_timeout: float = 0.0,
    ) -> None:
        self.config = config
        self.keyring = keyring
        self.forwarder = forwarder or build_forwarder(
            config.forwarder,
            config.forwarder_options,
            ForwarderContext(config.file, config.gateway_id, config.state_dir),
        )
        self.on_delivered = on_delivered
        self.on_submitted = on_submitted
        self.notifier = notifier
        self.drain_timeout = drain_timeout  # on stop, how long to let the drainer empty the queue
        self.queue: ReadingQueue | None = None
        self.drainer: Drainer | None = None
        self.contexts: dict[str, QueueDeviceContext] = {}
        self.ready = asyncio.Event()
        self.health = Health()
        self.health.register("queue_writer", HEALTH_DEADLINE)
        self.health.register("drainer", HEALTH_DEADLINE)
        # The operator's view (gateway.health): status, STATUS=, metrics and the console read this one model.
        self.model = HealthModel(
            version=__version__,
            gateway_id=config.gateway_id,
            forwarder=self.forwarder.name,
            target=describe_target(config.forwarder, config.forwarder_options),
            devices=[(d.name, d.driver) for d in config.devices],
        )
        self.alarms = AlarmBoard(config.state_dir / ALARMS_SNAPSHOT)

    def healthy(self) -> bool:
        """True while the queue writer commits and the drainer makes progress (for the systemd watchdog)."""
        return self.health.healthy()

    async def run(self, stop: asyncio.Event) -> None:
        cfg = self.config
        self.queue = await ReadingQueue.open(cfg.queue_path, self.keyring)
        try:
            self.drainer = Drainer(
                self.queue,
                self.forwarder,
                GatewayInfo(id=cfg.gateway_id, version=__version__),
                batch_size=cfg.batch_size,
                backoff=Backoff(cfg.retry_initial, cfg.retry_max),
                permanent_retry=cfg.retry_permanent,
                local_tz=cfg.timezone,
                test_data=cfg.test_data,
                retention_seconds=cfg.retention.total_seconds(),
                on_delivered=self.on_delivered,
                heartbeat=lambda: self.health.beat("drainer"),
                send_timeout=cfg.send_timeout,
                observer=self.model,
            )
            # Prove at start-up that the template-built hot path still yields valid FHIR on this install.
            checked = self_check(self.drainer.gateway, local_tz=cfg.timezone)
            log.info("fhir_self_check_passed", bundles=checked)
            released = await self.queue.assign_unassigned()  # bindings made while the daemon was down
            if released:
                log.info("unassigned_released", rows=released)
            counts = await self.queue.counts()
            log.info(
                "gateway_started",
                version=__version__,
                forwarder=self.forwarder.name,
                devices=len(cfg.devices),
                **{f"queue_{s.name.lower()}": n for s, n in counts.items()},
            )
            monitor = self._monitor()
            monitor.notifier = None  # the first snapshot now; the first STATUS= right after READY=1
            await monitor.step(monitor.facts())
            servers = await self._start_surfaces()
            async with asyncio.TaskGroup() as tg:
                drainer = tg.create_task(self.drainer.run(), name="drainer")
                tasks = [tg.create_task(self._device_loop(dev), name=f"device:{dev.name}") for dev in cfg.devices]
                if self.notifier is not None:
                    tasks.append(tg.create_task(self._watchdog(), name="watchdog"))
                tasks.append(tg.create_task(monitor.run(), name="health"))
                self.model.ready_at = self.model.clock()
                self.ready.set()
                if self.notifier is not None:
                    self.notifier.ready()
                monitor.notifier = self.notifier
                monitor.publish(force=True)
                await stop.wait()
                log.info("gateway_stopping")
                if self.notifier is not None:
                    self.notifier.stopping()
                for task in tasks:
                    task.cancel()
                if tasks:
                    await asyncio.wait(tasks)
                if self.drain_timeout:
                    await self._drain_pending(self.drain_timeout)
                drainer.cancel()
                for server in servers:
                    await server.cleanup()
        finally:
            await self.queue.close()
            log.info("gateway_stopped")

    def _monitor(self) -> HealthMonitor:
        cfg = self.config
        key_file = None
        with contextlib.suppress(GatewayError):
            key_file = resolve_secret_path(cfg.key_file)
        return HealthMonitor(
            self.model,
            self.alarms,
            queue_path=cfg.queue_path,
            state_dir=cfg.state_dir,
            thresholds=cfg.surfaces.alarms,
            key_file=key_file,
            credentials=certificate_expiries(f"output.{cfg.forwarder}", cfg.forwarder_options),
            notifier=self.notifier,
            refresh=self._refresh_bound,
        )

    def _refresh_bound(self) -> None:
        """Bound or not, per configured device, by the bindings as they are now (they change while running)."""
        if self.queue is None:
            return
        for name, ctx in self.contexts.items():
            slots = {str(s): self.queue.binding_for(r) is not None for s, r in ctx.latest.items()}
            self.model.device(name).slots.update(slots)

    async def _start_surfaces(self) -> list[Any]:
        """Metrics and the console, when configured: aiohttp runners to clean up on stop."""
        runners: list[Any] = []
        if self.config.surfaces.metrics.enabled:
            from gateway.metrics import start_metrics

            runners.append(await start_metrics(self.model, self.config.surfaces.metrics))
        if self.config.surfaces.console.enabled:
            from gateway.console.app import start_console

            runners.append(await start_console(self))
        return runners

    async def _drain_pending(self, seconds: float) -> None:
        assert self.queue is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and (await self.queue.counts())[State.PENDING]:  # noqa: ASYNC110
            await asyncio.sleep(0.1)

    async def _device_loop(self, dev: DeviceConfig) -> None:
        assert self.queue is not None
        ctx = QueueDeviceContext(
            self.queue,
            dev,
            self.config.clock_tolerance,
            self.on_submitted,
            local_tz=self.config.timezone,
            health=self.model,
        )
        self.contexts[dev.name] = ctx
        driver = registry.load(dev.driver)()
        backoff = Backoff(initial=1.0, maximum=60.0)
        failures = 0
        bound = log.bind(device_name=dev.name, driver=dev.driver)
        while True:
            try:
                await driver.run(ctx)
                failures = 0
                # Meters that are downloaded (not listened to) say how often in `poll_seconds`.
                await asyncio.sleep(float(dev.options.get("poll_seconds", getattr(driver, "poll_seconds", 1.0))))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a device must never take the daemon down
                delay = backoff.delay(failures)
                failures += 1
                self.model.session_failed(dev.name, type(exc).__name__)
                bound.warning(
                    "device_session_failed", error=type(exc).__name__, detail=_safe(exc), retry_in=round(delay, 1)
                )
                await asyncio.sleep(delay)

    async def _watchdog(self) -> None:
        """Feed the watchdog only while the writer really commits and the drainer beats."""
        assert self.notifier is not None and self.queue is not None
        interval = self.notifier.watchdog_interval()
        if not interval:
            return
        for part in ("queue_writer", "drainer"):  # stale after one watchdog period without progress
            self.health.register(part, max(interval, 1.0))
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.queue.ping(), timeout=interval / 2)
                self.health.beat("queue_writer")
            if self.health.healthy():
                self.notifier.watchdog()
            else:
                log.error("watchdog_starved", stale=self.health.stale())
            await asyncio.sleep(interval / 2)

    def reload_secrets(self) -> None:
        """SIGHUP: new data keys (after `keys rotate`) and the forwarder's secrets, without a restart."""
        try:
            if self.keyring.reload():
                log.info("data_keys_reloaded", current=self.keyring.current_id)
        except GatewayError as exc:
            log.error("data_keys_reload_failed", error=str(exc))
        reload = getattr(self.forwarder, "reload", None)
        if callable(reload):
            reload()
            log.info("secrets_reloaded", forwarder=self.forwarder.name)


def _safe(exc: BaseException) -> str:
    """Exception text for logs; drivers' errors carry no values, but cap the length anyway."""
    with contextlib.suppress(Exception):
        return str(exc)[:200]
    return ""
