#!/usr/bin/env bash
# Traffic-analysis harness: what a classifier learns from Aura's sizes and timing
# (docs/TRAFFIC-ANALYSIS.md). Two namespaces this script creates and removes, a local
# HTTPS site, tcpdump on the client's link, scikit-learn in a venv of its own.
#
#   sudo bench/ta/run.sh                        # results in bench/results/ta-<UTC>/
#   TA_PAGES=8 TA_VISITS=20 sudo bench/ta/run.sh
#   TA_COVER=off,https TA_CARRIER=tls sudo bench/ta/run.sh   # profiles, one run each; carrier
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
TOOLS=${BENCH_TOOLS:-/work/.cache/bench-tools}
OUT=${TA_OUT:-$ROOT/bench/results/ta-$(date -u +%Y%m%dT%H%M%SZ)}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
PREFIX=${TA_PREFIX:-ata$$}

say() { printf '[ta] %s\n' "$*"; }
[[ $(id -u) -eq 0 ]] || { echo "bench/ta/run.sh needs root (namespaces, TUN): sudo $0" >&2; exit 1; }
for tool in tcpdump curl openssl ip; do
    command -v "$tool" >/dev/null || { echo "bench/ta/run.sh needs $tool" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/aura-ta.XXXXXX)
PIDFILE=$WORK/pids
: >"$PIDFILE"
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_recorded_and_namespaces "$PIDFILE"
    if [[ -d $OUT ]]; then mkdir -p "$OUT/logs" && cp "$WORK"/*.log "$OUT/logs/" 2>/dev/null || true; fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

VENV=$TOOLS/ta-venv
if ! "$VENV/bin/python" -c 'import sklearn' 2>/dev/null; then
    say "installing scikit-learn into $VENV"
    mkdir -p "$TOOLS"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q 'scikit-learn>=1.3,<2'
fi
AURA=$TARGET/release/aura
say "cargo build --release -p aura-cli"
(cd "$ROOT" && cargo build --release -q -p aura-cli)
mkdir -p "$OUT"
git -C "$ROOT" rev-parse HEAD >"$OUT/commit" 2>/dev/null || true
"$VENV/bin/python" "$ROOT/bench/ta/ta.py" --aura "$AURA" --out "$OUT" --tmp "$WORK" \
    --pidfile "$PIDFILE" --prefix "$PREFIX" --pages "${TA_PAGES:-8}" \
    --visits "${TA_VISITS:-20}" --cover "${TA_COVER:-off,idle,bursts,https}" \
    --carrier "${TA_CARRIER:-udp}"
say "results: $OUT/ta.json"
