#!/usr/bin/env bash
# Load bench: the real gateway against real peers, measured in the same run, on loopback only.
#
#   scripts/bench.sh            # about 4 minutes after the release build
#
# Builds --release, generates a deterministic 200-slice 512x512 16-bit CT series into a temp
# dir (benches/make_ct.py), then measures:
#   a. C-STORE ingest: DCMTK storescu (one association, 200 files) into tsunagi vs into DCMTK
#      storescp -od; median of BENCH_REPS. Also counts fsync calls of both with strace.
#   b. WADO-RS: one curl of the series (multipart/related, application/dicom) vs nginx serving
#      the same 200 files to one curl over keep-alive; wrk with 8 connections on one frame
#      (OHIF's Accept) vs nginx serving the very same response bytes.
#   c. QIDO-RS on 10,000 studies (filled by examples/bench_fill_cache.rs): OHIF's study list
#      with wrk (1 connection: p50/p99 latency; 8 connections: requests/s) vs nginx serving the
#      same JSON, gzip on both sides as OHIF asks for it; also PatientName=*PHANT* and the
#      series metadata (200 instances).
# Prints the table and writes it to target/bench-report.md. Every process it starts is stopped
# on exit, error or interrupt. Knobs: BENCH_REPS (3), BENCH_WRK_SECS (10), BENCH_STUDIES
# (10000), BENCH_KEEP=1 keeps the temp dir.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

REPS=${BENCH_REPS:-3}
WRK_SECS=${BENCH_WRK_SECS:-10}
STUDIES=${BENCH_STUDIES:-10000}
export TCP_NODELAY=1            # DCMTK waits on Nagle without it (see shared/README.md)
export LC_ALL=C

say() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }

for tool in cargo python3 curl /usr/bin/storescu /usr/bin/storescp nginx wrk ss; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (apt-get install -y dcmtk nginx-light wrk iproute2 curl)"
done
python3 -c 'import pydicom, numpy' 2>/dev/null || die "python3 needs pydicom and numpy"
NGINX=$(command -v nginx)

WORK=$(mktemp -d /tmp/tsunagi-bench.XXXXXX)
chmod 755 "$WORK"   # nginx workers run as an unprivileged user
RESULTS=$WORK/results.tsv
: >"$RESULTS"
PIDS=()

untrack() {
    local i
    for i in "${!PIDS[@]}"; do
        if [ "${PIDS[$i]}" = "$1" ]; then unset 'PIDS[i]'; fi
    done
    return 0
}

# Is pid $1 alive and a child of $2 (default: this script)? Guards against signalling a
# recycled pid that now belongs to someone else.
is_child() {
    local line state ppid
    { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
    line=${line##*) }       # after "pid (comm) ": state ppid ...
    state=${line%% *}
    line=${line#* }
    ppid=${line%% *}
    [ "$ppid" = "${2:-$$}" ] && [ "$state" != Z ]
}

stop_pid() { # pid [parent]
    local pid=$1 parent=${2:-$$} i
    if is_child "$pid" "$parent"; then
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 50); do
            is_child "$pid" "$parent" || break
            sleep 0.1
        done
        if is_child "$pid" "$parent"; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
    if [ "$parent" = "$$" ]; then wait "$pid" 2>/dev/null || true; fi
    untrack "$pid"
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [ "${BENCH_KEEP:-}" = 1 ]; then
        say "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'say "FAILED at line $LINENO: $BASH_COMMAND"' ERR
trap 'exit 130' INT TERM

LOAD_START=$(cut -d' ' -f1 /proc/loadavg)
record() { printf '%s\t%s\n' "$1" "$2" >>"$RESULTS"; }
now() { echo "$EPOCHREALTIME"; }
elapsed() { python3 -c "print(f'{$2 - $1:.6f}')"; }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_listen() { # port timeout_s
    local i
    for i in $(seq $(($2 * 10))); do
        ss -ltnH "sport = :$1" | grep -q . && return 0
        sleep 0.1
    done
    return 1
}

# Run a bounded foreground tool as a tracked background job (so the trap can stop it).
run_tracked() {
    "$@" &
    local pid=$! status=0
    PIDS+=("$pid")
    wait "$pid" || status=$?
    untrack "$pid"
    return "$status"
}

# ------------------------------------------------------------------ build and data

say "building (release): tsunagi and examples/bench_fill_cache"
cargo build --release --quiet --bin tsunagi --example bench_fill_cache
BIN=$ROOT/target/release/tsunagi
FILL=$ROOT/target/release/examples/bench_fill_cache

say "generating the 200-slice CT series"
CT=$WORK/ct
CTINFO=$(python3 benches/make_ct.py "$CT" --slices 200)
eval "$(echo "$CTINFO" | tr ' ' '\n' | grep -E '^(study|series|first_sop|files|bytes)=' | sed 's/^/CT_/')"
say "CT: $CT_files files, $CT_bytes bytes, study $CT_study"

# ------------------------------------------------------------------ gateway control

GW_PID='' GW_HTTP='' GW_DIMSE=''
start_gateway() { # cache_dir [wrapper...]
    local cache=$1
    shift
    local log=$cache.log
    mkdir -p "$cache"
    (
        cd "$WORK"   # no proxy.toml here: embedded defaults + the overrides below
        TSUNAGI_HTTP__LISTEN=127.0.0.1:0 TSUNAGI_DIMSE__LISTEN=127.0.0.1:0 \
            TSUNAGI_STORE__PATH=$cache RUST_LOG=info,dicom_parser=error \
            exec "$@" "$BIN" serve
    ) 2>"$log" &
    GW_PID=$!
    PIDS+=("$GW_PID")
    local i line=''
    for i in $(seq 1200); do
        line=$(grep -m1 'tsunagi ready' "$log" || true)
        [ -n "$line" ] && break
        kill -0 "$GW_PID" 2>/dev/null || { cat "$log" >&2; die "tsunagi exited at start-up"; }
        sleep 0.1
    done
    [ -n "$line" ] || die "tsunagi not ready after 120 s (log: $log)"
    GW_HTTP=$(echo "$line" | sed -n 's/.* http=\([^ ]*\).*/\1/p')
    GW_DIMSE=$(echo "$line" | sed -n 's/.* dimse=\([^ ]*\).*/\1/p')
    [ -n "$GW_HTTP" ] && [ -n "$GW_DIMSE" ] || die "cannot parse ports from: $line"
}
stop_gateway() { stop_pid "$GW_PID"; }

# A process started under strace: stop the traced child first (strace detaches on TERM).
stop_traced() { # strace_pid child_name
    local child
    child=$(pgrep -P "$1" -x "$2" || true)
    if [ -n "$child" ]; then stop_pid "$child" "$1"; fi
    stop_pid "$1"
}

SCP_PID='' SCP_PORT=''
start_storescp() { # out_dir [wrapper...]
    local out=$1
    shift
    mkdir -p "$out"
    SCP_PORT=$(free_port)
    "$@" /usr/bin/storescp -aet STORESCP -od "$out" "$SCP_PORT" >"$out.log" 2>&1 &
    SCP_PID=$!
    PIDS+=("$SCP_PID")
    wait_listen "$SCP_PORT" 20 || die "storescp did not listen"
}

SECS=''
storescu_to() { # host port aec files... ; sets SECS
    local host=$1 port=$2 aec=$3
    shift 3
    local t0 t1
    t0=$(now)
    run_tracked /usr/bin/storescu -aet BENCH -aec "$aec" "$host" "$port" "$@" \
        || die "storescu to $aec failed"
    t1=$(now)
    SECS=$(elapsed "$t0" "$t1")
}

count_files() { find "$1" -type f -name "${2:-*}" | wc -l; }

CT_FILES=("$CT"/ct-*.dcm)

# ------------------------------------------------------------------ a. C-STORE

for rep in $(seq "$REPS"); do
    say "a. C-STORE rep $rep/$REPS: tsunagi"
    start_gateway "$WORK/gw-$rep"
    storescu_to 127.0.0.1 "${GW_DIMSE##*:}" TSUNAGI "${CT_FILES[@]}"
    n=$(count_files "$WORK/gw-$rep/files" '*.dcm')
    [ "$n" = "$CT_files" ] || die "tsunagi stored $n of $CT_files instances"
    record cstore_tsunagi_ips "$(python3 -c "print($CT_files / $SECS)")"
    stop_gateway

    say "a. C-STORE rep $rep/$REPS: storescp"
    start_storescp "$WORK/scp-$rep"
    storescu_to 127.0.0.1 "$SCP_PORT" STORESCP "${CT_FILES[@]}"
    n=$(count_files "$WORK/scp-$rep")
    [ "$n" = "$CT_files" ] || die "storescp stored $n of $CT_files instances"
    record cstore_storescp_ips "$(python3 -c "print($CT_files / $SECS)")"
    stop_pid "$SCP_PID"
    rm -rf "$WORK/scp-$rep"
done
STORED_TS=$(python3 -c "import pydicom,glob; print(pydicom.dcmread(sorted(glob.glob('$WORK/gw-1/files/*/*/*.dcm'))[0], stop_before_pixels=True).file_meta.TransferSyntaxUID)")
say "tsunagi stored the series as transfer syntax $STORED_TS"

FSYNC_NOTE="strace not available: fsync behaviour not checked"
if command -v strace >/dev/null 2>&1; then
    say "a. counting fsync/fdatasync of both receivers for 20 instances (strace, not timed)"
    FS=(fsync,fdatasync,sync_file_range,syncfs)
    start_gateway "$WORK/gw-strace" strace -f -qq -e trace="${FS[0]}" -o "$WORK/gw-strace.trace"
    storescu_to 127.0.0.1 "${GW_DIMSE##*:}" TSUNAGI "${CT_FILES[@]:0:20}"
    stop_traced "$GW_PID" tsunagi
    start_storescp "$WORK/scp-strace" strace -f -qq -e trace="${FS[0]}" -o "$WORK/scp-strace.trace"
    storescu_to 127.0.0.1 "$SCP_PORT" STORESCP "${CT_FILES[@]:0:20}"
    stop_traced "$SCP_PID" storescp
    gw_sync=$(grep -cE '(fsync|fdatasync|sync_file_range|syncfs)\(' "$WORK/gw-strace.trace" || true)
    scp_sync=$(grep -cE '(fsync|fdatasync|sync_file_range|syncfs)\(' "$WORK/scp-strace.trace" || true)
    FSYNC_NOTE="fsync-family calls for 20 instances (strace -f): tsunagi $gw_sync, storescp $scp_sync"
    say "$FSYNC_NOTE"
fi

# ------------------------------------------------------------------ nginx peer

WWW=$WORK/www
mkdir -p "$WWW" "$WORK/nginx-tmp"
ln -s "$CT" "$WWW/ct"
NGINX_PORT=$(free_port)
cat >"$WORK/nginx.conf" <<EOF
worker_processes 2;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    client_body_temp_path $WORK/nginx-tmp/body;
    proxy_temp_path $WORK/nginx-tmp/proxy;
    fastcgi_temp_path $WORK/nginx-tmp/fastcgi;
    uwsgi_temp_path $WORK/nginx-tmp/uwsgi;
    scgi_temp_path $WORK/nginx-tmp/scgi;
    types { application/dicom dcm; application/dicom+json json; }
    default_type application/octet-stream;
    gzip on;
    gzip_comp_level 6;
    gzip_min_length 1024;
    gzip_types application/dicom+json;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $WWW;
    }
}
EOF
"$NGINX" -p "$WORK" -c "$WORK/nginx.conf" 2>"$WORK/nginx-start.log" &
NGINX_PID=$!
PIDS+=("$NGINX_PID")
wait_listen "$NGINX_PORT" 20 || { cat "$WORK/nginx-start.log" >&2; die "nginx did not listen"; }
NG=http://127.0.0.1:$NGINX_PORT

# ------------------------------------------------------------------ b. WADO-RS

say "b. WADO-RS on the CT series (gateway restarted on rep 1's cache)"
start_gateway "$WORK/gw-1"
DW=http://$GW_HTTP/dicom-web
SERIES_URL=$DW/studies/$CT_study/series/$CT_series
FRAME_URL=$SERIES_URL/instances/$CT_first_sop/frames/1
ACCEPT_SERIES='Accept: multipart/related; type="application/dicom"; transfer-syntax=*'
ACCEPT_FRAME='Accept: multipart/related; type=application/octet-stream; transfer-syntax=*'

# correctness of what is timed: 200 parts whose bytes add up to the files'
curl -sf -H "$ACCEPT_SERIES" -o "$WORK/series.body" "$SERIES_URL" || die "series retrieve failed"
read -r nparts partbytes < <(python3 benches/bench_report.py parts "$WORK/series.body")
[ "$nparts" = "$CT_files" ] || die "series retrieve returned $nparts parts"
say "series body: $nparts parts, $partbytes bytes in parts (files: $CT_bytes)"
rm -f "$WORK/series.body"

# nginx: the same 200 files, one curl invocation, one keep-alive connection
CURLCFG=$WORK/nginx-series.curl
: >"$CURLCFG"
for f in "${CT_FILES[@]}"; do
    printf 'url = "%s/ct/%s"\noutput = "/dev/null"\n' "$NG" "$(basename "$f")" >>"$CURLCFG"
done

SERIES_REPS=$((REPS + 2))
for rep in $(seq 0 "$SERIES_REPS"); do   # rep 0 warms up
    t0=$(now)
    bytes=$(curl -sf -H "$ACCEPT_SERIES" -o /dev/null -w '%{size_download}' "$SERIES_URL")
    t1=$(now)
    [ "$rep" = 0 ] || record series_tsunagi_mbps "$(python3 -c "print($bytes / ($t1 - $t0) / 1e6)")"
    t0=$(now)
    nbytes=$(curl -sf -K "$CURLCFG" -w '%{size_download}\n' | awk '{s+=$1} END {print s}') \
        || die "nginx did not serve the 200 files (see $WORK/nginx-error.log)"
    t1=$(now)
    [ "$nbytes" = "$CT_bytes" ] || die "nginx served $nbytes bytes, expected $CT_bytes"
    [ "$rep" = 0 ] || record series_nginx_mbps "$(python3 -c "print($nbytes / ($t1 - $t0) / 1e6)")"
done

# single frame: nginx serves the exact bytes tsunagi answers
curl -sf -H "$ACCEPT_FRAME" -o "$WWW/frame.bin" "$FRAME_URL" || die "frame retrieve failed"
read -r nparts partbytes < <(python3 benches/bench_report.py parts "$WWW/frame.bin")
[ "$nparts" = 1 ] && [ "$partbytes" = $((512 * 512 * 2)) ] || die "frame body: $nparts parts, $partbytes bytes"
say "frame body: $(stat -c %s "$WWW/frame.bin") bytes (one part of $partbytes)"

RPS='' P50='' P99=''
wrk_run() { # name conns secs url [header [header]] ; sets RPS P50 P99 (ms)
    local name=$1 conns=$2 secs=$3 url=$4
    shift 4
    local out=$WORK/wrk-$name-$RANDOM.txt args=() errors
    [ $# -gt 0 ] && args=(-H "$1")
    [ $# -gt 1 ] && args+=(-H "$2")
    run_tracked wrk -t "$(( conns < 2 ? 1 : 2 ))" -c "$conns" -d "${secs}s" --latency "${args[@]}" "$url" >"$out" \
        || die "wrk failed on $url"
    read -r RPS P50 P99 errors < <(python3 benches/bench_report.py wrk "$out")
    [ "$errors" = 0 ] || { cat "$out" >&2; die "wrk saw $errors errors on $url"; }
}

for rep in $(seq "$REPS"); do
    say "b. single frame, wrk 8 connections ${WRK_SECS}s, rep $rep/$REPS"
    wrk_run frame-gw 8 "$WRK_SECS" "$FRAME_URL" "$ACCEPT_FRAME"
    record frame_tsunagi_rps "$RPS"
    record info_frame_wrk8_p50_ms_tsunagi "$P50"
    wrk_run frame-ng 8 "$WRK_SECS" "$NG/frame.bin" "$ACCEPT_FRAME"
    record frame_nginx_rps "$RPS"
    record info_frame_wrk8_p50_ms_nginx "$P50"
done

say "b. single frame, wrk 1 connection 5s (one viewer's sequential loads)"
wrk_run frame1-gw 1 5 "$FRAME_URL" "$ACCEPT_FRAME"
record frame1_tsunagi_rps "$RPS"
record frame1_tsunagi_p99 "$P99"
record info_frame_wrk1_p50_ms_tsunagi "$P50"
wrk_run frame1-ng 1 5 "$NG/frame.bin" "$ACCEPT_FRAME"
record frame1_nginx_rps "$RPS"
record frame1_nginx_p99 "$P99"
record info_frame_wrk1_p50_ms_nginx "$P50"

say "b. series metadata (200 instances), 1 connection"
META_URL=$SERIES_URL/metadata
ACCEPT_JSON='Accept: application/dicom+json'
GZIP='Accept-Encoding: gzip'
curl -sf -H "$ACCEPT_JSON" -o "$WWW/metadata.json" "$META_URL" || die "metadata failed"
[ "$(python3 benches/bench_report.py count-json "$WWW/metadata.json")" = "$CT_files" ] || die "metadata count"
record info_series_metadata_json_bytes "$(stat -c %s "$WWW/metadata.json")"
wrk_run meta-gw 1 5 "$META_URL" "$ACCEPT_JSON" "$GZIP"
record meta_tsunagi_p50 "$P50"
wrk_run meta-ng 1 5 "$NG/metadata.json" "$ACCEPT_JSON" "$GZIP"
record meta_nginx_p50 "$P50"
stop_gateway

# ------------------------------------------------------------------ c. QIDO-RS

say "c. filling a cache with $STUDIES studies (examples/bench_fill_cache)"
t0=$(now)
"$FILL" "$WORK/gw-qido" "$STUDIES" 2>&1 | sed 's/^/    /' >&2
t1=$(now)
record info_fill_cache_seconds "$(elapsed "$t0" "$t1")"
t0=$(now)
start_gateway "$WORK/gw-qido"
t1=$(now)
record info_gateway_start_seconds_filled_cache "$(elapsed "$t0" "$t1")"
DW=http://$GW_HTTP/dicom-web
LIST='limit=101&offset=0&fuzzymatching=true&includefield=00081030%2C00080060%2C00080090%2C00100030'
QIDO_URL="$DW/studies?$LIST"
PHANT_URL="$DW/studies?PatientName=*PHANT*&$LIST"
curl -sf -H "$ACCEPT_JSON" -o "$WWW/studies.json" "$QIDO_URL" || die "QIDO failed"
[ "$(python3 benches/bench_report.py count-json "$WWW/studies.json")" = 101 ] || die "QIDO did not return 101 studies"
curl -sf -H "$ACCEPT_JSON" -o "$WWW/phant.json" "$PHANT_URL" || die "QIDO PHANT failed"
record info_qido_phant_matches "$(python3 benches/bench_report.py count-json "$WWW/phant.json")"
record info_qido_study_list_json_bytes "$(stat -c %s "$WWW/studies.json")"

say "c. QIDO study list: 1 connection ${WRK_SECS}s (latency), 8 connections ${WRK_SECS}s (throughput)"
wrk_run qido-gw 1 "$WRK_SECS" "$QIDO_URL" "$ACCEPT_JSON" "$GZIP"
record qido_tsunagi_p50 "$P50"
record qido_tsunagi_p99 "$P99"
wrk_run qido-ng 1 "$WRK_SECS" "$NG/studies.json" "$ACCEPT_JSON" "$GZIP"
record qido_nginx_p50 "$P50"
record qido_nginx_p99 "$P99"
wrk_run qido8-gw 8 "$WRK_SECS" "$QIDO_URL" "$ACCEPT_JSON" "$GZIP"
record qido8_tsunagi_rps "$RPS"
wrk_run qido8-ng 8 "$WRK_SECS" "$NG/studies.json" "$ACCEPT_JSON" "$GZIP"
record qido8_nginx_rps "$RPS"
say "c. QIDO PatientName=*PHANT*, 1 connection 5s"
wrk_run phant-gw 1 5 "$PHANT_URL" "$ACCEPT_JSON" "$GZIP"
record qidophant_tsunagi_p50 "$P50"
wrk_run phant-ng 1 5 "$NG/phant.json" "$ACCEPT_JSON" "$GZIP"
record qidophant_nginx_p50 "$P50"
stop_gateway

# ------------------------------------------------------------------ report

mkdir -p target
CONTEXT=(
    "Command: \`scripts/bench.sh\` (BENCH_REPS=$REPS, BENCH_WRK_SECS=$WRK_SECS, BENCH_STUDIES=$STUDIES), $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' + uncommitted changes')."
    "Machine: $(nproc) cores, $(uname -r); client, gateway and peer share the cores (loopback)."
    "Data: $CT_files CT slices 512x512x16, $CT_bytes bytes, Explicit VR LE; tsunagi stored them as $STORED_TS."
    "Durability: tsunagi fsyncs each instance file and its directory before answering C-STORE; DCMTK storescp writes without fsync. $FSYNC_NOTE."
    "Peers: DCMTK $(/usr/bin/storescp --version 2>/dev/null | awk 'NR==1{print $3}'), nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///') (sendfile, 2 workers, gzip level 6 like tsunagi's), wrk $({ wrk -v 2>&1 || true; } | awk 'NR==1{print $2}'), curl $(curl --version | awk 'NR==1{print $2}')."
    "Load average (1 min) at start $LOAD_START, at end $(cut -d' ' -f1 /proc/loadavg): other work on the machine skews absolute figures; the ratios compare runs made minutes apart."
    "Medians of the runs (n, min-max in parentheses). Ratios: tsunagi / peer."
)
BENCH_STUDIES=$STUDIES python3 benches/bench_report.py report "$RESULTS" target/bench-report.md "${CONTEXT[@]}"
say "report written to target/bench-report.md ($SECONDS s in all)"
