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

from simulators.serial.base import Fault
from simulators.serial.registry import SIMULATORS, create
from simulators.serial.tanita import TanitaSimulator

__all__ = ["add_arguments", "add_subcommand", "main", "parse_faults", "run"]


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
        help="scale: seconds between weigh-ins (one new one each time)",
    )
    parser.add_argument("--fault", action="append", default=[], metavar="RECORD:KIND", help=FAULT_HELP)


FAULT_HELP = (
    "inject a fault the first time record RECORD (0 = the first sent: a meter's newest, the scale's first) "
    "goes out: bad-checksum, truncated, garbage (noise before it) or close (the port goes away mid-record, "
    "as a pulled cable); repeatable"
)


def add_subcommand(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`vitalgate simulate ...` (gateway.cli registers this through its EXTENSIONS list)."""
    text = "run a simulated serial device on a pseudo-terminal and print its path"
    parser = sub.add_parser("simulate", help=text, description=text)
    add_arguments(parser)
    parser.set_defaults(fn=run)


def parse_faults(specs: Sequence[str]) -> dict[int, Fault]:
    """`--fault 3:bad-checksum` -> {3: Fault.BAD_CHECKSUM}; a wrong spec is a config error naming --fault."""
    from gateway.errors import ConfigError

    out: dict[int, Fault] = {}
    problem = f"use RECORD:KIND, RECORD >= 0, KIND one of {', '.join(f.value for f in Fault)}"
    for spec in specs:
        index, _, kind = spec.partition(":")
        try:
            record, fault = int(index), Fault(kind)
        except ValueError:
            raise ConfigError("<command line>", "--fault", problem) from None
        if record < 0:
            raise ConfigError("<command line>", "--fault", problem)
        out[record] = fault
    return out


def run(args: argparse.Namespace) -> int:
    faults = parse_faults(getattr(args, "fault", None) or [])
    sim = create(args.device, args.records, link=args.link, clock_offset_s=args.clock_offset, faults=faults).start()
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
            # The scale prints one new weigh-in per interval (it has no memory to dump again).
            if isinstance(sim, TanitaSimulator) and not sim.weigh_next():
                print(f"# all {len(sim.weigh_ins)} weigh-ins sent; Ctrl-C to stop", file=sys.stderr, flush=True)
                done.wait()
    finally:
        sim.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vitalgate simulate", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
