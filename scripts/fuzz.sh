#!/usr/bin/env bash
# Run every fuzz target in fuzz/ for a bounded time and print the executions of each.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET=60]
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Corpora grow in
# fuzz/corpus/<target>/ (seeded from tests/dicom-samples for `dataset`); a crash leaves its
# input in fuzz/artifacts/<target>/ and makes this script exit non-zero. Reproduce one with
#   cd fuzz && cargo +nightly fuzz run -s none <target> artifacts/<target>/crash-...
# FUZZ_SANITIZER (default `none`: the crate forbids unsafe code; `address` for ASan) and
# FUZZ_JOBS (default 1) tune the run; FUZZ_TARGETS="dataset accept" runs only those.
set -euo pipefail

seconds="${1:-60}"
sanitizer="${FUZZ_SANITIZER:-none}"
jobs="${FUZZ_JOBS:-1}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/fuzz/target}"

read -r -a targets <<<"${FUZZ_TARGETS:-dataset dimse_command qido_query accept byte_range}"

# seed the data set corpus with the committed samples (their data sets only would be
# better, but whole files still reach the parser through the meta group we prepend)
mkdir -p corpus/dataset
if [ -z "$(ls -A corpus/dataset)" ]; then
    find "$root/tests/dicom-samples" -name '*.dcm' -size -64k -exec cp {} corpus/dataset/ \;
fi

cargo +nightly fuzz build -s "$sanitizer"

status=0
summary=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    log="$(mktemp)"
    if cargo +nightly fuzz run -s "$sanitizer" -j "$jobs" "$t" "corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" >"$log" 2>&1; then
        verdict=ok
    else
        verdict=CRASH
        status=1
        tail -40 "$log"
    fi
    execs="$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || true)"
    if [ -z "$execs" ]; then
        execs="$(grep -Eo '^#[0-9]+' "$log" | tail -1 | tr -d '#' || true)"
    fi
    cov="$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | grep -Eo '[0-9]+' || true)"
    summary+=("$(printf '%-14s %-6s %12s execs  cov %s  (%ss)' "$t" "$verdict" "${execs:-?}" "${cov:-?}" "$seconds")")
    rm -f "$log"
done
printf '%s\n' "${summary[@]}"
exit "$status"
