#!/usr/bin/env bash
# benches/run-bench.sh - the wall-clock table of README "Performance": dnsfwd against the
# ceiling rows and the anchors, all in one run, through the shared harness
# (../shared/bench/run-bench.sh: dnsperf on loopback against knotd, the forwarder pinned to
# CPU 1, dnsperf and knotd on CPU 0, medians of 3 runs, a run disturbed by other jobs or by
# CPU steal discarded and redone).
#
#   benches/run-bench.sh                  all rows (about 10 minutes)
#   benches/run-bench.sh dnsfwd dnsdist   some rows
#
# Rows: reflector direct dnsfwd-nocache dnsfwd dnsdist dnsdist-pc dnsmasq dnsmasq-nocache
#       reflector-cpu0 dnsfwd-cpu0
#   reflector        the shared reflector (echo, QR set) on CPU 1: the most dnsperf can drive,
#                    and at 10k q/s the latency floor of any server on a CPU of its own
#                    (one recvfrom and one sendto a datagram: what one hop and one wake-up cost)
#   direct           dnsperf straight to knotd: the ceiling of a forwarded miss
#   dnsfwd-nocache   target/release/dnsfwd --cache-size 0: every query forwarded (miss)
#   dnsfwd           target/release/dnsfwd (defaults): miss = one pass of distinct names,
#                    hit = 100 names looped
#   dnsdist(-pc), dnsmasq(-nocache)   the anchors as configured in ../shared/bench/anchors
#   reflector-cpu0, dnsfwd-cpu0   latency at 10k q/s with the server on CPU 0, beside dnsperf
#                    and knotd, as the direct row is: no cross-CPU wake-up per hop
# Scenarios: miss (100k distinct names, one pass), hit (100 names, --duration s), and
# miss@10000 / hit@10000 (latency at a fixed 10,000 q/s: p50/p99 from dnsperf -v).
#
# Environment: BENCH (../shared/bench, or ../../shared/bench from a worktree), RUNS (3), DURATION (5: dnsperf -l of the looped
#   scenarios; the harness default is 10, 5 keeps the whole table under 15 minutes),
#   OUTDIR (target/bench-out/<UTC stamp>), BIN (target/release/dnsfwd, built if missing),
#   LOAD_MAX (1.0) and LOAD_WAIT (600): before starting, wait up to LOAD_WAIT s until the
#   1-minute load average is below LOAD_MAX (then each run still waits for a quiet machine);
#   BENCH_OPTS: more options for the harness (e.g. '--quiet-max 30').
# Writes OUTDIR/results.tsv (the harness's per-run and median rows), OUTDIR/log.txt,
# OUTDIR/table.md (../shared/bench/report.sh) and prints the summary table (summary.md).
# Needs dnsperf, knotd, dig, dnsdist, dnsmasq (apt-get install dnsperf knot bind9-dnsutils
# dnsdist dnsmasq-base).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# beside the checkout, or beside the folder of worktrees
BENCH=${BENCH:-$ROOT/../shared/bench}
[[ -d $BENCH || ! -d $ROOT/../../shared/bench ]] || BENCH=$ROOT/../../shared/bench
RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
OUTDIR=${OUTDIR:-$ROOT/target/bench-out/$(date -u +%Y%m%dT%H%M%SZ)}
BIN=${BIN:-$ROOT/target/release/dnsfwd}
LOAD_MAX=${LOAD_MAX:-1.0}
LOAD_WAIT=${LOAD_WAIT:-600}
[[ -x $BENCH/run-bench.sh ]] || { echo "run-bench.sh: $BENCH/run-bench.sh not found (set BENCH)" >&2; exit 1; }
ROWS=("$@")
[[ ${#ROWS[@]} -gt 0 ]] || ROWS=(reflector direct dnsfwd-nocache dnsfwd dnsdist dnsdist-pc dnsmasq dnsmasq-nocache reflector-cpu0 dnsfwd-cpu0)
mkdir -p "$OUTDIR"

[[ -x $BIN ]] || cargo build --release
# The reflector is built here, not in the shared folder.
REFLECTOR=$ROOT/target/bench-reflector/release/reflector
if [[ ! -x $REFLECTOR ]]; then
    CARGO_TARGET_DIR=$ROOT/target/bench-reflector cargo build --release --offline --quiet \
        --manifest-path "$BENCH/reflector/Cargo.toml"
fi

started=0
if ! "$BENCH/upstream.sh" status >/dev/null 2>&1; then
    "$BENCH/upstream.sh" start
    started=1
fi
trap '[[ $started == 1 ]] && "$BENCH/upstream.sh" stop >/dev/null 2>&1 || true' EXIT

waited=0
while ! awk -v m="$LOAD_MAX" '{ exit !($1 < m) }' /proc/loadavg; do
    if (( waited >= LOAD_WAIT )); then
        echo "run-bench.sh: WARNING: load average still $(cut -d' ' -f1 /proc/loadavg) after ${LOAD_WAIT}s; running anyway" >&2
        break
    fi
    sleep 10
    waited=$((waited + 10))
done

{
    echo "# benches/run-bench.sh $(date -u +%FT%TZ) rows: ${ROWS[*]}; runs $RUNS, looped scenarios ${DURATION}s"
    echo "# host: $(nproc) cpus, $(uname -r); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# dnsfwd $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?'), $(dnsperf -h 2>&1 | awk '/^Version/ { print "dnsperf", $2 }'), $(knotd --version 2>&1 | head -1)," \
         "$(dnsdist --version 2>&1 | head -1 | awk '{ print $1, $2 }'), $(dnsmasq --version 2>&1 | head -1 | awk '{ print $1, $3 }')"
} | tee -a "$OUTDIR/log.txt"

# shellcheck disable=SC2086  # BENCH_OPTS is split on purpose
rb() { "$BENCH/run-bench.sh" --runs "$RUNS" --duration "$DURATION" --out "$OUTDIR/results.tsv" ${BENCH_OPTS:-} "$@" 2>&1 | tee -a "$OUTDIR/log.txt"; }
anchor() { # anchor NAME SCENARIOS
    rb --name "$1" --scenarios "$2" --cmd "$BENCH/anchors/run-anchor.sh $1 {LISTEN_PORT} {UPSTREAM} {WORKDIR}"
}
FAILED=()
for row in "${ROWS[@]}"; do
    if ! case $row in
        reflector) rb --name reflector --no-upstream --no-verify --scenarios hit,hit@10000 \
                      --cmd "$REFLECTOR {LISTEN_ADDR}:{LISTEN_PORT} 600" ;;
        reflector-cpu0) rb --name reflector-cpu0 --fwd-cpus 0 --no-upstream --no-verify --scenarios hit@10000 \
                           --cmd "$REFLECTOR {LISTEN_ADDR}:{LISTEN_PORT} 600" ;;
        dnsfwd-cpu0) rb --name dnsfwd-cpu0 --fwd-cpus 0 --scenarios hit@10000,miss@10000 \
                        --cmd "$BIN --listen 127.0.0.1:{LISTEN_PORT} --upstream {UPSTREAM}" ;;
        direct) rb --name direct --direct --scenarios miss,hit,miss@10000,hit@10000 ;;
        dnsfwd-nocache) rb --name dnsfwd-nocache --scenarios miss,miss@10000 \
                           --cmd "$BIN --listen 127.0.0.1:{LISTEN_PORT} --upstream {UPSTREAM} --cache-size 0" ;;
        dnsfwd) rb --name dnsfwd --scenarios miss,hit,hit@10000 \
                   --cmd "$BIN --listen 127.0.0.1:{LISTEN_PORT} --upstream {UPSTREAM}" ;;
        dnsdist|dnsmasq-nocache) anchor "$row" miss,hit,miss@10000 ;;
        dnsdist-pc) anchor "$row" miss,hit,hit@10000 ;;
        dnsmasq) anchor "$row" miss,hit ;;
        *) echo "run-bench.sh: unknown row '$row'" >&2; exit 2 ;;
    esac; then
        echo "run-bench.sh: ROW FAILED: $row" | tee -a "$OUTDIR/log.txt" >&2
        FAILED+=("$row")
    fi
done

"$BENCH/report.sh" "$OUTDIR/results.tsv" > "$OUTDIR/table.md"
# One line per row: the latest median ("med") row of each (name, scenario). TSV columns:
# 1 name, 2 scenario, 3 run, 4 qps, 5 avg, 6 p50, 7 p99, 8 lost%, 11 fwd CPU%, 18 spread%.
awk -F'\t' '
    $1 == "name" || $3 != "med" { next }
    { k = $1 SUBSEP $2; row[k] = $0; if (!($1 in seen)) { seen[$1] = 1; names[++n] = $1 } }
    function get(m, s, c,   a) { if (!((m SUBSEP s) in row)) return ""; split(row[m SUBSEP s], a, "\t"); return a[c] }
    function num(x, fmt) { return (x == "" || x == "-") ? "–" : sprintf(fmt, x) }
    function qps(m, s,   q) { q = get(m, s, 4); return q == "" ? "–" : sprintf("%.0f", q) " (" num(get(m, s, 18), "%.0f") "%)" }
    function usq(m, s,   q, f) { q = get(m, s, 4); f = get(m, s, 11); return (q == "" || f == "" || f == "-" || q + 0 == 0) ? "–" : sprintf("%.1f", f / 100 / q * 1e6) }
    function lat(m, s) { return get(m, s, 6) == "" ? "–" : num(get(m, s, 6) * 1000, "%.0f") " / " num(get(m, s, 7) * 1000, "%.0f") }
    function lost(m,   s, x, t) { t = 0; for (s in has) { x = get(m, s, 8); if (x != "" && x != "-" && x + 0 > t) t = x + 0 } return sprintf("%.2f", t) }
    { has[$2] = 1 }
    END {
        print "| row | miss QPS (spread) | hit QPS (spread) | CPU µs/query miss / hit | p50 / p99 µs, miss at max | p50 / p99 µs, hit at max | p50 / p99 µs, miss @10k q/s | p50 / p99 µs, hit @10k q/s | lost % (max) |"
        print "|---|--:|--:|--:|--:|--:|--:|--:|--:|"
        for (i = 1; i <= n; i++) { m = names[i]
            printf "| %s | %s | %s | %s / %s | %s | %s | %s | %s | %s |\n", m, qps(m, "miss"), qps(m, "hit"),
                usq(m, "miss"), usq(m, "hit"), lat(m, "miss"), lat(m, "hit"), lat(m, "miss@10000"), lat(m, "hit@10000"), lost(m) }
    }' "$OUTDIR/results.tsv" | tee "$OUTDIR/summary.md"
echo "results: $OUTDIR/results.tsv  full table: $OUTDIR/table.md  summary: $OUTDIR/summary.md"
[[ ${#FAILED[@]} -eq 0 ]] || { echo "run-bench.sh: failed rows: ${FAILED[*]}" >&2; exit 1; }
