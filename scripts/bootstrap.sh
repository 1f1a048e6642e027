#!/usr/bin/env bash
# Usage: bootstrap.sh EXTRAS [DEBIAN_PACKAGE ...]
# Creates .venv (once), installs VitalGate into it with EXTRAS (e.g. "test"; "" for none), and installs
# the Debian packages named (only those missing).
# Sourced by scripts/demo.sh and scripts/test.sh so a fresh Debian / Raspberry Pi OS machine needs nothing else.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
extras=${1:-}
shift || true
py=${PYTHON:-python3}

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  # Debian packages the project needs; installed only when missing.
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing Debian packages: ${missing[*]} (with apt-get, about a minute)..." >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

[ $# -gt 0 ] && apt_install "$@"

if [ ! -x "$root/.venv/bin/python" ]; then
  if ! "$py" -m venv --help >/dev/null 2>&1 || ! "$py" -c 'import ensurepip' >/dev/null 2>&1; then
    apt_install python3-venv
  fi
  "$py" -m venv "$root/.venv"
fi
# Pinned, hashed versions (./scripts/lock.sh writes the locks): a fresh machine installs what was tested.
lock="$root/requirements/lock.txt"
[ -z "$extras" ] && lock="$root/requirements/runtime.txt"
stamp="$root/.venv/.installed-${extras:-base}"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ] || [ "$lock" -nt "$stamp" ]; then
  # Every requirement pyproject.toml names must be pinned in the lock, or the install would not be the tested one.
  "$root/.venv/bin/python" - "$root/pyproject.toml" "$lock" $extras <<'PY'
import re, sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
wanted = list(project["dependencies"])
for extra in sys.argv[3:]:
    wanted += project.get("optional-dependencies", {}).get(extra, [])
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
locked = {norm(m) for m in re.findall(r"(?m)^([A-Za-z0-9][A-Za-z0-9._-]*)==", open(sys.argv[2]).read())}
missing = [d for d in wanted if norm(re.match(r"[A-Za-z0-9._-]+", d).group()) not in locked]
if missing:
    sys.exit(f"the lock is out of date: run ./scripts/lock.sh ({sys.argv[2]} lacks {', '.join(missing)})")
PY
  if [ -f "$stamp" ]; then
    echo "the lock or pyproject.toml changed: updating the Python packages in .venv (about a minute)..." >&2
  else
    echo "installing Python packages into .venv (first run only, about 2 minutes; longer on a Raspberry Pi)..." >&2
  fi
  "$root/.venv/bin/python" -m pip install -q --require-hashes -r "$lock"
  # VitalGate itself, editable (code changes apply at once), built with the locked setuptools. Its build
  # output (setuptools' "Editable installation" notice, which newer pips show) only matters if it fails.
  if ! built=$("$root/.venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$root" 2>&1); then
    echo "$built" >&2
    exit 1
  fi
  if ! "$root/.venv/bin/python" -m pip check >/dev/null; then
    "$root/.venv/bin/python" -m pip check >&2 || true
    echo "the lock is out of date: run ./scripts/lock.sh (a locked version does not satisfy pyproject.toml)" >&2
    exit 1
  fi
  touch "$stamp"
  echo "Python packages installed." >&2
fi
