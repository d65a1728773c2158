#!/usr/bin/env bash
# Interop test with real software: knotd (authoritative) behind dnsfwd, queried with dig
# and kdig over UDP and TCP, IPv4 and IPv6; every answer through dnsfwd must equal
# knotd's own answer. Then dnsperf at a fixed rate must lose no query. Then DNS over
# TLS both ways: kdig +tls against dnsfwd's --listen-tls, and dnsfwd with a tls://
# upstream to unbound (a DoT server in front of knotd), with a throwaway CA (openssl).
#
#   .ci/interop.sh          (from anywhere; root only if packages must be installed)
#
# Environment: DNSFWD_BIN=path (skip `cargo build --release`), INTEROP_KNOT_PORT /
# INTEROP_FWD_PORT (defaults 15399 / 15398; the next free pair is used if taken),
# INTEROP_KEEP=1 (keep the temp dir), RUST_LOG (dnsfwd's log level, default debug).
# Everything stays on loopback; knotd and dnsfwd are stopped by the EXIT trap.
set -euo pipefail
export LC_ALL=C PATH="$PATH:/usr/sbin:/sbin"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=$ROOT/.ci/interop
T0=$SECONDS
log() { echo "interop: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ------------------------------------------------------------------ tools
missing=()
for t in knotd knotc kdig dig dnsperf unbound openssl; do command -v "$t" >/dev/null || missing+=("$t"); done
if ((${#missing[@]})); then
    log "installing packages (missing: ${missing[*]})"
    [[ $(id -u) -eq 0 ]] || die "not root: apt-get install knot knot-dnsutils dnsutils dnsperf"
    apt-get update </dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        knot knot-dnsutils dnsutils dnsperf unbound openssl </dev/null
    # The unbound package may start its service on port 53 too; ours uses high ports.
    # The knot package may have started a knot service on port 53; we use high ports only.
fi

# ------------------------------------------------------------------ ports
port_busy() { # PORT: is it bound on any address, TCP or UDP, v4 or v6?
    local hex; hex=$(printf '%04X' "$1")
    cat /proc/net/tcp /proc/net/tcp6 /proc/net/udp /proc/net/udp6 2>/dev/null |
        awk -v p=":$hex" 'substr($2, length($2) - 4) == p { found = 1 } END { exit !found }'
}
KPORT=${INTEROP_KNOT_PORT:-15399} FPORT=${INTEROP_FWD_PORT:-15398}
for _ in $(seq 20); do
    port_busy "$KPORT" || port_busy "$FPORT" || break
    log "port $KPORT or $FPORT is taken, trying $((KPORT + 10))/$((FPORT + 10))"
    KPORT=$((KPORT + 10)) FPORT=$((FPORT + 10))
done
if port_busy "$KPORT" || port_busy "$FPORT"; then die "no free port pair found"; fi
HAVE_V6=0
grep -q '^0\{31\}1 ' /proc/net/if_inet6 2>/dev/null && HAVE_V6=1
((HAVE_V6)) || log "WARNING: no IPv6 loopback (::1); the IPv6 checks are skipped"

# ------------------------------------------------------------------ cleanup
WORK=$(mktemp -d /tmp/dnsfwd-interop.XXXXXX)
KNOT_PID="" FWD_PID="" UNBOUND_PID="" DOT_PID=""
stop() { # PID: SIGTERM, up to 5 s, then SIGKILL; returns the exit status
    local pid=$1 rc=0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null && log "pid $pid needed SIGKILL"
    wait "$pid" 2>/dev/null || rc=$?
    return "$rc"
}
cleanup() {
    local rc=$?
    set +e
    [[ -n $FWD_PID ]] && stop "$FWD_PID"
    [[ -n $DOT_PID ]] && stop "$DOT_PID"
    [[ -n $UNBOUND_PID ]] && stop "$UNBOUND_PID"
    [[ -n $KNOT_PID ]] && stop "$KNOT_PID"
    if ((rc != 0)); then
        for f in "$WORK"/knotd.log "$WORK"/dnsfwd.log "$WORK"/unbound.log "$WORK"/dnsfwd-dot.log; do
            [[ -s $f ]] && { echo "----- $f (last 40 lines)"; tail -n 40 "$f"; } >&2
        done
    fi
    if [[ -n ${INTEROP_KEEP:-} ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# ------------------------------------------------------------------ knotd
cp "$DATA"/*.zone "$WORK"/
mkdir -p "$WORK/db" "$WORK/keys"
sed -e "s|@DIR@|$WORK|g" -e "s|@PORT@|$KPORT|g" "$DATA/knot.conf.in" >"$WORK/knot.conf"
((HAVE_V6)) || sed -i -e "s|, ::1@$KPORT ]| ]|" "$WORK/knot.conf"
knotc -c "$WORK/knot.conf" conf-check >/dev/null || die "knot.conf does not validate"
knotd -c "$WORK/knot.conf" </dev/null >"$WORK/knotd.log" 2>&1 &
KNOT_PID=$!

wait_for() { # WHAT PID REGEX dig-args...: bounded to ~15 s
    local what=$1 pid=$2 want=$3 out=""; shift 3
    for _ in $(seq 60); do
        kill -0 "$pid" 2>/dev/null || die "$what exited during startup"
        out=$(timeout 5 dig +time=1 +tries=1 "$@" 2>&1 || true)
        grep -Eq "$want" <<<"$out" && return 0
        sleep 0.25
    done
    die "$what did not answer; last answer: $out"
}
wait_for knotd "$KNOT_PID" 'status: NOERROR' @127.0.0.1 -p "$KPORT" interop.test SOA
wait_for knotd "$KNOT_PID" 'RRSIG[[:space:]]+DNSKEY' @127.0.0.1 -p "$KPORT" +dnssec signed.test DNSKEY
((HAVE_V6)) && wait_for knotd "$KNOT_PID" 'status: NOERROR' @::1 -p "$KPORT" interop.test SOA
log "knotd ready on 127.0.0.1/::1 port $KPORT"

# ------------------------------------------------------------------ dnsfwd
if [[ -n ${DNSFWD_BIN:-} ]]; then
    BIN=$DNSFWD_BIN
else
    (cd "$ROOT" && cargo build --release </dev/null) >&2 || die "cargo build --release failed"
    BIN=$ROOT/target/release/dnsfwd
fi
[[ -x $BIN ]] || die "no dnsfwd binary at $BIN"
LISTEN=(--listen "127.0.0.1:$FPORT")
((HAVE_V6)) && LISTEN+=(--listen "[::1]:$FPORT")
RUST_LOG=${RUST_LOG:-debug} "$BIN" "${LISTEN[@]}" --upstream "127.0.0.1:$KPORT" \
    </dev/null >"$WORK/dnsfwd.out" 2>"$WORK/dnsfwd.log" &
FWD_PID=$!
wait_for dnsfwd "$FWD_PID" 'status: NOERROR' @127.0.0.1 -p "$FPORT" www.interop.test A
((HAVE_V6)) && wait_for dnsfwd "$FWD_PID" 'status: NOERROR' @::1 -p "$FPORT" www.interop.test A
log "dnsfwd ready on 127.0.0.1/::1 port $FPORT"

# ------------------------------------------------------------------ queries
# "NAME TYPE [options]", options in the syntax dig and kdig share. "T:" marks a query
# whose UDP answer may be truncated: dnsfwd may then answer with TC like knotd, or with
# the whole answer when it fits the client's buffer (it retries over TCP upstream).
QUERIES=(
    "interop.test SOA" "interop.test NS" "interop.test A" "interop.test AAAA"
    "www.interop.test A" "www.interop.test AAAA" "interop.test MX" "interop.test TXT"
    "multi.interop.test TXT" "empty.interop.test TXT" "_sip._udp.interop.test SRV"
    "interop.test CAA" "a.interop.test A" "b.interop.test CNAME" "ext.interop.test A"
    "anything.wild.interop.test A" "two.labels.wild.interop.test TXT"
    "exact.wild.interop.test TXT" "host.child.interop.test A" "child.interop.test NS"
    "nonexistent.interop.test A" "www.interop.test MX" "www.example.com A"
    "interop.test ANY" "WwW.InTeRoP.TeSt A" "mixed.interop.test A" "MIXED.Interop.TEST AAAA"
    "A.INTEROP.test TXT" "big.interop.test TXT" "big.interop.test TXT +dnssec"
    "T:big.interop.test TXT +bufsize=1232 +ignore" "T:big.interop.test TXT +bufsize=4096 +ignore"
    "T:big.interop.test TXT +noedns +ignore" "T:interop.test ANY +noedns +ignore"
    "interop.test SOA +noedns" "www.interop.test AAAA +noedns" "interop.test MX +norec"
    "interop.test SOA +nsid" "www.interop.test A +bufsize=512"
    "signed.test DNSKEY +dnssec" "signed.test SOA +dnssec" "signed.test NS +dnssec"
    "www.signed.test A +dnssec" "www.signed.test AAAA +dnssec +cd" "www.signed.test A +cd"
    "alias.signed.test A +dnssec" "nonexistent.signed.test A +dnssec"
    "www.signed.test TXT +dnssec" "host.wild.signed.test A +dnssec" "signed.test NSEC +dnssec"
    "WWW.Signed.Test A +dnssec" "T:signed.test DNSKEY +dnssec +noedns +ignore"
)
run() { # TOOL SERVER PORT args...
    local tool=$1 srv=$2 port=$3; shift 3
    if [[ $tool == dig ]]; then
        timeout 10 dig @"$srv" -p "$port" +time=2 +tries=1 \
            +noall +comments +answer +authority +additional "$@" 2>&1
    else
        timeout 10 kdig @"$srv" -p "$port" +timeout=2 +retry=0 \
            +noall +header +comments +opt +answer +authority +additional "$@" 2>&1
    fi
}
# dig/kdig text -> comparable text: no IDs, timings, cookies, NSID, AA or CD; the records of each section
# sorted, their TTL moved to the end (" ~TTL"); whitespace squeezed (kdig pads owners).
norm() {
    awk '
        /^[ \t]*$/ { next }
        # NSID, like cookies, is per hop: a cached answer carries none of the upstream.
        /^;/ && /Got answer|[Tt]runcated|Query time|SERVER:|WHEN:|MSG SIZE|Received|COOKIE|NSID/ { next }
        /^;/ {
            if (/SECTION:/) sec++
            gsub(/,? id: [0-9]+;?/, ""); gsub(/[ \t]+/, " ")
            # AA: a forwarder relays it, but answers from its cache are not authoritative
            # (RFC 1035 §4.1.1). CD: RFC 4035 §3.2.2 says to copy it from the query, which
            # the cache does and knotd does not. Neither bit is compared.
            if (tolower($0) ~ /flags:/) { gsub(/ aa/, ""); gsub(/ cd/, "") }
            printf "%03d 0%06d %s\n", sec, NR, $0; next
        }
        {
            ttl = ""; line = $1
            if ($2 ~ /^[0-9]+$/) ttl = " ~" $2; else line = line " " $2
            for (i = 3; i <= NF; i++) line = line " " $i
            printf "%03d 1 %s%s\n", sec, line, ttl
        }
    ' | sort | cut -d' ' -f3-
}
# shellcheck disable=SC2001 # a regex per line, not a fixed string
nottl() { sed 's/ ~[0-9]*$//' <<<"$1"; }
# Same records (nottl) and each TTL through dnsfwd <= knotd's (equal without a cache).
ttl_ok() {
    paste <(echo "$1") <(echo "$2") | awk -F'\t' '{
        d = $1; v = $2
        if (match(d, / ~[0-9]+$/)) { td = substr(d, RSTART + 2) + 0
            if (!match(v, / ~[0-9]+$/) || substr(v, RSTART + 2) + 0 > td) bad = 1 }
    } END { exit bad }'
}
flags_of() { grep -i '^;; flags:' <<<"$1" | head -n1; }
status_of() { grep -o 'status: [A-Z0-9]*' <<<"$1" | head -n1; }
PASS=0 FAIL=0 SKIP=0 NOTES=()
check() { # MODE TOOL SERVER args...
    local mode=$1 tool=$2 srv=$3 d v nd nv r rcd=0 rcv=0; shift 3
    d=$(run "$tool" "$srv" "$KPORT" "$@") || rcd=$?
    v=$(run "$tool" "$srv" "$FPORT" "$@") || rcv=$?
    nd=$(norm <<<"$d") nv=$(norm <<<"$v")
    if ((rcd == 0 && rcv == 0)); then
        [[ $(nottl "$nd") == "$(nottl "$nv")" ]] && ttl_ok "$nd" "$nv" && { PASS=$((PASS + 1)); return; }
        if [[ $mode == T ]]; then
            r=$(run "$tool" "$srv" "$KPORT" "$@" +tcp | norm) || true
            if { [[ $(nottl "$nv") == "$(nottl "$r")" ]] && ttl_ok "$r" "$nv"; } || { [[ $(flags_of "$nd") == *" tc"* ]] &&
                [[ $(flags_of "$nv") == *" tc"* ]] && [[ $(status_of "$nd") == "$(status_of "$nv")" ]]; }; then
                PASS=$((PASS + 1))
                NOTES+=("$tool @$srv $*: knotd: $(flags_of "$nd"); dnsfwd: $(flags_of "$nv")")
                return
            fi
        fi
    fi
    FAIL=$((FAIL + 1))
    {
        echo "FAIL: $tool @$srv $* (exit status: knotd $rcd, dnsfwd $rcv; 124: killed after 10 s)"
        echo "--- knotd direct (port $KPORT):"; echo "$d"
        echo "--- through dnsfwd (port $FPORT):"; echo "$v"
        echo "--- normalized diff (< knotd, > dnsfwd):"; diff <(echo "$nd") <(echo "$nv") || true
        echo
    } >&2
}
SERVERS=(127.0.0.1)
((HAVE_V6)) && SERVERS+=(::1)
# The budget counts the queries only: installing packages and the release build take
# what the machine gives them (minutes on a loaded or cold one).
TQ=$SECONDS
for srv in "${SERVERS[@]}"; do
    for q in "${QUERIES[@]}"; do
        kill -0 "$FWD_PID" 2>/dev/null || die "dnsfwd died (before: $q)"
        if ((SECONDS - TQ > 400)); then
            FAIL=$((FAIL + 1)); log "FAIL: time budget (400 s) used up; queries stopped"; break 2
        fi
        mode=""
        [[ $q == T:* ]] && mode=T q=${q#T:}
        read -ra args <<<"$q"
        for tool in dig kdig; do
            check "$mode" "$tool" "$srv" "${args[@]}"
            check "" "$tool" "$srv" "${args[@]}" +tcp
        done
    done
done
((HAVE_V6)) || SKIP=$((${#QUERIES[@]} * 4))
log "queries: $PASS passed, $FAIL failed ($((SECONDS - T0)) s so far)"
for n in "${NOTES[@]}"; do log "note (truncation): $n"; done

# ------------------------------------------------------------------ dnsperf
QF=$WORK/queries.txt
printf '%s\n' "interop.test A" "interop.test AAAA" "www.interop.test A" "www.interop.test AAAA" \
    "interop.test MX" "interop.test TXT" "multi.interop.test TXT" "mail.interop.test A" \
    "mail.interop.test AAAA" "a.interop.test A" "x1.wild.interop.test A" "x2.wild.interop.test TXT" \
    "_sip._udp.interop.test SRV" "interop.test SOA" "www.signed.test A" "signed.test MX" \
    "nonexistent.interop.test A" "nope.interop.test AAAA" "missing.signed.test A" \
    "www.interop.test MX" "big.interop.test TXT" >"$QF"
PERF_OK=0
if timeout 30 dnsperf -s 127.0.0.1 -p "$FPORT" -d "$QF" -Q 2000 -l 10 -c 4 -t 3 \
    </dev/null >"$WORK/dnsperf.out" 2>&1; then
    sent=$(awk '/Queries sent:/ { print $3 }' "$WORK/dnsperf.out")
    lost=$(awk '/Queries lost:/ { print $3 }' "$WORK/dnsperf.out")
    codes=$(grep 'Response codes:' "$WORK/dnsperf.out" || true)
    if [[ $lost == 0 ]] && ((${sent:-0} >= 15000)) && ! grep -Eq 'SERVFAIL|REFUSED|FORMERR' <<<"$codes"; then
        PERF_OK=1
    fi
fi
grep -E 'Queries (sent|completed|lost)|Response codes|Queries per second|Average Latency' \
    "$WORK/dnsperf.out" | sed 's/^ */interop: dnsperf: /' >&2 || true
if ((PERF_OK)); then PASS=$((PASS + 1)); else
    FAIL=$((FAIL + 1))
    { echo "FAIL: dnsperf (want >= 15000 queries sent, 0 lost, no SERVFAIL/REFUSED/FORMERR):"
        cat "$WORK/dnsperf.out"; } >&2
fi

# ------------------------------------------------------------------ DNS over TLS
# A throwaway CA and a certificate for dns.interop (and 127.0.0.1), made here.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=dnsfwd interop CA" -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null ||
    die "openssl: no CA"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=dns.interop" \
    -keyout "$WORK/tls.key" -out "$WORK/tls.csr" 2>/dev/null || die "openssl: no key"
printf 'subjectAltName=DNS:dns.interop,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$WORK/ext.cnf"
openssl x509 -req -in "$WORK/tls.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" -CAcreateserial \
    -days 2 -extfile "$WORK/ext.cnf" -out "$WORK/tls.pem" 2>/dev/null || die "openssl: no cert"
UPORT=$((FPORT + 3)) TPORT=$((FPORT + 4)) DPORT=$((FPORT + 5)) BAD_PORT=$((FPORT + 6))
for p in $UPORT $TPORT $DPORT $BAD_PORT; do port_busy "$p" && die "port $p is taken"; done
# unbound: DoT on UPORT, the test zones from knotd (stub zones; no recursion elsewhere).
printf '%s\n' "server:" "  interface: 127.0.0.1@$UPORT" "  tls-port: $UPORT" \
    "  tls-service-key: \"$WORK/tls.key\"" "  tls-service-pem: \"$WORK/tls.pem\"" \
    "  do-daemonize: no" "  username: \"\"" "  chroot: \"\"" "  directory: \"$WORK\"" \
    "  pidfile: \"\"" "  use-syslog: no" "  logfile: \"$WORK/unbound.log\"" "  num-threads: 1" \
    "  do-ip6: no" "  do-not-query-localhost: no" "  module-config: \"iterator\"" \
    "  access-control: 127.0.0.0/8 allow" "  local-zone: \"test.\" nodefault" \
    "stub-zone:" "  name: \"interop.test\"" "  stub-addr: 127.0.0.1@$KPORT" \
    "stub-zone:" "  name: \"signed.test\"" "  stub-addr: 127.0.0.1@$KPORT" >"$WORK/unbound.conf"
unbound -d -c "$WORK/unbound.conf" </dev/null >>"$WORK/unbound.log" 2>&1 &
UNBOUND_PID=$!
# dnsfwd #2: its only upstream is unbound over TLS; it also listens for DoT itself.
RUST_LOG=${RUST_LOG:-debug} "$BIN" --listen "127.0.0.1:$DPORT" \
    --upstream "tls://127.0.0.1:$UPORT#dns.interop" --tls-ca "$WORK/ca.pem" \
    --listen-tls "127.0.0.1:$TPORT" --tls-cert "$WORK/tls.pem" --tls-key "$WORK/tls.key" \
    </dev/null >/dev/null 2>"$WORK/dnsfwd-dot.log" &
DOT_PID=$!
kdig_tls() { # PORT args...: kdig over TLS, trusting the test CA, for dns.interop
    local port=$1; shift
    timeout 10 kdig @127.0.0.1 -p "$port" +tls +tls-ca="$WORK/ca.pem" +tls-hostname=dns.interop \
        +timeout=2 +retry=0 "$@" 2>&1
}
for _ in $(seq 60); do
    kill -0 "$UNBOUND_PID" 2>/dev/null || die "unbound exited during startup"
    kdig_tls "$UPORT" +short www.interop.test A | grep -q . && break
    sleep 0.25
done
wait_for "dnsfwd (tls:// upstream)" "$DOT_PID" 'status: NOERROR' @127.0.0.1 -p "$DPORT" www.interop.test A
log "unbound (DoT) on 127.0.0.1:$UPORT; dnsfwd with a tls:// upstream on $DPORT, --listen-tls $TPORT"
DOT_QUERIES=("www.interop.test A" "interop.test MX" "multi.interop.test TXT" "interop.test SOA"
    "www.interop.test AAAA" "_sip._udp.interop.test SRV" "big.interop.test TXT"
    "www.signed.test A" "b.interop.test CNAME")
short() { sed 's/[[:space:]]\+/ /g' | sort; }
for q in "${DOT_QUERIES[@]}"; do
    read -ra args <<<"$q"
    want=$(timeout 10 dig @127.0.0.1 -p "$KPORT" +short +tcp "${args[@]}" | short)
    # dig -> dnsfwd -> TLS -> unbound -> knotd
    got_up=$(timeout 10 dig @127.0.0.1 -p "$DPORT" +short +tcp +time=3 +tries=1 "${args[@]}" | short)
    # kdig +tls -> dnsfwd --listen-tls -> TLS -> unbound -> knotd
    got_dot=$(kdig_tls "$TPORT" +short "${args[@]}" | short)
    for pair in "tls-upstream:$got_up" "listen-tls:$got_dot"; do
        if [[ -n $want && ${pair#*:} == "$want" ]]; then PASS=$((PASS + 1)); else
            FAIL=$((FAIL + 1))
            { echo "FAIL: DoT ${pair%%:*} $q"; echo "--- knotd:"; echo "$want"
                echo "--- via dnsfwd:"; echo "${pair#*:}"; } >&2
        fi
    done
done
# The answer really came over TLS on the listener (kdig reports the session).
if kdig_tls "$TPORT" www.interop.test A | grep -q 'TLS session'; then PASS=$((PASS + 1)); else
    FAIL=$((FAIL + 1)); log "FAIL: kdig reports no TLS session with --listen-tls"
fi
# A wrong name for the upstream's certificate: SERVFAIL, never an answer in clear.
"$BIN" --listen "127.0.0.1:$BAD_PORT" --upstream "tls://127.0.0.1:$UPORT#wrong.interop" \
    --tls-ca "$WORK/ca.pem" --timeout 300 --deadline 900 </dev/null >/dev/null 2>"$WORK/dnsfwd-bad.log" &
BAD_PID=$!
bad=""
for _ in $(seq 20); do
    bad=$(timeout 5 dig @127.0.0.1 -p "$BAD_PORT" +time=2 +tries=1 www.interop.test A 2>&1 || true)
    grep -q 'status:' <<<"$bad" && break
    sleep 0.25
done
stop "$BAD_PID" || true
if grep -q 'status: SERVFAIL' <<<"$bad" && ! grep -q 'ANSWER SECTION' <<<"$bad"; then PASS=$((PASS + 1)); else
    FAIL=$((FAIL + 1)); { echo "FAIL: name mismatch did not give SERVFAIL:"; echo "$bad"; } >&2
fi
stop "$DOT_PID" || true
DOT_PID=""
dotline=$(grep -o 'stopped: .*' "$WORK/dnsfwd-dot.log" || true)
log "dnsfwd (DoT): $(grep -o 'tls_[a-z_]*=[0-9]*' <<<"$dotline" | tr '\n' ' ')"
if grep -q 'tls_upstream_handshakes=[1-9]' <<<"$dotline" && grep -q 'tls_client_handshakes=[1-9]' <<<"$dotline"; then
    PASS=$((PASS + 1))
else
    FAIL=$((FAIL + 1)); log "FAIL: no TLS handshake counted: $dotline"
fi
log "DoT checks done ($((SECONDS - T0)) s so far)"

# ------------------------------------------------------------------ graceful stop
kill -0 "$FWD_PID" 2>/dev/null || die "dnsfwd died during the test"
rc=0
stop "$FWD_PID" || rc=$?
FWD_PID=""
grep -o 'stopped: .*' "$WORK/dnsfwd.log" | sed 's/^/interop: dnsfwd /' >&2 || true
if ((rc == 0)) && ! grep -q 'panicked' "$WORK/dnsfwd.log"; then PASS=$((PASS + 1)); else
    FAIL=$((FAIL + 1))
    log "FAIL: dnsfwd exited with status $rc on SIGTERM (or panicked); see its log below"
fi

echo "interop: $PASS passed, $FAIL failed$( ((SKIP)) && echo ", $SKIP skipped (no IPv6)") in $((SECONDS - T0)) s"
((FAIL == 0))
