# Shared by the network-namespace benches (bench-pull.sh, bench-link.sh): logging, the work
# directory, the cleanup trap (stops the running step and every process group it recorded in
# $WORK/pids, deletes the namespaces, keeps $WORK with BENCH_KEEP=1), tracked steps, the
# release build and the CT generator. Source it with BENCH_NAME set; then call
# `bench_init NAMESPACE...`.

say() { printf '[%s %s] %s\n' "$BENCH_NAME" "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }

bench_init() { # namespace...
    BENCH_NAMESPACES=("$@")
    WORK=$(mktemp -d "/tmp/tsunagi-$BENCH_NAME.XXXXXX")
    BENCH_PID=''   # the running step (build, generator, bench): waited on in the background
                   # so that an interrupt is handled at once, not when the step ends
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM HUP
}

bench_cleanup() {
    local status=$?
    trap - EXIT INT TERM HUP
    if [ -n "$BENCH_PID" ] && kill -0 "$BENCH_PID" 2>/dev/null; then
        kill -TERM "$BENCH_PID" 2>/dev/null || true   # it stops its own processes
        for _ in $(seq 100); do kill -0 "$BENCH_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$BENCH_PID" 2>/dev/null || true
    fi
    if [ -s "$WORK/pids" ]; then                       # whatever it could not stop
        while read -r pgid; do
            if [ -n "$pgid" ]; then kill -KILL -- "-$pgid" 2>/dev/null || true; fi
        done <"$WORK/pids"
    fi
    for ns in "${BENCH_NAMESPACES[@]}"; do
        ip netns del "$ns" 2>/dev/null || true
    done
    if [ "${BENCH_KEEP:-}" = 1 ]; then
        say "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}

step() { # run a step as a tracked background job; its status is ours
    "$@" &
    BENCH_PID=$!
    local status=0
    wait "$BENCH_PID" || status=$?
    BENCH_PID=''
    return "$status"
}

bench_build() { # sets BIN
    say "building (release)"
    step cargo build --release --quiet --bin tsunagi || die "the release build failed"
    BIN=$ROOT/target/release/tsunagi
}

bench_ct() { # dir: the $SLICES-slice CT series there, its summary in $WORK/ct.txt and ct.json
    say "generating the $SLICES-slice CT series"
    mkdir -p "$1"
    step python3 benches/make_ct.py "$1" --slices "$SLICES" >"$WORK/ct.txt" || die "make_ct.py failed"
    python3 - "$WORK/ct.txt" "$WORK/ct.json" <<'PY'
import json, sys
kv = dict(w.split("=", 1) for w in open(sys.argv[1]).read().split())
json.dump({k: (int(v) if k in ("files", "bytes") else v) for k, v in kv.items()}, open(sys.argv[2], "w"))
PY
    say "CT: $(cat "$WORK/ct.txt")"
}
