#!/usr/bin/env bash
# Side-by-side tunnel benchmark: bare veth, Aura (udp, quic, tls), wireguard-go,
# boringtun, OpenVPN (udp, tcp) and optionally quincy, each between two network
# namespaces this script creates and removes. See bench/README.md.
#
#   sudo bench/run.sh                       # everything, results in bench/results/<UTC>/
#   BENCH_SYSTEMS=bare,aura sudo bench/run.sh
#   BENCH_AURA_BASE=/path/to/old/aura BENCH_SYSTEMS=aura-udp sudo bench/run.sh
#                    # this tree's Aura UDP against another binary, in A-B-B-A order
#                    # (BENCH_BASE_CARRIER=quic or tls: on that carrier)
#   BENCH_CAMO_PAIRS=1 sudo bench/run.sh
#                    # each carrier with knock and masks on against off, A-B-B-A
#   BENCH_COVER=1 sudo bench/run.sh
#                    # Aura UDP and TLS with cover traffic off, idle, bursts, https
#   BENCH_PERF=1 sudo bench/run.sh
#                    # then one more 1-stream test per system under `perf record` (not a
#                    # figure): bench/results/<UTC>/perf-<system>-<side>.txt, flat by symbol,
#                    # and the recording beside it (.data) for `perf annotate -i`;
#                    # BENCH_PERF_CALLGRAPH=dwarf records call graphs by DWARF unwinding
#                    # (the release build keeps debug info) instead of frame pointers
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
SECONDS_PER_TEST=${BENCH_SECONDS:-5}
SYSTEMS=${BENCH_SYSTEMS:-all}
TOOLS=${BENCH_TOOLS:-/work/.cache/bench-tools}
QUINCY=${BENCH_QUINCY:-0}
OUT=${BENCH_OUT:-$ROOT/bench/results/$(date -u +%Y%m%dT%H%M%SZ)}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
PREFIX=${BENCH_PREFIX:-abench$$}

say() { printf '[bench] %s\n' "$*"; }

if [[ $(id -u) -ne 0 ]]; then
    echo "bench/run.sh needs root (network namespaces, TUN devices): sudo $0" >&2
    exit 1
fi

WORK=$(mktemp -d /tmp/aura-bench.XXXXXX)
PIDFILE=$WORK/pids
: >"$PIDFILE"
DRIVER_PID=

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $DRIVER_PID ]] && kill -0 "$DRIVER_PID" 2>/dev/null; then
        kill -TERM "$DRIVER_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$DRIVER_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$DRIVER_PID" 2>/dev/null || true
    fi
    # Backstop: every PID the driver recorded (and still the same process: same start
    # time), then whatever is left inside our namespaces.
    stop_recorded_and_namespaces "$PIDFILE"
    if [[ -d $OUT ]] && compgen -G "$WORK/*.log" >/dev/null; then
        mkdir -p "$OUT/logs" && cp "$WORK"/*.log "$OUT/logs/" 2>/dev/null || true
    fi
    rm -rf "$WORK"
    if ip netns list | grep -q -- "^$PREFIX-"; then
        say "WARNING: namespaces left behind:"; ip netns list | grep -- "^$PREFIX-" || true
        rc=1
    else
        say "cleanup done: no $PREFIX-* namespace left"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- tools (installed only when missing) -------------------------------------------
SKIP=()
if [[ ${BENCH_SKIP_INSTALL:-0} != 1 ]]; then
    missing=()
    command -v iperf3 >/dev/null || missing+=(iperf3)
    command -v wg >/dev/null || missing+=(wireguard-tools)
    command -v wireguard-go >/dev/null || missing+=(wireguard-go)
    command -v openvpn >/dev/null || missing+=(openvpn)
    command -v openssl >/dev/null || missing+=(openssl)
    command -v ping >/dev/null || missing+=(iputils-ping)
    command -v ss >/dev/null || missing+=(iproute2)
    if [[ -n ${BENCH_PERF:-} ]]; then command -v perf >/dev/null || missing+=(linux-perf); fi
    if ((${#missing[@]})); then
        say "apt-get install ${missing[*]}"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 600 \
            apt-get install -y -qq --no-install-recommends "${missing[@]}") >"$WORK/apt.log" 2>&1 \
            || { say "apt-get failed (tail of its log):"; tail -5 "$WORK/apt.log"; }
    fi
    mkdir -p "$TOOLS"
    if [[ ! -x $TOOLS/bin/boringtun-cli ]]; then
        say "cargo install boringtun-cli --locked (into $TOOLS)"
        timeout 900 cargo install boringtun-cli --locked --root "$TOOLS" >"$WORK/boringtun.log" 2>&1 \
            || { say "boringtun-cli did not install:"; tail -5 "$WORK/boringtun.log"; }
    fi
    if [[ $QUINCY == 1 && ( ! -x $TOOLS/bin/quincy-client || ! -x $TOOLS/bin/quincy-server ) ]]; then
        say "cargo install quincy-client quincy-server --locked (BENCH_QUINCY=1; ~8 min)"
        timeout 1200 cargo install quincy-client quincy-server --locked --root "$TOOLS" \
            >"$WORK/quincy.log" 2>&1 || { say "quincy did not install:"; tail -5 "$WORK/quincy.log"; }
    fi
    python3 -c 'import matplotlib' 2>/dev/null || {
        say "pip install matplotlib"
        timeout 300 python3 -m pip install -q matplotlib >"$WORK/pip.log" 2>&1 \
            || say "matplotlib did not install: no chart"
    }
fi
BORINGTUN=
[[ -x $TOOLS/bin/boringtun-cli ]] && BORINGTUN=$TOOLS/bin/boringtun-cli
QC= QS=
if [[ $QUINCY == 1 && -x $TOOLS/bin/quincy-client && -x $TOOLS/bin/quincy-server ]]; then
    QC=$TOOLS/bin/quincy-client QS=$TOOLS/bin/quincy-server
elif [[ $QUINCY == 1 ]]; then
    SKIP+=(--skip-reason "quincy=BENCH_QUINCY=1 but quincy did not install")
fi

# ---- Aura ------------------------------------------------------------------------------
AURA=$TARGET/release/aura
if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    say "cargo build --release -p aura-cli (target dir $TARGET)"
    (cd "$ROOT" && CARGO_TARGET_DIR=$TARGET timeout 1800 cargo build --release -p aura-cli \
        >"$WORK/build.log" 2>&1) || { say "aura build failed:"; tail -5 "$WORK/build.log"; AURA=; }
fi
[[ -n $AURA && -x $AURA ]] || { AURA=; SKIP+=(--skip-reason "aura=the release build failed"); }

# ---- machine description -----------------------------------------------------------------
mkdir -p "$OUT"
ver() { "$@" 2>&1 | head -1 || true; }
{
    echo "date (UTC):   $(date -u '+%Y-%m-%d %H:%M:%S')"
    echo "uname:        $(uname -a)"
    echo "cpu:          $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "nproc:        $(nproc)"
    echo "memory:       $(grep MemTotal /proc/meminfo | awk '{print $2" kB"}')"
    echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "aura commit:  $(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' (work tree modified)')"
    echo "aura:         ${AURA:-not built} $( [[ -n $AURA ]] && ver "$AURA" --version)"
    echo "rustc:        $(ver rustc --version)"
    echo "iperf3:       $(ver iperf3 --version)"
    echo "wg:           $(ver wg --version)"
    echo "wireguard-go: $(dpkg-query -W -f='${Version}' wireguard-go 2>/dev/null || echo '?')"
    echo "boringtun:    ${BORINGTUN:-not installed} $( [[ -n $BORINGTUN ]] && ver "$BORINGTUN" --version)"
    echo "openvpn:      $(ver openvpn --version)"
    echo "openssl:      $(ver openssl version)"
    # quincy-client has no --version: the version cargo install recorded.
    echo "quincy:       ${QC:-not installed} $( [[ -n $QC ]] && grep -ho '"quincy-[a-z]* [0-9.]*' "$TOOLS/.crates.toml" 2>/dev/null | tr -d '"' | paste -sd, -)"
    echo "python3:      $(ver python3 --version)"
    echo "settings:     BENCH_SECONDS=$SECONDS_PER_TEST BENCH_SYSTEMS=$SYSTEMS BENCH_QUINCY=$QUINCY prefix=$PREFIX"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt"

# ---- the benchmark -------------------------------------------------------------------------
say "namespaces $PREFIX-a / $PREFIX-b; results in $OUT"
python3 "$ROOT/bench/driver.py" --out "$OUT" --tmp "$WORK" --pidfile "$PIDFILE" \
    --prefix "$PREFIX" --seconds "$SECONDS_PER_TEST" --systems "$SYSTEMS" \
    --aura "$AURA" --aura-base "${BENCH_AURA_BASE:-}" --base-carrier "${BENCH_BASE_CARRIER:-udp}" ${BENCH_CAMO_PAIRS:+--camo-pairs} ${BENCH_COVER:+--cover-profiles} ${BENCH_PERF:+--perf} --boringtun "$BORINGTUN" --quincy-client "$QC" --quincy-server "$QS" \
    ${SKIP[@]+"${SKIP[@]}"} &
DRIVER_PID=$!
wait "$DRIVER_PID"
DRIVER_PID=
say "results: $OUT/results.md"
