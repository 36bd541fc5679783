#!/usr/bin/env bash
# Codec bench: tsunagi's per-frame codecs (benches/transcode.rs, criterion) and the reference
# codecs on the very same frames, in one run.
#
#   scripts/bench-codecs.sh                  # about 4-5 minutes after the build, 2 cores
#   TRANSCODE_BENCH_SECS=1 TRANSCODE_BENCH_CR_SAMPLES=10 scripts/bench-codecs.sh   # quicker
#
# 1. builds the bench and dumps its three synthetic frames (CT 512x512 signed 16-bit, CR
#    2500x3000 12-bit, US 640x480 RGB) with our encodings (TRANSCODE_BENCH_DUMP);
# 2. runs the references on those files (benches/codecs/refs.py): OpenJPH 0.9's ojph_compress /
#    ojph_expand for HTJ2K (signed CT shifted to unsigned, see refs.py) and Debian's CharLS 2.4
#    through benches/codecs/charls_bench.c (compiled here, timed in process) for JPEG-LS;
# 3. runs `cargo bench --bench transcode` (extra arguments go to criterion, e.g. a filter);
# 4. prints the table and writes it to target/bench-codecs-report.md.
#
# Needs: cargo, python3, cc, ojph_compress/ojph_expand (apt-get install -y openjph-tools),
# CharLS headers (apt-get install -y libcharls-dev).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export LC_ALL=C

say() { printf '[bench-codecs %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }

for tool in cargo python3 cc ojph_compress ojph_expand; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (apt-get install -y openjph-tools gcc python3)"
done
[ -f /usr/include/charls/charls.h ] || die "CharLS headers are missing (apt-get install -y libcharls-dev)"

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$TARGET/bench-codecs
FRAMES=$OUT/frames
REPORT=$TARGET/bench-codecs-report.md
mkdir -p "$OUT"
rm -rf "$FRAMES"
START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

say "compiling the CharLS reference harness"
cc -O2 -Wall -o "$OUT/charls_bench" benches/codecs/charls_bench.c -lcharls

say "building the bench (cargo bench --bench transcode --no-run)"
cargo bench --bench transcode --no-run 2>&1 | grep -vE '^\s*(Compiling|Blocking)' >&2 || true

say "generating and dumping the frames"
TRANSCODE_BENCH_DUMP=$FRAMES TRANSCODE_BENCH_DUMP_ONLY=1 cargo bench --bench transcode 2>&1 \
    | grep -vE '^\s*(Compiling|Finished|Running|Blocking)' >&2

say "reference codecs on the same frames"
LOAD_REF=$(cut -d' ' -f1-3 /proc/loadavg)
python3 benches/codecs/refs.py "$FRAMES" "$OUT/charls_bench" "$OUT/refs.json"

say "criterion: cargo bench --bench transcode $*"
LOAD_OURS=$(cut -d' ' -f1-3 /proc/loadavg)
cargo bench --bench transcode -- "$@" 2>&1 | tee "$OUT/criterion.log" \
    | grep -E '^(encode|decode)/|thrpt:|time:' >&2
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

HEADER=$OUT/header.md
{
    echo "# Codec bench: tsunagi vs reference codecs on the same frames"
    echo
    echo "- command: \`scripts/bench-codecs.sh $*\` (TRANSCODE_BENCH_SECS=${TRANSCODE_BENCH_SECS:-2}, TRANSCODE_BENCH_CR_SAMPLES=${TRANSCODE_BENCH_CR_SAMPLES:-10})"
    echo "- ours: \`cargo bench --bench transcode\` (criterion 0.5, median; one thread)"
    echo "- references: \`python3 benches/codecs/refs.py\` (OpenJPH tools: $(dpkg-query -W -f='${Version}' openjph-tools 2>/dev/null || echo '?'); libcharls-dev $(dpkg-query -W -f='${Version}' libcharls-dev 2>/dev/null || echo '?'); one thread each)"
    echo "- commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' + uncommitted changes'), $(date -u +%Y-%m-%dT%H:%MZ), $(rustc --version)"
    echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); load average at start $LOAD_START, before references $LOAD_REF, before ours $LOAD_OURS, at end $LOAD_END (the cores are shared: compare ratios)"
    echo "- frames: CT 512x512 signed 16-bit (Bits Stored 16), CR 2500x3000 unsigned 12-in-16, US 640x480 RGB 8-bit; deterministic, see benches/transcode.rs"
    echo "- OpenJPH times are the tools' own CPU time and include reading/writing the PGM/PPM and codestream (page cache); CharLS is timed in process. OpenJPH runs for CT use the +32768-shifted unsigned image (OpenJPH 0.9's tools clip negative samples; the shift gives the same wavelet coefficients after JPEG 2000's DC level shift)."
} >"$HEADER"

python3 benches/codecs/report.py "$FRAMES" "$TARGET/criterion" "$OUT/refs.json" "$START" \
    "$HEADER" "$REPORT"
say "report written to $REPORT"
