#!/usr/bin/env bash
# benches/kernel-cost.sh - where a forwarded miss's CPU time goes in the kernel, dnsfwd against
# the dnsdist anchor in the same sitting. Each run pins the server to CPU 1 (dnsperf and knotd
# are on CPU 0), drives it with dnsperf from the shared miss query file at RATE q/s for SECS s,
# records `perf record -g -C 1` (cpu-clock, kernel and user call chains) meanwhile, and takes
# the server's CPU time from schedstat (sum_exec_runtime of its threads: user + kernel,
# including the loopback softirq work done in its system calls). Runs alternate row by row,
# REPS times. benches/kernel_cost.py then sorts each sample of the server by its leafmost
# kernel function into groups (syscall entry/exit, UDP/IP send, the loopback delivery done
# inside the send, waking the peer, UDP receive, msghdr/iovec/fd lookup, data copy, socket
# memory accounting, skb alloc/free, route lookup, epoll_wait, scheduler, hrtimer, socket
# rotation, other), scales each run's samples to its schedstat time (perf sees less of it on
# a VM), and prints one markdown table: ns per answered query by group, one column per row
# (mean over the reps), with the kernel share and the CPU per miss. On loopback each send also
# pays the peer's receive and wake-up (about a fifth of the CPU); a NIC would not charge that
# to the sender. Absolute figures move with the load on the machine; compare rows of one table.
#
#   benches/kernel-cost.sh                    REPS=2 runs of each row, 20,000 q/s for 10 s
#   REPS=1 SECS=5 RATE=0 benches/kernel-cost.sh   one short run each, as fast as dnsperf goes
#   python3 benches/kernel_cost.py OUTDIR/r*  the table again from the raw runs
#
# Environment: BENCH (../shared/bench, or ../../shared/bench from a worktree), BIN
#   (target/release/dnsfwd, built if missing), FWD_ARGS (dnsfwd's extra arguments, default
#   "--cache-size 0" so every query is forwarded), ROWS ("dnsfwd dnsdist"), REPS (2), RATE
#   (20000 q/s; 0 = as fast as dnsperf -c 10 -q 100 goes), SECS (10: dnsperf -l), FREQ (2000:
#   perf sampling Hz), PORT (15367: the server's listen port), OUTDIR
#   (target/bench-out/kernel-<UTC stamp>: per run r<rep>-<row>/ with summary.txt, perf.data,
#   dnsperf.out, server.log; table.md).
# Runs as root (perf -C 1 and kernel symbols: kptr_restrict is reported). Needs 2 CPUs, perf,
# dnsperf, dig, knotd (started with ../shared/bench/upstream.sh if not running, and stopped
# after), dnsdist, python3. Loopback only; every run stops by itself.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# beside the checkout, or beside the folder of worktrees
BENCH=${BENCH:-$ROOT/../shared/bench}
[[ -d $BENCH || ! -d $ROOT/../../shared/bench ]] || BENCH=$ROOT/../../shared/bench
BIN=${BIN:-$ROOT/target/release/dnsfwd}
FWD_ARGS=${FWD_ARGS---cache-size 0}
ROWS=${ROWS:-dnsfwd dnsdist} REPS=${REPS:-2} RATE=${RATE:-20000} SECS=${SECS:-10}
FREQ=${FREQ:-2000} PORT=${PORT:-15367}
OUTDIR=${OUTDIR:-$ROOT/target/bench-out/kernel-$(date -u +%Y%m%dT%H%M%SZ)}
UPSTREAM=${UPSTREAM_ADDR:-127.0.0.1}:${UPSTREAM_PORT:-5300}
QFILE=$BENCH/queries/miss.txt
die() { echo "kernel-cost.sh: $*" >&2; exit 1; }
[[ -x $BENCH/upstream.sh && -f $QFILE ]] || die "$BENCH/upstream.sh or $QFILE not found (set BENCH)"
for t in perf dnsperf dig taskset setsid python3; do command -v $t >/dev/null || die "$t missing"; done
[[ " $ROWS " != *" dnsdist "* ]] || command -v dnsdist >/dev/null || die "dnsdist missing"
(( $(nproc) >= 2 )) || die "needs 2 CPUs (server on CPU 1, load on CPU 0)"
paranoid=$(cat /proc/sys/kernel/perf_event_paranoid)
[[ $(id -u) == 0 || $paranoid -le 0 ]] || die "perf record -C 1 needs root (perf_event_paranoid is $paranoid)"
[[ -x $BIN ]] || (cd "$ROOT" && cargo build --release)
read -ra EXTRA <<<"$FWD_ARGS"
mkdir -p "$OUTDIR"

PID='' PERF='' DNSPERF=''
stop_server() {
    [[ -n $PID ]] || return 0
    kill -TERM -- "-$PID" 2>/dev/null || true
    local st
    for _ in $(seq 50); do  # until it is gone or a zombie (kill -0 would wait out the zombie)
        st=$(ps -o stat= -p "$PID") || break
        [[ $st != Z* ]] || break
        sleep 0.1
    done
    kill -KILL -- "-$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=
}
started=0
cleanup() {
    [[ -z $DNSPERF ]] || { kill -TERM "$DNSPERF" 2>/dev/null || true; wait "$DNSPERF" 2>/dev/null || true; }
    [[ -z $PERF ]] || { kill -INT "$PERF" 2>/dev/null || true; wait "$PERF" 2>/dev/null || true; }
    stop_server
    [[ $started == 0 ]] || "$BENCH/upstream.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if ! "$BENCH/upstream.sh" status >/dev/null 2>&1; then "$BENCH/upstream.sh" start >/dev/null; started=1; fi

# Kernel symbols: with kptr_restrict 2 (or 1 and not root) perf sees no kernel function names
# and every kernel sample lands in "other".
kptr=$(cat /proc/sys/kernel/kptr_restrict)
if [[ $kptr == 0 || ($kptr == 1 && $(id -u) == 0) ]]; then
    symbols="kernel symbols visible (kptr_restrict=$kptr)"
else
    symbols="KERNEL SYMBOLS HIDDEN (kptr_restrict=$kptr): the kernel groups below read as other"
fi

runtime() { # the server's CPU ns so far: schedstat run time summed over its threads
    local s=0 t v
    for t in /proc/"$PID"/task/*/schedstat; do
        read -r v _ 2>/dev/null < "$t" || v=0
        s=$((s + v))
    done
    echo "$s"
}

run_one() { # run_one ROW REP
    local row=$1 d=$OUTDIR/r$2-$1 cmd
    mkdir -p "$d"
    case $row in
        dnsfwd) cmd=("$BIN" --listen "127.0.0.1:$PORT" --upstream "$UPSTREAM" "${EXTRA[@]}") ;;
        dnsdist) cmd=("$BENCH/anchors/run-anchor.sh" dnsdist "$PORT" "$UPSTREAM" "$d/work") ;;
        *) die "unknown row $row (rows: dnsfwd dnsdist)" ;;
    esac
    if ss -Hlnu "sport = :$PORT" | grep -q .; then die "UDP port $PORT already in use (set PORT)"; fi
    setsid taskset -c 1 "${cmd[@]}" >"$d/server.log" 2>&1 &
    PID=$!
    local pid=$PID ok=0
    for _ in $(seq 60); do
        kill -0 "$PID" 2>/dev/null || break
        if dig @127.0.0.1 -p "$PORT" ready.bench.test TXT +short +tries=1 +time=1 2>/dev/null | grep -q ok; then ok=1; break; fi
        sleep 0.5
    done
    [[ $ok == 1 ]] || { tail -n 5 "$d/server.log" >&2; die "$row did not answer on port $PORT"; }
    sleep 1
    local t tids=''
    for t in /proc/"$PID"/task/*; do tids+=${tids:+,}${t##*/}; done
    # perf stops at SIGINT after dnsperf, or by itself 30 s after dnsperf should have ended
    perf record -q -g -C 1 -F "$FREQ" -o "$d/perf.data" -- sleep $((SECS + 30)) >/dev/null 2>"$d/perf.err" &
    PERF=$!
    sleep 0.5
    local r0 r1 k0 k1 load; r0=$(runtime); k0=$(awk '{print $14, $15}' /proc/"$PID"/stat)
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    local qargs=(); [[ $RATE == 0 ]] || qargs=(-Q "$RATE")
    # in the background so that an interrupt stops the wait at once
    taskset -c 0 timeout $((SECS + 20)) dnsperf -s 127.0.0.1 -p "$PORT" -d "$QFILE" \
        -c 10 -q 100 -t 2 -T 1 -l "$SECS" "${qargs[@]}" >"$d/dnsperf.out" 2>&1 &
    DNSPERF=$!
    wait "$DNSPERF" || true
    DNSPERF=''
    r1=$(runtime); k1=$(awk '{print $14, $15}' /proc/"$PID"/stat)
    kill -INT "$PERF" 2>/dev/null || true
    wait "$PERF" 2>/dev/null || true
    PERF=
    stop_server
    local answered qps lost u0 s0 u1 s1
    answered=$(awk '/Queries completed:/ {print $3}' "$d/dnsperf.out")
    qps=$(awk '/Queries per second:/ {printf "%.0f", $4}' "$d/dnsperf.out")
    lost=$(awk '/Queries lost:/ {print $3}' "$d/dnsperf.out")
    [[ -n $answered && -s $d/perf.data ]] || { tail -n 5 "$d/dnsperf.out" "$d/perf.err" >&2; die "run $d failed"; }
    read -r u0 s0 <<<"$k0"; read -r u1 s1 <<<"$k1"
    {
        echo "row=$row rep=$2 rate=$RATE secs=$SECS pid=$pid threads=$tids"
        echo "answered=$answered qps=$qps lost=$lost loadavg_at_start=${load// /,}"
        echo "cpu_ns=$((r1 - r0)) ns_per_q=$(( (r1 - r0) / (answered > 0 ? answered : 1) ))"
        echo "utime_ticks=$((u1 - u0)) stime_ticks=$((s1 - s0))"
    } > "$d/summary.txt"
    echo "kernel-cost.sh: $(date -u +%T) r$2 $row: $qps q/s, $(( (r1 - r0) / (answered > 0 ? answered : 1) )) ns/q, lost $lost" >&2
    RUNDIRS+=("$d")
}

RUNDIRS=()
for rep in $(seq "$REPS"); do
    for row in $ROWS; do run_one "$row" "$rep"; done
done
rate="$RATE q/s"; [[ $RATE != 0 ]] || rate="as fast as dnsperf goes"
{
    echo "benches/kernel-cost.sh $(date -u +%FT%TZ): $(nproc) CPUs, $(uname -r), rate $rate, ${SECS} s, $REPS rep(s);"
    echo "dnsfwd = $BIN $FWD_ARGS; perf cpu-clock ${FREQ} Hz on CPU 1; $symbols; load average now $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    python3 "$ROOT/benches/kernel_cost.py" "${RUNDIRS[@]}"
} | tee "$OUTDIR/table.md"
echo "kernel-cost.sh: raw runs in $OUTDIR" >&2
