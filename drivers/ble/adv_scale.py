"""Session for advertisement-only scales: Xiaomi Mi Scale 2 and Mi Body Composition Scale 2.

No connection: the gateway listens to the scale's advertisements (alongside every connected session: the
adapter's scan is shared) and reads each weigh-in from the service data (drivers/adv/xiaomi_scale.py).
One run listens for `listen_seconds`; the core starts the next after `poll_seconds`. The listener scans
passively (no scan requests: the scale's service data is in its advertisement, and a scan request only costs
its battery), alongside the connected sessions' scans; on BlueZ that is an AdvertisementMonitor matching the
two service data UUIDs (`passive_scan_args`), and a stack that refuses it gets an active scan, a warning and
an alarm (`report_scan`: the health model), and a passive scan asked for again at the next run.
Stabilized weigh-ins only, one reading per weigh-in however often the scale repeats it. These scales do not
know their users: `users = [{ slot = 1, min_kg = 50, max_kg = 70 }, ...]` assigns a slot by weight range
(ambiguous or out of every range: slot 255, kept unassigned). Bound like any device
(`vitalgate bind ADDRESS PATIENT --user N`).

Malformed payloads are rejected and kept once per distinct payload (the scale repeats them every second).
A scale clock that is off (often: set in UTC) is measured from the live advert and recorded as the
reading's clock offset, so the reading's time is corrected (`live_offset`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, tzinfo
from typing import Any, ClassVar

import structlog

from drivers.adv import xiaomi_scale as mi
from drivers.base import DeviceContext
from drivers.ble.common import BleOptions, received_now, validate_options
from drivers.ble.runtime import get_transport
from drivers.ble.transport import Advert, BleError, BleTransport, ScanFilter
from drivers.errors import DeviceProtocolError
from gateway.errors import ConfigError
from gateway.reading import DeviceIdentity

__all__ = ["XiaomiScaleDriver", "parse_users"]

log = structlog.get_logger(__name__)

_EXTRA = frozenset({"users", "listen_seconds", "settle_seconds"})


def parse_users(value: Any, where: str) -> tuple[mi.UserRange, ...]:
    """`users` from the config: a list of {slot, min_kg, max_kg}; ConfigError naming the entry when wrong."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(where, "users", "must be a list of { slot, min_kg, max_kg } tables")
    out: list[mi.UserRange] = []
    for i, entry in enumerate(value):
        key = f"users[{i}]"
        if not isinstance(entry, Mapping) or set(entry) != {"slot", "min_kg", "max_kg"}:
            raise ConfigError(where, key, "needs exactly slot, min_kg and max_kg")
        slot, low, high = entry["slot"], entry["min_kg"], entry["max_kg"]
        if isinstance(slot, bool) or not isinstance(slot, int) or not 1 <= slot <= 254:
            raise ConfigError(where, f"{key}.slot", "must be a whole number 1..254")
        if any(isinstance(v, bool) or not isinstance(v, int | float) for v in (low, high)) or not 0 < low < high:
            raise ConfigError(where, f"{key}.min_kg", "min_kg and max_kg must be numbers with 0 < min_kg < max_kg")
        out.append(mi.UserRange(slot, float(low), float(high)))
    return tuple(out)


def live_offset(frame: mi.MiScaleFrame, tolerance: timedelta, tz: tzinfo | None) -> timedelta | None:
    """How far the scale's clock is off, from the weigh-in it is advertising right now.

    The advert is live (sent while the person stands on the scale), so its time stamp minus the gateway's
    wall clock in the scale's zone is the clock offset, as Current Time gives it for connected devices.
    These scales keep bare wall-clock digits and are often set in UTC by an app (openScale PR #1427,
    export2garmin issue #18): the offset corrects that. Within `tolerance` (the weigh-in's own seconds of
    settling included): None, the clock is right.
    """
    if frame.time is None:
        return None
    offset = frame.time - datetime.now(tz).replace(tzinfo=None, microsecond=0)
    return offset if abs(offset) > tolerance else None


SERVICE_DATA = (0x181D, 0x181B)  # Mi Scale 2, Mi Body Composition Scale 2: what the passive scan listens for


class XiaomiScaleDriver:
    name: ClassVar[str] = "xiaomi-scale"
    transport: ClassVar[str] = "ble"
    description: ClassVar[str] = "Xiaomi Mi Scale 2 / Mi Body Composition Scale 2 (advertisements only, no pairing)"

    def __init__(self, ble: BleTransport | None = None) -> None:
        self._ble = ble
        self._tracker: mi.WeighInTracker | None = None  # kept across runs: repeats span them
        self._rejected: set[bytes] = set()
        self.passive = True  # listen without scan requests; False while the stack refuses a passive scan

    @classmethod
    def validate(cls, options: Mapping[str, Any], where: str) -> None:
        validate_options(options, where, _EXTRA)
        parse_users(options.get("users"), where)
        for key, default in (("listen_seconds", 60.0), ("settle_seconds", 3.0)):
            value = options.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
                raise ConfigError(where, key, "must be a number of seconds in (0, 3600]")

    async def run(self, ctx: DeviceContext) -> None:
        opts = BleOptions.from_mapping(ctx.options)
        users = parse_users(ctx.options.get("users"), "devices")
        listen = float(ctx.options.get("listen_seconds", 60.0))
        settle = float(ctx.options.get("settle_seconds", 3.0))
        if self._tracker is None:
            self._tracker = mi.WeighInTracker(settle=settle)
        tracker = self._tracker
        identity = DeviceIdentity(self.name, address=opts.address, manufacturer="Xiaomi")
        ble = self._ble or get_transport()
        committed = 0

        async def commit(frames: list[mi.MiScaleFrame]) -> None:
            nonlocal committed
            for frame in frames:
                slot = mi.assign_user(frame.weight_kg, users)
                offset = live_offset(frame, ctx.clock_tolerance, ctx.local_tz)
                readings = mi.to_readings(
                    frame, identity, received_now(), slot, clock_offset=offset, simulated=opts.simulated
                )
                await ctx.submit(readings)
                committed += len(readings)

        queue: asyncio.Queue[Advert] = asyncio.Queue(maxsize=1024)

        wanted = ScanFilter(address=opts.address, service_data=SERVICE_DATA)

        refusal: str | None = None  # why the stack refused this run's passive scan
        heard = False  # this run's scan delivered an advert: it is running as `refusal` says

        def scan_works() -> None:
            """Tell the health view (status, console, metrics; an alarm while fallen back) how this run
            listens, once its scan is known to run: an advert came, or the listen ended without a failure."""
            if refusal is None:
                if not self.passive:
                    log.info("adv_scale_passive_scan_restored", driver=self.name)
                self.passive = True
            if callable(report := getattr(ctx, "report_scan", None)):
                report("passive" if refusal is None else "active-fallback", refusal)

        async def listen_to(passive: bool) -> None:
            nonlocal heard
            async for advert in ble.adverts(wanted, passive=passive):
                if not heard:
                    heard = True
                    scan_works()
                if not queue.full():  # a flood of adverts is dropped, not buffered without bound
                    queue.put_nowait(advert)

        async def pump() -> None:
            nonlocal refusal, heard
            # Every run asks for a passive scan again: after a fallback, a bluetoothd restarted with
            # --experimental is used from the next run on, without restarting the gateway.
            try:
                await listen_to(True)
            except BleError as exc:
                # BlueZ without its experimental AdvertisementMonitor cannot scan passively: still listen.
                refusal = str(exc)
                if self.passive:  # the first refusal (or the first since passive worked again): warn once
                    log.warning(
                        "adv_scale_passive_scan_unavailable",
                        driver=self.name,
                        error=refusal,
                        hint="passive scanning needs bluetoothd started with --experimental (BlueZ >= 5.56, "
                        "Linux >= 5.10); listening with an active scan instead (the scale gets scan requests)",
                    )
                else:
                    log.debug("adv_scale_passive_scan_still_unavailable", driver=self.name, error=refusal)
                self.passive = False
                heard = False  # (a passive scan that failed after it had run: say so again)
                await listen_to(False)

        # The scan runs in its own task: cancelling a wait on the iterator itself would close it.
        scanning = asyncio.create_task(pump(), name=f"adv-scan-{opts.address}")
        deadline = time.monotonic() + listen
        try:
            while (left := deadline - time.monotonic()) > 0 and not scanning.done():
                advert: Advert | None = None
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(left, settle / 2)):
                        advert = await queue.get()
                now = time.monotonic()
                if advert is None:
                    await commit(tracker.flush(now))
                else:
                    await commit(await self._feed(ctx, tracker, advert, now))
        finally:
            scanning.cancel()
            with contextlib.suppress(asyncio.CancelledError, BleError):
                await scanning
        if not scanning.cancelled() and isinstance(scanning.exception(), BleError):
            log.warning("adv_scale_scan_failed", error=type(scanning.exception()).__name__)
        elif not heard:
            scan_works()  # the scan ran the whole listen without failing (and without hearing the scale)
        await commit(tracker.flush(time.monotonic()))
        log.info("adv_scale_listen_done", driver=self.name, readings=committed, repeats=tracker.repeats)

    async def _feed(
        self, ctx: DeviceContext, tracker: mi.WeighInTracker, advert: Advert, now: float
    ) -> list[mi.MiScaleFrame]:
        try:
            frame = mi.parse_mi_scale(dict(advert.service_data))
        except DeviceProtocolError as exc:
            if exc.raw not in self._rejected and len(self._rejected) < 256:
                self._rejected.add(exc.raw)
                log.warning("adv_scale_payload_rejected", error=type(exc).__name__)
                await ctx.reject(exc.raw, exc, source=f"{self.name}/service-data")
            return []
        return [] if frame is None else tracker.feed(frame, now)
