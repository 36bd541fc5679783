#!/usr/bin/env bash
# Pull-through bench: a cold Tsunagi in front of a DCMTK hospital PACS, against the DCMTK
# floor (movescu -> dcmqrscp -> storescp), on loopback and over a shaped link, in one run.
#
#   scripts/bench-pull.sh                 # ~12 minutes after the release build (2 cores)
#   QUICK=1 scripts/bench-pull.sh         # 20 slices, 1 run: a fast check (~1 minute)
#   RATE=20mbit DELAY_MS=25 scripts/bench-pull.sh
#
# Builds --release, generates a deterministic 512x512 16-bit CT series (benches/make_ct.py)
# into a DCMTK dcmqrscp (AE HOSPA; move destinations TSUNAGI and the floor's STORESCP), then
# benches/pull/bench_pull.py measures, RUNS times each, in two scenarios:
#   loopback: everything on the loopback of network namespace tsunagi-bench-lo;
#   shaped:   the PACS in namespace tsunagi-bench-pacs, gateway, movescu, storescp and the HTTP
#             client in tsunagi-bench-gw, joined by a veth pair with tbf at RATE on both ends
#             and DELAY_MS one way per direction added by benches/pull/relay.py (no netem on
#             this kernel); the link is checked first with echo round trips and a timed 5 MB
#             transfer each way.
# Measurements: floor (movescu, SERIES level, to storescp -od: first file, total); cold
# Tsunagi series retrieve over WADO-RS (first byte, first whole instance, total); cold series
# /metadata (first byte, total; on the shaped link sent with the series request, joining its
# retrieve, unless METADATA=separate); cold frames/1 with OHIF's Accept. Medians, ratios against
# the floor of the same run; the table is printed and written to target/bench-pull-report.md.
#
# Knobs: RATE (10mbit, tc syntax), DELAY_MS (10, one way), SLICES (200), RUNS (3), QUICK=1,
# METADATA (joint|separate), SCENARIOS ("loopback shaped"), BENCH_RUST_LOG (gateway RUST_LOG),
# BENCH_KEEP=1 keeps the temp dir (logs of every process). Needs root (namespaces, tc), DCMTK,
# iproute2, python3 with pydicom and numpy. Every process it starts is stopped and the
# namespaces are deleted on exit, error or interrupt.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export TCP_NODELAY=1            # DCMTK waits on Nagle without it (see shared/README.md)
export LC_ALL=C

if [ "${QUICK:-}" = 1 ]; then
    SLICES=${SLICES:-20}
    RUNS=${RUNS:-1}
fi
export RATE=${RATE:-10mbit} DELAY_MS=${DELAY_MS:-10} SLICES=${SLICES:-200} RUNS=${RUNS:-3}

say() { printf '[bench-pull %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root: network namespaces and tc"
for tool in cargo python3 ip tc /usr/bin/dcmqrscp /usr/bin/dcmqridx /usr/bin/movescu \
            /usr/bin/storescp /usr/bin/echoscu; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (apt-get install -y dcmtk iproute2)"
done
python3 -c 'import pydicom, numpy' 2>/dev/null || die "python3 needs pydicom and numpy"
[ -f benches/make_ct.py ] || die "benches/make_ct.py (the CT generator) is missing"

WORK=$(mktemp -d /tmp/tsunagi-bench-pull.XXXXXX)
BENCH_PID=''   # the running step (build, generator, bench): waited on in the background so
               # that an interrupt is handled at once, not when the step ends

cleanup() {
    local status=$?
    trap - EXIT INT TERM HUP
    if [ -n "$BENCH_PID" ] && kill -0 "$BENCH_PID" 2>/dev/null; then
        kill -TERM "$BENCH_PID" 2>/dev/null || true   # it stops its own processes
        for _ in $(seq 100); do kill -0 "$BENCH_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$BENCH_PID" 2>/dev/null || true
    fi
    if [ -s "$WORK/pids" ]; then                       # whatever it could not stop
        while read -r pgid; do
            [ -n "$pgid" ] && kill -KILL -- "-$pgid" 2>/dev/null || true
        done <"$WORK/pids"
    fi
    for ns in tsunagi-bench-lo tsunagi-bench-gw tsunagi-bench-pacs; do
        ip netns del "$ns" 2>/dev/null || true
    done
    if [ "${BENCH_KEEP:-}" = 1 ]; then
        say "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

step() { # run a step as a tracked background job; its status is ours
    "$@" &
    BENCH_PID=$!
    local status=0
    wait "$BENCH_PID" || status=$?
    BENCH_PID=''
    return "$status"
}

say "building (release)"
step cargo build --release --quiet --bin tsunagi || die "the release build failed"
export ROOT WORK BIN=$ROOT/target/release/tsunagi

say "generating the $SLICES-slice CT series"
mkdir -p "$WORK/pacs"
step python3 benches/make_ct.py "$WORK/pacs" --slices "$SLICES" >"$WORK/ct.txt" || die "make_ct.py failed"
python3 - "$WORK/ct.txt" "$WORK/ct.json" <<'PY'
import json, sys
kv = dict(w.split("=", 1) for w in open(sys.argv[1]).read().split())
json.dump({k: (int(v) if k in ("files", "bytes") else v) for k, v in kv.items()}, open(sys.argv[2], "w"))
PY
say "CT: $(cat "$WORK/ct.txt")"

step python3 benches/pull/bench_pull.py
