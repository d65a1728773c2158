#!/bin/sh
# Regenerates testdata/rdata/dig.jsonl: knotd serves rdata.test.zone on a loopback port,
# and capture.py runs dig through a recording proxy (wire bytes + dig's text).
# Needs knotd, dig (BIND 9.18) and python3; no root. See testdata/README.md.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
knot_port=${KNOT_PORT:-53541}
proxy_port=${PROXY_PORT:-53542}
missing=""
for tool in knotd dig python3; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
    echo "regen.sh: missing:$missing (apt-get install -y knot dnsutils python3)" >&2
    exit 1
fi
state=$(mktemp -d)
pid=""
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$state"
}
trap cleanup EXIT INT TERM
sed -e "s#@STATE@#$state#g; s#@DIR@#$here#g; s#@PORT@#$knot_port#g" \
    "$here/knot.conf.in" >"$state/knot.conf"
knotd -c "$state/knot.conf" >"$state/knot.log" 2>&1 &
pid=$!
tries=0
until dig +short +tries=1 +time=1 -p "$knot_port" @127.0.0.1 rdata.test SOA | grep -q .; do
    tries=$((tries + 1))
    if [ "$tries" -ge 20 ]; then
        cat "$state/knot.log" >&2
        echo "regen.sh: knotd did not answer" >&2
        exit 1
    fi
    sleep 0.5
done
if grep -q "error" "$state/knot.log"; then
    cat "$state/knot.log" >&2
    echo "regen.sh: knotd reported errors loading the zone" >&2
    exit 1
fi
python3 "$here/capture.py" "$knot_port" "$proxy_port" "$state/dig.jsonl"
mv "$state/dig.jsonl" "$here/dig.jsonl"
dig -v 2>&1 | sed 's/^/regen.sh: made with /'
