#!/usr/bin/env bash
# Idempotent, cached installer for the tests' real Prometheus and promtool.
#
#   scripts/ensure-prometheus.sh
#
# There is no promtool on PyPI; Debian's `prometheus` package has both binaries, statically
# linked. Without root or a system install: `apt-get download prometheus`, then `dpkg-deb -x`
# into ${LANE_SUPERVISOR_CACHE:-$HOME/.cache/lane-supervisor}/prometheus/. A finished install
# leaves a marker file; a second run with everything present is near-instant. Prints the
# resulting paths as KEY=VALUE lines on stdout (PROMETHEUS=..., PROMTOOL=...); progress goes to
# stderr.
set -euo pipefail

CACHE="${LANE_SUPERVISOR_CACHE:-$HOME/.cache/lane-supervisor}"
DIR="$CACHE/prometheus"
PROMETHEUS="$DIR/root/usr/bin/prometheus"
PROMTOOL="$DIR/root/usr/bin/promtool"
MARK="$DIR/.installed-ok"

log() { echo "ensure-prometheus: $*" >&2; }

mkdir -p "$CACHE"
# One installer at a time per cache (parallel test runs share it); not the openclaw lock, so
# the two installers never wait for each other.
exec 8>"$CACHE/.lock-prometheus"
if command -v flock >/dev/null 2>&1; then
    flock 8
fi

if [ -f "$MARK" ] && [ -x "$PROMETHEUS" ] && [ -x "$PROMTOOL" ]; then
    log "prometheus already in $DIR"
else
    for tool in apt-get dpkg-deb; do
        command -v "$tool" >/dev/null 2>&1 || { log "$tool is required (Debian/Ubuntu)"; exit 1; }
    done
    log "downloading Debian's prometheus package into $DIR (~19 MB)"
    rm -rf "$DIR"
    mkdir -p "$DIR/deb"
    start=$(date +%s)
    # apt-get download needs no root; run from the target folder (it writes to the cwd). Its
    # "unsandboxed" note when run as root is harmless and goes to stderr with the rest.
    (cd "$DIR/deb" && apt-get download -q prometheus >&2)
    deb=$(find "$DIR/deb" -maxdepth 1 -name 'prometheus_*.deb' | head -n 1)
    [ -n "$deb" ] || { log "apt-get download left no prometheus_*.deb in $DIR/deb"; exit 1; }
    dpkg-deb -x "$deb" "$DIR/root"
    rm -rf "$DIR/deb"
    "$PROMTOOL" --version >/dev/null 2>&1 || { log "$PROMTOOL does not run"; exit 1; }
    "$PROMETHEUS" --version >/dev/null 2>&1 || { log "$PROMETHEUS does not run"; exit 1; }
    touch "$MARK"
    log "prometheus installed in $(( $(date +%s) - start )) s"
fi

echo "PROMETHEUS=$PROMETHEUS"
echo "PROMTOOL=$PROMTOOL"
