#!/usr/bin/env bash
# Usage: sudo scripts/check-fresh-debian.sh [arm64|amd64]   (maintainers; not part of CI)
# The README's two commands on a truly fresh machine: builds a minimal Debian 12 root for ARCH with
# debootstrap (only python3, ca-certificates, git, sudo, as a new user would have), copies in a clean
# `git archive` of HEAD, and runs `./scripts/demo.sh` then `./scripts/test.sh` in it as a normal user with
# sudo, with a clean environment (no PYTHONUNBUFFERED, no pip configuration of this machine).
# arm64 runs under qemu-user-static through binfmt (a Raspberry Pi OS 64-bit stand-in; about half an hour
# or more emulated); amd64 runs natively (minutes). Needs root (debootstrap, chroot, mounts).
# The log is in $WORK/check.log (WORK defaults to /var/tmp/vitalgate-check-ARCH).
set -euo pipefail
arch=${1:-arm64}
case "$arch" in arm64 | amd64) ;; *) echo "usage: $0 [arm64|amd64]" >&2; exit 2 ;; esac
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=${WORK:-/var/tmp/vitalgate-check-$arch}
mirror=${MIRROR:-http://deb.debian.org/debian}
[ "$(id -u)" -eq 0 ] || { echo "run as root (debootstrap, chroot and mounts need it)" >&2; exit 2; }

need=(debootstrap)
native=$(dpkg --print-architecture)
[ "$arch" != "$native" ] && need+=(qemu-user-static binfmt-support)
missing=()
for pkg in "${need[@]}"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}" >&2
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ "$arch" != "$native" ]; then
  [ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  update-binfmts --enable qemu-aarch64 2>/dev/null || true
  if ! grep -q enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
    echo "binfmt_misc has no enabled qemu-aarch64 entry: arm64 programs cannot run here" >&2
    exit 1
  fi
  entry=/proc/sys/fs/binfmt_misc/qemu-aarch64
  if ! grep -q '^flags: .*C' "$entry"; then
    # Without the C (credentials) flag setuid programs run without their privileges under qemu, so `sudo`
    # in the root fails ("effective uid is not 0"): register the same entry again with O and C added.
    interp=$(awk '/^interpreter/{print $2}' "$entry")
    magic=$(awk '/^magic/{print $2}' "$entry" | sed 's/../\\x&/g')
    mask=$(awk '/^mask/{print $2}' "$entry" | sed 's/../\\x&/g')
    flags=$(awk '/^flags/{print $2}' "$entry")
    echo -1 >"$entry"
    printf ':qemu-aarch64:M:0:%s:%s:%s:%sOC' "$magic" "$mask" "$interp" "$flags" >/proc/sys/fs/binfmt_misc/register
    echo "binfmt qemu-aarch64 registered again with flags $(awk '/^flags/{print $2}' "$entry") (setuid sudo)" >&2
  fi
fi

mkdir -p "$work"
log="$work/check.log"
exec > >(tee "$log") 2>&1
base="$work/base"
root="$work/root"
cleanup() {
  for m in dev/pts dev proc sys; do umount -l "$root/$m" 2>/dev/null || true; done
}
trap cleanup EXIT
cleanup

# A minimal Debian 12 (cached: the base root is built once, then copied fresh for every run).
if [ ! -f "$base/.complete" ]; then
  rm -rf "$base"
  echo "== debootstrap Debian 12 $arch (minbase + python3 ca-certificates git sudo)"
  if [ "$arch" = "$native" ]; then
    debootstrap --arch="$arch" --variant=minbase --include=python3,ca-certificates,git,sudo bookworm "$base" "$mirror"
  else
    debootstrap --arch="$arch" --variant=minbase --include=python3,ca-certificates,git,sudo --foreign bookworm \
      "$base" "$mirror"
    chroot "$base" /debootstrap/debootstrap --second-stage
  fi
  touch "$base/.complete"
fi
rm -rf "$root"
cp -a "$base" "$root"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# What an installed Debian has and debootstrap leaves out: a host name and /etc/hosts (localhost).
# (A chroot shares this machine's host name.)
hostname >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' "$(hostname)" >"$root/etc/hosts"
# This machine's own CAs (a TLS-inspecting proxy, a company CA), if any: without them nothing downloads.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null
fi
# Services installed by apt (mosquitto) must not start inside the chroot, on this machine's network.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"
mount -t proc proc "$root/proc"
mount -t sysfs sys "$root/sys"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"

# A new user with sudo, and the project as a clean checkout of HEAD would be.
chroot "$root" useradd -m -s /bin/bash tester
echo "tester ALL=(ALL) NOPASSWD:ALL" >"$root/etc/sudoers.d/tester"
mkdir "$root/home/tester/vitalgate"
git -C "$repo" archive HEAD | tar -x -C "$root/home/tester/vitalgate"
chroot "$root" chown -R tester:tester /home/tester/vitalgate
echo "== HEAD $(git -C "$repo" rev-parse --short HEAD); $(chroot "$root" python3 --version); $(chroot "$root" uname -m)"

in_root() {
  chroot "$root" /usr/bin/env -i HOME=/home/tester USER=tester LANG=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    /usr/bin/sudo -u tester -H --preserve-env=LANG bash -c "cd ~/vitalgate && $1"
}
status=0
start=$(date +%s)
echo "== ./scripts/demo.sh"
in_root "./scripts/demo.sh" || status=$?
echo "== demo: exit $status after $(($(date +%s) - start)) s"
start=$(date +%s)
echo "== ./scripts/test.sh"
tests=0
in_root "./scripts/test.sh -p no:cacheprovider" || tests=$?
echo "== tests: exit $tests after $(($(date +%s) - start)) s"
[ "$status" -eq 0 ] && status=$tests
echo "== $arch check: $([ "$status" -eq 0 ] && echo passed || echo FAILED) (log: $log)"
exit "$status"
