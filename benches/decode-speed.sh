#!/usr/bin/env bash
# Decoding speed of `dnsfwd decode` (text, --json, --stats) against tshark (-T json, and
# -z dns,tree) on the same capture files in the same run: wall time, median of RUNS runs,
# and DNS messages per second (the messages dnsfwd finds in the files, the same count for
# every row).
#
#   benches/decode-speed.sh [CORPUS_DIR]     (default ../shared/corpus, or $DNSFWD_CORPUS)
#
# Environment: DNSFWD_BIN (default target/release/dnsfwd, built if missing), RUNS (3),
# DNSFWD_BEFORE=path of another dnsfwd binary to time beside it (e.g. an older build).
# Every tool reads each file in a process of its own (tshark reads one file per run), so
# start-up cost is in every row; the "one process" rows give dnsfwd all files at once.
set -euo pipefail
export LC_ALL=C
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CORPUS=${1:-${DNSFWD_CORPUS:-$ROOT/../shared/corpus}}
RUNS=${RUNS:-3}
BIN=${DNSFWD_BIN:-$ROOT/target/release/dnsfwd}
[[ -x $BIN ]] || (cd "$ROOT" && cargo build --release >&2)
shopt -s nullglob
FILES=("$CORPUS"/pcaps/*.pcap "$CORPUS"/pcaps/*.pcapng)
((${#FILES[@]})) || { echo "decode-speed.sh: no captures in $CORPUS/pcaps" >&2; exit 1; }

MSGS=$("$BIN" decode --stats --json "${FILES[@]}" 2>/dev/null |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["total"]["messages"])')
BYTES=$(cat "${FILES[@]}" | wc -c)

each() { # BIN ARGS...: run BIN ARGS FILE for every file
    local f
    for f in "${FILES[@]}"; do "$@" "$f" >/dev/null 2>&1 || true; done
}
all() { "$@" "${FILES[@]}" >/dev/null 2>&1 || true; }
tshark_json() { local f; for f in "${FILES[@]}"; do tshark -r "$f" -Y dns -T json >/dev/null 2>&1 || true; done; }
tshark_tree() { local f; for f in "${FILES[@]}"; do tshark -q -z dns,tree -r "$f" >/dev/null 2>&1 || true; done; }

median() { # COMMAND...: median wall time of RUNS runs, in seconds
    local t=() s e
    for _ in $(seq "$RUNS"); do
        s=$(date +%s.%N); "$@"; e=$(date +%s.%N)
        t+=("$(echo "$e - $s" | bc -l)")
    done
    printf '%s\n' "${t[@]}" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'
}

row() { # LABEL COMMAND...
    local label=$1; shift
    local secs; secs=$(median "$@")
    printf '| %-44s | %8.3f | %12.0f |\n' "$label" "$secs" "$(echo "$MSGS / $secs" | bc -l)"
}

cat "${FILES[@]}" >/dev/null # into the page cache before anything is timed
echo "${#FILES[@]} files, $BYTES octets, $MSGS DNS messages; median of $RUNS runs"
echo
printf '| %-44s | %8s | %12s |\n' "command" "seconds" "messages/s"
echo "|---|---:|---:|"
row "dnsfwd decode (text), a process per file" each "$BIN" decode
row "dnsfwd decode --json, a process per file" each "$BIN" decode --json
row "dnsfwd decode --stats, a process per file" each "$BIN" decode --stats
row "dnsfwd decode (text), one process" all "$BIN" decode
row "dnsfwd decode --json, one process" all "$BIN" decode --json
row "dnsfwd decode --stats, one process" all "$BIN" decode --stats
if [[ -n ${DNSFWD_BEFORE:-} ]]; then
    row "before: decode (text), a process per file" each "$DNSFWD_BEFORE" decode
    row "before: decode --json, a process per file" each "$DNSFWD_BEFORE" decode --json
fi
if command -v tshark >/dev/null; then
    row "tshark -Y dns -T json, a process per file" tshark_json
    row "tshark -q -z dns,tree, a process per file" tshark_tree
else
    echo "(tshark not installed: apt-get install tshark)"
fi
