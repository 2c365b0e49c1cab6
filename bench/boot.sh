#!/usr/bin/env bash
# Diskless boot figures, nhn against dnsmasq in the same run: `nhn initrd build` time and size,
# then one QEMU guest (TCG; KVM is not usable on this machine kind) PXE booting onto its iSCSI
# volume through dnsmasq (DHCP + TFTP + RA, the same kernel, a minimal busybox/iscsistart
# initrd), then through nhn (DHCP + RA, HTTP, nhn's initrd); then a storm of N guests at once
# through both. Prints, per guest, the seconds from QEMU start to each step (iPXE script start,
# kernel start, DHCP done in the initrd, iSCSI login done, root filesystem's marker), the
# totals and the ratio nhn/dnsmasq. Both serve the same guests from the same tgtd setup.
#
#   sudo bench/boot.sh            # one guest each, then a storm of N=10 each
#   N=1 sudo bench/boot.sh        # one guest each, no storm
# Needs root, target/release/nhn, tests/fetch-kernel.sh's kernel, the test packages and
# dnsmasq (apt-get install dnsmasq-base).
set -euo pipefail
cd "$(dirname "$0")/.."
NHN=${NHN:-$PWD/target/release/nhn}
N=${N:-10}
KDIR=${KDIR:-$PWD/target/test-kernel}
KVER=$(cat "$KDIR/kernel-release" 2>/dev/null) || { echo "run tests/fetch-kernel.sh first" >&2; exit 2; }
[ -x "$NHN" ] || { echo "no $NHN: cargo build --release first" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 2; }
for tool in dnsmasq tgtd tgtadm qemu-system-x86_64 iscsistart mke2fs cpio; do
  command -v $tool >/dev/null || { echo "missing $tool: apt-get install dnsmasq-base tgt open-iscsi qemu-system-x86 ipxe-qemu e2fsprogs cpio" >&2; exit 2; }
done
NS=nhnbb$$; CTL=$((3000 + $$ % 5000)); D=$(mktemp -d /tmp/nhn-bench-boot.XXXXXX)
PIDS=()
net_down() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  PIDS=()
  ip netns exec $NS tgtadm -C $CTL --op delete --mode system >/dev/null 2>&1 || true
  sleep 1
  for p in $(ip netns pids $NS 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true   # reap them quietly
  ip netns del $NS 2>/dev/null || true
}
cleanup() { net_down; rm -rf "$D"; }
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

# The guests' root filesystem: busybox whose init prints the marker and powers off.
mkdir -p "$D/boot" "$D/lun/bin" "$D/lun/sbin" "$D/lun/proc" "$D/lun/dev" "$D/lun/sys"
cp "$KDIR/root/boot/vmlinuz-$KVER" "$D/boot/vmlinuz"; cp "$D/initrd-1.img" "$D/boot/initrd.img"
cp /bin/busybox "$D/lun/bin/"; for a in sh mount grep poweroff; do ln -s busybox "$D/lun/bin/$a"; done
printf '#!/bin/sh\nmount -t proc proc /proc\necho "ROOTFS-MARKER $(grep " / " /proc/mounts)"\npoweroff -f\n' > "$D/lun/sbin/init"
chmod +x "$D/lun/sbin/init"
mke2fs -q -F -t ext4 -d "$D/lun" "$D/lun.img" 64M

# dnsmasq's side: the kernel and a minimal initrd over TFTP (busybox, iscsistart and its
# libraries, the modules for virtio-net, iSCSI and ext4); its init DHCPs with udhcpc (root-path
# from option 17), logs in with iscsistart, mounts and switch_roots, printing each step.
W="$D/minird"; mkdir -p "$W"/{bin,dev,proc,sys,run,tmp,etc,newroot,lib/modules} "$D/tftp"
cp /bin/busybox "$W/bin/"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$W/bin/$a"; done
for m in virtio_pci virtio_net iscsi_tcp sd_mod ext4 crc32c_generic; do
  modprobe -d "$KDIR/root" -S "$KVER" --show-depends $m | awk '$1 == "insmod" {print $2}'
done | awk '!seen[$0]++' | while read -r ko; do cp "$ko" "$W/lib/modules/"; basename "$ko" >> "$W/etc/modules.order"; done
mkdir -p "$W/usr/sbin"; cp /usr/sbin/iscsistart "$W/usr/sbin/"
for lib in $(ldd /usr/sbin/iscsistart | grep -oE '/[^ ]+'); do mkdir -p "$W$(dirname "$lib")"; cp -L "$lib" "$W$lib"; done
cat > "$W/udhcpc.sh" <<'EOF'
#!/bin/sh
[ "$1" = bound ] || exit 0
ip addr add "$ip/${mask:-24}" dev "$interface"
echo "rootpath=$rootpath" > /tmp/dhcp.env
EOF
cat > "$W/init" <<'EOF'
#!/bin/sh
export PATH=/bin:/usr/sbin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /etc/modules.order); do insmod /lib/modules/$m 2>/dev/null; done
ip link set lo up; ip link set eth0 up
udhcpc -i eth0 -q -n -t 10 -T 1 -O rootpath -s /udhcpc.sh || { echo "DHCP FAILED"; exec sh; }
. /tmp/dhcp.env
echo "MIN-DHCP-OK $rootpath"
rp=${rootpath#iscsi:}; server=${rp%%:*}; rp=${rp#*:}; rp=${rp#*:}; port=${rp%%:*}; rp=${rp#*:}; target=${rp#*:}
initiator=$(sed -n 's/.*initiator=\([^ ]*\).*/\1/p' /proc/cmdline)
iscsistart -i "$initiator" -t "$target" -g 1 -a "$server" -p "${port:-3260}" || { echo "ISCSI FAILED"; exec sh; }
i=0; while [ ! -b /dev/sda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
echo "MIN-ISCSI-OK"
mount -t ext4 /dev/sda /newroot || { echo "MOUNT FAILED"; exec sh; }
umount /proc /sys; mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init
EOF
chmod +x "$W/init" "$W/udhcpc.sh"
(cd "$W" && find . | cpio -o -H newc --quiet | gzip -1) > "$D/tftp/initrd.gz"
cp "$D/boot/vmlinuz" "$D/tftp/vmlinuz"
cat > "$D/tftp/boot.ipxe" <<'EOF'
#!ipxe
echo MIN-SCRIPT-START
kernel tftp://${next-server}/vmlinuz initrd=initrd.gz console=ttyS0 initiator=iqn.2026-11.bench.dnsmasq:guest
initrd tftp://${next-server}/initrd.gz
boot
EOF
python3 -c "print(f'  dnsmasq side: minimal initrd {$(stat -c %s "$D/tftp/initrd.gz") / 1e6:.2f} MB')"

# nhn's side: one machine and one volume per guest.
MAX=$(( N > 1 ? N : 1 ))
{
  printf '[site]\nname = "storm"\n[[iscsi_portals]]\nname = "p"\naddress = "10.98.0.1"\niqn_prefix = "iqn.2026-11.bench.nhn"\n'
  printf '[[networks]]\nname = "prov"\nrole = "provisioning"\nvlan = 30\nsubnet = "10.98.0.0/24"\n'
  for i in $(seq $MAX); do
    printf '[[machines]]\nname = "node-%d"\nkind = "bare-metal"\n[[machines.nics]]\ndevice = "eth0"\nmac = "52:54:00:98:00:%02x"\nnetwork = "prov"\nip = "10.98.0.%d"\n' $i $i $((10 + i))
  done
} > "$D/site.toml"
"$NHN" --data-dir "$D/data" inventory import "$D/site.toml" > /dev/null
mkdir -p "$D/data/volumes"
for i in $(seq $MAX); do "$NHN" --data-dir "$D/data" volume create --machine node-$i --size-gb 1 > /dev/null; done

# A namespace with br0 (10.98.0.1/24), a tap per guest and tgtd.
net_up() {
  ip netns add $NS; ip -n $NS link set lo up
  ip -n $NS link add br0 type bridge; ip -n $NS addr add 10.98.0.1/24 dev br0; ip -n $NS link set br0 up
  for i in $(seq "$1"); do ip netns exec $NS ip tuntap add dev tap$i mode tap; ip -n $NS link set tap$i master br0 up; done
  ip netns exec $NS tgtd -f --iscsi portal=10.98.0.1:3260 --control-port $CTL > "$D/tgtd.log" 2>&1 & PIDS+=($!)
  sleep 1
}

# Starts guests 1..$1 ($2 names the run), waits for each one's marker, prints a line per guest
# with the seconds from QEMU start to each step, and the time until the last one finished.
# The rest of the arguments are the step markers (label=text).
guests() {
  local n=$1 run=$2; shift 2
  rm -f "$D"/serial-*.log
  local t0; t0=$(date +%s.%N)
  for i in $(seq "$n"); do
    ip netns exec $NS qemu-system-x86_64 -accel tcg -cpu max -m 256 -nographic -vga none -monitor none -no-reboot -boot n \
      -serial file:"$D/serial-$i.log" -netdev tap,id=n0,ifname=tap$i,script=no,downscript=no \
      -device virtio-net-pci,netdev=n0,mac=52:54:00:98:00:$(printf %02x $i) > /dev/null 2>&1 & PIDS+=($!)
  done
  python3 - "$D" "$n" "$t0" "$run" "$@" <<'PY'
import sys, time
d, n, t0, run, marks = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5:]
marks = [m.split("=", 1) for m in marks] + [["root", "ROOTFS-MARKER"]]
seen = {i: {} for i in range(1, n + 1)}
failed = set()
while time.time() - t0 < 900:
    now = time.time() - t0
    for i in seen:
        if "root" in seen[i] or i in failed:
            continue
        try:
            log = open(f"{d}/serial-{i}.log", "rb").read().decode("latin1")
        except OSError:
            continue
        for label, text in marks:
            if label not in seen[i] and text in log:
                seen[i][label] = now
        if "FAILED" in log or "Kernel panic" in log:
            failed.add(i)
    if all("root" in s or i in failed for i, s in seen.items()):
        break
    time.sleep(0.2)
total = time.time() - t0
done = [s["root"] for s in seen.values() if "root" in s]
for i, s in seen.items():
    steps = "  ".join(f"{l} {s[l]:5.1f}" if l in s else f"{l}     -" for l, _ in marks)
    print(f"  {run} node-{i}: {steps}" + ("  FAILED" if i in failed else ""))
last = max(done) if len(done) == n else float("nan")
print(f"  {run}: {len(done)}/{n} reached the root filesystem; last after {last:.1f} s")
open(f"{d}/result-{run}", "w").write(f"{last}\n")
PY
}

# $1 guests through dnsmasq: DHCP (root-path for the initrd, boot.ipxe for iPXE), TFTP, RA.
run_dnsmasq() {
  local n=$1 run=$2
  net_up "$n"
  ip -n $NS addr add fd00:98::1/64 dev br0   # dnsmasq's ra-only range needs an address in it
  local hosts=()
  for i in $(seq "$n"); do
    cp "$D/lun.img" "$D/dnsmasq-lun-$i.img"
    local iqn=iqn.2026-11.bench.dnsmasq:node-$i
    ip netns exec $NS tgtadm -C $CTL --lld iscsi --op new --mode target --tid $i -T $iqn
    ip netns exec $NS tgtadm -C $CTL --lld iscsi --op new --mode logicalunit --tid $i --lun 1 -b "$D/dnsmasq-lun-$i.img"
    ip netns exec $NS tgtadm -C $CTL --lld iscsi --op bind --mode target --tid $i -I ALL
    hosts+=("--dhcp-host=52:54:00:98:00:$(printf %02x $i),10.98.0.$((10 + i)),set:n$i"
            "--dhcp-option=tag:n$i,tag:!ipxe,17,iscsi:10.98.0.1::3260:1:$iqn")
  done
  ip netns exec $NS dnsmasq --no-daemon --conf-file=/dev/null --port=0 --interface=br0 --bind-interfaces --no-ping \
    --dhcp-range=10.98.0.100,10.98.0.200,255.255.255.0,1h --enable-ra --dhcp-range=fd00:98::,ra-only \
    --dhcp-userclass=set:ipxe,iPXE --dhcp-boot=tag:ipxe,boot.ipxe "${hosts[@]}" \
    --enable-tftp --tftp-root="$D/tftp" --dhcp-leasefile="$D/dnsmasq.leases" --log-facility="$D/dnsmasq.log" \
    > /dev/null 2>&1 & PIDS+=($!)
  sleep 1
  guests "$n" "$run" script=MIN-SCRIPT-START "kernel=Linux version" dhcp=MIN-DHCP-OK iscsi=MIN-ISCSI-OK
  net_down
}

# $1 guests through nhn: DHCP + RA, HTTP, nhn's initrd, targets from nhn's tgt driver.
run_nhn() {
  local n=$1 run=$2
  for i in $(seq "$n"); do cp "$D/lun.img" "$D/data/volumes/vol-node-$i.img"; done
  net_up "$n"
  printf '[http]\nlisten = "10.98.0.1:8080"\n[log]\nlevel = "warn"\n[dhcp]\ninterfaces = ["br0"]\n[[dhcp.subnets]]\nsubnet = "10.98.0.0/24"\n[boot]\ndir = "%s"\n[storage]\ndriver = "tgt"\ntgt_control_port = %d\n' "$D/boot" $CTL > "$D/nhn.toml"
  ip netns exec $NS "$NHN" --config "$D/nhn.toml" --data-dir "$D/data" serve > "$D/nhn.log" 2>&1 & PIDS+=($!)
  for _ in $(seq 100); do [ "$(ip netns exec $NS tgtadm -C $CTL --lld iscsi --op show --mode target | grep -c '^Target')" = "$MAX" ] && break; sleep 0.1; done
  guests "$n" "$run" "script=nhn: booting" "kernel=Linux version" "dhcp=step: find the iSCSI root" "iscsi=step: find the root disk"
  net_down
}

ratio() {
  python3 -c "d, n = float(open('$D/result-$1').read()), float(open('$D/result-$2').read()); print(f'  nhn {n:.1f} s, dnsmasq {d:.1f} s: nhn/dnsmasq = {n / d:.2f}')"
}

echo "== one guest: dnsmasq (DHCP + TFTP + RA, minimal initrd), then nhn =="
run_dnsmasq 1 dnsmasq
run_nhn 1 nhn
ratio dnsmasq nhn
if [ "$N" -gt 1 ]; then
  echo "== storm: $N guests at once, dnsmasq then nhn =="
  run_dnsmasq "$N" dnsmasq-storm
  run_nhn "$N" nhn-storm
  ratio dnsmasq-storm nhn-storm
fi
