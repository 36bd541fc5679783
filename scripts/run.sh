#!/usr/bin/env bash
# Build and run the gateway: `scripts/run.sh` runs `tsunagi serve` on ./proxy.toml if present,
# else on the embedded defaults; any arguments go to `tsunagi` (e.g. `scripts/run.sh --help`).
# The JPEG-LS codec (CharLS) is built from source with cmake; install it when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cmake >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "run.sh: installing cmake (needed to build the JPEG-LS codec)" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends cmake >/dev/null
    else
        echo "run.sh: cmake is needed to build the JPEG-LS codec; install it (apt-get install cmake)" >&2
        exit 1
    fi
fi
if [ $# -eq 0 ]; then
    set -- serve
fi
exec cargo run --release --quiet -- "$@"
