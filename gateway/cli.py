"""`vitalgate`: the daemon and the operator's commands.

Expected failures (bad config, missing or loose key file) print one clear line and exit non-zero
without a traceback; a traceback means a bug.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pwd
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from gateway import __version__
from gateway.config import DEFAULT_PATH, Config, load_config
from gateway.crypto import KeyRing, create_key_file, rotate_key_file
from gateway.errors import ConfigError, GatewayError
from gateway.logging import configure_logging
from gateway.queue import Binding, ReadingQueue, State, identity_selectors
from gateway.reading import DeviceIdentity
from gateway.secrets import resolve_secret_path
from gateway.systemd import Notifier

__all__ = ["main"]

T = TypeVar("T")

EXIT_CONFIG = 2
EXIT_KEY = 3


def _config(args: argparse.Namespace) -> Config:
    return load_config(Path(args.config))


def _check_state(cfg: Config, *, create: bool) -> None:
    """The state folder and queue file must be usable by this user: say so naming the key, not with a
    traceback from deep inside SQLite (wrong owner after a root-run command, read-only under
    ProtectSystem=strict, a typo in the path). `check-config` looks without creating anything."""
    for key, folder in (("gateway.state_dir", cfg.state_dir), ("queue.path", cfg.queue_path.parent)):
        if create:
            try:
                folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as exc:
                raise ConfigError(cfg.file, key, f"{folder}: cannot create it ({exc.strerror})") from None
        existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("/"))
        if not existing.is_dir():
            raise ConfigError(cfg.file, key, f"{folder}: {existing} is not a folder")
        # A folder still to be made may be systemd's to create (StateDirectory=): only judge existing ones.
        if existing == folder and not os.access(folder, os.W_OK | os.X_OK):
            raise ConfigError(cfg.file, key, f"{folder}: not writable by this user")
    if cfg.queue_path.exists() and not os.access(cfg.queue_path, os.R_OK | os.W_OK):
        raise ConfigError(cfg.file, "queue.path", f"{cfg.queue_path}: not readable and writable by this user")


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = _config(args)
    KeyRing.load(cfg.key_file)
    _check_state(cfg, create=False)
    # The forwarder's section is validated when it is built (no network I/O): do it here too, or a typo in
    # [output.mqtt] / [output.https] or an unreadable secret only shows at `run`.
    from gateway.forwarders import ForwarderContext, build_forwarder

    build_forwarder(cfg.forwarder, cfg.forwarder_options, ForwarderContext(cfg.file, cfg.gateway_id, cfg.state_dir))
    print(f"{cfg.file}: ok ({len(cfg.devices)} devices, forwarder {cfg.forwarder}, queue {cfg.queue_path})")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    path = Path(args.path) if args.path else resolve_secret_path(_config(args).key_file)
    if args.action == "init":
        if path.exists():
            print(f"vitalgate: {path} exists already; use `vitalgate keys rotate` for a new key", file=sys.stderr)
            return EXIT_KEY
        kid = create_key_file(path)
        print(
            f"wrote a new 256-bit data key {kid} to {path} (mode 0600). Back it up: without it the queue is unreadable."
        )
    else:
        kid = rotate_key_file(path)
        print(f"key {kid} is now current in {path}; older keys still open older rows")
    return 0


def install_signals(stop: asyncio.Event, on_hup: Callable[[], None] | None = None) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if on_hup is not None:
        loop.add_signal_handler(signal.SIGHUP, on_hup)


async def _run(cfg: Config, keyring: KeyRing) -> None:
    from gateway.daemon import Gateway

    gw = Gateway(cfg, keyring, notifier=Notifier.from_environment())
    stop = asyncio.Event()
    install_signals(stop, gw.reload_secrets)
    await gw.run(stop)


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _config(args)
    configure_logging(cfg.log_level, cfg.log_format)
    keyring = KeyRing.load(cfg.key_file)
    _check_state(cfg, create=True)
    asyncio.run(_run(cfg, keyring))
    return 0


def _actor() -> str:
    """Who ran the command, for the audit trail (sudo keeps the invoking user in SUDO_USER)."""
    user = os.environ.get("SUDO_USER")
    if not user:
        try:
            user = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:  # a container's arbitrary uid has no passwd entry: the uid alone must do
            user = "?"
    return f"{user} (uid {os.getuid()})"


async def _with_queue(
    args: argparse.Namespace,
    fn: Callable[[ReadingQueue], Awaitable[T]],
    audit: Callable[[ReadingQueue], str] | None = None,
) -> T:
    """Run `fn` on the queue; operator commands that touch PHI leave an audit entry (no PHI in it)."""
    cfg = _config(args)
    keyring = KeyRing.load(cfg.key_file)
    _check_state(cfg, create=True)
    q = await ReadingQueue.open(cfg.queue_path, keyring)
    try:
        result = await fn(q)
        await q.audit(_actor(), args.command, audit(q) if audit else "")
        return result
    finally:
        await q.close()


def _patient_ref(patient: str) -> str:
    if "|" in patient or patient.startswith("Patient/"):
        return patient
    if patient and all(c.isalnum() or c in "-." for c in patient) and len(patient) <= 64:
        return f"Patient/{patient}"
    raise ConfigError("<command line>", "PATIENT", "use a FHIR id (Patient/123 or 123) or an identifier system|value")


def _json_out(args: argparse.Namespace, doc: Any) -> bool:
    """With --json, print `doc` (stable keys, README "Status and JSON output") and return True."""
    if not getattr(args, "json", False):
        return False
    print(json.dumps(doc, indent=2, sort_keys=True))
    return True


def cmd_bind(args: argparse.Namespace) -> int:
    patient = _patient_ref(args.patient)

    async def go(q: ReadingQueue) -> None:
        await q.bind(args.device, args.user, patient)

    asyncio.run(_with_queue(args, go, lambda q: f"binding {q.reference_tag(args.device, args.user)}"))
    if _json_out(args, {"bound": True, "device": args.device, "user": args.user}):
        return 0
    slot = f" user {args.user}" if args.user is not None else ""
    print(f"bound {args.device}{slot}; its readings now flow to the backend")
    return 0


def cmd_unbind(args: argparse.Namespace) -> int:
    async def go(q: ReadingQueue) -> bool:
        return await q.unbind(args.device, args.user)

    removed = asyncio.run(_with_queue(args, go, lambda q: f"binding {q.reference_tag(args.device, args.user)}"))
    if not _json_out(args, {"unbound": removed, "device": args.device, "user": args.user}):
        print("unbound" if removed else "no such binding")
    return 0 if removed else 1


def cmd_devices(args: argparse.Namespace) -> int:
    async def go(q: ReadingQueue) -> tuple[list[dict[str, Any]], list[Binding]]:
        return await q.devices(), await q.reload_bindings()

    devices, bindings = asyncio.run(_with_queue(args, go))
    rows: list[dict[str, Any]] = []
    for d in devices:
        ident = d["system_id"] or d["serial_number"] or d["address"] or d["key"]
        names = identity_selectors(
            DeviceIdentity(
                d["driver"],
                address=d["address"],
                serial_number=d["serial_number"],
                system_id=d["system_id"],
                manufacturer=d["manufacturer"],
            )
        )
        patient = next((b.patient for b in bindings if b.device in names and b.user_slot == d["user"]), "(unassigned)")
        rows.append({**d, "device": ident, "patient": None if patient == "(unassigned)" else patient})
    if _json_out(args, {"devices": rows}):
        return 0
    from gateway.health.report import when

    print(f"{'DEVICE':34} {'USER':4} {'DRIVER':18} {'MODEL':26} {'READINGS':>8}  {'LAST SEEN':20}  PATIENT")
    for r in rows:
        user = "-" if r["user"] is None else str(r["user"])
        print(
            f"{r['device']:34} {user:4} {r['driver']:18} {(r['model'] or ''):26} {r['readings']:>8}  "
            f"{when(r['last_seen']):20}  {r['patient'] or '(unassigned)'}"
        )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    async def go(q: ReadingQueue) -> tuple[dict[State, int], list[tuple[int, str]], int]:
        return await q.counts(), await q.quarantined(), len(await q.rejects())

    from gateway.health.report import render_status, status_document

    counts, quarantined, rejects = asyncio.run(_with_queue(args, go))
    doc = status_document(_config(args).state_dir, {s.name.lower(): n for s, n in counts.items()}, quarantined, rejects)
    if not _json_out(args, doc):
        print(render_status(doc))
    return 0


def cmd_requeue(args: argparse.Namespace) -> int:
    if not args.all and not args.ids:
        print("vitalgate: name quarantined row ids (see `vitalgate status`) or --all", file=sys.stderr)
        return EXIT_CONFIG
    ids = None if args.all else list(args.ids)

    async def go(q: ReadingQueue) -> tuple[int, list[int]]:
        held = {i for i, _ in await q.quarantined()}
        return await q.requeue(ids), [i for i in (ids or []) if i not in held]

    moved, missing = asyncio.run(_with_queue(args, go, lambda q: "all" if ids is None else f"{len(ids)} rows"))
    if _json_out(args, {"requeued": moved, "not_quarantined": missing}):
        return 0
    print(f"{moved} quarantined readings queued again")
    if missing:
        print(f"not quarantined (left as they are): {', '.join(f'#{i}' for i in missing)}")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    async def go(q: ReadingQueue) -> list[tuple[float, str, str, str]]:
        return await q.audit_trail(args.limit)

    trail = list(reversed(asyncio.run(_with_queue(args, go))))
    if _json_out(args, {"audit": [{"at": at, "actor": ac, "action": an, "detail": d} for at, ac, an, d in trail]}):
        return 0
    for at, actor, action, detail in trail:
        print(f"{datetime.fromtimestamp(at, UTC):%Y-%m-%d %H:%M:%S}Z  {actor:24} {action:10} {detail}")
    return 0


def cmd_drivers(args: argparse.Namespace) -> int:
    from drivers import registry

    rows: list[dict[str, Any]] = []
    for name in sorted(registry.available()):
        try:
            cls = registry.load(name)
            rows.append({"name": name, "transport": cls.transport, "description": cls.description, "error": None})
        except Exception as exc:
            rows.append({"name": name, "transport": None, "description": None, "error": type(exc).__name__})
    if _json_out(args, {"drivers": rows}):
        return 0
    for r in rows:
        if r["error"]:
            print(f"{r['name']:24} (cannot load: {r['error']})")
        else:
            print(f"{r['name']:24} {r['transport']:7} {r['description']}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vitalgate", description="Remote-patient-monitoring gateway")
    p.add_argument("--version", action="version", version=f"vitalgate {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def add(
        name: str, fn: Callable[[argparse.Namespace], int], help: str, config: bool = True
    ) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        if config:
            sp.add_argument("--config", default=str(DEFAULT_PATH), help=f"config file (default {DEFAULT_PATH})")
        sp.set_defaults(fn=fn)
        if name in JSON_COMMANDS:
            sp.add_argument("--json", action="store_true", help="machine-readable output (stable keys, see README)")
        return sp

    add("run", cmd_run, "run the gateway daemon")
    add("check-config", cmd_check_config, "validate the config file and the key file")
    k = add("keys", cmd_keys, "create or rotate the data key")
    k.add_argument("action", choices=("init", "rotate"))
    k.add_argument("--path", help="key file (default: gateway.key_file from the config)")
    b = add("bind", cmd_bind, "bind a device (and user slot) to a patient")
    b.add_argument("device", help="Bluetooth address, serial number or System ID (see `vitalgate devices`)")
    b.add_argument("patient", help="Patient/123, 123, or an identifier system|value")
    b.add_argument("--user", type=int, help="user slot on a multi-user device")
    u = add("unbind", cmd_unbind, "remove a binding")
    u.add_argument("device")
    u.add_argument("--user", type=int)
    add("devices", cmd_devices, "list device slots seen and their bindings")
    add("status", cmd_status, "daemon health and alarms first, then queue counts, quarantined rows, rejected input")
    rq = add("requeue", cmd_requeue, "send quarantined readings again (after fixing the backend or config)")
    rq.add_argument("ids", nargs="*", type=int, help="row ids from `vitalgate status`")
    rq.add_argument("--all", action="store_true", help="every quarantined reading")
    a = add("audit", cmd_audit, "who ran which operator command when (bindings, listings)")
    a.add_argument("--limit", type=int, default=100)
    add("drivers", cmd_drivers, "list available device drivers", config=False)
    d = add("demo", cmd_demo, "run simulated devices through the whole pipeline (no config, no root)", config=False)
    d.add_argument("--seconds", type=float, default=10.0, help="how long to run (default 10)")
    d.add_argument("--out", default="vitalgate-demo", help="state and output folder (default ./vitalgate-demo)")
    d.add_argument("--mqtt", metavar="URL", help="publish to a broker: mqtts://host[:port] (TLS) or mqtt://...")
    d.add_argument("--mqtt-ca", metavar="FILE", help="CA certificate for the broker (default: system CAs)")
    d.add_argument("--mqtt-user", metavar="NAME", help="MQTT user name")
    d.add_argument("--mqtt-password-file", metavar="FILE", help="file (mode 0600) holding the MQTT password")
    d.add_argument("--fhir", metavar="URL", help="POST to this FHIR base URL (e.g. simulators.fhir_receiver)")
    d.add_argument("--fhir-ca", metavar="FILE", help="CA bundle that signed the --fhir server's certificate")
    d.add_argument("--fhir-client-id", metavar="ID", help="client_secret_basic client id (token URL: <base>/../token)")
    d.add_argument("--fhir-secret-file", metavar="FILE", help="client secret file (mode 0600) for --fhir-client-id")
    for extra in EXTENSIONS:
        extra(sub)
    return p


# Operator commands that take --json.
JSON_COMMANDS = ("status", "devices", "audit", "requeue", "drivers", "bind", "unbind")

# Modules that add subcommands (scan, pair, simulate ...) register a function here.
EXTENSIONS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = []


def _simulators(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`vitalgate simulate`: serial devices on a pty, or BLE devices on an adapter served over loopback."""
    from drivers.ble.cli import BLE_SIMULATORS, add_ble_simulate_arguments, cmd_simulate
    from simulators.serial.cli import run as run_serial
    from simulators.serial.registry import SIMULATORS

    text = "run simulated devices: a serial one on a pty, or BLE ones (ble-*) on an adapter served over TCP"
    p = sub.add_parser("simulate", help=text, description=text)
    p.add_argument("device", nargs="+", choices=[*sorted(SIMULATORS), *BLE_SIMULATORS], help="what to simulate")
    p.add_argument("--records", type=int, help="stored readings (default: serial 20, BLE 3)")
    p.add_argument("--link", type=Path, help="serial: also expose the pty under this symlink path")
    p.add_argument("--clock-offset", type=float, default=0.0, help="serial: meter clock minus real clock, s")
    p.add_argument("--interval", type=float, default=10.0, help="serial scale: seconds between weigh-ins")
    add_ble_simulate_arguments(p)

    def run(args: argparse.Namespace) -> int:
        ble = [d for d in args.device if d in BLE_SIMULATORS]
        serial = [d for d in args.device if d not in BLE_SIMULATORS]
        if (ble and serial) or len(serial) > 1:
            raise ConfigError("<command line>", "device", "give one serial device, or any number of ble-* devices")
        if ble:
            args.kinds, args.records = ble, args.records or 3
            return cmd_simulate(args)
        args.device, args.records = serial[0], args.records or 20
        return run_serial(args)

    p.set_defaults(fn=run)


def _ble_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from drivers.ble.cli import register

    register(sub)


def _console_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from gateway.console.cli import register

    register(sub)


EXTENSIONS.extend([_simulators, _ble_commands, _console_commands])


def _err_prefix() -> str:
    """`<3>` (error) when stderr is the journal, so `journalctl -p err` shows why the service did not start."""
    from gateway.logging import stdout_is_journal

    return "<3>" if stdout_is_journal(sys.stderr) else ""


def main(argv: Sequence[str] | None = None) -> int:
    # Whatever a command writes (queue, outbox, bond keys, key files) is for this user only, as under
    # systemd's UMask=0077, also when run by hand.
    os.umask(0o077)
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except ConfigError as exc:
        print(f"{_err_prefix()}vitalgate: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except GatewayError as exc:
        print(f"{_err_prefix()}vitalgate: {exc}", file=sys.stderr)
        return EXIT_KEY
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `vitalgate status | head`: the reader left; say nothing more (Python docs, "SIGPIPE" note).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
