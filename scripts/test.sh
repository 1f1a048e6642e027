#!/usr/bin/env bash
# The whole test suite: lint, strict typing, then pytest (real Mosquitto, real TLS, real ptys, Bumble BLE).
set -euo pipefail
# What a fresh machine sees: no PYTHONUNBUFFERED hiding a child process that does not flush its lines.
unset PYTHONUNBUFFERED
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
"$root/scripts/bootstrap.sh" test mosquitto mosquitto-clients
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest -q "$@"
