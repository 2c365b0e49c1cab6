#!/usr/bin/env bash
# Diskless boot figures: `nhn initrd build` time and size, then a boot storm — N QEMU guests
# (TCG; KVM is not usable on this machine kind) PXE booting at once through nhn (DHCP, HTTP,
# initrd) onto N iSCSI volumes exported by nhn's tgt driver. Reports, per guest, the seconds
# from QEMU start to the root filesystem's marker, and the storm's total.
#
#   sudo bench/boot.sh            # N=10 guests
#   N=3 sudo bench/boot.sh
# Needs root, target/release/nhn, tests/fetch-kernel.sh's kernel, and the test packages.
set -euo pipefail
cd "$(dirname "$0")/.."
NHN=${NHN:-$PWD/target/release/nhn}
N=${N:-10}
KDIR=${KDIR:-$PWD/target/test-kernel}
KVER=$(cat "$KDIR/kernel-release" 2>/dev/null) || { echo "run tests/fetch-kernel.sh first" >&2; exit 2; }
[ -x "$NHN" ] || { echo "no $NHN: cargo build --release first" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 2; }
NS=nhnbb$$; CTL=$((3000 + $$ % 5000)); D=$(mktemp -d /tmp/nhn-bench-boot.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  ip netns exec $NS tgtadm -C $CTL --op delete --mode system >/dev/null 2>&1 || true
  sleep 1
  for p in $(ip netns pids $NS 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
  ip netns del $NS 2>/dev/null || true
  rm -rf "$D"
}
trap cleanup EXIT INT TERM

echo "== initrd build (release binary, kernel $KVER, default modules, gzip) =="
for i in 1 2 3; do
  t0=$(date +%s.%N)
  "$NHN" --data-dir "$D/data" initrd build --kernel-version "$KVER" --modules-dir "$KDIR/root/lib/modules" --out "$D/initrd-$i.img" > /dev/null
  t1=$(date +%s.%N)
  python3 -c "print(f'  build {$i}: {$t1 - $t0:.2f} s, {$(stat -c %s "$D/initrd-$i.img") / 1e6:.2f} MB')"
done
cmp -s "$D/initrd-1.img" "$D/initrd-3.img" && echo "  identical bytes: yes" || echo "  identical bytes: NO"
t0=$(date +%s.%N)
"$NHN" --data-dir "$D/data" initrd build --kernel-version "$KVER" --modules-dir "$KDIR/root/lib/modules" --compress zstd --out "$D/initrd.zst" > /dev/null
t1=$(date +%s.%N)
python3 -c "print(f'  zstd: {$t1 - $t0:.2f} s, {$(stat -c %s "$D/initrd.zst") / 1e6:.2f} MB')"

echo "== boot storm: $N guests at once =="
mkdir -p "$D/boot" "$D/lun/bin" "$D/lun/sbin" "$D/lun/proc" "$D/lun/dev" "$D/lun/sys"
cp "$KDIR/root/boot/vmlinuz-$KVER" "$D/boot/vmlinuz"; cp "$D/initrd-1.img" "$D/boot/initrd.img"
cp /bin/busybox "$D/lun/bin/"; for a in sh mount grep poweroff; do ln -s busybox "$D/lun/bin/$a"; done
printf '#!/bin/sh\nmount -t proc proc /proc\necho "ROOTFS-MARKER $(grep " / " /proc/mounts)"\npoweroff -f\n' > "$D/lun/sbin/init"
chmod +x "$D/lun/sbin/init"
mke2fs -q -F -t ext4 -d "$D/lun" "$D/lun.img" 64M
{
  printf '[site]\nname = "storm"\n[[iscsi_portals]]\nname = "p"\naddress = "10.98.0.1"\niqn_prefix = "iqn.2026-11.bench.nhn"\n'
  printf '[[networks]]\nname = "prov"\nrole = "provisioning"\nvlan = 30\nsubnet = "10.98.0.0/24"\n'
  for i in $(seq $N); do
    printf '[[machines]]\nname = "node-%d"\nkind = "bare-metal"\n[[machines.nics]]\ndevice = "eth0"\nmac = "52:54:00:98:00:%02x"\nnetwork = "prov"\nip = "10.98.0.%d"\n' $i $i $((10 + i))
  done
} > "$D/site.toml"
"$NHN" --data-dir "$D/data" inventory import "$D/site.toml" > /dev/null
mkdir -p "$D/data/volumes"
for i in $(seq $N); do
  "$NHN" --data-dir "$D/data" volume create --machine node-$i --size-gb 1 > /dev/null
  cp "$D/lun.img" "$D/data/volumes/vol-node-$i.img"
done
ip netns add $NS; ip -n $NS link set lo up
ip -n $NS link add br0 type bridge; ip -n $NS addr add 10.98.0.1/24 dev br0; ip -n $NS link set br0 up
for i in $(seq $N); do ip netns exec $NS ip tuntap add dev tap$i mode tap; ip -n $NS link set tap$i master br0 up; done
ip netns exec $NS tgtd -f --iscsi portal=10.98.0.1:3260 --control-port $CTL > "$D/tgtd.log" 2>&1 & PIDS+=($!)
sleep 1
printf '[http]\nlisten = "10.98.0.1:8080"\n[log]\nlevel = "warn"\n[dhcp]\ninterfaces = ["br0"]\n[[dhcp.subnets]]\nsubnet = "10.98.0.0/24"\n[boot]\ndir = "%s"\n[storage]\ndriver = "tgt"\ntgt_control_port = %d\n' "$D/boot" $CTL > "$D/nhn.toml"
ip netns exec $NS "$NHN" --config "$D/nhn.toml" --data-dir "$D/data" serve > "$D/nhn.log" 2>&1 & PIDS+=($!)
for _ in $(seq 100); do [ "$(ip netns exec $NS tgtadm -C $CTL --lld iscsi --op show --mode target | grep -c '^Target')" = "$N" ] && break; sleep 0.1; done
T0=$(date +%s.%N)
for i in $(seq $N); do
  ip netns exec $NS qemu-system-x86_64 -accel tcg -cpu max -m 256 -nographic -vga none -monitor none -no-reboot -boot n \
    -serial file:"$D/serial-$i.log" -netdev tap,id=n0,ifname=tap$i,script=no,downscript=no \
    -device virtio-net-pci,netdev=n0,mac=52:54:00:98:00:$(printf %02x $i) > /dev/null 2>&1 & PIDS+=($!)
done
declare -A DONE=([0]=start)
while [ ${#DONE[@]} -le $N ]; do
  now=$(date +%s.%N)
  for i in $(seq $N); do
    [ -n "${DONE[$i]:-}" ] && continue
    if grep -q "ROOTFS-MARKER" "$D/serial-$i.log" 2>/dev/null; then DONE[$i]=$(python3 -c "print(f'{$now - $T0:.1f}')")
    elif grep -qE "STEP FAILED|Kernel panic" "$D/serial-$i.log" 2>/dev/null; then DONE[$i]=FAILED; fi
  done
  python3 -c "import sys; sys.exit(0 if $now - $T0 < 900 else 1)" || break
  sleep 0.5
done
ok=0
for i in $(seq $N); do
  echo "  node-$i: ${DONE[$i]:-TIMEOUT}"
  [[ "${DONE[$i]:-}" =~ ^[0-9] ]] && ok=$((ok + 1))
done
python3 -c "print(f'  {$ok}/$N reached the root filesystem; storm total {$(date +%s.%N) - $T0:.1f} s')"
