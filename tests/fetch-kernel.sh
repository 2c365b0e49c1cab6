#!/bin/sh
# Fetches Debian's current amd64 kernel (the package linux-image-amd64 depends on) for the
# diskless-boot tests, WITHOUT installing it: `apt-get download` + `dpkg -x` into DIR/root, then
# `depmod -b`. Prints the kernel release. Cached: a second call does nothing.
#   tests/fetch-kernel.sh [DIR]   (default: target/test-kernel)
set -eu
dir=${1:-$(dirname "$0")/../target/test-kernel}
mkdir -p "$dir"
cd "$dir"
pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
[ -n "$pkg" ] || { echo "cannot find the linux-image-amd64 dependency (apt-get update?)" >&2; exit 1; }
kver=${pkg#linux-image-}
if [ ! -f "root/boot/vmlinuz-$kver" ]; then
  ls "${pkg}"_*.deb >/dev/null 2>&1 || apt-get download "$pkg" >/dev/null
  dpkg -x "${pkg}"_*.deb root
  depmod -b root "$kver"
fi
echo "$kver" > kernel-release
echo "$kver"
