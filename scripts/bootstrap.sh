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
    echo "installing Debian packages: ${missing[*]}" >&2
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
stamp="$root/.venv/.installed-${extras:-base}"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  "$root/.venv/bin/python" -m pip install -q --upgrade pip >/dev/null
  spec="$root"
  [ -n "$extras" ] && spec="$root[$extras]"
  "$root/.venv/bin/python" -m pip install -q -e "$spec"
  touch "$stamp"
fi
