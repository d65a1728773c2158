#!/usr/bin/env bash
# benches/dot.sh - what DNS over TLS to the upstream costs dnsfwd, against plain UDP, in
# the same run: unbound on loopback answers from local data on a UDP port and on a TLS
# port (certificate from a throwaway CA made here with openssl); one dnsfwd forwards to
# the UDP port, another to tls://; dnsperf sends each the same queries at the same rate
# (cache off, so every query goes upstream). Prints, for each: queries completed, CPU
# time of the dnsfwd process (user+system, from /proc) per query, and for TLS the
# handshakes per 1000 queries (connection reuse). Needs unbound, dnsperf, openssl.
#
#   benches/dot.sh [BINARY] (default target/release/dnsfwd)
#   RATE=5000 SECONDS_EACH=10 CLIENTS=4 benches/dot.sh
set -euo pipefail
export LC_ALL=C PATH="$PATH:/usr/sbin:/sbin"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-$ROOT/target/release/dnsfwd}
RATE=${RATE:-5000} SECS=${SECONDS_EACH:-10} CLIENTS=${CLIENTS:-4}
[[ -x $BIN ]] || (cd "$ROOT" && cargo build --release)
for t in unbound dnsperf openssl; do
    command -v "$t" >/dev/null || { echo "dot.sh: $t is missing" >&2; exit 1; }
done
W=$(mktemp -d /tmp/dnsfwd-dot-bench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT
base=$((20000 + RANDOM % 20000))
UDP=$base TLS=$((base + 1)) F1=$((base + 2)) F2=$((base + 3))

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=bench CA" -keyout "$W/ca.key" -out "$W/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=dns.bench" \
    -keyout "$W/tls.key" -out "$W/tls.csr" 2>/dev/null
printf 'subjectAltName=DNS:dns.bench\n' >"$W/ext.cnf"
openssl x509 -req -in "$W/tls.csr" -CA "$W/ca.pem" -CAkey "$W/ca.key" -CAcreateserial \
    -days 2 -extfile "$W/ext.cnf" -out "$W/tls.pem" 2>/dev/null

{
    printf '%s\n' "server:" "  interface: 127.0.0.1@$UDP" "  interface: 127.0.0.1@$TLS" \
        "  tls-port: $TLS" "  tls-service-key: \"$W/tls.key\"" "  tls-service-pem: \"$W/tls.pem\"" \
        "  do-daemonize: no" "  username: \"\"" "  chroot: \"\"" "  directory: \"$W\"" \
        "  pidfile: \"\"" "  use-syslog: no" "  logfile: \"$W/unbound.log\"" "  num-threads: 1" \
        "  do-ip6: no" "  module-config: \"iterator\"" "  access-control: 127.0.0.0/8 allow" \
        "  incoming-num-tcp: 64" "  local-zone: \"bench.\" static"
    for i in $(seq 0 999); do echo "  local-data: \"n$i.bench. 300 IN A 10.0.$((i / 256)).$((i % 256))\""; done
} >"$W/unbound.conf"
for i in $(seq 0 999); do echo "n$i.bench A"; done >"$W/queries"
unbound -d -c "$W/unbound.conf" </dev/null >/dev/null 2>&1 &
PIDS+=($!)
RUST_LOG=info "$BIN" --listen "127.0.0.1:$F1" --upstream "127.0.0.1:$UDP" --cache-size 0 \
    </dev/null 2>"$W/udp.log" &
PUDP=$!
PIDS+=($PUDP)
RUST_LOG=info "$BIN" --listen "127.0.0.1:$F2" --upstream "tls://127.0.0.1:$TLS#dns.bench" \
    --tls-ca "$W/ca.pem" --cache-size 0 </dev/null 2>"$W/tls.log" &
PTLS=$!
PIDS+=($PTLS)
for _ in $(seq 40); do
    dig +short +time=1 +tries=1 @127.0.0.1 -p "$F2" n1.bench A 2>/dev/null | grep -q 10.0 &&
        dig +short +time=1 +tries=1 @127.0.0.1 -p "$F1" n1.bench A 2>/dev/null | grep -q 10.0 && break
    sleep 0.25
done
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
run() { # NAME PORT PID
    local t0 t1 done
    t0=$(ticks "$3")
    dnsperf -s 127.0.0.1 -p "$2" -d "$W/queries" -Q "$RATE" -l "$SECS" -c "$CLIENTS" \
        >"$W/$1.perf" 2>&1
    t1=$(ticks "$3")
    done=$(awk '/Queries completed:/ { print $3 }' "$W/$1.perf")
    lost=$(awk '/Queries lost:/ { print $3 }' "$W/$1.perf")
    awk -v n="$1" -v d="$done" -v l="$lost" -v t=$((t1 - t0)) -v hz="$HZ" 'BEGIN {
        printf "%-4s completed=%d lost=%d cpu=%.2fs cpu_per_query=%.1fus\n",
            n, d, l, t / hz, (d ? t / hz / d * 1e6 : 0) }' >&2
    echo "$done"
}
echo "dnsperf: $RATE q/s for $SECS s, $CLIENTS clients, cache off, unbound local data"
U=$(run udp "$F1" "$PUDP")
T=$(run tls "$F2" "$PTLS")
kill -USR1 "$PTLS"
sleep 0.5
line=$(grep -o 'tls_upstream_handshakes=[0-9]* tls_upstream_resumed=[0-9]* tls_upstream_failures=[0-9]*' "$W/tls.log" | tail -n 1)
hs=$(sed 's/.*handshakes=\([0-9]*\).*/\1/' <<<"$line")
echo "tls: $line; handshakes per 1000 queries: $(awk -v h="$hs" -v q="$T" 'BEGIN { printf "%.3f", q ? h * 1000 / q : 0 }')"
echo "(udp: $U queries, tls: $T queries)"
