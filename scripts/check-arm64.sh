#!/usr/bin/env bash
# Maintainers: the README's two commands in a fresh Debian 12 arm64 root under qemu (see check-fresh-debian.sh).
exec "$(dirname "${BASH_SOURCE[0]}")/check-fresh-debian.sh" arm64 "$@"
