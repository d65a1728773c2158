#!/usr/bin/env bash
# Regenerate the DNS packet captures in testdata/ and their expected decodings.
#
# Needs root (binds port 53, captures on lo) and, on Debian 12:
#   apt-get install -y dnsutils knot-dnsutils knot unbound dnsmasq tcpdump tshark python3
#
# Starts, all on loopback only:
#   knotd    authoritative  127.0.0.1:53 and [::1]:53 (zones from testdata/zones)
#   unbound  recursive      127.0.0.2:53 (stubs/forwards everything to knotd)
#   dnsmasq  forwarder      127.0.0.3:53 (forwards everything to knotd)
# then captures dig/kdig traffic with tcpdump into testdata/*.pcap and runs
# testdata/expect.py on every capture; the files in testdata/ are replaced only
# when everything succeeded. Then testdata/linktypes.py rebuilds linktypes/*.pcap
# from the new auth-udp.pcap. All state lives in a mktemp dir that is
# removed on exit; the daemons are stopped by a trap.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export LC_ALL=C

# ---------------------------------------------------------------- prerequisites
missing=()
for t in dig kdig knotd knotc unbound dnsmasq tcpdump tshark python3 sed; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
if ((${#missing[@]})); then
    echo "regen.sh: missing tools: ${missing[*]}" >&2
    echo "regen.sh: apt-get install -y dnsutils knot-dnsutils knot unbound dnsmasq tcpdump tshark python3" >&2
    exit 1
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "regen.sh: must run as root (port 53, capture on lo)" >&2
    exit 1
fi

STATE=$(mktemp -d /tmp/dnsfwd-testdata.XXXXXX)
chmod 755 "$STATE"
QLOG="$STATE/queries.log"
declare -A DAEMON_PIDS=()
TCPDUMP_PID=""

cleanup() {
    local rc=$?
    set +e
    if [[ -n $TCPDUMP_PID ]]; then
        kill -INT "$TCPDUMP_PID" 2>/dev/null
        wait "$TCPDUMP_PID" 2>/dev/null
    fi
    for name in "${!DAEMON_PIDS[@]}"; do
        kill -TERM "${DAEMON_PIDS[$name]}" 2>/dev/null
    done
    for name in "${!DAEMON_PIDS[@]}"; do
        local pid=${DAEMON_PIDS[$name]}
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if ((rc != 0)); then
        echo "regen.sh: FAILED (rc=$rc); daemon logs follow" >&2
        for f in "$STATE"/*.log; do
            [[ -f $f ]] || continue
            echo "----- $f (last 30 lines)" >&2
            tail -n 30 "$f" >&2
        done
    fi
    rm -rf "$STATE"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "regen.sh: $*" >&2; exit 1; }

# Refuse to start if something already serves DNS on our addresses.
for addr in 127.0.0.1 127.0.0.2 127.0.0.3; do
    if dig @"$addr" +time=1 +tries=1 +norec +nocookie . SOA >/dev/null 2>&1; then
        die "something already answers DNS on $addr:53; stop it first (on a systemd machine: systemctl stop knot unbound dnsmasq)"
    fi
done

# Is IPv6 loopback usable?
HAVE_V6=0
if python3 -c 'import socket; s=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.bind(("::1", 0))' 2>/dev/null; then
    HAVE_V6=1
fi

# ---------------------------------------------------------------- configs
mkdir -p "$STATE/knot" "$STATE/unbound"
sed -e "s|@STATE@|$STATE|g" -e "s|@ZONES@|$HERE/zones|g" "$HERE/conf/knot.conf.in" >"$STATE/knot.conf"
if ((!HAVE_V6)); then
    sed -i -e 's|, ::1@53 ]| ]|' "$STATE/knot.conf"
fi
sed -e "s|@STATE@|$STATE|g" "$HERE/conf/unbound.conf.in" >"$STATE/unbound.conf"
knotc -c "$STATE/knot.conf" conf-check >/dev/null 2>&1 || die "knot.conf does not validate"
unbound-checkconf "$STATE/unbound.conf" >/dev/null || die "unbound.conf does not validate"

# ---------------------------------------------------------------- daemons
start_daemon() {  # name cmd...
    local name=$1; shift
    "$@" >"$STATE/$name.log" 2>&1 &
    DAEMON_PIDS[$name]=$!
}

start_daemon knotd knotd -c "$STATE/knot.conf"
start_daemon unbound unbound -d -c "$STATE/unbound.conf"
start_daemon dnsmasq dnsmasq --keep-in-foreground --no-resolv --no-hosts --no-poll \
    --server=127.0.0.1#53 --listen-address=127.0.0.3 --bind-interfaces \
    --port=53 --cache-size=150 --log-facility=- \
    --pid-file="$STATE/dnsmasq.pid" --conf-file=/dev/null

# wait_for DESCRIPTION EXPECTED_REGEX dig-args...  (bounded: ~20 s)
wait_for() {
    local what=$1 want=$2; shift 2
    local out
    for _ in $(seq 40); do
        for name in "${!DAEMON_PIDS[@]}"; do
            kill -0 "${DAEMON_PIDS[$name]}" 2>/dev/null || die "$name exited during startup"
        done
        out=$(dig +time=1 +tries=1 +nocookie "$@" 2>&1 || true)
        if grep -Eq "$want" <<<"$out"; then
            return 0
        fi
        sleep 0.5
    done
    die "$what did not become ready; last answer: $out"
}
wait_for "knotd dnsfwd.test"   'status: NOERROR.*' @127.0.0.1 +norec dnsfwd.test SOA
wait_for "knotd signed.test"   'RRSIG[[:space:]]+DNSKEY' @127.0.0.1 +norec +dnssec signed.test DNSKEY
wait_for "knotd signed3.test"  'NSEC3PARAM[[:space:]]+1 0 0' @127.0.0.1 +norec +dnssec signed3.test NSEC3PARAM
wait_for "knotd reverse zone"  'PTR[[:space:]]+www\.dnsfwd\.test' @127.0.0.1 +norec -x 192.0.2.10
if ((HAVE_V6)); then
    wait_for "knotd on ::1"    'status: NOERROR' @::1 +norec dnsfwd.test SOA
fi
wait_for "unbound"             'status: NOERROR' @127.0.0.2 ns1.dnsfwd.test A
wait_for "dnsmasq"             'status: NOERROR' @127.0.0.3 ns1.dnsfwd.test A
# The readiness probes above filled unbound's and dnsmasq's caches for
# ns1.dnsfwd.test only; the captures below use other names where it matters.

# ---------------------------------------------------------------- query helpers
# All queries are logged to $QLOG; a query that gets no answer at all fails
# the script (dig/kdig exit non-zero), except where "|| true" says otherwise.
D() { echo "+ dig $*" >>"$QLOG"; dig +time=2 +tries=1 "$@" >>"$QLOG" 2>&1; }
K() { echo "+ kdig $*" >>"$QLOG"; kdig +timeout=2 +retry=0 "$@" >>"$QLOG" 2>&1; }

capture() {  # name function
    local name=$1 fn=$2
    local pcap="$STATE/$name.pcap"
    echo "== capturing $name.pcap" >&2
    echo "===== $name" >>"$QLOG"
    tcpdump -i lo -s 0 -U -n -Z root -w "$pcap" 'port 53' 2>"$STATE/tcpdump-$name.log" &
    TCPDUMP_PID=$!
    local ok=0
    for _ in $(seq 50); do
        if grep -q 'listening on' "$STATE/tcpdump-$name.log"; then ok=1; break; fi
        kill -0 "$TCPDUMP_PID" 2>/dev/null || break
        sleep 0.1
    done
    ((ok)) || die "tcpdump did not start for $name"
    sleep 0.5
    "$fn"
    sleep 1
    kill -INT "$TCPDUMP_PID"
    local stopped=0
    for _ in $(seq 50); do
        if ! kill -0 "$TCPDUMP_PID" 2>/dev/null; then stopped=1; break; fi
        sleep 0.1
    done
    ((stopped)) || kill -TERM "$TCPDUMP_PID" 2>/dev/null || true
    wait "$TCPDUMP_PID" || true
    TCPDUMP_PID=""
    [[ -s $pcap ]] || die "empty capture $name"
}

# ---------------------------------------------------------------- scenarios
A1=(@127.0.0.1 +norec +nocookie)

q_auth_udp() {
    # dig over UDP (EDNS 1232, no cookie) to knotd
    D "${A1[@]}" dnsfwd.test SOA
    D "${A1[@]}" dnsfwd.test NS
    D "${A1[@]}" dnsfwd.test A
    D "${A1[@]}" dnsfwd.test AAAA
    D "${A1[@]}" www.dnsfwd.test A
    D "${A1[@]}" www.dnsfwd.test AAAA
    D "${A1[@]}" v6only.dnsfwd.test AAAA
    D "${A1[@]}" dnsfwd.test MX
    D "${A1[@]}" dnsfwd.test TXT
    D "${A1[@]}" multi.dnsfwd.test TXT
    D "${A1[@]}" empty.dnsfwd.test TXT
    D "${A1[@]}" bigset.dnsfwd.test TXT
    D "${A1[@]}" bigone.dnsfwd.test TXT
    D "${A1[@]}" _sip._udp.dnsfwd.test SRV
    D "${A1[@]}" dnsfwd.test CAA
    D "${A1[@]}" a.dnsfwd.test A
    D "${A1[@]}" b.dnsfwd.test CNAME
    D "${A1[@]}" ext.dnsfwd.test A
    D "${A1[@]}" old.dnsfwd.test DNAME
    D "${A1[@]}" host.old.dnsfwd.test A
    D "${A1[@]}" host.old.dnsfwd.test TXT
    D "${A1[@]}" deep.host.old.dnsfwd.test AAAA
    D "${A1[@]}" missing.old.dnsfwd.test A
    D "${A1[@]}" anything.wild.dnsfwd.test A
    D "${A1[@]}" two.labels.wild.dnsfwd.test TXT
    D "${A1[@]}" exact.wild.dnsfwd.test A
    D "${A1[@]}" nodata.wild.dnsfwd.test AAAA
    D "${A1[@]}" _8443._https.dnsfwd.test SVCB
    D "${A1[@]}" svc.dnsfwd.test HTTPS
    D "${A1[@]}" svc.dnsfwd.test SVCB
    D "${A1[@]}" alias.dnsfwd.test HTTPS
    D "${A1[@]}" child.dnsfwd.test DS
    D "${A1[@]}" host.child.dnsfwd.test A
    D "${A1[@]}" child.dnsfwd.test NS
    D "${A1[@]}" nonexistent.dnsfwd.test A          # NXDOMAIN
    D "${A1[@]}" www.dnsfwd.test MX                 # NODATA
    D "${A1[@]}" www.example.com A                  # REFUSED (not served)
    D "${A1[@]}" +notcp dnsfwd.test ANY
    D "${A1[@]}" -x 192.0.2.10
    D "${A1[@]}" 99.2.0.192.in-addr.arpa PTR
    D "${A1[@]}" 200.2.0.192.in-addr.arpa PTR      # NXDOMAIN in reverse zone
    D "${A1[@]}" WwW.DnSfWd.TeSt A                  # mixed case query
    D "${A1[@]}" mixed.dnsfwd.test A
    D "${A1[@]}" MIXED.DNSFWD.TEST A
    D "${A1[@]}" upper.case.dnsfwd.test TXT
    D "${A1[@]}" CamelTarget.DnsFwd.Test A
    D "${A1[@]}" dnsfwd.test HINFO
    D "${A1[@]}" _25._tcp.mail.dnsfwd.test TLSA
    D "${A1[@]}" ssh.dnsfwd.test SSHFP
    D "${A1[@]}" dnsfwd.test NAPTR
    D "${A1[@]}" loc.dnsfwd.test LOC
    D "${A1[@]}" unknown.dnsfwd.test TYPE65280
    D "${A1[@]}" version.bind TXT CH
    D "${A1[@]}" id.server TXT CH
    D "${A1[@]}" +opcode=status dnsfwd.test SOA || true  # NOTIMP
    D "${A1[@]}" +header-only || true                   # QDCOUNT=0 -> FORMERR
    # several questions from one dig process, with RD set
    D @127.0.0.1 +nocookie +rec mail.dnsfwd.test A mail.dnsfwd.test AAAA sip.dnsfwd.test A
    # dig with its default client cookie: knotd answers BADCOOKIE, dig retries
    D @127.0.0.1 +norec ns1.dnsfwd.test A
    # kdig over UDP (no EDNS by default)
    K @127.0.0.1 www.dnsfwd.test A
    K @127.0.0.1 dnsfwd.test MX
    K @127.0.0.1 multi.dnsfwd.test TXT
    K @127.0.0.1 _8443._https.dnsfwd.test SVCB
    K @127.0.0.1 x.old.dnsfwd.test A
    K @127.0.0.1 nope.dnsfwd.test AAAA
    K @127.0.0.1 -x 192.0.2.25
    K @127.0.0.1 +bufsize=1232 dnsfwd.test CAA
}

q_auth_tcp() {
    local T=(@127.0.0.1 +norec +nocookie +tcp)
    D "${T[@]}" dnsfwd.test SOA
    D "${T[@]}" www.dnsfwd.test A
    D "${T[@]}" dnsfwd.test MX
    D "${T[@]}" bigone.dnsfwd.test TXT
    D "${T[@]}" bigset.dnsfwd.test TXT
    D "${T[@]}" +noedns bigset.dnsfwd.test TXT
    D "${T[@]}" _8443._https.dnsfwd.test SVCB
    D "${T[@]}" a.dnsfwd.test A
    D "${T[@]}" host.old.dnsfwd.test A
    D "${T[@]}" foo.wild.dnsfwd.test A
    D "${T[@]}" nonexistent.dnsfwd.test A
    D "${T[@]}" www.example.com A
    D "${T[@]}" dnsfwd.test ANY
    D "${T[@]}" -x 192.0.2.99
    D "${T[@]}" MiXeD.DnSfWd.TeSt A
    # several queries on one connection
    D "${T[@]}" +keepopen dnsfwd.test CAA _sip._udp.dnsfwd.test SRV svc.dnsfwd.test HTTPS www.dnsfwd.test AAAA
    # zone transfers (allowed from loopback for dnsfwd.test and signed.test)
    D @127.0.0.1 +nocookie dnsfwd.test AXFR
    D @127.0.0.1 +nocookie signed.test AXFR
    D @127.0.0.1 +nocookie 2.0.192.in-addr.arpa AXFR || true   # not allowed: REFUSED
    # kdig over TCP
    K @127.0.0.1 +tcp www.dnsfwd.test A
    K @127.0.0.1 +tcp bigone.dnsfwd.test TXT
    K @127.0.0.1 +tcp +bufsize=1232 child.dnsfwd.test DS
    K @127.0.0.1 +tcp nonexistent.dnsfwd.test A
    K @127.0.0.1 +tcp +keepopen mail.dnsfwd.test A multi.dnsfwd.test TXT b.dnsfwd.test CNAME dnsfwd.test NS
    # pipelined and split queries (tcp_pipeline.py)
    echo "+ tcp_pipeline.py 127.0.0.1" >>"$QLOG"
    python3 "$HERE/tcp_pipeline.py" 127.0.0.1 >>"$QLOG" 2>&1
}

q_dnssec() {
    local S=(@127.0.0.1 +norec +nocookie +dnssec)
    for z in signed.test signed3.test; do
        D "${S[@]}" "$z" DNSKEY
        D "${S[@]}" "$z" SOA
        D "${S[@]}" "www.$z" A
        D "${S[@]}" "$z" MX
        D "${S[@]}" "alias.$z" A
        D "${S[@]}" "nonexistent.$z" A          # NXDOMAIN + denial proof
        D "${S[@]}" "www.$z" TXT                # NODATA + denial proof
        D "${S[@]}" "host.wild.$z" A            # wildcard expansion + proof
        D "${S[@]}" "sub.$z" DS                 # DS at a secure delegation
        D "${S[@]}" "insecure.$z" DS            # no DS: NODATA proof
        D "${S[@]}" "host.sub.$z" A             # referral with DS
        D "${S[@]}" "host.insecure.$z" A        # referral with denial of DS
    done
    D "${S[@]}" signed.test NSEC
    D "${S[@]}" signed3.test NSEC3PARAM
    D "${S[@]}" +cd www.signed3.test AAAA
    D "${S[@]}" +tcp signed.test DNSKEY
    D "${S[@]}" www.dnsfwd.test A               # DO bit to an unsigned zone
    K @127.0.0.1 +dnssec signed.test DNSKEY
    K @127.0.0.1 +dnssec +tcp nonexistent.signed3.test A
    K @127.0.0.1 +dnssec +bufsize=1232 www.signed.test AAAA
    K @127.0.0.1 +dnssec +bufsize=1232 mail.signed3.test A
}

q_edns() {
    K @127.0.0.1 +padding www.dnsfwd.test A
    K @127.0.0.1 +padding=128 dnsfwd.test MX
    K @127.0.0.1 +tcp +padding dnsfwd.test SOA
    K @127.0.0.1 +subnet=192.0.2.0/24 www.dnsfwd.test A
    K @127.0.0.1 +subnet=2001:db8::/56 www.dnsfwd.test AAAA
    K @127.0.0.1 +nsid dnsfwd.test SOA
    K @127.0.0.1 +cookie dnsfwd.test NS                  # BADCOOKIE, then retry
    K @127.0.0.1 +cookie=0102030405060708 dnsfwd.test A # fixed client cookie
    K @127.0.0.1 +nsid +subnet=192.0.2.128/25 +cookie +padding www.dnsfwd.test A
    K @127.0.0.1 +bufsize=1232 bigset.dnsfwd.test TXT
    K @127.0.0.1 +bufsize=512 +ignore bigset.dnsfwd.test TXT   # TC=1, no retry
    K @127.0.0.1 +bufsize=512 bigone.dnsfwd.test TXT           # TC=1, retry over TCP
    K @127.0.0.1 +edns=1 dnsfwd.test SOA || true                # BADVERS
    K @127.0.0.1 +ednsopt=65001:deadbeef dnsfwd.test A          # unknown option
    K @127.0.0.1 +expire dnsfwd.test SOA
    K @127.0.0.1 +tcp +expire +nsid dnsfwd.test SOA
    D @127.0.0.1 +norec +nocookie +bufsize=512 bigone.dnsfwd.test TXT   # TC, dig retries on TCP
    D @127.0.0.1 +norec +nocookie +noedns bigset.dnsfwd.test TXT        # TC, dig retries on TCP
    D @127.0.0.1 +norec +nocookie +noedns +ignore bigone.dnsfwd.test TXT
    D @127.0.0.1 +norec +nocookie +noedns www.dnsfwd.test A
    D @127.0.0.1 +norec +nocookie +bufsize=4096 +dnssec signed.test DNSKEY
    D @127.0.0.1 +norec +nocookie +ednsflags=0x0100 dnsfwd.test A      # unknown EDNS flag bit
    D @127.0.0.1 +norec +nocookie +nsid +subnet=198.51.100.0/24 dnsfwd.test AAAA
    D @127.0.0.1 +norec dnsfwd.test TXT                                 # default dig cookie
    D @127.0.0.1 +norec +cookie=0011223344556677 dnsfwd.test SOA
    D @127.0.0.1 +norec +nocookie +tcp +keepalive dnsfwd.test SOA
    D @127.0.0.1 +norec +nocookie +padding=64 www.dnsfwd.test AAAA
}

q_recursive() {
    local U=(@127.0.0.2 +nocookie) M=(@127.0.0.3 +nocookie)
    for R in U M; do
        local -n SRV=$R
        D "${SRV[@]}" www.dnsfwd.test A
        D "${SRV[@]}" www.dnsfwd.test A             # second time: from cache (unbound)
        D "${SRV[@]}" a.dnsfwd.test A               # CNAME chain
        D "${SRV[@]}" deep.host.old.dnsfwd.test AAAA # DNAME
        D "${SRV[@]}" something.wild.dnsfwd.test A
        D "${SRV[@]}" dnsfwd.test MX
        D "${SRV[@]}" multi.dnsfwd.test TXT
        D "${SRV[@]}" bigset.dnsfwd.test TXT
        D "${SRV[@]}" +tcp bigone.dnsfwd.test TXT
        D "${SRV[@]}" _8443._https.dnsfwd.test SVCB
        D "${SRV[@]}" nonexistent.dnsfwd.test A
        D "${SRV[@]}" www.dnsfwd.test TXT
        D "${SRV[@]}" -x 192.0.2.25
        D "${SRV[@]}" Mail.DnsFwd.Test AAAA
        D "${SRV[@]}" +dnssec www.signed.test A
        D "${SRV[@]}" +dnssec nonexistent.signed3.test A
        D "${SRV[@]}" www.example.com A             # upstream REFUSED
        D "${SRV[@]}" +noedns dnsfwd.test SOA
        K "${SRV[0]}" +tcp dnsfwd.test CAA
        K "${SRV[0]}" svc.dnsfwd.test HTTPS
        K "${SRV[0]}" +bufsize=1232 _sip._udp.dnsfwd.test SRV
        unset -n SRV
    done
}

q_ipv6() {
    local V=(@::1 +norec +nocookie)
    D "${V[@]}" dnsfwd.test SOA
    D "${V[@]}" www.dnsfwd.test AAAA
    D "${V[@]}" a.dnsfwd.test A
    D "${V[@]}" bigone.dnsfwd.test TXT
    D "${V[@]}" +noedns bigset.dnsfwd.test TXT          # TC, retry over TCP
    D "${V[@]}" +tcp dnsfwd.test MX
    D "${V[@]}" nonexistent.dnsfwd.test A
    D "${V[@]}" +dnssec www.signed3.test A
    K @::1 www.dnsfwd.test A
    K @::1 +tcp svc.dnsfwd.test HTTPS
    K @::1 +nsid +cookie dnsfwd.test NS
    echo "+ tcp_pipeline.py ::1" >>"$QLOG"
    python3 "$HERE/tcp_pipeline.py" ::1 >>"$QLOG" 2>&1
}

# ---------------------------------------------------------------- run
PCAPS=(auth-udp auth-tcp dnssec edns recursive)
capture auth-udp q_auth_udp
capture auth-tcp q_auth_tcp
capture dnssec q_dnssec
capture edns q_edns
capture recursive q_recursive
if ((HAVE_V6)); then
    capture ipv6 q_ipv6
    PCAPS+=(ipv6)
else
    echo "regen.sh: no IPv6 loopback, ipv6.pcap not regenerated" >&2
fi

for name in "${PCAPS[@]}"; do
    python3 "$HERE/expect.py" "$STATE/$name.pcap" || die "expect.py failed for $name.pcap"
done
# Only now, with every capture and decoding done, replace the files in
# testdata/ (a failed or interrupted run leaves them untouched).
for name in "${PCAPS[@]}"; do
    cp "$STATE/$name.pcap" "$HERE/$name.pcap.new"
    cp "$STATE/$name.expect.jsonl" "$HERE/$name.expect.jsonl.new"
done
for name in "${PCAPS[@]}"; do
    mv -f "$HERE/$name.pcap.new" "$HERE/$name.pcap"
    mv -f "$HERE/$name.expect.jsonl.new" "$HERE/$name.expect.jsonl"
done
# The link-type and tunnel fixtures carry messages of auth-udp.pcap: rebuild them from
# the new one (and cross-check them with tshark).
python3 "$HERE/linktypes.py" --check || die "linktypes.py failed"

echo "== done" >&2
for name in "${PCAPS[@]}"; do
    printf '%-16s %8d bytes  %5d messages\n' "$name.pcap" \
        "$(stat -c %s "$HERE/$name.pcap")" "$(wc -l <"$HERE/$name.expect.jsonl")" >&2
done
