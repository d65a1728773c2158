#!/usr/bin/env bash
# benches/cost.sh - what a query costs dnsfwd, in figures CPU steal cannot move: user-space
# instructions and system calls per query, for a forwarded miss and a cache hit, measured
# by the shared harness (../shared/bench/cost.sh: cachegrind and perf, 3000 queries at
# 1000 q/s against knotd on loopback). Prints one COST row per scenario, so a regression
# shows without running the anchors. Needs valgrind, linux-perf, dnsperf, knot, dig.
#
#   benches/cost.sh [BINARY]        (default: target/release/dnsfwd, built if missing)
#   PORT=15391 benches/cost.sh      (listen port; default the harness's, 15363)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=${BENCH:-$ROOT/../shared/bench}
BIN=${1:-$ROOT/target/release/dnsfwd}
[[ -x $BENCH/cost.sh ]] || { echo "cost.sh: $BENCH/cost.sh not found (set BENCH)" >&2; exit 1; }
[[ -x $BIN ]] || (cd "$ROOT" && cargo build --release)
started=0
if ! "$BENCH/upstream.sh" status >/dev/null 2>&1; then
    "$BENCH/upstream.sh" start >/dev/null
    started=1
fi
trap '[[ $started == 1 ]] && "$BENCH/upstream.sh" stop >/dev/null 2>&1 || true' EXIT
for scenario in miss hit; do
    "$BENCH/cost.sh" --name dnsfwd --scenario "$scenario" --queries 3000 --port "${PORT:-15363}" \
        --cmd "$BIN --listen 127.0.0.1:{LISTEN_PORT} --upstream {UPSTREAM}" | tail -n 1
done
