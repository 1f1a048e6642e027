#!/usr/bin/env bash
# One command for a newcomer: simulated devices through the whole pipeline into ./vitalgate-demo/.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/bootstrap.sh" ""
exec "$root/.venv/bin/vitalgate" demo "$@"
