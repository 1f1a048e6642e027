#!/usr/bin/env bash
# Usage: scripts/check-sdist.sh [PYTEST_ARGS ...]   (maintainers)
# Builds the sdist, checks it carries what a user and a packager need, installs it into a fresh virtualenv
# from the lock (as the README's Pi install does), checks the installed package data against the tree, runs
# `vitalgate setup --dry-run` from the install, and runs tests from the unpacked sdist (a subset by default:
# pass test paths to choose others, e.g. `tests` for all of them).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/bootstrap.sh" test >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== building the sdist (setuptools from the lock, no download)"
(cd "$root" && .venv/bin/python -c "from setuptools import build_meta as b; print(b.build_sdist('$work/dist'))")
sdist=$(ls "$work"/dist/vitalgate-*.tar.gz)
tar -xzf "$sdist" -C "$work"
src=$(ls -d "$work"/vitalgate-*/)
for need in LICENSE README.md config/vitalgate.example.toml systemd/vitalgate.service systemd/vitalgate.sysusers \
  scripts/test.sh scripts/bootstrap.sh requirements/lock.txt requirements/runtime.txt tests/conftest.py; do
  [ -e "$src/$need" ] || { echo "the sdist lacks $need" >&2; exit 1; }
done
missing=$(cd "$root" && git ls-files tests | while read -r f; do [ -e "$src/$f" ] || echo "$f"; done)
[ -z "$missing" ] || { echo "the sdist lacks tests: $missing" >&2; exit 1; }
echo "sdist: $(basename "$sdist"), $(tar -tzf "$sdist" | wc -l) entries, all of tests/ and the service files"

echo "== installing it into a fresh virtualenv, dependencies from the lock"
python3 -m venv "$src/.venv"
"$src/.venv/bin/python" -m pip install -q --require-hashes -r "$src/requirements/lock.txt"
"$src/.venv/bin/python" -m pip install -q --no-deps --no-build-isolation "$sdist" 2>&1 | grep -v "^WARNING: Location" || true
site=$(cd "$work" && "$src/.venv/bin/python" -c "import gateway, pathlib; print(pathlib.Path(gateway.__file__).parent)")
case "$site" in "$src"*/site-packages/*) ;; *) echo "gateway imported from $site, not the install" >&2; exit 1 ;; esac
for pair in config/vitalgate.example.toml:vitalgate.example.toml systemd/vitalgate.service:vitalgate.service \
  systemd/vitalgate.sysusers:vitalgate.sysusers; do
  cmp "$root/${pair%%:*}" "$site/data/${pair##*:}"
done
echo "installed package data = the tree's config/ and systemd/ files"
(cd "$work" && "$src/.venv/bin/vitalgate" setup --root "$work/setup-root" --dry-run | tail -1)

echo "== tests from the unpacked sdist"
[ $# -gt 0 ] || set -- tests/test_setup.py tests/test_lock.py tests/test_childio.py tests/test_config.py \
  tests/serial tests/test_daemon.py
(cd "$src" && env -u PYTHONUNBUFFERED .venv/bin/python -m pytest -q -p no:cacheprovider "$@")
