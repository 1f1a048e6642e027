"""`vitalgate keys rotate --retire OLD` (the command's steps; the database work is gateway.rekey)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

from gateway.config import Config
from gateway.crypto import KeyRing, key_line, parse_keys, rotate_key_source
from gateway.errors import GatewayError, KeyFileError
from gateway.keysource import KeySource, source_for
from gateway.queue import ReadingQueue
from gateway.rekey import KILL_ENV, retire
from gateway.sealedfile import bond_sealer
from gateway.statelock import daemon_stopped

__all__ = ["retire_key"]


def _reseal_bond_store(ring: KeyRing, cfg: Config) -> str:
    """Seal the BLE bond store (Bumble backend) under the current key before the old key leaves the file;
    a part of the retire report."""
    from drivers.ble import runtime as ble_runtime

    ble_runtime.set_state_dir(cfg.state_dir)
    path = ble_runtime.keystore_path()
    try:
        return ", BLE bond store sealed again" if bond_sealer(ring).reseal(path) else ""
    except GatewayError as exc:  # does not open (SealedFileError), or a link / loose mode (UnsafeFileError)
        return f", BLE bond store left as it was ({exc}; re-pair the devices)"


def retire_key(args: argparse.Namespace, cfg: Config, actor: str) -> int:
    spec = args.path or cfg.key_file
    source = source_for(spec)
    old = str(args.retire)
    with daemon_stopped(cfg.state_dir):  # the daemon holds the old look-up key in memory: it must be stopped
        ids = [kid for kid, _ in parse_keys(source.path, source.read())]
        if old not in ids:
            raise KeyFileError(f"{source.path}: holds no key {old} (keys: {', '.join(ids)})")
        if ids[-1] == old:
            print(f"key {rotate_key_source(spec)} is now current")
        print(asyncio.run(_retire(spec, source, old, cfg, actor)))
    print("start the gateway again (systemctl start vitalgate)")
    return 0


async def _retire(spec: str, source: KeySource, old: str, cfg: Config, actor: str) -> str:
    q = await ReadingQueue.open(cfg.queue_path, KeyRing.load(spec))
    try:
        report = await retire(q, old)
        bonds = _reseal_bond_store(q.keyring, cfg)
        keys = [(kid, key) for kid, key in parse_keys(source.path, source.read()) if kid != old]
        header = "# VitalGate data keys: <id> <base64 AES-256 key>; the last line is current\n"
        source.write(header + "".join(key_line(kid, key) for kid, key in keys))
        if os.environ.get(KILL_ENV) == "written":
            os.kill(os.getpid(), signal.SIGKILL)
        detail = (
            f"key {old} retired: {report.resealed} rows sealed again, look-up key now {report.index_key}"
            f", {report.unreadable} unreadable rows left, {report.checkpoints_dropped} legacy checkpoints dropped"
            f"{bonds}"
        )
        await q.audit(actor, "keys", detail)
        return detail
    finally:
        await q.close()
