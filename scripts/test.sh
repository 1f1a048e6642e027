#!/usr/bin/env bash
# The whole test suite: lint, strict typing, then pytest (real Mosquitto, real TLS, real ptys, Bumble BLE).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# Node.js runs the independent FHIR server engine of tests/fhir_server; Debian's only when none is installed.
node_pkgs=(); { command -v node && command -v npm; } >/dev/null || node_pkgs=(nodejs npm)
"$root/scripts/bootstrap.sh" test mosquitto mosquitto-clients "${node_pkgs[@]}"
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest -q "$@"
