#!/usr/bin/env bash
# DHCPv4 throughput: perfdhcp (ISC's load generator, package kea-admin) against nhn, Kea
# (kea-dhcp4, memfile lease database) and dnsmasq, in one run, on the same namespaces.
#
#   sudo bench/dhcp.sh                # ladder of offered rates per server, 10 s each
#   PERIOD=5 NHN=target/release/nhn sudo bench/dhcp.sh
#
# Method (ISC's): perfdhcp acts as a relay (-l → giaddr), unicasting DISCOVER/REQUEST to :67
# from 10,000 client MACs; a run passes when both DISCOVER-OFFER and REQUEST-ACK drops are
# <= 2.5 %. Each server's score is the best passing rate's ACKs per second. Every run starts
# the server on an empty lease database; leases are durable in each server's store (nhn:
# SQLite, group commit, ACK sent after commit; Kea: memfile CSV; dnsmasq: lease file).
# Prints one line per run, then a summary with ratios. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
NHN=${NHN:-target/release/nhn}
PERIOD=${PERIOD:-10}
CLIENTS=${CLIENTS:-10000}
NHN_RATES=${NHN_RATES:-"4000 8000 12000 14000 16000 18000 20000 24000"}
KEA_RATES=${KEA_RATES:-"4000 8000 12000 14000 16000 18000 20000"}
DNSMASQ_RATES=${DNSMASQ_RATES:-"200 300 400 500"}
NSP=nhnbd$$
S=$NSP-s; C=$NSP-c; SRV=10.78.0.1; CLI=10.78.0.2
D=$(mktemp -d /tmp/nhn-bench-dhcp.XXXXXX)
SPID=""

for tool in perfdhcp kea-dhcp4 dnsmasq ip; do
  command -v $tool >/dev/null || { echo "missing $tool: apt-get install kea-admin kea-dhcp4-server dnsmasq iproute2" >&2; exit 2; }
done
[ -x "$NHN" ] || { echo "no $NHN: cargo build --release first" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 2; }

stop_server() {
  if [ -n "$SPID" ]; then kill -TERM -- "-$SPID" 2>/dev/null || true; wait "$SPID" 2>/dev/null || true; SPID=""; fi
}
cleanup() { stop_server; ip netns del $S 2>/dev/null || true; ip netns del $C 2>/dev/null || true; rm -rf "$D"; }
trap cleanup EXIT INT TERM

ip netns add $S; ip netns add $C
ip -n $S link set lo up; ip -n $C link set lo up
ip -n $S link add eth0 type veth peer name eth0 netns $C
ip -n $S addr add $SRV/16 dev eth0; ip -n $C addr add $CLI/16 dev eth0
ip -n $S link set eth0 up; ip -n $C link set eth0 up

cpu_s() { awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / t }' /proc/$1/stat; }

start_nhn() {
  rm -rf "$D/nhn"; mkdir -p "$D/nhn"
  cat > "$D/nhn.toml" <<TOML
[http]
listen = "127.0.0.1:18080"
[log]
level = "warn"
[dhcp]
interfaces = ["eth0"]
per_mac_rate = 1000
per_mac_burst = 1000
[[dhcp.subnets]]
subnet = "10.78.0.0/16"
pool_first = "10.78.1.0"
pool_last = "10.78.254.255"
TOML
  ip netns exec $S setsid "$NHN" --config "$D/nhn.toml" --data-dir "$D/nhn" serve > "$D/nhn.log" 2>&1 &
  SPID=$!
}
start_kea() {
  rm -f "$D"/kea-leases4.csv*
  cat > "$D/kea.conf" <<JSON
{ "Dhcp4": {
  "interfaces-config": { "interfaces": [ "eth0" ], "dhcp-socket-type": "udp" },
  "lease-database": { "type": "memfile", "persist": true, "name": "$D/kea-leases4.csv", "lfc-interval": 0 },
  "valid-lifetime": 3600,
  "subnet4": [ { "id": 1, "subnet": "10.78.0.0/16", "pools": [ { "pool": "10.78.1.0 - 10.78.254.255" } ] } ],
  "loggers": [ { "name": "kea-dhcp4", "output_options": [ { "output": "$D/kea.log" } ], "severity": "WARN" } ]
} }
JSON
  KEA_PIDFILE_DIR=$D KEA_LOCKFILE_DIR=$D ip netns exec $S setsid kea-dhcp4 -c "$D/kea.conf" > "$D/kea.out" 2>&1 &
  SPID=$!
}
start_dnsmasq() {
  rm -f "$D/dnsmasq.leases"
  ip netns exec $S setsid dnsmasq --no-daemon --conf-file=/dev/null --port=0 --interface=eth0 --bind-interfaces \
    --dhcp-range=10.78.1.0,10.78.254.255,255.255.0.0,1h --dhcp-authoritative --no-ping --dhcp-lease-max=200000 \
    --dhcp-leasefile="$D/dnsmasq.leases" --quiet-dhcp --log-facility="$D/dnsmasq.log" > /dev/null 2>&1 &
  SPID=$!
}

# run SERVER RATE -> prints "leases/s do_drop% ra_drop% server_cpu" and a log line
run() {
  local srv=$1 rate=$2 i=0
  "start_$srv"
  until ip netns exec $S ss -Hlun | grep -q ':67 '; do
    i=$((i+1)); [ $i -lt 100 ] || { echo "$srv did not bind :67" >&2; cat "$D"/*.log >&2 2>/dev/null; exit 1; }; sleep 0.1
  done
  sleep 0.5
  local c0; c0=$(cpu_s "$SPID")
  ip netns exec $C perfdhcp -4 -l $CLI -r "$rate" -R "$CLIENTS" -p "$PERIOD" $SRV > "$D/perf.txt" 2>&1 || true
  local c1; c1=$(cpu_s "$SPID")
  stop_server
  python3 - "$D/perf.txt" "$PERIOD" "$c0" "$c1" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def grab(sec):
    m = re.search(r"\*\*\*Statistics for: %s\*\*\*(.*?)(?=\*\*\*|\Z)" % sec, t, re.S)
    if not m: return None
    g = lambda k: int(re.search(k + r": (\d+)", m.group(1)).group(1))
    return g("sent packets"), g("received packets"), g("drops")
do, ra = grab("DISCOVER-OFFER"), grab("REQUEST-ACK")
if not do or not ra:
    print("0 100 100 0"); sys.exit()
period = int(sys.argv[2])
print(f"{ra[1]/period:.0f} {100.0*do[2]/max(do[0],1):.2f} {100.0*ra[2]/max(ra[0],1):.2f} {float(sys.argv[4])-float(sys.argv[3]):.2f}")
PY
}

declare -A BEST BEST_RATE CPU
for srv in nhn kea dnsmasq; do
  case $srv in nhn) rates=$NHN_RATES ;; kea) rates=$KEA_RATES ;; dnsmasq) rates=$DNSMASQ_RATES ;; esac
  BEST[$srv]=0; BEST_RATE[$srv]=0; CPU[$srv]=0
  for rate in $rates; do
    read -r lps dod rad cpu < <(run $srv "$rate")
    ok=$(python3 -c "print('pass' if $dod <= 2.5 and $rad <= 2.5 else 'FAIL')")
    printf '%-8s offered %6s/s  ->  %6s leases/s  drops DO %5s%% RA %5s%%  server CPU %5s s  %s\n' \
      "$srv" "$rate" "$lps" "$dod" "$rad" "$cpu" "$ok"
    [ "$ok" = pass ] || break
    BEST[$srv]=$lps; BEST_RATE[$srv]=$rate; CPU[$srv]=$cpu
  done
done
echo
echo "best passing (drops <= 2.5 %), ${PERIOD} s runs, ${CLIENTS} clients:"
for srv in nhn kea dnsmasq; do
  printf '  %-8s %6s leases/s (offered %s/s, server CPU %s s)\n' "$srv" "${BEST[$srv]}" "${BEST_RATE[$srv]}" "${CPU[$srv]}"
done
python3 - "${BEST[nhn]}" "${BEST[kea]}" "${BEST[dnsmasq]}" <<'PY'
import sys
n, k, d = (float(x) for x in sys.argv[1:])
print(f"  nhn / kea     = {n / k:.2f}" if k else "  kea: no passing run")
print(f"  nhn / dnsmasq = {n / d:.2f}" if d else "  dnsmasq: no passing run")
PY
