#!/usr/bin/env bash
# Shaped-link viewer bench: a viewer opening a CT series over a slow link with latency, from
# Tsunagi and from Orthanc + its DICOMweb plugin holding the same series, in the same run.
#
#   scripts/bench-link.sh                 # ~15 minutes after the release build (2 cores)
#   QUICK=1 scripts/bench-link.sh         # 20 slices, 1 run: a fast check (~1 minute)
#   RATE=20mbit RTT_MS=40 scripts/bench-link.sh
#
# Builds --release, generates a deterministic 512x512 16-bit CT series (benches/make_ct.py),
# then benches/link/bench_link.py joins two network namespaces by a veth pair with tbf at RATE
# on both ends and RTT_MS of round trip added in user space by benches/pull/relay.py (this
# kernel has no netem), checks the link with echo round trips and a timed transfer each way,
# stores the series into Tsunagi (DIMSE) and Orthanc (DICOM) with DCMTK storescu, and has
# benches/link/viewer.py open it as OHIF would (HTTP/1.1, 6 keep-alive connections, gzip;
# QIDO study and series, series metadata, then every frame in slice order) in each delivery
# mode: as stored (OHIF's default), lossless HTJ2K, progressive HTJ2K RPCL with byte ranges,
# rendered JPEG preview then as stored. A mode a server cannot answer is probed once and
# reported n/a with its status. Per mode and server: time to the first usable image, to all
# images at full fidelity, bytes on the wire; the floor is the series' pixel bytes / RATE.
# Each run decodes the middle slice of the HTJ2K modes with OpenJPEG (bit-exact; the
# progressive prefix at -r 2). Medians of RUNS; the table is printed and written to
# target/bench-link-report.md with the command, commit, load average and versions.
#
# Knobs: RATE (10mbit, tc syntax), RTT_MS (20), SLICES (200), RUNS (3), QUICK=1 (20 slices,
# 1 run), MODES ("stored htj2k progressive preview"), RANGE_BYTES (65536: the progressive
# first range), PREVIEW_QUERY (rendered parameters, e.g. "quality=75"; default none),
# WORKERS (6), BENCH_RUST_LOG (Tsunagi's RUST_LOG), BENCH_KEEP=1 keeps the temp dir (logs,
# each viewer's JSON, the decoded samples). Needs root (namespaces, tc), iproute2, DCMTK,
# Orthanc with its DICOMweb plugin, opj_decompress (libopenjp2-tools), curl, python3 with
# pydicom and numpy. Every process it starts is stopped and the namespaces are deleted on
# exit, error or interrupt.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export TCP_NODELAY=1            # DCMTK waits on Nagle without it (see shared/README.md)
export LC_ALL=C

COMMAND="$0"
for knob in QUICK RATE RTT_MS SLICES RUNS MODES RANGE_BYTES PREVIEW_QUERY WORKERS; do
    if [ -n "${!knob+x}" ]; then COMMAND="$knob=${!knob} $COMMAND"; fi
done
if [ "${QUICK:-}" = 1 ]; then
    SLICES=${SLICES:-20}
    RUNS=${RUNS:-1}
fi
export RATE=${RATE:-10mbit} RTT_MS=${RTT_MS:-20} SLICES=${SLICES:-200} RUNS=${RUNS:-3}

BENCH_NAME=bench-link
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh

[ "$(id -u)" = 0 ] || die "needs root: network namespaces and tc"
for tool in cargo python3 ip tc curl opj_decompress /usr/bin/storescu /usr/sbin/Orthanc; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "$tool is missing (apt-get install -y dcmtk orthanc orthanc-dicomweb libopenjp2-tools iproute2 curl)"
done
[ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] ||
    die "Orthanc's DICOMweb plugin is missing (apt-get install -y orthanc-dicomweb)"
python3 -c 'import pydicom, numpy' 2>/dev/null || die "python3 needs pydicom and numpy"
[ -f benches/make_ct.py ] || die "benches/make_ct.py (the CT generator) is missing"

bench_init tsunagi-link-view tsunagi-link-srv

bench_build
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git status --porcelain --untracked-files=no -- src Cargo.toml Cargo.lock 2>/dev/null)" ]; then
    COMMIT="$COMMIT + uncommitted changes under src/"
fi
export ROOT WORK BIN BENCH_COMMAND="$COMMAND" BENCH_COMMIT="$COMMIT"

bench_ct "$WORK/ct"

step python3 benches/link/bench_link.py
