#!/usr/bin/env bash
# HaaS API load: getVmInfo and getVmList with N concurrent keep-alive clients against nhn and
# against a Python SimpleXMLRPCServer doing the same SQLite lookups (bench/baseline.py), in
# the same run on the same inventory; then allocateVolume+deallocateVolume pairs on nhn.
# Prints calls/s, p50 and p99 for each and the nhn/baseline throughput ratio.
#
#   bench/api.sh [SECONDS=10] [CLIENTS=64]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
clients=${2:-64}

cargo build --release -q
cargo bench --bench api_load --no-run -q 2>/dev/null
load() { cargo bench -q --bench api_load -- "$@" 2>/dev/null; }

work=$(mktemp -d /tmp/nhn-bench-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nhn() { target/release/nhn --data-dir "$work" "$@"; }

# The seed site, with room for the benchmark's objects.
sed -e 's/^vcpus = 32$/vcpus = 4096/' -e 's/^memory_mb = 131072$/memory_mb = 8388608/' \
    examples/seed-site.toml > "$work/site.toml"
cat >> "$work/site.toml" <<'SITE'

[[customers]]
name = "bench"

[customers.quota]
vms = 1000
vcpu = 4000
memory_mb = 8000000
volumes = 1000
volume_gb = 1000000
networks_l2ex = 10
networks_l3ex = 10
networks_l3sh = 1
l3sh_addresses = 10
pending_requests = 100
SITE
nhn inventory import "$work/site.toml" >/dev/null
auth=$(nhn key create --customer bench --scope full | awk '/^key id:/{id=$3} /^secret:/{s=$2} END{print id ":" s}')

port=$(free_port); internal=$(free_port); base_port=$(free_port)
cat > "$work/nhn.toml" <<CONF
[http]
listen = "127.0.0.1:$port"

[api]
internal_listen = "127.0.0.1:$internal"
read_per_second = 1000000
read_burst = 1000000
mutating_per_second = 1000000
mutating_burst = 1000000

[log]
level = "warn"
CONF
target/release/nhn --data-dir "$work" --config "$work/nhn.toml" serve 2>"$work/serve.log" >/dev/null &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

# Ten VMs, the first with a disk, two NICs and an address, as getVmInfo's subject.
vm=$(NHN_URL="http://127.0.0.1:$port/RPC2" AUTH="$auth" python3 - <<'PY'
import os, xmlrpc.client
p, a = xmlrpc.client.ServerProxy(os.environ["NHN_URL"]), os.environ["AUTH"]
vms = [p.allocateVm(a, {"vmType": "V10", "comment": f"bench{i}"})["vmId"] for i in range(10)]
vol = p.allocateVolume(a, {"sizeGB": 30})["volumeId"]
p.attachVolume(a, {"vmId": vms[0], "volumeId": vol, "device": "DISK1"})
sh = p.allocateNetwork(a, {"networkType": "L3SH"})["networkId"]
l2 = p.allocateNetwork(a, {"networkType": "L2EX"})["networkId"]
ip = p.allocateIpAddress(a, {"networkId": sh})["ipAddresses"][0]
p.attachNetwork(a, {"vmId": vms[0], "networkId": sh, "device": "NET1"})
p.attachNetwork(a, {"vmId": vms[0], "networkId": l2, "device": "NET2"})
p.assignIpAddress(a, {"vmId": vms[0], "device": "NET1", "ipAddress": ip})
print(vms[0])
PY
)

python3 bench/baseline.py --db "$work/nhn.db" --port "$base_port" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1', $base_port))" 2>/dev/null && break; sleep 0.1; done

info_args="<member><name>vmId</name><value><string>$vm</string></value></member>"
echo "nhn $(git describe --always --dirty 2>/dev/null || echo '?'), $(nproc) cores, $clients clients, ${secs}s per run"
declare -A rate
for m in getVmInfo getVmList; do
  a=""; [ "$m" = getVmInfo ] && a="$info_args"
  for who in nhn baseline; do
    p=$port; [ "$who" = baseline ] && p=$base_port
    # nhn's request log grew the WAL during its run; fold it back so that the baseline's
    # per-request connections do not pay for a long WAL (and its figures stay comparable).
    [ "$who" = baseline ] && python3 -c "import sqlite3,sys; sqlite3.connect(sys.argv[1]).execute('PRAGMA wal_checkpoint(TRUNCATE)')" "$work/nhn.db"
    line=$(load "http://127.0.0.1:$p/RPC2" "$m" "$auth" "$a" "$clients" "$secs")
    echo "  $who $line"
    rate[$who.$m]=$(echo "$line" | awk '{print $2}')
  done
  awk -v a="${rate[nhn.$m]}" -v b="${rate[baseline.$m]}" -v m="$m" \
    'BEGIN { if (b > 0) printf "  %s: nhn/baseline throughput ratio %.1fx\n", m, a / b }'
done
echo "  nhn $(load "http://127.0.0.1:$port/RPC2" alloc "$auth" "" "$clients" "$secs")"
