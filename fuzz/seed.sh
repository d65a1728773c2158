#!/usr/bin/env bash
# Fills fuzz/corpus/<target>/ with seed inputs taken from the repository's test data:
#   * every case of testdata/handmade/cases.txt ("<name> <expect> <hex>", '#' comments),
#   * every DNS message in testdata/*.pcap / *.pcapng (via `dnsfwd decode --json`),
#   * every message of ../shared/corpus/oracle.jsonl (its "hex" field), if present.
# Seeds are named by content hash, so re-running the script is idempotent and only adds.
# A source that cannot be read (e.g. pcap reading not implemented yet) is reported and
# skipped; re-run the script once it works.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
# Targets whose input is one DNS message (spelling's is not: it starts empty).
targets=(parse_message view cache)
# Overridable for testing the script: TESTDATA (holds handmade/cases.txt and *.pcap), ORACLE.
testdata="${TESTDATA:-$root/testdata}"
oracle="${ORACLE:-$(realpath -m "$root/../shared/corpus/oracle.jsonl")}"

# Reads "hex" lines on stdin, writes each as a binary file named by its SHA-1 into every
# directory given as argument; prints how many were new.
write_seeds() {
    python3 -c "$write_seeds_py" "$@"
}
write_seeds_py='import hashlib, os, sys
dirs = sys.argv[1:]
for d in dirs:
    os.makedirs(d, exist_ok=True)
new = bad = 0
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    try:
        data = bytes.fromhex(line)
    except ValueError:
        bad += 1
        continue
    name = hashlib.sha1(data).hexdigest()
    for d in dirs:
        path = os.path.join(d, name)
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(data)
            new += d == dirs[0]
print(f"{new} new" + (f", {bad} lines not hex" if bad else ""))
'

dirs=()
for t in "${targets[@]}"; do dirs+=("$here/corpus/$t"); done

# 1. Hand-made cases.
cases="$testdata/handmade/cases.txt"
if [[ -f $cases ]]; then
    printf 'handmade %s: ' "${cases#"$root"/}"
    python3 -c '
import sys
for line in open(sys.argv[1]):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    parts = line.split()
    if len(parts) >= 3:
        print("".join(parts[2:]))
' "$cases" | write_seeds "${dirs[@]}"
else
    echo "warning: $cases not found" >&2
fi

# JSON lines with a "hex" field on stdin -> hex lines on stdout. With --captured, only
# objects that came out of a capture (they carry a "frame"); says on stderr when the
# input had JSON but none of it came from a capture.
json_hex() {
    python3 -c '
import json, sys
captured = "--captured" in sys.argv[1:]
seen = kept = 0
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    try:
        obj = json.loads(line)
    except ValueError:
        continue
    if not isinstance(obj, dict):
        continue
    seen += 1
    if captured and "frame" not in obj:
        continue
    h = obj.get("hex")
    if isinstance(h, str) and h:
        kept += 1
        print(h)
if captured and seen and not kept:
    print("warning: decode did not read this file as a capture (pcap reading not"
          " implemented yet?); no seeds taken from it, re-run seed.sh later", file=sys.stderr)
' "$@"
}

# 2. Messages in the capture files.
shopt -s nullglob
pcaps=("$testdata"/*.pcap "$testdata"/*.pcapng)
if ((${#pcaps[@]})); then
    (cd "$root" && cargo build --release -q --bin dnsfwd)
    bin="$root/target/release/dnsfwd"
    for p in "${pcaps[@]}"; do
        printf 'pcap %s: ' "${p#"$root"/}"
        out="$(mktemp)"
        # Keep whatever was decoded before an error, and say what failed.
        status=0
        "$bin" decode --json "$p" >"$out" 2>"$out.err" || status=$?
        json_hex --captured <"$out" | write_seeds "${dirs[@]}"
        if ((status)); then
            echo "warning: decode failed (exit $status) for $p: $(head -c 300 "$out.err")" >&2
            echo "         (pcap reading may not be finished yet; re-run seed.sh later)" >&2
        fi
        rm -f "$out" "$out.err"
    done
else
    echo "note: no $testdata/*.pcap or *.pcapng files" >&2
fi

# 3. The shared oracle corpus.
if [[ -f $oracle ]]; then
    printf 'oracle %s: ' "$oracle"
    json_hex <"$oracle" | write_seeds "${dirs[@]}"
else
    echo "note: $oracle not found; skipped" >&2
fi

for d in "${dirs[@]}"; do
    echo "${d#"$root"/}: $(find "$d" -type f | wc -l) files"
done
