#!/usr/bin/env bash
# Usage: cpu-limit.sh PERCENT COMMAND [ARG ...]
# Runs COMMAND with the CPU limited to PERCENT % of one core (a Raspberry Pi 3 / Zero 2 W stand-in), as
# `./scripts/test.sh --slow` does. Uses systemd (`systemd-run --scope -p CPUQuota=`) where it is PID 1, else a
# cgroup of its own: cgroup v2 `cpu.max`, or cgroup v1 `cpu.cfs_quota_us` (containers, VMs without systemd).
# Needs root (or sudo) for the cgroup; the cgroup is removed afterwards.
set -euo pipefail
percent=${1:?usage: cpu-limit.sh PERCENT COMMAND [ARG ...]}
shift
period=100000
quota=$((percent * period / 100))
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
write() { echo "$2" | as_root tee "$1" >/dev/null; }

if [ -d /run/systemd/system ] && command -v systemd-run >/dev/null; then
  echo "cpu-limit: ${percent}% of one core via systemd-run --scope -p CPUQuota=${percent}%" >&2
  user=(); [ "$(id -u)" -eq 0 ] || user=(--user)
  exec systemd-run "${user[@]}" --quiet --scope -p "CPUQuota=${percent}%" -- "$@"
fi

if [ -f /sys/fs/cgroup/cgroup.controllers ]; then  # cgroup v2
  parent=/sys/fs/cgroup
  grep -qw cpu "$parent/cgroup.subtree_control" || write "$parent/cgroup.subtree_control" "+cpu"
  group="$parent/vitalgate-cpu-limit-$$"
  as_root mkdir "$group"
  write "$group/cpu.max" "$quota $period"
  how="cgroup v2 cpu.max \"$quota $period\""
elif [ -f /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then  # cgroup v1
  group="/sys/fs/cgroup/cpu/vitalgate-cpu-limit-$$"
  as_root mkdir "$group"
  write "$group/cpu.cfs_period_us" "$period"
  write "$group/cpu.cfs_quota_us" "$quota"
  how="cgroup v1 cpu.cfs_quota_us $quota per $period us"
else
  echo "cpu-limit: no systemd and no cgroup cpu controller here; cannot limit the CPU" >&2
  exit 2
fi
parent_procs="$(dirname "$group")/cgroup.procs"
cleanup() { as_root rmdir "$group" 2>/dev/null || true; }
trap cleanup EXIT
echo "cpu-limit: ${percent}% of one core via $how ($group)" >&2
status=0
# The child moves itself into the group, then becomes COMMAND; everything it starts inherits the limit.
bash -c 'echo $$ | '"$( [ "$(id -u)" -eq 0 ] || echo sudo )"' tee "$1/cgroup.procs" >/dev/null && shift && exec "$@"' \
  cpu-limit "$group" "$@" || status=$?
# Processes a test left behind would keep the group busy: move them out so it can be removed.
while read -r pid; do echo "$pid" | as_root tee "$parent_procs" >/dev/null 2>&1 || true; done < "$group/cgroup.procs"
exit "$status"
