#!/usr/bin/env bash
# The whole test suite: lint, strict typing, then pytest (real Mosquitto, real TLS, real ptys, Bumble BLE).
set -euo pipefail
# What a fresh machine sees: no PYTHONUNBUFFERED hiding a child process that does not flush its lines.
unset PYTHONUNBUFFERED
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ "${1:-}" = "--slow" ]; then
  # The suite at a quarter of one CPU core (a Raspberry Pi 3 / Zero 2 W stand-in): tests wait for
  # conditions, not for time, so they must pass here too, only slower.
  shift
  exec "$root/scripts/cpu-limit.sh" 25 "$root/scripts/test.sh" "$@"
fi
cd "$root"
# systemd: systemd-analyze, for the unit file tests (verify, security exposure); procps: /bin/kill, which the
# unit's ExecReload= names and `systemd-analyze verify` checks (every full Debian has it, a minimal root not);
# clevis + tang: the data key bound to a Tang server; faketime: the wrong-clock fault tests; chromium: the
# console's real-browser tests. Node.js runs the independent FHIR server engine of tests/fhir_server
# (Debian's only when none is installed).
node_pkgs=(); { command -v node && command -v npm; } >/dev/null || node_pkgs=(nodejs npm)
"$root/scripts/bootstrap.sh" test mosquitto mosquitto-clients systemd procps clevis tang faketime chromium \
  "${node_pkgs[@]}"
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest -q "$@"
