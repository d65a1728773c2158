#!/usr/bin/env bash
# Regenerate testdata/stats/delays.pcap: queries answered after known delays (delays.py
# says which), captured on loopback, for the response-time checks of
# `dnsfwd decode --stats` (tests/decode_stats.rs).
#
# Needs root (port 53, capture on lo), tcpdump and python3. Uses 127.0.0.9 only.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ADDR=127.0.0.9
for t in tcpdump python3; do
    command -v "$t" >/dev/null || { echo "delays.sh: $t missing" >&2; exit 1; }
done
[[ $(id -u) -eq 0 ]] || { echo "delays.sh: must run as root" >&2; exit 1; }

STATE=$(mktemp -d /tmp/dnsfwd-delays.XXXXXX)
chmod 777 "$STATE"
TCPDUMP_PID=""
cleanup() {
    [[ -n $TCPDUMP_PID ]] && kill -INT "$TCPDUMP_PID" 2>/dev/null && wait "$TCPDUMP_PID" 2>/dev/null
    rm -rf "$STATE"
}
trap cleanup EXIT

tcpdump -i lo -s 0 -U -w "$STATE/delays.pcap" "host $ADDR and port 53" 2>"$STATE/tcpdump.log" &
TCPDUMP_PID=$!
for _ in $(seq 50); do grep -q listening "$STATE/tcpdump.log" && break; sleep 0.1; done
python3 "$HERE/delays.py" "$ADDR"
sleep 0.5
kill -INT "$TCPDUMP_PID"
wait "$TCPDUMP_PID" || true
TCPDUMP_PID=""
mv "$STATE/delays.pcap" "$HERE/delays.pcap"
echo "delays.sh: wrote $HERE/delays.pcap" >&2
