#!/usr/bin/env bash
# Prefetch throughput: N studies of one patient moved from DCMTK dcmqrscp through Tsunagi's
# prefetch job (tsunagi prefetch --wait: C-FIND, then one Study-level C-MOVE per study, each
# instance fsynced and indexed before its C-STORE-RSP) against a plain DCMTK movescu of the
# same studies into storescp (no fsync, no index), in the same run, one study at a time both.
#
#   scripts/bench-prefetch.sh [N_STUDIES=20] [INSTANCES_PER_STUDY=12]
#   TSUNAGI_BIN=target/release/tsunagi scripts/bench-prefetch.sh 40
#
# Needs dcmqrscp, dcmqridx, dcmodify, movescu, storescp, echoscu (DCMTK) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20}
PER=${2:-12}
BIN=${TSUNAGI_BIN:-}
if [ -z "$BIN" ]; then
  if [ -x target/release/tsunagi ]; then BIN=target/release/tsunagi; else BIN=target/debug/tsunagi; fi
fi
[ -x "$BIN" ] || { echo "build tsunagi first (cargo build [--release])" >&2; exit 2; }
BIN_ABS=$(realpath "$BIN")
for t in dcmqrscp dcmqridx dcmodify movescu storescp echoscu python3 curl; do
  command -v $t >/dev/null || { echo "missing $t" >&2; exit 2; }
done

W=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
uid() { python3 -c 'import uuid; print("2.25.%d" % uuid.uuid4().int)'; }
now() { python3 -c 'import time; print(time.time())'; }

echo "== making $N studies of $PER instances (patient BENCH-1)"
mkdir -p "$W/pacs" "$W/src"
SRC=(tests/dicom-samples/pacs/hospa/jp-0001/*.dcm)
STUDIES=()
for s in $(seq 1 "$N"); do
  st=$(uid); se=$(uid); STUDIES+=("$st")
  for i in $(seq 0 $((PER - 1))); do
    f="$W/pacs/s${s}_$i.dcm"
    cp "${SRC[$((i % ${#SRC[@]}))]}" "$f"
    dcmodify -nb -m "(0020,000d)=$st" -m "(0020,000e)=$se" -m "(0008,0018)=$(uid)" \
      -m "(0010,0020)=BENCH-1" -m "(0020,0013)=$((i + 1))" "$f"
  done
done
dcmqridx "$W/pacs" "$W"/pacs/*.dcm
BYTES=$(cat "$W"/pacs/*.dcm | wc -c)

QR=$(port); GW_DIMSE=$(port); GW_HTTP=$(port); SCP=$(port)
cat > "$W/dcmqrscp.cfg" <<CFG
NetworkTCPPort = $QR
MaxPDUSize = 65536
MaxAssociations = 16

HostTable BEGIN
tsunagi = (TSUNAGI, 127.0.0.1, $GW_DIMSE)
storescp = (STORESCP, 127.0.0.1, $SCP)
HostTable END

VendorTable BEGIN
VendorTable END

AETable BEGIN
HOSPA $W/pacs R (1000, 4096mb) ANY
AETable END
CFG
TCP_NODELAY=1 dcmqrscp -c "$W/dcmqrscp.cfg" "$QR" >"$W/dcmqrscp.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do echoscu -aec HOSPA 127.0.0.1 "$QR" 2>/dev/null && break; sleep 0.2; done

echo "== baseline: movescu of each study into storescp"
mkdir -p "$W/scp"
TCP_NODELAY=1 storescp -aet STORESCP -od "$W/scp" "$SCP" >"$W/storescp.log" 2>&1 &
PIDS+=($!)
sleep 0.5
T0=$(now)
for st in "${STUDIES[@]}"; do
  TCP_NODELAY=1 movescu -S -aet BENCH -aec HOSPA -aem STORESCP -k QueryRetrieveLevel=STUDY \
    -k StudyInstanceUID="$st" 127.0.0.1 "$QR" >/dev/null 2>&1
done
T1=$(now)
GOT=$(ls "$W/scp" | wc -l)

echo "== tsunagi prefetch --patient BENCH-1 --wait ($BIN)"
mkdir -p "$W/gw"
cat > "$W/gw/proxy.toml" <<CFG
[dimse]
listen = "127.0.0.1:$GW_DIMSE"
[http]
listen = "127.0.0.1:$GW_HTTP"
[store]
path = "$W/gw/cache"
[[upstream]]
name = "hospital-a"
ae_title = "HOSPA"
address = "127.0.0.1:$QR"
CFG
# exec: $! is the gateway itself, so cleanup stops it (not just a subshell)
(cd "$W/gw" && RUST_LOG=warn exec "$BIN_ABS" serve >"$W/gw/log" 2>&1) &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$GW_HTTP/healthz" >/dev/null && break; sleep 0.2; done
T2=$(now)
"$BIN" prefetch --patient BENCH-1 --upstream hospital-a --wait --gateway "http://127.0.0.1:$GW_HTTP" | grep -v '^  2\.25\.'
T3=$(now)
CACHED=$(curl -s "http://127.0.0.1:$GW_HTTP/healthz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["instances"])')

python3 - "$N" "$PER" "$BYTES" "$GOT" "$CACHED" "$T0" "$T1" "$T2" "$T3" "$BIN" <<'PY'
import sys
n, per, size, got, cached = map(int, sys.argv[1:6])
t0, t1, t2, t3 = map(float, sys.argv[6:10])
base, gw = t1 - t0, t3 - t2
mib = size / 2**20
print()
print(f"studies {n} x {per} instances = {n*per} instances, {mib:.2f} MiB; binary {sys.argv[10]}")
print(f"movescu -> storescp : {base:6.2f} s  {n*per/base:7.1f} inst/s  {mib/base:6.2f} MiB/s  ({got} files)")
print(f"tsunagi prefetch    : {gw:6.2f} s  {n*per/gw:7.1f} inst/s  {mib/gw:6.2f} MiB/s  ({cached} instances cached)")
print(f"ratio (tsunagi / movescu throughput): {base/gw:.2f}")
PY
