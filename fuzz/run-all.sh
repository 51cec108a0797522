#!/usr/bin/env bash
# Runs every fuzz target for a bounded time each, starting from its seeds, and exits non-zero
# if any target finds a crash (or fails to build).
#
#   fuzz/run-all.sh [SECONDS] [TARGET...]
#
# SECONDS: time per target (default 60). TARGETs: default every target (framer, walker,
# subscribe, config, pcapng, shm_reader). Needs cargo-fuzz (`cargo install cargo-fuzz`);
# RUSTC_BOOTSTRAP=1 gives the stable toolchain the nightly flags it uses. Each target runs as one
# libFuzzer process (one core). New inputs go to fuzz/corpus/TARGET, crashes to
# fuzz/artifacts/TARGET (both ignored by git). A summary line per target ends the output:
# executions, seconds, result.
#
# Exit status: 0 no crash, 1 at least one target crashed, 2 usage or build error.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

seconds=${1:-60}
if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [SECONDS] [TARGET...]   (SECONDS a positive integer, default 60)" >&2
    exit 2
fi
shift $(($# > 0 ? 1 : 0))
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(framer walker subscribe config pcapng shm_reader)
fi

export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2
    exit 2
fi

for target in "${targets[@]}"; do
    if [ ! -d "seeds/$target" ]; then
        echo "unknown target $target (no seeds/$target)" >&2
        exit 2
    fi
done

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

# Build first (release, debug assertions, AddressSanitizer: cargo-fuzz's defaults), so the
# timed runs below only fuzz.
for target in "${targets[@]}"; do
    if ! cargo fuzz build "$target" >"$logs/build" 2>&1; then
        tail -40 "$logs/build"
        echo "cargo fuzz build $target failed" >&2
        exit 2
    fi
done

summary=()
crashed=0
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    echo "== $target: ${seconds}s"
    # -max_total_time bounds the run; -timeout bounds one input (a hang counts as a crash).
    started=$SECONDS
    cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$logs/$target" 2>&1
    status=$?
    elapsed=$((SECONDS - started))
    executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$target" | tail -1)
    if [ $status -eq 0 ]; then
        result="no crash"
    else
        crashed=1
        artifact=$(grep -o 'artifacts/[^ ]*' "$logs/$target" | tail -1)
        result="CRASH (exit $status) ${artifact:+input: fuzz/$artifact}"
        # The panic or sanitizer report, then libFuzzer's lines about the input.
        grep -m1 -A15 -E 'panicked at|==ERROR|ERROR: libFuzzer' "$logs/$target"
        grep -E '^(Failing input|Reproduce with|SUMMARY)' -A2 "$logs/$target"
    fi
    summary+=("$(printf '%-10s %10s executions in %4ss  %s' "$target" "${executions:-?}" "$elapsed" "$result")")
done

echo "== summary"
printf '%s\n' "${summary[@]}"
exit $crashed
