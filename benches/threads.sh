#!/usr/bin/env bash
# benches/threads.sh - correctness of --threads N under load: dnsperf for SECS seconds
# through dnsfwd --threads N to knotd (the shared harness's upstream, ../shared/bench),
# with the cache on. Prints dnsperf's completed/lost counts and response codes, and each
# loop's share of the queries (from the loops' exit lines). On a 2-core machine the
# load generator, knotd and the N loops share the cores: this is a check of
# correctness (0 lost, no bad rcode, every loop working), not of scaling.
#
#   benches/threads.sh [BINARY]     (default: target/release/dnsfwd, built if missing)
#   THREADS=2 SECS=10 QUERIES=miss MODE=udp benches/threads.sh   (MODE=tcp: loop 0 reads
#   every connection and hands the queries it does not own to their loops)
set -euo pipefail
export LC_ALL=C PATH="$PATH:/usr/sbin:/sbin"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=${BENCH:-$ROOT/../shared/bench}
BIN=${1:-$ROOT/target/release/dnsfwd}
THREADS=${THREADS:-2} SECS=${SECS:-10} QUERIES=${QUERIES:-miss} MODE=${MODE:-udp}
[[ -x $BENCH/upstream.sh ]] || { echo "threads.sh: $BENCH/upstream.sh not found (set BENCH)" >&2; exit 1; }
command -v dnsperf >/dev/null || { echo "threads.sh: dnsperf is missing" >&2; exit 1; }
[[ -x $BIN ]] || (cd "$ROOT" && cargo build --release)
W=$(mktemp -d /tmp/dnsfwd-threads-bench.XXXXXX)
started=0 FWD=
cleanup() {
    [[ -n $FWD ]] && kill "$FWD" 2>/dev/null && wait "$FWD" 2>/dev/null
    [[ $started == 1 ]] && "$BENCH/upstream.sh" stop >/dev/null 2>&1
    rm -rf "$W"
}
trap cleanup EXIT
if ! "$BENCH/upstream.sh" status >/dev/null 2>&1; then
    "$BENCH/upstream.sh" start >/dev/null
    started=1
fi
PORT=$((20000 + RANDOM % 20000))
RUST_LOG=info "$BIN" --listen "127.0.0.1:$PORT" --upstream 127.0.0.1:5300 \
    --threads "$THREADS" </dev/null 2>"$W/fwd.log" &
FWD=$!
for _ in $(seq 40); do
    dig +short +time=1 +tries=1 @127.0.0.1 -p "$PORT" ready.bench.test TXT 2>/dev/null |
        grep -q ok && break
    sleep 0.25
done
dnsperf -s 127.0.0.1 -p "$PORT" -d "$BENCH/queries/$QUERIES.txt" -l "$SECS" \
    -m "$MODE" -c 10 -q 100 -t 2 -T 1 >"$W/perf" 2>&1 || true
kill -TERM "$FWD"
wait "$FWD" || true
FWD=
echo "dnsfwd --threads $THREADS, dnsperf $SECS s ($QUERIES.txt, -m $MODE -c 10 -q 100), knotd upstream"
grep -E "Queries (sent|completed|lost)|Response codes|Queries per second" "$W/perf"
grep -E "stopped|handed" "$W/fwd.log" | sed -E 's/.*(stopped[^:]*: queries=[0-9]+ forwarded=[0-9]+).*/\1/'
