#!/usr/bin/env bash
# TFTP throughput: nhn against tftpd-hpa and dnsmasq, same namespaces, same files, one run.
#
#   sudo bench/tftp.sh            # SIZE_MB=100 file; STORM=200 concurrent fetches of a 30 MB initrd
#   sudo SINGLE=0 STORM=100 ORDER="tftpd-hpa nhn" bench/tftp.sh   # the storm only, peer first
#
# Transfers (MB = 10^6 bytes, every copy checked with sha256):
#   tftp-hpa client, default block size (512, lock-step)      — every server
#   curl --tftp-blksize 1468                                   — every server
#   atftp --option "windowsize 16|64" + blksize 1468 (RFC 7440) — nhn (the others do not speak it)
# then STORM clients at once (curl, blksize 1468) against nhn and tftpd-hpa: all must finish
# intact; total wall time reported. Prints MB/s and the ratios. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
NHN=${NHN:-target/release/nhn}
SIZE_MB=${SIZE_MB:-100}
STORM=${STORM:-200}
SINGLE=${SINGLE:-1}           # 0: skip the single transfers, run the storm only
ORDER=${ORDER:-nhn tftpd-hpa} # storm order; alternate it between runs on a shared machine
NSP=nhnbt$$; S=$NSP-s; C=$NSP-c; SRV=10.79.0.1
D=$(mktemp -d /tmp/nhn-bench-tftp.XXXXXX)
SPID=""
for tool in in.tftpd dnsmasq tftp atftp curl; do
  command -v $tool >/dev/null || { echo "missing $tool: apt-get install tftpd-hpa dnsmasq tftp-hpa atftp curl" >&2; exit 2; }
done
[ -x "$NHN" ] || { echo "no $NHN: cargo build --release first" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 2; }

CG=/sys/fs/cgroup/cpuacct/$NSP
cgexec_clients() { sh -c 'echo $$ > "$0/clients/cgroup.procs" && exec "$@"' "$CG" "$@"; }
uncgroup() { for g in server clients; do [ -d "$CG/$g" ] && rmdir "$CG/$g" 2>/dev/null; done; rmdir "$CG" 2>/dev/null || true; }
stop_server() { if [ -n "$SPID" ]; then kill -TERM -- "-$SPID" 2>/dev/null || true; wait "$SPID" 2>/dev/null || true; SPID=""; fi; }
cleanup() { stop_server; uncgroup; ip netns del $S 2>/dev/null || true; ip netns del $C 2>/dev/null || true; rm -rf "$D"; }
trap cleanup EXIT INT TERM

ip netns add $S; ip netns add $C
ip -n $S link set lo up; ip -n $C link set lo up
ip -n $S link add eth0 type veth peer name eth0 netns $C
ip -n $S addr add $SRV/24 dev eth0; ip -n $C addr add 10.79.0.2/24 dev eth0
ip -n $S link set eth0 up; ip -n $C link set eth0 up

mkdir -p "$D/root" "$D/out"
head -c $((SIZE_MB * 1000000)) /dev/urandom > "$D/root/big.bin"
head -c 30000000 /dev/urandom > "$D/root/initrd.img"
BIG_SUM=$(sha256sum < "$D/root/big.bin"); INITRD_SUM=$(sha256sum < "$D/root/initrd.img")

start_nhn() {
  printf '[http]\nlisten = "127.0.0.1:18082"\n[log]\nlevel = "warn"\n[tftp]\nlisten = ["%s:69"]\n[boot]\ndir = "%s"\n' \
    "$SRV" "$D/root" > "$D/nhn.toml"
  ip netns exec $S setsid "$NHN" --config "$D/nhn.toml" --data-dir "$D/nhn-data" serve > "$D/nhn.log" 2>&1 & SPID=$!
}
start_tftpd-hpa() { ip netns exec $S setsid in.tftpd -L -a $SRV:69 -s "$D/root" > /dev/null 2>&1 & SPID=$!; }
start_dnsmasq() {
  ip netns exec $S setsid dnsmasq --no-daemon --conf-file=/dev/null --port=0 --interface=eth0 --bind-interfaces \
    --enable-tftp --tftp-root="$D/root" --log-facility=/dev/null > /dev/null 2>&1 & SPID=$!
}
start() {
  "start_$1"; local i=0
  until ip netns exec $S ss -Hlun | grep -q ':69 '; do i=$((i+1)); [ $i -lt 100 ] || { echo "$1 did not bind :69" >&2; exit 1; }; sleep 0.1; done
}

# timed LABEL SUM CMD... -> prints MB/s (checks the copy in $D/out/f)
timed() {
  local label=$1 sum=$2; shift 2
  rm -f "$D/out/f"
  local t0 t1; t0=$(date +%s.%N)
  ip netns exec $C "$@" > "$D/client.log" 2>&1 || { echo "$label: client failed: $(tail -2 "$D/client.log")" >&2; echo 0; return; }
  t1=$(date +%s.%N)
  [ "$(sha256sum < "$D/out/f")" = "$sum" ] || { echo "$label: CORRUPT copy" >&2; echo 0; return; }
  python3 -c "print(f'{$SIZE_MB / ($t1 - $t0):.1f}')"
}

declare -A R
for srv in nhn tftpd-hpa dnsmasq; do
  [ "$SINGLE" = 0 ] && break
  start $srv
  R[$srv,hpa512]=$(timed "$srv hpa" "$BIG_SUM" tftp -m binary $SRV -c get big.bin "$D/out/f")
  R[$srv,curl1468]=$(timed "$srv curl" "$BIG_SUM" curl -sS --tftp-blksize 1468 -o "$D/out/f" tftp://$SRV/big.bin)
  if [ $srv = nhn ]; then
    R[$srv,win16]=$(timed "$srv atftp w16" "$BIG_SUM" atftp --option "windowsize 16" --option "blksize 1468" -g -r big.bin -l "$D/out/f" $SRV)
    R[$srv,win64]=$(timed "$srv atftp w64" "$BIG_SUM" atftp --option "windowsize 64" --option "blksize 1468" -g -r big.bin -l "$D/out/f" $SRV)
  fi
  printf '%-10s tftp-hpa 512: %7s MB/s   curl 1468: %7s MB/s' "$srv" "${R[$srv,hpa512]}" "${R[$srv,curl1468]}"
  [ $srv = nhn ] && printf '   atftp 1468 w16: %7s MB/s   w64: %7s MB/s' "${R[$srv,win16]}" "${R[$srv,win64]}"
  echo
  stop_server
done

storm() {
  local srv=$1 pids=() bad=0
  start $srv
  # CPU accounting: the server (its threads and forked children) and the clients, each in a
  # cpuacct cgroup of their own; the machine is shared, so CPU-seconds are steadier than wall time.
  mkdir -p "$CG/server" "$CG/clients"
  echo 0 > "$CG/server/cpuacct.usage"; echo 0 > "$CG/clients/cpuacct.usage"
  echo "$SPID" > "$CG/server/cgroup.procs"
  local t0 t1; t0=$(date +%s.%N)
  for i in $(seq "$STORM"); do
    cgexec_clients ip netns exec $C curl -sS --tftp-blksize 1468 -o "$D/out/s$i" tftp://$SRV/initrd.img 2>>"$D/storm.log" & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || bad=$((bad+1)); done
  t1=$(date +%s.%N)
  local scpu ccpu; scpu=$(cat "$CG/server/cpuacct.usage"); ccpu=$(cat "$CG/clients/cpuacct.usage")
  stop_server
  for i in $(seq "$STORM"); do [ "$(sha256sum < "$D/out/s$i")" = "$INITRD_SUM" ] || bad=$((bad+1)); rm -f "$D/out/s$i"; done
  python3 -c "print(f'$srv: $STORM x 30 MB at once: {$t1 - $t0:.1f} s, CPU server {$scpu / 1e9:.1f} s clients {$ccpu / 1e9:.1f} s, $bad failed or corrupt')"
}
echo
for srv in $ORDER; do storm "$srv"; done
[ "$SINGLE" = 0 ] && exit 0

python3 - "${R[nhn,hpa512]}" "${R[tftpd-hpa,hpa512]}" "${R[dnsmasq,hpa512]}" "${R[nhn,curl1468]}" "${R[tftpd-hpa,curl1468]}" "${R[dnsmasq,curl1468]}" "${R[nhn,win16]}" "${R[nhn,win64]}" <<'PY'
import sys
n5, h5, d5, n14, h14, d14, w16, w64 = (float(x) for x in sys.argv[1:])
r = lambda a, b: f"{a / b:.2f}" if b else "n/a"
print()
print(f"ratios: 512 lock-step nhn/tftpd-hpa = {r(n5, h5)}, nhn/dnsmasq = {r(n5, d5)}")
print(f"        1468 lock-step nhn/tftpd-hpa = {r(n14, h14)}, nhn/dnsmasq = {r(n14, d14)}")
print(f"        nhn windowsize 16 / tftpd-hpa 1468 = {r(w16, h14)}, windowsize 64 / tftpd-hpa 1468 = {r(w64, h14)}")
PY
