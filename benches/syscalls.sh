#!/usr/bin/env bash
# benches/syscalls.sh - system calls per query under load, for dnsfwd and the anchors in the
# same sitting: the "under load" half of the system-call target (benches/cost.sh measures
# 1,000 q/s). For each row it starts the server, counts raw_syscalls:sys_enter of its whole
# process tree (perf) for a few idle seconds and then during a dnsperf run at a fixed rate,
# and prints (load - idle scaled to the same time) / answered queries.
#
#   benches/syscalls.sh [ROWS...]          rows: dnsfwd dnsdist dnsdist-pc (default: all)
#   RATE=20000 QUERIES=60000 benches/syscalls.sh dnsfwd
#
# miss: the first QUERIES names of queries/miss.txt, once each; hit: queries/hit.txt looped.
# Environment: BENCH (../shared/bench), BIN (target/release/dnsfwd), RATE (20000),
# QUERIES (60000), PORT (15365), SCENARIOS ("miss hit"). Needs perf, dnsperf, dig, knotd,
# dnsdist. Loopback only; every run stops by itself.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=${BENCH:-$ROOT/../shared/bench}
BIN=${BIN:-$ROOT/target/release/dnsfwd}
RATE=${RATE:-20000} QUERIES=${QUERIES:-60000} PORT=${PORT:-15365} SCENARIOS=${SCENARIOS:-miss hit}
ROWS=("$@"); [[ ${#ROWS[@]} -gt 0 ]] || ROWS=(dnsfwd dnsdist dnsdist-pc)
for t in perf dnsperf dig; do command -v $t >/dev/null || { echo "syscalls.sh: $t missing" >&2; exit 1; }; done
[[ -x $BIN ]] || (cd "$ROOT" && cargo build --release)
W=$(mktemp -d); PID=
cleanup() { [[ -n $PID ]] && { kill -TERM -- "-$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }; rm -rf "$W"; }
trap cleanup EXIT
started=0
if ! "$BENCH/upstream.sh" status >/dev/null 2>&1; then "$BENCH/upstream.sh" start >/dev/null; started=1; fi
trap 'cleanup; [[ $started == 1 ]] && "$BENCH/upstream.sh" stop >/dev/null 2>&1 || true' EXIT
SECS=$(( (QUERIES + RATE - 1) / RATE ))
count() { # count SECONDS|load -> syscalls of the server's session meanwhile [answered]
    local tids answered=0
    tids=$(ps -eLo sid=,tid= | awk -v s="$PID" '$1 == s {print $2}' | paste -sd,)
    perf stat -x, -e raw_syscalls:sys_enter -t "$tids" -o "$W/perf.csv" 2>/dev/null & local p=$!
    sleep 0.3
    local t0; t0=$(date +%s.%N)
    if [[ $1 == load ]]; then
        answered=$(dnsperf -s 127.0.0.1 -p "$PORT" -d "$W/q.txt" -n 1 -Q "$RATE" -c 10 -t 5 2>/dev/null | awk '/Queries completed:/ {print $3}')
    else
        sleep "$1"
    fi
    local t1; t1=$(date +%s.%N)
    kill -INT "$p"; wait "$p" 2>/dev/null || true
    # a thread that slept through the whole count (blocked in epoll_wait) reads "<not counted>": 0
    echo "$(awk -F, '/raw_syscalls/ {print $1 + 0}' "$W/perf.csv") $(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}') $answered"
}
for scen in $SCENARIOS; do
    case $scen in
        miss) head -n "$QUERIES" "$BENCH/queries/miss.txt" > "$W/q.txt" ;;
        hit) for _ in $(seq $(( (QUERIES + 99) / 100 ))); do cat "$BENCH/queries/hit.txt"; done | head -n "$QUERIES" > "$W/q.txt" ;;
    esac
    for row in "${ROWS[@]}"; do
        mkdir -p "$W/work"
        case $row in
            dnsfwd) cmd="$BIN --listen 127.0.0.1:$PORT --upstream 127.0.0.1:5300" ;;
            dnsdist|dnsdist-pc) cmd="$BENCH/anchors/run-anchor.sh $row $PORT 127.0.0.1:5300 $W/work" ;;
            *) echo "syscalls.sh: unknown row $row" >&2; exit 2 ;;
        esac
        setsid bash -c "exec $cmd" >"$W/server.log" 2>&1 &
        PID=$!
        for _ in $(seq 120); do dig @127.0.0.1 -p "$PORT" ready.bench.test TXT +short +tries=1 +time=1 >/dev/null 2>&1 && break; sleep 0.5; done
        read -r idle idle_s _ < <(count "$SECS")
        read -r load load_s answered < <(count load)
        kill -TERM -- "-$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=
        rm -rf "$W/work"
        awk -v r="$row" -v s="$scen" -v q="$RATE" -v i="$idle" -v is="$idle_s" -v l="$load" -v ls="$load_s" -v a="$answered" 'BEGIN {
            if (a < 1) { print "SYSCALLS " r " " s " no answers"; exit }
            printf "SYSCALLS %s %s rate %d answered %d/%d syscalls/q %.2f (idle %.0f/s)\n", r, s, q, a, '"$QUERIES"', (l - i * ls / is) / a, i / is }'
    done
done
