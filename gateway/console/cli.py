"""`vitalgate users ...` (console accounts) and `vitalgate console fingerprint`, registered by gateway.cli."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from typing import Any

from gateway.config import DEFAULT_PATH

__all__ = ["register"]


def _store(args: argparse.Namespace) -> Any:
    from gateway.cli import _check_state, _config
    from gateway.console.users import UserStore
    from gateway.crypto import KeyRing

    cfg = _config(args)
    _check_state(cfg, create=True)
    c = cfg.surfaces.console
    return cfg, UserStore(
        cfg.state_dir,
        KeyRing.load(cfg.key_file),
        max_failed=c.max_failed_logins,
        lockout_seconds=c.lockout_minutes * 60,
    )


def _audit(args: argparse.Namespace, action: str, detail: str) -> None:
    from gateway.cli import _with_queue

    async def nothing(_: Any) -> None:
        return None

    asyncio.run(_with_queue(argparse.Namespace(**{**vars(args), "command": action}), nothing, lambda _: detail))


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password (12 characters or more): ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("vitalgate: the passwords differ")
    return first


def cmd_users(args: argparse.Namespace) -> int:
    from gateway.console import totp
    from gateway.console.users import Role

    cfg, store = _store(args)
    if args.action == "add":
        if not args.name or not args.role:
            print("vitalgate: users add NAME --role viewer|operator|admin", file=sys.stderr)
            return 2
        secret = store.add(args.name, Role(args.role), _password(args))
        _audit(args, "users-add", f"{args.name} as {args.role}")
        uri = totp.provisioning_uri(secret, f"{args.name}@{cfg.gateway_id}")
        if args.json:
            print(json.dumps({"name": args.name, "role": args.role, "totp_secret": secret, "totp_uri": uri}))
        else:
            print(
                f"added {args.name} ({args.role}). Enter this key in an authenticator app now; it is not shown again:"
            )
            print(f"  {secret}\n  {uri}")
        return 0
    if args.action == "list":
        rows = [
            {"name": a.name, "role": a.role.value, "locked_until": a.locked_until or None, "created": a.created}
            for a in store.load().values()
        ]
        if args.json:
            print(json.dumps({"users": rows}))
        else:
            for r in rows:
                print(f"{r['name']:24} {r['role']:9} {'locked' if r['locked_until'] else ''}")
        return 0
    if not args.name:
        print(f"vitalgate: users {args.action} NAME", file=sys.stderr)
        return 2
    done = store.remove(args.name) if args.action == "remove" else store.unlock(args.name)
    _audit(args, f"users-{args.action}", args.name)
    if args.json:
        print(json.dumps({args.action: done, "name": args.name}))
    else:
        print(
            f"{'removed' if args.action == 'remove' else 'unlocked'} {args.name}"
            if done
            else f"no account {args.name!r}"
        )
    return 0 if done else 1


def cmd_console(args: argparse.Namespace) -> int:
    from gateway.cli import _config
    from gateway.console.tlscert import ensure_certificate, fingerprint

    cfg = _config(args)
    cert, _ = ensure_certificate(cfg.surfaces.console, cfg.state_dir)
    fp = fingerprint(cert)
    if args.json:
        print(json.dumps({"certificate": str(cert), "sha256_fingerprint": fp}))
    else:
        print(f"{cert}\nSHA-256 fingerprint: {fp}\nCompare it with what the browser shows on the first visit.")
    return 0


def register(sub: Any) -> None:
    u = sub.add_parser("users", help="console accounts: add, list, remove, unlock")
    u.add_argument("action", choices=("add", "list", "remove", "unlock"))
    u.add_argument("name", nargs="?")
    u.add_argument("--role", choices=("viewer", "operator", "admin"))
    u.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    u.add_argument("--json", action="store_true", help="machine-readable output")
    u.add_argument("--config", default=str(DEFAULT_PATH), help=f"config file (default {DEFAULT_PATH})")
    u.set_defaults(fn=cmd_users)
    c = sub.add_parser("console", help="the console's TLS certificate fingerprint (generated on first use)")
    c.add_argument("action", choices=("fingerprint",))
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.add_argument("--config", default=str(DEFAULT_PATH), help=f"config file (default {DEFAULT_PATH})")
    c.set_defaults(fn=cmd_console)
