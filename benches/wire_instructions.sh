#!/usr/bin/env bash
# benches/wire_instructions.sh - instructions per call of the wire hot path, counted by
# cachegrind, for this tree and for a git revision (default: main). Unlike wall-clock
# figures on a shared machine, these do not move with CPU steal, so a change of a few
# percent shows. The calls are those of benches/wire.rs on its typical response:
#   view    MessageView::parse          (every query and answer the forwarder relays)
#   decode  parse_message               (the cache's insert, TC cuts, merges)
#   encode  parse_message + write(1232)
# Needs valgrind. Builds a small probe crate against each tree (release profile).
#
#   benches/wire_instructions.sh [REV]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
REV=${1:-main}
N=20000
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
command -v valgrind >/dev/null || { echo "wire_instructions.sh: valgrind missing" >&2; exit 1; }
mkdir -p "$work/base"
git -C "$ROOT" archive "$REV" | tar -x -C "$work/base"

probe() { # probe NAME SOURCE_TREE TARGET_DIR
    local dir=$work/probe-$1
    mkdir -p "$dir/src"
    cat >"$dir/Cargo.toml" <<EOF
[package]
name = "wire-probe"
version = "0.1.0"
edition = "2021"
[dependencies]
dnsfwd = { path = "$2" }
[workspace]
EOF
    sed -n '/^fn typical_response/,/^}/p' "$ROOT/benches/wire.rs" >"$dir/src/resp.rs"
    cat >"$dir/src/main.rs" <<'EOF'
use std::hint::black_box;
use std::net::Ipv4Addr;
use dnsfwd::wire::{parse_message, Class, Edns, Header, Message, MessageView, Name, Question, RData, RType, Record};
include!("resp.rs");
fn main() {
    let bytes = typical_response();
    let mode = std::env::args().nth(1).unwrap_or_default();
    let n: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(0);
    for _ in 0..n {
        match mode.as_str() {
            "view" => { let _ = black_box(MessageView::parse(black_box(&bytes))); }
            "decode" => { let _ = black_box(parse_message(black_box(&bytes))); }
            "encode" => { let m = parse_message(black_box(&bytes)).unwrap(); let _ = black_box(m.write(1232)); }
            _ => {}
        }
    }
}
EOF
    (cd "$dir" && CARGO_TARGET_DIR=$3 cargo build --release --quiet)
    echo "$3/release/wire-probe"
}

count() { # count BINARY MODE ITERATIONS -> total instructions
    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null "$1" "$2" "$3" 2>&1 |
        awk '/I *refs/ {gsub(",", "", $NF); print $NF}'
}

base_bin=$(probe base "$work/base" "$ROOT/target/instr-base")
this_bin=$(probe this "$ROOT" "$ROOT/target")
printf '%-8s %12s %12s\n' call "$REV" "this tree"
for mode in view decode encode; do
    row=()
    for bin in "$base_bin" "$this_bin"; do
        a=$(count "$bin" "$mode" 0)
        b=$(count "$bin" "$mode" "$N")
        row+=($(((b - a) / N)))
    done
    printf '%-8s %12s %12s\n' "$mode" "${row[0]}" "${row[1]}"
done
