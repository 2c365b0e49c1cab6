#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of the decoders that face the network and
# the operator: every target in fuzz/fuzz_targets/, MINUTES each (default 1), one after another.
#
#   bench/fuzz.sh            # 1 minute per target
#   bench/fuzz.sh 10         # 10 minutes per target
#   TARGETS="dhcp_decide" JOBS=2 nice bench/fuzz.sh 5
#
# Seeds come from fuzz/corpus/<target>/ (committed, read only); what libFuzzer finds goes to
# fuzz/target/corpus/<target>/ (kept between runs) and crashes to fuzz/artifacts/<target>/.
# Prints per target: executions, exec/s, coverage (cov: edges, ft: features) and the corpus
# size from libFuzzer's last status line; exits 1 if any target crashed (the log's tail shows
# the input and the command that replays it). Needs the nightly toolchain and cargo-fuzz:
#   rustup toolchain install nightly && cargo install cargo-fuzz --locked
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-1}
JOBS=${JOBS:-1}
TARGETS=${TARGETS:-$(cd fuzz/fuzz_targets && ls *.rs | sed 's/\.rs$//')}
command -v cargo-fuzz >/dev/null || { echo "no cargo-fuzz: cargo install cargo-fuzz --locked" >&2; exit 2; }
rustup run nightly rustc --version >/dev/null 2>&1 || { echo "no nightly toolchain: rustup toolchain install nightly" >&2; exit 2; }

cargo +nightly fuzz build --fuzz-dir fuzz

LOGS=$(mktemp -d /tmp/nhn-bench-fuzz.XXXXXX)
failed=0
printf '%-14s %12s %9s %7s %7s %8s  %s\n' target execs exec/s cov ft corpus result
for t in $TARGETS; do
  work=fuzz/target/corpus/$t
  mkdir -p "$work" "fuzz/artifacts/$t"
  log=$LOGS/$t.log
  result=ok
  jobs=()
  # libFuzzer's -jobs writes fuzz-<n>.log per job into the current directory: run from $LOGS.
  [ "$JOBS" -gt 1 ] && jobs=(-jobs="$JOBS" -workers="$JOBS")
  (cd "$LOGS" && cargo +nightly fuzz run --fuzz-dir "$OLDPWD/fuzz" "$t" \
    "$OLDPWD/$work" "$OLDPWD/fuzz/corpus/$t" -- \
    -max_total_time=$((MINUTES * 60)) -print_final_stats=1 \
    -artifact_prefix="$OLDPWD/fuzz/artifacts/$t/" "${jobs[@]}") \
    >"$log" 2>&1 || { result="CRASH (log: $log)"; failed=1; }
  # The parent process echoes each job's final stats into $log; the per-job logs can go.
  rm -f "$LOGS"/fuzz-*.log
  # Executions and exec/s are summed over jobs; cov/ft/corpus are the last status line's.
  status=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n 1 || true)
  execs=$(grep -E '^stat::number_of_executed_units:' "$log" | awk '{s += $2} END {print s + 0}' || true)
  rate=$(grep -E '^stat::average_exec_per_sec:' "$log" | awk '{s += $2} END {print s + 0}' || true)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$status")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$status")
  corp=$(sed -nE 's/.* corp: ([0-9]+\/[0-9]+[a-zA-Z]*).*/\1/p' <<<"$status")
  printf '%-14s %12s %9s %7s %7s %8s  %s\n' "$t" "$execs" "$rate" "${cov:--}" "${ft:--}" "${corp:--}" "$result"
  [ "$result" = ok ] || tail -n 30 "$log" >&2
done
exit $failed
