"""The locks pin every requirement pyproject.toml names, at versions it allows, with hashes (issue 15).

When this fails after adding or changing a dependency: run ./scripts/lock.sh and commit requirements/.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PIN = re.compile(
    r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)(?: ;[^\\]*)?\s*\\\n((?:\s+--hash=sha256:[0-9a-f]{64}\s*\\?\n)+)", re.M
)


def pins(name: str) -> dict[str, list[tuple[Version, int]]]:
    """package -> [(version, number of hashes)]; a universal lock may pin two versions under markers."""
    out: dict[str, list[tuple[Version, int]]] = {}
    text = (ROOT / "requirements" / name).read_text()
    for m in PIN.finditer(text):
        out.setdefault(canonicalize_name(m.group(1)), []).append((Version(m.group(2)), m.group(3).count("--hash")))
    pin_lines = re.findall(r"(?m)^[A-Za-z0-9][^\s=]*==", text)
    assert sum(map(len, out.values())) == len(pin_lines) > 0, f"{name}: a pin without hashes, or not recognised"
    return out


def requirements(*extras: str) -> list[Requirement]:
    reqs = [Requirement(r) for r in PROJECT["project"]["dependencies"]]
    for extra in extras:
        reqs += [Requirement(r) for r in PROJECT["project"]["optional-dependencies"][extra]]
    reqs += [Requirement(r) for r in PROJECT["build-system"]["requires"]]
    return reqs


def check(lock: str, reqs: list[Requirement]) -> None:
    pinned = pins(lock)
    for req in reqs:
        name = canonicalize_name(req.name)
        assert name in pinned, f"{lock} lacks {req}: run ./scripts/lock.sh"
        for version, hashes in pinned[name]:
            assert req.specifier.contains(version, prereleases=True), f"{lock}: {name}=={version} vs {req}"
            assert hashes >= 1


def test_the_full_lock_pins_every_runtime_test_and_build_requirement() -> None:
    check("lock.txt", requirements(*PROJECT["project"].get("optional-dependencies", {})))


def test_the_runtime_lock_pins_the_runtime_at_the_full_locks_versions() -> None:
    check("runtime.txt", requirements())
    full = pins("lock.txt")
    for name, versions in pins("runtime.txt").items():
        assert versions == full[name], name  # the Pi installs what the tests ran with
