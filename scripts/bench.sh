#!/usr/bin/env bash
# Benchmarks (not part of the test suite): prints figures with the machine noted.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
"$root/scripts/bootstrap.sh" test mosquitto mosquitto-clients
for b in bench/bench_*.py; do
  echo "== $b"
  .venv/bin/python -m "bench.$(basename "$b" .py)"
done
