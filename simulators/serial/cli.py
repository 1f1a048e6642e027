"""`vitalgate simulate <device> --records N`: a simulated serial device on a pty, until Ctrl-C.

Prints the port path to configure as `port` in a `[[devices]]` table. `--link` makes a stable symlink
(like /dev/serial/by-id/...) so the path survives `--replug-every` (which simulates a pulled cable).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from simulators.serial.registry import SIMULATORS, create
from simulators.serial.tanita import TanitaSimulator

__all__ = ["add_arguments", "add_subcommand", "main", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("device", choices=sorted(SIMULATORS), help="which device to simulate")
    from gateway import cli_args as arg

    parser.add_argument("--records", type=arg.integer(0, 100_000), default=20, help="stored readings (default 20)")
    parser.add_argument("--link", type=Path, help="also expose the pty under this symlink path")
    parser.add_argument(
        "--clock-offset", type=arg.signed_seconds(10 * 366 * 86400), default=0.0, help="meter clock minus real clock, s"
    )
    parser.add_argument(
        "--interval",
        type=arg.seconds(0, 86400, exclusive_low=True),
        default=10.0,
        help="scale: seconds between weigh-ins",
    )


def add_subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`vitalgate simulate ...` (gateway.cli registers this through its EXTENSIONS list)."""
    text = "run a simulated serial device on a pseudo-terminal and print its path"
    parser = sub.add_parser("simulate", help=text, description=text)
    add_arguments(parser)
    parser.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    sim = create(args.device, args.records, link=args.link, clock_offset_s=args.clock_offset).start()
    done = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print(sim.path, flush=True)
    print(
        f"# {args.device} with {args.records} records; point a [[devices]] port at the path above",
        file=sys.stderr,
        flush=True,
    )
    try:
        while not done.wait(args.interval if isinstance(sim, TanitaSimulator) else 3600):
            if isinstance(sim, TanitaSimulator):
                sim.send_all()
    finally:
        sim.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vitalgate simulate", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
