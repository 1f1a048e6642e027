"""The supervisor: one TaskGroup owning the queue writer, the drainer and one task per device.

Shutdown is cancel-and-wait: device sessions are cancelled, every write already handed to the queue is
committed, then the database is closed. A device session that fails is restarted with backoff; it never
takes the daemon down. The watchdog is fed only while the parts that matter are alive and making progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta, tzinfo
from functools import partial
from pathlib import Path
from typing import Any

import structlog

from drivers import registry
from drivers.errors import HostSetupError
from gateway import __version__
from gateway.alarms import SNAPSHOT_NAME, Alarm, AlarmBoard, Severity
from gateway.audit import current_actor
from gateway.clock import BUILD_EPOCH, ClockWatch, Segment
from gateway.clock import STATE_NAME as CLOCK_STATE
from gateway.clockcheck import DEFAULT_LIMIT, judge
from gateway.config import Config, DeviceConfig
from gateway.crypto import KeyRing
from gateway.diskguard import DiskGuard
from gateway.drainer import Backoff, Delivered, Drainer
from gateway.errors import GatewayError
from gateway.fhir import GatewayInfo
from gateway.fhir.selfcheck import self_check
from gateway.forwarders import ForwarderContext, build_forwarder
from gateway.forwarders.base import Forwarder
from gateway.health import HealthModel
from gateway.health.monitor import HealthMonitor, certificate_expiries, describe_target
from gateway.queue import PutResult, ReadingQueue, State
from gateway.reading import Reading
from gateway.sealedfile import bond_sealer
from gateway.secrets import resolve_secret_path
from gateway.statelock import QueueReplacedError, QueueWatch
from gateway.systemd import Health, Notifier

__all__ = ["Gateway", "QueueDeviceContext"]

log = structlog.get_logger(__name__)

HEALTH_DEADLINE = 30.0  # seconds without a drainer heartbeat before the watchdog starves
QUEUE_WATCH_SECONDS = 2.0  # how often the queue file's identity is checked between commits


@dataclass
class QueueDeviceContext:
    """The core's side of one device session (drivers.base.DeviceContext)."""

    queue: ReadingQueue
    device: DeviceConfig
    tolerance: timedelta  # config `gateway.clock_tolerance_seconds`; drivers read `clock_tolerance`
    on_submitted: Callable[[Sequence[Reading], int], None] | None = None
    local_tz: tzinfo | None = None  # config `gateway.timezone`; None: the system's zone
    rejected: int = 0
    submitted: int = 0
    # The device deletes what it sent (BLE indications): a reading whose commit fails is held here, in
    # memory, and retried until it commits, instead of being lost. One batch per session at a time.
    hold_on_failure: bool = False
    disk: DiskGuard | None = None
    clock_trusted: Callable[[], bool] | None = None  # gateway.clock: False while the wall clock is implausible

    @property
    def clock_tolerance(self) -> timedelta:
        """How far a device clock may be off before a driver sets it; never set from an implausible clock."""
        if self.clock_trusted is not None and not self.clock_trusted():
            return timedelta.max
        return self.tolerance

    health: HealthModel | None = None
    latest: dict[int | None, Reading] = field(default_factory=dict)  # newest per user slot, in memory only
    clock_limit: timedelta = DEFAULT_LIMIT  # config `gateway.clock_implausible_seconds` (gateway.clockcheck)
    clock_warned: bool = False  # an implausible device clock is logged once per device and run

    @property
    def options(self) -> Mapping[str, Any]:
        return self.device.options

    async def submit(self, readings: Sequence[Reading]) -> int:
        if not self.hold_on_failure:
            result = await self.queue.put(readings)
        else:
            result = await self._put_holding(readings)
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
        if result.new:
            self._judge_clocks(readings, result.new)
        if self.on_submitted:
            self.on_submitted(readings, result.new)
        return result.new

    def _judge_clocks(self, readings: Sequence[Reading], new: int) -> None:
        """Count readings whose device clock is implausible (flagged in FHIR by the same rule) and warn once."""
        if self.clock_trusted is not None and not self.clock_trusted():
            return  # our own wall clock is wrong: every device would look wrong (gateway.clock)
        verdicts = [judge(r, self.clock_limit, self.local_tz) for r in readings if r.device_time is not None]
        flagged = [v for v in verdicts if v is not None]
        if self.health is not None and verdicts:
            self.health.clock_judged(self.device.name, min(len(flagged), new), flagged[-1].detail if flagged else None)
        if flagged and not self.clock_warned:
            self.clock_warned = True
            log.warning(
                "device_clock_implausible",
                device=self.device.name,
                problem=flagged[0].problem,
                readings=len(flagged),
                sentence=f"Device '{self.device.name}' has an implausible clock ({flagged[0].detail}); its readings "
                "are kept and flagged in FHIR. Set the device's clock (see its manual; the gateway sets it itself "
                "where the device lets it); `vitalgate status` counts the flagged readings.",
            )

    async def _put_holding(self, readings: Sequence[Reading]) -> PutResult:
        delay = 0.2
        held = False
        try:
            while True:
                try:
                    return await self.queue.put(readings)
                except QueueReplacedError:
                    raise
                except Exception as exc:  # the commit failed (disk full, I/O error): keep them, try again
                    if not held:
                        held = True
                        if self.disk is not None:
                            self.disk.holding(len(readings))
                        log.error(
                            "readings_held",
                            device_name=self.device.name,
                            readings=len(readings),
                            error=type(exc).__name__,
                            hint="the queue cannot commit; free disk space",
                        )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
        finally:
            if held:
                if self.disk is not None:
                    self.disk.holding(-len(readings))
                log.info("held_readings_committed", device_name=self.device.name, readings=len(readings))

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

    def report_quirks(self, effects: list[str]) -> None:
        """A session identified the device and applied a quirks row (drivers/ble/quirks.py; [] = standard)."""
        if self.health is not None:
            self.health.quirks(self.device.name, effects)

    def report_scan(self, mode: str, reason: str | None = None) -> None:
        """An advertisement listener's scan: "passive", or "active-fallback" because the stack refused a
        passive one (`reason`; drivers/ble/adv_scale.py). The health model raises an alarm for the latter."""
        if self.health is not None:
            self.health.scan(self.device.name, mode, reason)

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
        self.freeze_gc = False  # `vitalgate run` (the daemon's own process): gc.freeze() once started
        self.queue: ReadingQueue | None = None
        self.drainer: Drainer | None = None
        self.contexts: dict[str, QueueDeviceContext] = {}
        self.ready = asyncio.Event()
        self.health = Health()
        self.health.register("queue_writer", HEALTH_DEADLINE)
        self.health.register("drainer", HEALTH_DEADLINE)
        # The daemon's one alarm board; `vitalgate status` reads its snapshot from the state folder.
        self.alarms = AlarmBoard(config.state_dir / SNAPSHOT_NAME)
        self.alarms.subscribe(_log_alarm)
        self.disk = DiskGuard(config.queue_path.parent, config.min_free_bytes, self.alarms)
        self.clock = ClockWatch(self.alarms, state_file=config.state_dir / CLOCK_STATE)
        # Seals the BLE bond store (Bumble backend) at rest; a store that does not open raises an alarm.
        self.bond_sealer = bond_sealer(keyring, self._bond_store_problem)
        # The operator's view (gateway.health): status, STATUS=, metrics and the console read this one model.
        self.model = HealthModel(
            version=__version__,
            gateway_id=config.gateway_id,
            forwarder=self.forwarder.name,
            target=describe_target(config.forwarder, config.forwarder_options),
            devices=[(d.name, d.driver) for d in config.devices],
        )
        self._watch_bundle_size()

    def _watch_bundle_size(self) -> None:
        """The HTTPS forwarder's Bundle size, lowered after the server refuses one, goes to the health model."""
        if self.forwarder.name != "https":
            return
        from gateway.forwarders.https import HttpsForwarder

        if isinstance(self.forwarder, HttpsForwarder):
            configured = self.forwarder.settings.max_entries
            self.model.bundle_limit(configured, self.forwarder.max_entries)
            self.forwarder.on_max_entries = partial(self.model.bundle_limit, configured)

    def healthy(self) -> bool:
        """True while the queue writer commits and the drainer makes progress (for the systemd watchdog)."""
        return self.health.healthy()

    async def run(self, stop: asyncio.Event) -> None:
        # `vitalgate run` holds the state folder's lock around this (gateway.statelock): one daemon per folder,
        # and `keys rotate --retire` is refused while it runs.
        replaced: BaseException | None = None
        try:
            await self._run(stop)
        except* QueueReplacedError as group:
            replaced = group.exceptions[0]
        if replaced is not None:
            # One sentence for the CLI, not an exception group. Raised here, not inside `except*`: before
            # CPython 3.11.4 (Debian 12 has 3.11.2) a raise there is wrapped in a new group (gh-103590).
            raise replaced from None

    async def _run(self, stop: asyncio.Event) -> None:
        cfg = self.config
        self.alarms.write_snapshot(cfg.state_dir / SNAPSHOT_NAME)  # no stale alarms from a previous run
        self.queue = await ReadingQueue.open(cfg.queue_path, self.keyring)
        self._integrity_alarms(self.queue)
        await self._audit_start()
        watch = QueueWatch(cfg.queue_path)
        self.queue.file_guard = watch.check
        self.queue.on_commit = self.disk.commit_result
        self.clock.restore()
        jump, corrections = self.clock.check()
        # Stamps a wrong clock left in earlier runs: retries in 2040, deliveries in 2001, receive times.
        await self._apply_clock(jump, corrections, start=True)
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
                clock_limit=cfg.clock_implausible,
                retention_seconds=cfg.retention.total_seconds(),
                on_delivered=self.on_delivered,
                heartbeat=lambda: self.health.beat("drainer"),
                send_timeout=cfg.send_timeout,
                may_send=self.clock.may_send,
                may_purge=self.clock.may_purge,
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
            if self.freeze_gc:
                # Start-up's objects (modules, config, drivers) live for good: kept out of every later full
                # collection, which walked them all (GC was ~15% of a queue drain; bench_pipeline drains faster).
                gc.freeze()
                log.debug("gc_frozen", objects=gc.get_freeze_count())
            async with asyncio.TaskGroup() as tg:
                drainer = tg.create_task(self.drainer.run(), name="drainer")
                tasks = [tg.create_task(self._device_loop(dev), name=f"device:{dev.name}") for dev in cfg.devices]
                if self.notifier is not None:
                    tasks.append(tg.create_task(self._watchdog(), name="watchdog"))
                tasks.append(tg.create_task(self._watch_queue(watch), name="queue-watch"))
                tasks.append(tg.create_task(self._watch_clock(), name="clock-watch"))
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
                await _cancel_and_wait(tasks)
                if self.drain_timeout:
                    await self._drain_pending(self.drain_timeout)
                await _cancel_and_wait([drainer])
                for server in servers:
                    await server.cleanup()
        finally:
            with contextlib.suppress(Exception):
                await self.queue.audit(current_actor(), f"{self._role} stop", f"config {self.config.file}")
            await self.queue.close()
            log.info("gateway_stopped")

    def install_bond_sealer(self) -> None:
        """Hand the BLE runtime this gateway's bond sealer (`vitalgate run`; tests and the demo install theirs)."""
        from drivers.ble import runtime as ble_runtime

        ble_runtime.set_bond_sealer(self.bond_sealer)

    def _bond_store_problem(self, problem: str | None) -> None:
        if problem is None:
            self.alarms.clear("ble_bond_store_unreadable")
            return
        self.alarms.raise_(
            "ble_bond_store_unreadable",
            f"The BLE bond store could not be opened ({problem}) and was moved aside: bonded devices give no "
            "readings until paired again. Re-pair each device (vitalgate pair ADDRESS, or the console's Pair).",
            Severity.CRITICAL,
        )

    def _integrity_alarms(self, queue: ReadingQueue) -> None:
        """Rows or bindings changed outside vitalgate (gateway.rowguard) become critical alarms."""

        def raise_(code: str, sentence: str) -> None:
            self.alarms.raise_(code, sentence, Severity.CRITICAL)

        for code, sentence in queue.integrity_problems.items():
            raise_(code, sentence)
        queue.on_integrity = raise_

    @property
    def _role(self) -> str:
        """How the audit trail names this run: `vitalgate demo` builds its config in memory as `<demo>`."""
        return "demo" if self.config.file == "<demo>" else "daemon"

    async def _audit_start(self) -> None:
        """Daemon start in the audit trail, and a config file that changed since the last start."""
        assert self.queue is not None
        digest = config_digest(self.config.file)
        previous = await self.queue.swap_meta("config_sha256", digest)
        actor = current_actor()
        await self.queue.audit(actor, f"{self._role} start", f"version {__version__}, config {self.config.file}")
        if previous is not None and previous != digest:
            await self.queue.audit(
                actor, "config changed", f"{self.config.file} sha256 {previous[:12]} -> {digest[:12]}"
            )
            log.warning("config_changed_since_last_start", config=self.config.file, sha256=digest[:12])

    async def _watch_queue(self, watch: QueueWatch) -> None:
        """Stop the daemon (alarm first) when the queue file is deleted or replaced under it."""
        while True:
            problem = watch.problem()
            if problem is not None:
                self.alarms.raise_("queue_replaced", f"{problem}; the daemon stopped", Severity.CRITICAL)
                watch.check()
            await asyncio.sleep(QUEUE_WATCH_SECONDS)

    async def _watch_clock(self) -> None:
        """Every second: judge the wall clock; after a jump clamp the retries, once trusted fix the stamps."""
        while True:
            await asyncio.sleep(1.0)
            jump, corrections = self.clock.check()
            await self._apply_clock(jump, corrections)

    async def _apply_clock(
        self, jump: float | None, corrections: list[tuple[Segment, float]], *, start: bool = False
    ) -> None:
        assert self.queue is not None
        for segment, delta in corrections:
            # + the check interval's slack: rows committed after the last check of the wrong clock
            moved = await self.queue.shift_times(segment.low, segment.high + 2.0, delta)
            log.warning("receive_times_corrected", rows=moved, seconds=round(delta, 1))
        if self.clock.trusted and (start or jump is not None or corrections):
            clamped = await self.queue.clamp_times(time.time(), self.config.retry_max, BUILD_EPOCH)
            if clamped:
                log.warning("clock_stamps_repaired", rows=clamped)
        self.clock.corrected()

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
        driver = registry.load(dev.driver)()
        # Drivers of devices that delete what they sent say `rereadable = False` (drivers.base).
        rereadable = bool(getattr(driver, "rereadable", True))
        ctx = QueueDeviceContext(
            self.queue,
            dev,
            self.config.clock_tolerance,
            self.on_submitted,
            local_tz=self.config.timezone,
            clock_limit=self.config.clock_implausible,
            hold_on_failure=not rereadable,
            disk=self.disk,
            clock_trusted=lambda: self.clock.trusted,
            health=self.model,
        )
        self.contexts[dev.name] = ctx
        backoff = Backoff(initial=1.0, maximum=60.0)
        failures = 0
        host_problem = ""  # the host setup error last logged with its hint (logged once, not every retry)
        bound = log.bind(device_name=dev.name, driver=dev.driver)
        # Every line the driver logs from this task (its own module loggers) names the configured device too.
        structlog.contextvars.bind_contextvars(device_name=dev.name)
        while True:
            if not rereadable and not self.disk.can_take_readings():
                await asyncio.sleep(1.0)  # the device keeps its readings; ask again in a second
                continue
            try:
                await driver.run(ctx)
                failures = 0
                host_problem = ""
                # Meters that are downloaded (not listened to) say how often in `poll_seconds`.
                await asyncio.sleep(float(dev.options.get("poll_seconds", getattr(driver, "poll_seconds", 1.0))))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a device must never take the daemon down
                delay = backoff.delay(failures)
                failures += 1
                self.model.session_failed(dev.name, type(exc).__name__)
                fields = {"error": type(exc).__name__, "detail": _safe(exc), "retry_in": round(delay, 1)}
                if isinstance(exc, HostSetupError):
                    # The host's setup (no Bluetooth stack, no D-Bus): say what to check once, then retry
                    # quietly until a session works again; repeating the same hint helps nobody.
                    if host_problem != str(exc):
                        bound.error("device_host_unavailable", **fields, hint=exc.hint)
                    else:
                        bound.debug("device_session_failed", **fields)
                    host_problem = str(exc)
                else:
                    bound.warning("device_session_failed", **fields)
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
        if (self.keyring.source or "").startswith("credential:"):
            # systemd copied (and decrypted) the credential at start: a key rotated since is not in that copy.
            log.warning(
                "data_key_reload_needs_restart",
                detail="the data key is a systemd credential read at start; after `vitalgate keys rotate` "
                "restart the service (systemctl restart vitalgate) to load the new key",
            )
        try:
            if self.keyring.reload():
                log.info("data_keys_reloaded", current=self.keyring.current_id)
        except GatewayError as exc:
            log.error("data_keys_reload_failed", error=str(exc))
        reload = getattr(self.forwarder, "reload", None)
        if callable(reload):
            reload()
            log.info("secrets_reloaded", forwarder=self.forwarder.name)


def config_digest(file: str) -> str:
    """SHA-256 of the config file's bytes (`<demo>` and other non-files hash their name)."""
    try:
        data = Path(file).read_bytes()
    except OSError:
        data = file.encode()
    return hashlib.sha256(data).hexdigest()


async def _cancel_and_wait(tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Cancel, and cancel again until they end.

    Python 3.11's `asyncio.wait_for` (used inside aiomqtt's connect) swallows a cancellation that lands as
    its future completes: the task then runs on, and a stop that landed just after `mqtt_connected` hung
    until something else woke it. Repeating the cancellation closes that window.
    """
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.1)


def _log_alarm(alarm: Alarm, raised: bool) -> None:
    if raised:
        level = log.error if alarm.severity == Severity.CRITICAL else log.warning
        level("alarm_raised", code=alarm.code, alarm=alarm.sentence)
    else:
        log.info("alarm_cleared", code=alarm.code)


def _safe(exc: BaseException) -> str:
    """Exception text for logs; drivers' errors carry no values, but cap the length anyway."""
    with contextlib.suppress(Exception):
        return str(exc)[:200]
    return ""
