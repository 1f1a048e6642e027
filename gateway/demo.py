"""`vitalgate demo`: simulated devices through the whole pipeline, no config, no root.

Everything real but the devices: a fresh data key (mode 0600), the encrypted queue on disk, patient
bindings, FHIR mapping and the file forwarder writing NDJSON Bundles. Readings are marked as test data
(HTEST). Runs again in the same folder, reusing its key and queue.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import sys
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from gateway.config import Config, DeviceConfig
from gateway.crypto import KeyRing, create_key_file
from gateway.errors import ConfigError
from gateway.logging import configure_logging
from gateway.reading import Metric, Reading

__all__ = ["EXIT_UNDELIVERED", "demo_config", "run_demo"]

EXIT_UNDELIVERED = 8  # the demo ran, but the backend did not confirm everything (for CI jobs)

# `--until-each-device` without `--seconds`: a bound for a hang, not a target (a slow Pi takes a minute).
UNTIL_LIMIT_SECONDS = 600.0
UNTIL_DRAIN_SECONDS = 120.0  # after the stop, at most this long to deliver what is still queued


def demo_config(out: Path, forwarder: str = "file", forwarder_options: dict[str, Any] | None = None) -> Config:
    """The demo's settings; its devices (BLE simulators, a serial meter) are added once they run."""
    return Config(
        file="<demo>",
        gateway_id="vitalgate-demo",
        state_dir=out,
        key_file=str(out / "data.key"),
        queue_path=out / "queue.db",
        test_data=True,
        forwarder=forwarder,
        forwarder_options=forwarder_options or {"directory": str(out / "outbox")},
        retry_initial=0.5,
        retry_max=5.0,
        retry_permanent=5.0,
    )


def _describe(r: Reading) -> str:
    def v(metric: Metric) -> str:
        m = r.measurement(metric)
        return f"{m.reported_value:g}" if m else "?"

    if r.measurement(Metric.SYSTOLIC):
        return f"{v(Metric.SYSTOLIC)}/{v(Metric.DIASTOLIC)} mmHg, pulse {v(Metric.PULSE_RATE)}/min"
    m = r.measurements[0]
    return f"{m.reported_value:g} {m.reported_unit.value}"


class _Tally:
    def __init__(self, until_each_device: int | None = None) -> None:
        self.generated: Counter[str] = Counter()
        self.committed: Counter[str] = Counter()
        self.forwarded: Counter[str] = Counter()
        self.per_device: Counter[str] = Counter()
        # `--until-each-device N`: stop once each of `devices` devices has had N readings forwarded.
        self.until_each_device = until_each_device
        self.devices = 0
        self.on_complete: Callable[[], None] = lambda: None

    def complete(self) -> bool:
        n = self.until_each_device
        return n is not None and len(self.per_device) >= self.devices and min(self.per_device.values()) >= n

    def submitted(self, readings: Sequence[Reading], new: int) -> None:
        for r in readings:
            self.generated[r.kind.value] += 1
        if readings:
            self.committed[readings[0].kind.value] += new

    def delivered(self, r: Reading, forwarder: str) -> None:
        self.forwarded[r.kind.value] += 1
        self.per_device[r.device.key] += 1
        if self.complete():
            self.on_complete()
        user = f" user {r.user_slot}" if r.user_slot is not None else ""
        print(f"  -> {forwarder:5} {r.kind.value:15} {r.device.serial_number}{user:8} {_describe(r)}", flush=True)

    def summary(self) -> str:
        kinds = sorted(set(self.generated) | set(self.forwarded))
        lines = [f"{'kind':18} {'generated':>9} {'committed':>9} {'forwarded':>9}"]
        for k in kinds:
            lines.append(f"{k:18} {self.generated[k]:>9} {self.committed[k]:>9} {self.forwarded[k]:>9}")
        lines.append(
            f"{'total':18} {sum(self.generated.values()):>9} {sum(self.committed.values()):>9} "
            f"{sum(self.forwarded.values()):>9}"
        )
        return "\n".join(lines)


async def _demo(cfg: Config, seconds: float, tally: _Tally, extra_bindings: Sequence[tuple[str, str]] = ()) -> int:
    """The cuff, scale and glucose meter are Bluetooth LE simulators (Bumble) read through the real BLE
    stack: our sessions, bleak's API and Bumble's link, GATT and SMP (the meter is bonded first). They join
    the devices already in `cfg` (the serial meter)."""
    from gateway.cli import install_signals
    from gateway.daemon import Gateway
    from gateway.queue import ReadingQueue, State
    from simulators.ble.demo import start_demo_ble

    key_path = Path(cfg.key_file)
    if not key_path.exists():
        create_key_file(key_path)
    keyring = KeyRing.load(cfg.key_file)
    ble = await start_demo_ble()
    try:
        devices: list[tuple[str, str, Mapping[str, Any]]] = [(d, n, o) for n, d, o, _ in ble.devices]
        devices += [(d.driver, d.name, d.options) for d in cfg.devices]
        cfg = dataclasses.replace(cfg, devices=tuple(DeviceConfig(*d, f"devices[{i}]") for i, d in enumerate(devices)))
        async with await ReadingQueue.open(cfg.queue_path, keyring) as q:
            for _, _, options, bindings in ble.devices:
                for user, patient in bindings:
                    await q.bind(options["address"], user, patient)
            for device, patient in extra_bindings:
                await q.bind(device, None, patient)
        tally.devices = len(cfg.devices)
        # With --until-each-device (CI, slow machines) the verdict is "everything committed was delivered", so
        # the stop waits for the queue to empty, not for a fixed time (a bound only for a hang).
        drain = 3.0 if tally.until_each_device is None else UNTIL_DRAIN_SECONDS
        gw = Gateway(cfg, keyring, on_delivered=tally.delivered, on_submitted=tally.submitted, drain_timeout=drain)
        stop = asyncio.Event()
        install_signals(stop)
        tally.on_complete = stop.set
        loop = asyncio.get_running_loop()
        timer = loop.call_later(seconds, stop.set)
        try:
            await gw.run(stop)
        finally:
            timer.cancel()
        async with await ReadingQueue.open(cfg.queue_path, keyring) as q:
            return (await q.counts())[State.PENDING]  # committed, bound and still not delivered
    finally:
        await ble.stop()


def run_demo(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    configure_logging("warning", "console", sys.stderr)
    fhir = getattr(args, "fhir", None)
    if getattr(args, "mqtt", None):
        from gateway.demo_mqtt import mqtt_options

        if fhir:
            raise ConfigError("<command line>", "--mqtt", "choose one backend: --mqtt or --fhir")
        options = mqtt_options(
            args.mqtt, ca_file=args.mqtt_ca, username=args.mqtt_user, password_file=args.mqtt_password_file
        )
        cfg = demo_config(out, "mqtt", options)
        destination = f"MQTT {args.mqtt} (topic vitalgate/{cfg.gateway_id}/bundles)"
    elif fhir:
        cfg = demo_config(out, "https", https_options(args))
        destination = f"the FHIR server {fhir}"
    else:
        cfg = demo_config(out)
        destination = f"NDJSON files in {out / 'outbox'}"
    from simulators.serial import start_demo_meter

    meter = start_demo_meter()  # a OneTouch Ultra 2 speaking its serial protocol on a real pty
    serial_dev = DeviceConfig(meter.driver, meter.name, meter.options, "devices[0]")
    cfg = dataclasses.replace(cfg, devices=(*cfg.devices, serial_dev))
    until = getattr(args, "until_each_device", None)
    seconds = args.seconds if args.seconds is not None else (UNTIL_LIMIT_SECONDS if until else 10.0)
    tally = _Tally(until)
    how_long = f"for {seconds:g} s"
    if until:
        how_long = f"until each device has {until} readings forwarded (at most {seconds:g} s)"
    print(
        "VitalGate demo: simulated BLE cuff (2 users), scale (2 users), glucose meter, thermometer and pulse"
        f" oximeter {how_long}"
    )
    print(f"  plus a OneTouch Ultra 2 on serial port {meter.path} (ASCII protocol over a pty)")
    print(f"  state in {out} (queue.db encrypted); FHIR Bundles to {destination}\n")
    undelivered: int | None = None
    try:
        with contextlib.suppress(KeyboardInterrupt):
            undelivered = asyncio.run(
                _demo(cfg, seconds, tally, [(meter.serial_number, "Patient/demo-patient-1")])
            )
    finally:
        meter.stop()
    print("\n" + tally.summary())
    if until and not tally.complete():
        print(
            f"vitalgate demo: not every device had {until} readings forwarded within {seconds:g} s "
            f"({len(tally.per_device)} of {tally.devices} devices reported); see the summary above",
            file=sys.stderr,
        )
        return 1
    return _verdict(tally, undelivered, destination, out)


def _verdict(tally: _Tally, undelivered: int | None, destination: str, out: Path) -> int:
    """Exit status for CI: 0 only when something was delivered and nothing committed is left undelivered."""
    forwarded = sum(tally.forwarded.values())
    if undelivered is None:  # interrupted before the queue could be looked at
        print(f"\nstopped; {forwarded} readings went to {destination}")
        return 130
    if forwarded and not undelivered:
        print(f"\nFHIR Bundles went to {destination}")
        return 0
    what = "nothing was delivered" if not forwarded else f"{undelivered} committed readings were not delivered"
    print(
        f"\nvitalgate demo: {what} to {destination}; they stay queued in {out} and go out on the next run. "
        "Is the backend running and reachable? The warnings above say why it refused or could not be reached.",
        file=sys.stderr,
    )
    return EXIT_UNDELIVERED


def https_options(args: argparse.Namespace) -> dict[str, Any]:
    """`[output.https]` for `demo --fhir URL`; the token endpoint sits beside the base (the reference
    receiver's layout: https://host:port/fhir and https://host:port/token)."""
    options: dict[str, Any] = {"base_url": args.fhir, "window": 20}
    if args.fhir_ca:
        options["ca_file"] = args.fhir_ca
    if args.fhir_client_id:
        options["auth"] = {
            "method": "client_secret_basic",
            "token_url": urljoin(args.fhir.rstrip("/"), "token"),
            "client_id": args.fhir_client_id,
            "client_secret_file": args.fhir_secret_file or "",
        }
    else:
        options["auth"] = {"method": "none"}
    return options
