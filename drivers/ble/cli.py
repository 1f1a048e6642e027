"""`vitalgate scan`, `vitalgate pair`, `vitalgate simulate`: the BLE subcommands.

Registered into `gateway.cli` through its EXTENSIONS hook. Which adapter they use: bleak's platform backend
(BlueZ) by default; with `VITALGATE_BLE_HCI` set (e.g. `tcp-client:127.0.0.1:7770`, served by
`vitalgate simulate`) our Bumble backend over that HCI transport, bonds kept in `VITALGATE_BLE_KEYSTORE`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Any

from drivers.ble import runtime
from drivers.ble.transport import Advert, BleError, ScanFilter
from drivers.errors import DeviceProtocolError
from drivers.gatt import uuids

__all__ = ["BLE_SIMULATORS", "add_ble_simulate_arguments", "cmd_simulate", "format_adverts", "register"]

BLE_SIMULATORS = (
    "ble-cuff",
    "ble-scale",
    "ble-glucose",
    "ble-thermometer",
    "ble-pulse-oximeter",
    "ble-body-scale",
    "xiaomi-scale",
    "omron-ble",
)

SubParsers = Any  # argparse._SubParsersAction, private in typeshed


def format_adverts(adverts: list[Advert]) -> str:
    lines = [f"{'address':20} {'rssi':>5}  {'name':20} services"]
    for a in adverts:
        services = ", ".join(uuids.name_of(s) for s in a.services) or "-"
        kind = "" if a.address_type == "unknown" else f" ({a.address_type[0].upper()})"
        lines.append(f"{a.address + kind:20} {a.rssi:>5}  {(a.name or '-')[:20]:20} {services}")
    return "\n".join(lines)


def cmd_scan(args: argparse.Namespace) -> int:
    wanted = () if args.all else tuple(uuids.HEALTH_SERVICES)

    async def go() -> list[Advert]:
        return await runtime.get_transport().scan(args.seconds, ScanFilter(services=wanted))

    try:
        adverts = asyncio.run(go())
    except BleError as exc:
        print(f"vitalgate: {_sentence(exc)}", file=sys.stderr)
        return 1
    print(format_adverts(adverts))
    return 0 if adverts else 1


def _sentence(exc: Exception) -> str:
    """One line for the operator: the error, and for a stack that cannot be reached what to check."""
    hint = getattr(exc, "hint", None)
    return f"{exc}: {hint}" if hint else str(exc)


async def _ask_passkey() -> int | None:
    text = await asyncio.to_thread(input, "passkey shown on the device: ")
    return int(text) if text.strip().isdigit() else None


def cmd_pair(args: argparse.Namespace) -> int:
    passkey: int | None = args.passkey
    if args.patient:
        from gateway.patients import binding_patient

        binding_patient(args.patient, key="--patient")  # refuse a bad patient before bonding, not after
    if passkey is not None:
        print("vitalgate: --passkey is visible to other users (ps); prefer --passkey-file FILE or -", file=sys.stderr)
    if args.passkey_file:
        text = sys.stdin.readline() if args.passkey_file == "-" else Path(args.passkey_file).read_text()
        if not text.strip().isdigit():
            print("vitalgate: the passkey file must hold the 6-digit passkey", file=sys.stderr)
            return 2
        passkey = int(text.strip())

    async def provider() -> int | None:
        return passkey if passkey is not None else await _ask_passkey()

    runtime.set_passkey_provider(provider)
    if runtime.bond_store_in_use():
        from gateway.config import load_config
        from gateway.crypto import KeyRing
        from gateway.errors import GatewayError
        from gateway.sealedfile import bond_sealer

        try:  # the bond store is sealed with a key derived from the gateway's data key
            cfg = load_config(Path(args.config))
            runtime.set_state_dir(cfg.state_dir)
            runtime.set_bond_sealer(bond_sealer(KeyRing.load(cfg.key_file)))
        except GatewayError as exc:
            print(
                f"vitalgate: pairing keeps the device's bond keys sealed with the gateway's data key, which "
                f"needs the gateway's configuration ({exc}); pass --config FILE",
                file=sys.stderr,
            )
            return 2

    async def go() -> None:
        session = await runtime.get_transport().connect(args.address, timeout=args.timeout, pair=True)
        try:
            if getattr(args, "omron_model", None):
                # Omron cuffs also need our 16-byte key stored while they are in pairing mode (-P-).
                from drivers.ble.omron import DEFAULT_KEY, program_key

                key = bytes.fromhex(args.omron_key) if getattr(args, "omron_key", None) else DEFAULT_KEY
                await program_key(session, key)
        finally:
            await session.disconnect()

    try:
        asyncio.run(go())
    except (BleError, DeviceProtocolError) as exc:
        print(f"vitalgate: pairing failed: {_sentence(exc)}", file=sys.stderr)
        return 1
    print(f"bonded with {args.address.upper()}")
    if args.patient:
        from gateway.cli import cmd_bind

        bind_args = argparse.Namespace(
            command="pair", config=args.config, device=args.address, patient=args.patient, user=args.user
        )
        return cmd_bind(bind_args)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from simulators.ble.run import simulate

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            simulate(
                args.kinds,
                port=args.port,
                records=args.records,
                users=args.users,
                every=args.every,
                fail_after=getattr(args, "fail_after", None),
            )
        )
    return 0


def add_ble_simulate_arguments(m: argparse.ArgumentParser) -> None:
    """BLE options of `vitalgate simulate` (gateway.cli builds the command, shared with serial devices)."""
    from gateway import cli_args as arg

    m.add_argument(
        "--port", type=arg.integer(1, 65535), default=7770, help="BLE: loopback TCP port of the served adapter (7770)"
    )
    m.add_argument(
        "--users", type=arg.integer(1, 254), default=2, help="BLE: user slots on the cuff and scale (default 2)"
    )
    m.add_argument(
        "--every",
        type=arg.seconds(0, 86400, exclusive_low=True),
        default=None,
        help="BLE: take a new measurement every N seconds",
    )
    m.add_argument(
        "--fail-after",
        type=arg.integer(0, 100_000),
        default=None,
        metavar="N",
        help="BLE glucose: drop the link after N records of the next transfer (once), to test resuming",
    )


def register(sub: SubParsers) -> None:
    """`vitalgate scan` and `vitalgate pair`."""
    from gateway import cli_args as arg
    from gateway.config import DEFAULT_PATH

    s = sub.add_parser("scan", help="list nearby health devices (name, address, services, RSSI)")
    s.add_argument(
        "--seconds", type=arg.seconds(0, 3600, exclusive_low=True), default=5.0, help="how long to listen (default 5)"
    )
    s.add_argument("--all", action="store_true", help="show every advertiser, not only health devices")
    s.set_defaults(fn=cmd_scan)

    p = sub.add_parser("pair", help="bond with a BLE device (LE Secure Connections) and optionally bind it")
    p.add_argument("address", help="Bluetooth address from `vitalgate scan`")
    p.add_argument("--patient", help="bind the device (and --user slot) to this patient after bonding")
    p.add_argument("--user", type=arg.USER_SLOT, help="user slot on a multi-user device (0-254)")
    # LE Secure Connections passkeys are six decimal digits (Core Spec Vol 3 Part H 2.3.5.3).
    p.add_argument(
        "--passkey", type=arg.integer(0, 999_999), help="passkey shown on the device (asked for when needed)"
    )
    p.add_argument("--passkey-file", metavar="FILE", help="read the passkey from FILE, or from stdin with -")
    p.add_argument(
        "--timeout",
        type=arg.seconds(0, 3600, exclusive_low=True),
        default=30.0,
        help="seconds to wait for the device (default 30)",
    )
    p.add_argument("--omron-model", help="an Omron cuff (e.g. HEM-7322T) in pairing mode: also store our pairing key")
    p.add_argument("--omron-key", help="the 16-byte pairing key as 32 hex digits (default: VitalGate's own)")
    p.add_argument("--config", default=str(DEFAULT_PATH), help=f"config file (default {DEFAULT_PATH})")
    p.set_defaults(fn=cmd_pair)
