#!/usr/bin/env bash
# Usage: lock.sh [--upgrade]
# Regenerates the pinned, hashed dependency locks from pyproject.toml (and requirements/build.in):
#   requirements/lock.txt     runtime + every extra (test ...) + build (what ./scripts/test.sh and demo.sh install)
#   requirements/runtime.txt  runtime + build only, the same versions (what the README's Pi install uses)
# Universal: one file for every platform, with the hashes of every wheel of each pinned version (x86_64,
# aarch64, ...). Without --upgrade, versions already pinned stay (only new or changed requirements move);
# --upgrade moves everything to the newest allowed versions: run it on a schedule (e.g. monthly), then
# ./scripts/test.sh, and commit the locks if it passes.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
upgrade=()
case "${1:-}" in
  --upgrade) upgrade=(--upgrade) ;;
  "") ;;
  *) echo "usage: $0 [--upgrade]" >&2; exit 2 ;;
esac

# The lock tool itself, pinned, in a cache venv of its own (not the project's .venv).
UV_VERSION=0.13.9
tools="${XDG_CACHE_HOME:-$HOME/.cache}/vitalgate/uv-$UV_VERSION"
if [ ! -x "$tools/bin/uv" ]; then
  echo "installing uv $UV_VERSION (the lock tool) into $tools" >&2
  python3 -m venv "$tools"
  "$tools/bin/python" -m pip install -q "uv==$UV_VERSION"
fi
compile() {
  # From PyPI itself (not a local mirror), so the hashes are those every machine downloads.
  "$tools/bin/uv" pip compile --quiet --universal --generate-hashes --python-version 3.11 \
    --index-url https://pypi.org/simple --no-config \
    --custom-compile-command "./scripts/lock.sh" "${upgrade[@]}" "$@"
}
compile pyproject.toml requirements/build.in --all-extras -o requirements/lock.txt
# Runtime only, constrained to the full lock's versions: the Pi runs what the tests ran.
compile pyproject.toml requirements/build.in -c requirements/lock.txt -o requirements/runtime.txt
echo "requirements/lock.txt: $(grep -c '^[a-z0-9]' requirements/lock.txt) packages;" \
  "requirements/runtime.txt: $(grep -c '^[a-z0-9]' requirements/runtime.txt) packages" >&2
