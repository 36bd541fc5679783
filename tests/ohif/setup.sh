#!/bin/sh
# Prepares tests/ohif for run-ohif.mjs: Debian's chromium and this folder's node_modules
# (@ohif/app's prebuilt viewer and playwright-core). Idempotent; says what it did.
# Playwright never downloads a browser here: run-ohif.mjs drives /usr/bin/chromium.
set -eu

cd "$(dirname "$0")"
here=$(pwd)

say() { printf 'setup.sh: %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else say "need root (or sudo) for: $*"; exit 1
    fi
}

# --- chromium ---------------------------------------------------------------------------------
chromium_bin=${CHROMIUM:-/usr/bin/chromium}
if [ -x "$chromium_bin" ]; then
    say "chromium present: $("$chromium_bin" --version 2>/dev/null | head -n 1)"
else
    say "installing chromium with apt-get"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
    say "installed: $(/usr/bin/chromium --version 2>/dev/null | head -n 1)"
fi

# --- node -------------------------------------------------------------------------------------
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    say "node and npm are needed (Node >= 20: playwright-core 1.65 requires it; Debian 12's own nodejs is 18)"
    exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
    say "node $(node --version) is too old: playwright-core 1.65 needs Node >= 20"
    exit 1
fi

# --- node_modules -----------------------------------------------------------------------------
# npm ci when the tree is missing, incomplete, or older than package-lock.json.
need_ci=no
if [ ! -f node_modules/@ohif/app/dist/index.html ] || [ ! -f node_modules/playwright-core/package.json ]; then
    need_ci=yes
elif [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    need_ci=yes
fi
if [ "$need_ci" = yes ]; then
    say "running npm ci in $here"
    # @ohif/app declares engines.node >=24 for building it; only its prebuilt dist/ is used.
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --engine-strict=false --loglevel=error
    say "installed @ohif/app $(node -p 'require("./node_modules/@ohif/app/package.json").version') and playwright-core $(node -p 'require("./node_modules/playwright-core/package.json").version')"
else
    say "node_modules up to date (@ohif/app $(node -p 'require("./node_modules/@ohif/app/package.json").version'), playwright-core $(node -p 'require("./node_modules/playwright-core/package.json").version'))"
fi
say "ready: node $here/run-ohif.mjs --dicomweb http://127.0.0.1:PORT/dicom-web --study UID"
