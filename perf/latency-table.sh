#!/usr/bin/env bash
# The latency-critical table of perf/README.md, in one go: latency with `--idle block` and
# `--idle spin`, one reactor pinned (relay and floor on core 0, clients on core 1) and two
# reactors (cores 0 and 1: the publisher on reactor 0, the subscriber on reactor 1), rates 10k
# and 100k, 5 runs each against the floor run just before; then throughput, one reactor pinned,
# block and spin, 5 runs each against the floor. Each command writes its JSON, its human report
# and (latency) its .hgrm/.hlog/.svg files into OUT_DIR.
#
#   cargo build --release --bins && perf/latency-table.sh [OUT_DIR]     # 15 minutes on a quiet machine
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-latency-results}
P=${TORQ_PERF:-target/release/torq-perf}
R=${RELAY:-target/release/market_data_relay}
[ -x "$P" ] && [ -x "$R" ] || { echo "build them first: cargo build --release --bins" >&2; exit 2; }
mkdir -p "$out"
quiet=(--wait-quiet-s "${WAIT_QUIET:-120}")   # each run waits for a quiet machine (a shared one)
latency=(latency --with-floor --target "$R" --rates 10k,100k --seconds 6 --warmup-s 1 --runs 5
  --client-cores 1 --out "$out" --json "${quiet[@]}")
for idle in block spin; do
  for cores in 0 0,1; do
    name=$([ "$cores" = 0 ] && echo "one-reactor-$idle" || echo "two-reactors-$idle")
    echo "== $name" >&2
    "$P" "${latency[@]}" --relay-cores "$cores" --idle "$idle" --name "$name" -- -l warn \
      > "$out/$name.json" 2> "$out/$name.log"
    grep "median to the floor" "$out/$name.log" >&2
  done
  echo "== throughput-$idle" >&2
  "$P" throughput --with-floor --target "$R" --relay-cores 0 --client-cores 1 --idle "$idle" --slow-consumer block \
    --subscribers 1 --frames 10000000 --runs 5 "${quiet[@]}" -- -l warn > "$out/throughput-$idle.txt" 2>&1
  grep "median ratio" "$out/throughput-$idle.txt" >&2
done
