#!/usr/bin/env bash
# Two relay binaries against each other in one session: every throughput scenario (1 and 4
# subscribers, 1 and 2 reactors) and the latency scenario (1 and 2 reactors), each run with the
# floor measured just before it (--with-floor), in two passes (A then B, then B then A) so that
# drift on a shared machine falls on both. Prints the median ratios to the floor.
#
#   perf/compare.sh OLD_BINARY NEW_BINARY [RESULTS_FILE]
#
# e.g. build main into a copy first: cp target/release/market_data_relay /tmp/old_relay
set -euo pipefail
A=${1:?usage: perf/compare.sh OLD_BINARY NEW_BINARY [RESULTS_FILE]}
B=${2:?usage: perf/compare.sh OLD_BINARY NEW_BINARY [RESULTS_FILE]}
out=${3:-compare-results.txt}
P=$(dirname "$0")/../target/release/torq-perf
[ -x "$P" ] || { echo "build it first: cargo build --release --bins" >&2; exit 2; }
: > "$out"
for pass in 1 2; do
  if [ "$pass" = 1 ]; then order="$A $B"; else order="$B $A"; fi
  for scenario in "none:1 1" "none:1 4" "none:2 1" "none:2 4"; do
    set -- $scenario
    for bin in $order; do
      echo "== pass $pass throughput cores=$1 subscribers=$2 binary=$bin" | tee -a "$out"
      "$P" throughput --with-floor --target "$bin" --relay-cores "$1" --slow-consumer block --subscribers "$2" \
        --frames 10000000 --runs 5 -- -l warn >> "$out" 2>&1
      grep "median ratio" "$out" | tail -1
    done
  done
done
for cores in none:1 none:2; do
  for bin in $A $B; do
    echo "== latency cores=$cores binary=$bin" | tee -a "$out"
    "$P" latency --with-floor --target "$bin" --relay-cores "$cores" --rates 10k --seconds 6 --runs 5 \
      -- -l warn >> "$out" 2>&1
    grep "median to the floor" "$out" | tail -1
  done
done
