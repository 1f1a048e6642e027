#!/usr/bin/env bash
# The whole test suite: lint, strict typing, then pytest (real Mosquitto, real TLS, real ptys, Bumble BLE).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
"$root/scripts/bootstrap.sh" test mosquitto mosquitto-clients chromium
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest -q "$@"
