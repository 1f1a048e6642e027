"""`vitalgate`: the daemon and the operator's commands.

Expected failures (bad config, missing or loose key file) print one clear line and exit non-zero
without a traceback; a traceback means a bug.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar, cast

from gateway import __version__
from gateway import cli_args as arg
from gateway.config import DEFAULT_PATH, Config, load_config
from gateway.crypto import DecryptError, KeyRing, create_key_file, rotate_key_source
from gateway.errors import ConfigError, GatewayError
from gateway.logging import configure_logging
from gateway.queue import Binding, ReadingQueue, State, identity_selectors
from gateway.reading import DeviceIdentity
from gateway.secrets import resolve_secret_path
from gateway.systemd import Notifier

__all__ = ["main"]

T = TypeVar("T")

# Exit codes (README "Exit codes"): 1 a command found nothing to do, 2 config or usage error, 3 key error,
# 4 queue file damaged or unusable, 5 another daemon holds the state folder, 6 the queue file was replaced or
# deleted while running, 7 a file or folder could not be read or written, 130 interrupted.
EXIT_CONFIG = 2
EXIT_KEY = 3
EXIT_QUEUE = 4
EXIT_LOCKED = 5
EXIT_REPLACED = 6
EXIT_IO = 7


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


def _check_plaintext_output(cfg: Config) -> None:
    """`run` writes readable FHIR files only when the config asks for it, with a retention period."""
    if cfg.forwarder == "file":
        from gateway.forwarders.file import require_opt_in

        require_opt_in(cfg.forwarder_options, cfg.file)


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = _config(args)  # every problem in the file at once (ConfigErrors)
    # The forwarder's section is validated when it is built (no network I/O): do it here too, or a typo in
    # [output.mqtt] / [output.https] or an unreadable secret only shows at `run`.
    from gateway.forwarders import ForwarderContext, build_forwarder
    from gateway.keycheck import check_queue_file

    checks: list[Callable[[], object]] = [
        lambda: KeyRing.load(cfg.key_file),
        lambda: _check_state(cfg, create=False),
        lambda: _check_state_creatable(cfg),
        lambda: _check_plaintext_output(cfg),
        lambda: build_forwarder(
            cfg.forwarder, cfg.forwarder_options, ForwarderContext(cfg.file, cfg.gateway_id, cfg.state_dir)
        ),
    ]
    problems: list[GatewayError] = []
    for check in checks:  # report them all, not only the first
        try:
            check()
        except GatewayError as exc:
            problems.append(exc)
    if len(problems) > 1:
        for problem in problems:
            kind = "config error: " if isinstance(problem, ConfigError) else ""
            print(f"vitalgate: {kind}{problem}", file=sys.stderr)
        return EXIT_CONFIG if any(isinstance(e, ConfigError) for e in problems) else EXIT_KEY
    if problems:
        raise problems[0]
    queue_summary = check_queue_file(cfg.queue_path, KeyRing.load(cfg.key_file))  # proves the key opens this queue
    if not cfg.devices:
        print(
            f"vitalgate: warning: {cfg.file}: no [[devices]] configured; the gateway would run but read nothing"
            " (see the [[devices]] examples in config/vitalgate.example.toml)",
            file=sys.stderr,
        )
    print(f"{cfg.file}: ok ({len(cfg.devices)} devices, forwarder {cfg.forwarder}, queue {cfg.queue_path})")
    for dev in cfg.devices:
        if dev.options.get("allow_unbonded") is True:
            print(
                f"  {dev.where} ({dev.name}): allow_unbonded = true: readings are taken without a bond, so any "
                "device answering at its address is believed"
            )
    print(f"{cfg.queue_path}: {queue_summary}")
    return 0


# systemd's StateDirectory= creates folders under here itself, as root, before the service starts.
SYSTEMD_STATE_ROOT = Path("/var/lib")


def _check_state_creatable(cfg: Config) -> None:
    """A state folder that does not exist yet must be creatable here: probe with a folder made and removed
    at once (root passes every access() test, yet cannot create anything under /proc or a read-only mount).
    One systemd's StateDirectory= will create (under /var/lib) is not judged by its parent."""
    import tempfile

    for key, folder in (("gateway.state_dir", cfg.state_dir), ("queue.path", cfg.queue_path.parent)):
        if folder.exists() or folder.is_relative_to(SYSTEMD_STATE_ROOT):
            continue
        existing = next((p for p in folder.parents if p.exists()), Path("/"))
        if not existing.is_dir():
            continue  # reported by _check_state
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".vitalgate-check-", dir=existing))
        except OSError as exc:
            raise ConfigError(cfg.file, key, f"{folder}: cannot be created in {existing} ({exc.strerror})") from None


def cmd_keys(args: argparse.Namespace) -> int:
    from gateway.config import load_key_file

    # Only the key_file line is read: a typo elsewhere (a device option) must not block creating the key.
    path = Path(os.path.abspath(args.path)) if args.path else resolve_secret_path(load_key_file(Path(args.config)))
    if args.action == "init":
        if path.exists():
            print(f"vitalgate: {path} exists already; use `vitalgate keys rotate` for a new key", file=sys.stderr)
            return EXIT_KEY
        kid = create_key_file(path)
        _audit_command(args, f"key {kid} created")
        print(
            f"wrote a new 256-bit data key {kid} to {path} (mode 0600). Back it up: without it the queue is unreadable."
        )
    elif args.retire:
        from gateway.keycli import retire_key

        return retire_key(args, _config(args), _actor())
    else:
        kid = rotate_key_source(args.path or _config(args).key_file)
        _audit_command(args, f"key {kid} made current")
        print(f"key {kid} is now current in {path}; older keys still open older rows")
        print("a running gateway picks it up on SIGHUP (systemctl reload vitalgate); a systemd credential: restart")
    return 0


def install_signals(stop: asyncio.Event, on_hup: Callable[[], None] | None = None) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if on_hup is not None:
        loop.add_signal_handler(signal.SIGHUP, on_hup)


async def _run(cfg: Config, keyring: KeyRing) -> None:
    from gateway.daemon import Gateway
    from gateway.executor import DaemonThreadExecutor

    asyncio.get_running_loop().set_default_executor(DaemonThreadExecutor())  # SIGTERM never waits on a connect
    gw = Gateway(cfg, keyring, notifier=Notifier.from_environment())
    gw.install_bond_sealer()
    gw.freeze_gc = True  # this process is the daemon (not a test harness): freeze start-up's objects once started
    stop = asyncio.Event()
    install_signals(stop, gw.reload_secrets)
    await gw.run(stop)


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _config(args)
    configure_logging(cfg.log_level, cfg.log_format)
    keyring = KeyRing.load(cfg.key_file)
    _check_state(cfg, create=True)
    _check_plaintext_output(cfg)
    from drivers.ble import runtime as ble_runtime
    from gateway.statelock import StateLock

    ble_runtime.set_state_dir(cfg.state_dir)  # a relative BLE bond store lives in the state folder
    # One daemon per state folder, for the daemon's whole life. Waiting 2 s: `status` tests the lock with a
    # shared flock for an instant, and a daemon starting in that instant must not take it for another daemon.
    with StateLock(cfg.state_dir, wait=2.0):
        asyncio.run(_run(cfg, keyring))
    return 0


def _actor() -> str:
    """Who ran the command, for the audit trail: real and login uid from the kernel, SUDO_USER as a claim."""
    from gateway.audit import current_actor

    return current_actor()


async def _with_queue(
    args: argparse.Namespace,
    fn: Callable[[ReadingQueue], Awaitable[T]],
    audit: Callable[[ReadingQueue], str] | None = None,
) -> T:
    """Run `fn` on the queue; operator commands that touch PHI leave an audit entry (no PHI in it)."""
    from gateway.statelock import admin_lock

    cfg = _config(args)
    keyring = KeyRing.load(cfg.key_file)
    _check_state(cfg, create=True)
    with admin_lock(cfg.state_dir):  # operator commands never interleave; the daemon runs beside them
        q = await ReadingQueue.open(cfg.queue_path, keyring)
        try:
            result = await fn(q)
            await q.audit(_actor(), args.command, audit(q) if audit else "")
            return result
        finally:
            await q.close()


def _json_out(args: argparse.Namespace, doc: Any) -> bool:
    """With --json, print `doc` (stable keys, README "Status and JSON output") and return True."""
    if not getattr(args, "json", False):
        return False
    print(json.dumps(doc, indent=2, sort_keys=True))
    return True


def cmd_bind(args: argparse.Namespace) -> int:
    from gateway.patients import binding_patient

    patient = binding_patient(args.patient)  # the FHIR mapping's own rule: never store what it will refuse

    async def go(q: ReadingQueue) -> bool:
        seen = await _slot_seen(q, args.device, args.user)
        await q.bind(args.device, args.user, patient)
        return seen

    seen = asyncio.run(_with_queue(args, go, lambda q: f"binding {q.reference_tag(args.device, args.user)}"))
    if _json_out(args, {"bound": True, "device": args.device, "user": args.user, "device_seen": seen}):
        return 0
    slot = f" user {args.user}" if args.user is not None else ""
    if seen:
        print(f"bound {args.device}{slot}; its readings now flow to the backend")
    else:
        # Accepted on purpose: staff may bind a new device before its first use. But say so, so a typo shows.
        print(f"bound {args.device}{slot}; its readings will flow once the gateway has seen it")
        print(
            f"vitalgate: notice: this gateway has not seen {args.device!r}{slot} yet; if it should have, check the"
            " name and user slot against `vitalgate devices` (`vitalgate unbind` removes the binding)",
            file=sys.stderr,
        )
    return 0


async def _slot_seen(q: ReadingQueue, device: str, user: int | None) -> bool:
    """Whether any device slot seen so far answers to this name (and user slot)."""
    from gateway.queue import normalize_selector

    name = normalize_selector(device)
    for d in await q.devices():
        ident = DeviceIdentity(
            d["driver"],
            address=d["address"],
            serial_number=d["serial_number"],
            system_id=d["system_id"],
            manufacturer=d["manufacturer"],
        )
        if name in identity_selectors(ident) and d["user"] == user:
            return True
    return False


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
    configured = _config(args).devices
    rows: list[dict[str, Any]] = []
    for d in devices:
        ident = _device_label(d)
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
        rows.append(
            {
                **d,
                "device": ident,
                "name": _configured_name(d, configured),
                "patient": None if patient == "(unassigned)" else patient,
                "quirks": _quirks_shown(d),
            }
        )
    if _json_out(args, {"devices": rows}):
        return 0
    from gateway.health.report import when

    print(
        f"{'DEVICE':34} {'USER':4} {'NAME':16} {'DRIVER':18} {'MODEL':26} {'READINGS':>8}  {'SYSTEM ID':16}  "
        f"{'LAST SEEN':20}  PATIENT"
    )
    for r in rows:
        user = "-" if r["user"] is None else str(r["user"])
        print(
            f"{r['device']:34} {user:4} {r['name']:16} {r['driver']:18} {(r['model'] or ''):26} {r['readings']:>8}  "
            f"{(r['system_id'] or '-'):16}  {when(r['last_seen']):20}  {r['patient'] or '(unassigned)'}"
        )
        if r["quirks"]:
            print(f"{'':34} quirks: {'; '.join(r['quirks'])} (see `vitalgate drivers`)")
    return 0


def _quirks_shown(d: dict[str, Any]) -> list[str]:
    """What the quirks table changes for this BLE device (by its Device Information); [] when standard."""
    from drivers import registry
    from drivers.ble.quirks import quirks_for

    try:
        if registry.load(str(d["driver"])).transport != "ble":
            return []
    except Exception:  # a driver that is gone or broken: nothing to say about its sessions
        return []
    found, row = quirks_for(DeviceIdentity(d["driver"], manufacturer=d.get("manufacturer"), model=d.get("model")))
    return found.effects() if row is not None else []


def _is_bluetooth_address(text: str | None) -> bool:
    return bool(text) and len(text or "") == 17 and (text or "").count(":") == 5


def _device_label(d: dict[str, Any]) -> str:
    """The name the operator knows the device by: a BLE device by the address it was paired with, a serial
    meter by its serial number (its 'address' is only the port); the System ID gets its own column."""
    if _is_bluetooth_address(d["address"]):
        return str(d["address"]).upper()
    return str(d["serial_number"] or d["system_id"] or d["address"] or d["key"])


def _configured_name(d: dict[str, Any], configured: Sequence[Any]) -> str:
    """The `name` of the [[devices]] entry this slot came from (same driver and address, port or serial)."""
    for dev in configured:
        if dev.driver != d["driver"]:
            continue
        where = {str(dev.options.get(k, "")).upper() for k in ("address", "port", "serial")} - {""}
        if {str(d["address"] or "").upper(), str(d["serial_number"] or "").upper()} & where:
            return str(dev.name)
    return "-"


def cmd_status(args: argparse.Namespace) -> int:
    damaged = 0
    sealed: set[int] = set()

    async def go(q: ReadingQueue) -> tuple[dict[State, int], list[tuple[int, str]], int, dict[str, str]]:
        nonlocal damaged
        damaged = q.damaged_bindings
        sealed.update(await q.sealed_echoes())
        return await q.counts(), await q.quarantined(), await q.reject_count(), dict(q.integrity_problems)

    from gateway.health.report import render_status, status_document
    from gateway.statelock import StateLock

    counts, quarantined, rejects, integrity = asyncio.run(_with_queue(args, go))
    cfg = _config(args)
    doc = status_document(cfg.state_dir, {s.name.lower(): n for s, n in counts.items()}, quarantined, rejects)
    # The state folder's lock (gateway.statelock) says for certain whether a daemon runs; the health snapshot
    # adds how it is doing, and may not be written yet in its first seconds.
    held = StateLock(cfg.state_dir).held_by_other()
    if held and doc["daemon"]["state"] != "running":
        doc["daemon"] = {"state": "running", "detail": "running (it holds the state folder; no health snapshot yet)"}
    elif not held and doc["daemon"]["state"] in ("running", "stalled"):
        doc["daemon"] = {"state": "not running", "detail": "not running (no daemon holds the state folder)"}
    doc["queue"]["damaged_bindings"] = damaged
    doc["integrity"] = list(integrity.values())
    for item in doc["queue"]["quarantined"]:
        item["server_text_sealed"] = item["id"] in sealed
    if _json_out(args, doc):
        return 0
    print(render_status(doc))
    if sealed:
        print(f"  {'server text':12} sealed for {len(sealed)} quarantined: vitalgate quarantine --reveal ID (audited)")
    if damaged:
        print(f"  {'bindings':12} {damaged} do not open (damaged or edited): bind those devices again")
    for sentence in integrity.values():
        print(f"ALARM: {sentence}")
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


def cmd_quarantine(args: argparse.Namespace) -> int:
    """List quarantined rows, or with --reveal open one row's sealed server text (audited: it may be PHI)."""
    reveal: int | None = args.reveal

    async def go(q: ReadingQueue) -> tuple[list[tuple[int, str]], set[int], str | None]:
        rows, sealed = await q.quarantined(), await q.sealed_echoes()
        return rows, sealed, (await q.reveal(reveal) if reveal is not None else None)

    def detail(q: ReadingQueue) -> str:
        return "list" if reveal is None else f"reveal #{reveal}: server text shown to the operator"

    rows, sealed, text = asyncio.run(_with_queue(args, go, detail))
    if reveal is not None:
        held = dict(rows)
        if reveal not in held:
            print(f"vitalgate: #{reveal} is not quarantined (see `vitalgate quarantine`)", file=sys.stderr)
            return EXIT_CONFIG
        if _json_out(args, {"id": reveal, "reason": held[reveal], "server_text": text}):
            return 0
        print(f"#{reveal}: {held[reveal]}")
        print(text if text is not None else "(the server said nothing more)")
        return 0
    doc = [{"id": i, "reason": r, "server_text_sealed": i in sealed} for i, r in rows]
    if _json_out(args, {"quarantined": doc}):
        return 0
    for item in doc:
        mark = "  [server text sealed: --reveal]" if item["server_text_sealed"] else ""
        print(f"#{item['id']}: {item['reason']}{mark}")
    print(f"{len(doc)} quarantined readings")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    if args.verify:

        async def check(q: ReadingQueue) -> list[str]:
            return await q.verify_audit()

        problems = asyncio.run(_with_queue(args, check, lambda q: "verify"))
        for problem in problems:
            print(f"audit trail: {problem}")
        print("audit trail intact" if not problems else f"audit trail BROKEN: {len(problems)} problems")
        return 0 if not problems else 1

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
            rows.append(
                {
                    "name": name,
                    "transport": cls.transport,
                    "description": cls.description,
                    "package": registry.origin(name),
                    "error": None,
                }
            )
        except Exception as exc:
            rows.append(
                {
                    "name": name,
                    "transport": None,
                    "description": None,
                    "package": registry.origin(name),
                    "error": type(exc).__name__,
                }
            )
    from drivers.ble.quirks import TABLE

    quirks = [
        {
            "manufacturer": q.manufacturer,
            "model": q.model,
            "applied": q.quirks.effects(),
            "behaviour": q.behaviour,
            "source": q.source,
        }
        for q in TABLE
    ]
    if _json_out(args, {"drivers": rows, "quirks": quirks}):
        return 0
    for r in rows:
        if r["error"]:
            print(f"{r['name']:24} (cannot load: {r['error']}) [{r['package']}]")
        else:
            print(f"{r['name']:24} {r['transport']:7} {r['description']} [{r['package']}]")
    print("BLE device quirks (by Device Information manufacturer / model; any other device: standard behaviour):")
    for q in quirks:
        print(f"  {q['manufacturer']} / {q['model']}: {'; '.join(q['applied'])}")
        print(f"      why: {q['behaviour']}")
        print(f"      source: {q['source']}")
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
    k.add_argument("--retire", metavar="OLD", help="rotate: re-encrypt every row off key OLD, then delete it")
    b = add("bind", cmd_bind, "bind a device (and user slot) to a patient")
    b.add_argument(
        "device", type=arg.name(), help="Bluetooth address, serial number or System ID (see `vitalgate devices`)"
    )
    b.add_argument("patient", help="Patient/123, 123, or an identifier system|value")
    b.add_argument("--user", type=arg.USER_SLOT, help="user slot on a multi-user device (0-254)")
    u = add("unbind", cmd_unbind, "remove a binding")
    u.add_argument("device", type=arg.name())
    u.add_argument("--user", type=arg.USER_SLOT)
    add("devices", cmd_devices, "list device slots seen and their bindings")
    add("status", cmd_status, "daemon health and alarms first, then queue counts, quarantined rows, rejected input")
    rq = add("requeue", cmd_requeue, "send quarantined readings again (after fixing the backend or config)")
    rq.add_argument("ids", nargs="*", type=arg.ROW_ID, help="row ids from `vitalgate status`")
    rq.add_argument("--all", action="store_true", help="every quarantined reading")
    qr = add("quarantine", cmd_quarantine, "list quarantined readings; --reveal ID: what the server said (audited)")
    qr.add_argument(
        "--reveal", type=arg.ROW_ID, metavar="ID", help="open row ID's sealed server text (may name a patient)"
    )
    a = add("audit", cmd_audit, "who ran which operator command when (bindings, listings)")
    a.add_argument("--limit", type=arg.AUDIT_LIMIT, default=100, help="entries to show (1-1000000)")
    a.add_argument("--verify", action="store_true", help="check the hash chain and MACs; exit 1 if broken")
    add("drivers", cmd_drivers, "list available device drivers", config=False)
    d = add("demo", cmd_demo, "run simulated devices through the whole pipeline (no config, no root)", config=False)
    d.add_argument(
        "--seconds",
        type=arg.seconds(0, 86400, exclusive_low=True),
        help="how long to run (default 10; with --until-each-device: at most 600)",
    )
    d.add_argument(
        "--until-each-device",
        type=arg.integer(1, 1_000_000),
        metavar="N",
        help="stop as soon as every simulated device has had N readings forwarded (exit 1 if --seconds runs out "
        "first): for CI and slow machines, instead of a fixed time",
    )
    d.add_argument(
        "--out", type=arg.folder, default="vitalgate-demo", help="state and output folder (default ./vitalgate-demo)"
    )
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
JSON_COMMANDS = ("status", "devices", "audit", "requeue", "quarantine", "drivers", "bind", "unbind")

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
    p.add_argument("--records", type=arg.integer(0, 100_000), help="stored readings (default: serial 20, BLE 3)")
    p.add_argument("--link", type=Path, help="serial: also expose the pty under this symlink path")
    p.add_argument(
        "--clock-offset",
        type=arg.signed_seconds(10 * 366 * 86400),
        default=0.0,
        help="serial: meter clock minus real clock, s",
    )
    p.add_argument(
        "--interval",
        type=arg.seconds(0, 86400, exclusive_low=True),
        default=10.0,
        help="serial scale: seconds between weigh-ins (each sent once)",
    )
    from simulators.serial.cli import FAULT_HELP

    p.add_argument("--fault", action="append", default=[], metavar="RECORD:KIND", help=f"serial: {FAULT_HELP}")
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


def _setup_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from gateway.setup import add_subcommand

    add_subcommand(sub)


EXTENSIONS.append(_setup_command)


def _line_buffered_stdout() -> None:
    """Each line out as soon as it is printed, also into a pipe: a process (a test, a supervisor script)
    waiting for a line such as `simulate`'s "served on" must not wait for a block buffer to fill."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)


def main(argv: Sequence[str] | None = None) -> int:
    # Whatever a command writes (queue, outbox, bond keys, key files) is for this user only, as under
    # systemd's UMask=0077, also when run by hand.
    os.umask(0o077)
    _line_buffered_stdout()
    args = build_parser().parse_args(argv)
    # The PHI guard (gateway.logging.scrub_phi) for every command, not only `run` and `demo` (which set
    # their own level and format): `pair`, `bind` and the rest log through it to stderr.
    configure_logging("info", "auto", cast(TextIO, _Stderr()))
    try:
        rc = int(args.fn(args))
    except ConfigError as exc:
        print(f"{_err_prefix()}vitalgate: config error: {exc}", file=sys.stderr)
        rc, failure = EXIT_CONFIG, "config error"
    except GatewayError as exc:
        print(f"{_err_prefix()}vitalgate: {exc}", file=sys.stderr)
        rc, failure = _exit_code(exc), type(exc).__name__
    except DecryptError as exc:  # a value in the queue that does not open where no row can be set aside
        print(
            f"{_err_prefix()}vitalgate: a sealed value in the queue does not open ({exc}); check the key file",
            file=sys.stderr,
        )
        rc, failure = EXIT_KEY, "DecryptError"
    except BrokenPipeError:
        # `vitalgate status | head`: the reader left; say nothing more (Python docs, "SIGPIPE" note).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as exc:  # e.g. `keys init --path /proc/vg.key`: the file system said no
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{_err_prefix()}vitalgate: {where}{exc.strerror or exc}", file=sys.stderr)
        rc, failure = EXIT_IO, "OSError"
    except KeyboardInterrupt:
        return 130
    else:
        failure = f"exit status {rc}" if rc else ""
    if failure and args.command not in _UNAUDITED:
        _audit_command(args, f"failed: {failure}")
    return rc


class _Stderr:
    """Whatever `sys.stderr` is when a line is written (not when logging was configured)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


# Commands that touch no PHI-bearing state; `run` records its own start and stop (gateway.daemon).
_UNAUDITED = {"drivers", "scan", "simulate"}


def _audit_command(args: argparse.Namespace, outcome: str) -> None:
    """Best effort, for commands that do not audit themselves (failures, key operations): an entry in the
    queue's trail when config, key and queue can be opened, else only the syslog copy."""
    from gateway import audit

    actor, action = _actor(), str(args.command)

    async def go(cfg: Config) -> None:
        q = await ReadingQueue.open(cfg.queue_path, KeyRing.load(cfg.key_file))
        try:
            await q.audit(actor, action, outcome)
        finally:
            await q.close()

    try:
        from gateway.safefiles import open_folder
        from gateway.statelock import admin_lock

        cfg = load_config(Path(args.config))
        os.close(open_folder(cfg.state_dir, create=True))
        with admin_lock(cfg.state_dir, wait=5):  # not beside a `keys rotate --retire` (statelock.daemon_stopped)
            asyncio.run(go(cfg))
    except Exception:
        audit.forward(actor, action, outcome, b"")


def _exit_code(exc: GatewayError) -> int:
    from gateway.keycheck import QueueFileError
    from gateway.statelock import QueueReplacedError, StateLockedError

    codes: tuple[tuple[type[GatewayError], int], ...] = (
        (QueueFileError, EXIT_QUEUE),
        (StateLockedError, EXIT_LOCKED),
        (QueueReplacedError, EXIT_REPLACED),
    )
    return next((code for kind, code in codes if isinstance(exc, kind)), EXIT_KEY)


if __name__ == "__main__":
    sys.exit(main())
