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

BENCH_NAME=bench-pull
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

[ "$(id -u)" = 0 ] || die "needs root: network namespaces and tc"
for tool in cargo python3 ip tc /usr/bin/dcmqrscp /usr/bin/dcmqridx /usr/bin/movescu \
            /usr/bin/storescp /usr/bin/echoscu; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (apt-get install -y dcmtk iproute2)"
done
python3 -c 'import pydicom, numpy' 2>/dev/null || die "python3 needs pydicom and numpy"
[ -f benches/make_ct.py ] || die "benches/make_ct.py (the CT generator) is missing"

bench_init tsunagi-bench-lo tsunagi-bench-gw tsunagi-bench-pacs

bench_build
export ROOT WORK BIN

bench_ct "$WORK/pacs"

step python3 benches/pull/bench_pull.py
