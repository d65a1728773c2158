//! Compares the messages `capture` extracts from the shared corpus of real captures with the
//! reference extraction in `oracle.jsonl` (see the corpus README).
//!
//! Scope: every capture file is read (and must read without error); its messages are
//! compared with the oracle's, field by field and in order (frame, timestamp, transport,
//! addresses and ports, bytes, truncated flag, and the tunnels removed, by name and
//! outermost first, as in the oracle's `tunnel`), except for what `capture` deliberately
//! does not do, detected from the data rather than from file names:
//! * oracle messages found after a TCP hole (`tcp_after_gap`): streams stop at a hole;
//! * files with packets of a link type `capture` does not decode (PPP, 802.11, ...): the
//!   oracle decodes those, so the whole file is skipped and reported.
//!
//! The corpus lives next to the repository (`../shared/corpus`); `DNSFWD_CORPUS` overrides
//! the path. Without the corpus the test prints a note and passes.
// Test code: a failed unwrap or panic is how a helper reports a broken corpus line. Clippy
// treats only `#[test]` functions (not their helpers) as tests in an integration test crate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use dnsfwd::capture::{self, CapturedMessage, Options, Transport};

fn corpus_dir() -> PathBuf {
    std::env::var_os("DNSFWD_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus")))
}

/// The oracle fields this test compares.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    index: u64,
    frame: u32,
    ts: f64,
    transport: Transport,
    src: SocketAddr,
    dst: SocketAddr,
    bytes: Vec<u8>,
    truncated: bool,
    tunnel: Vec<String>,
    after_gap: bool,
}

fn parse_oracle_line(line: &str) -> (String, Expected) {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let s = |k: &str| v[k].as_str().unwrap_or_else(|| panic!("{k} in {line}"));
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {line}"));
    let b = |k: &str| v[k].as_bool().unwrap_or_else(|| panic!("{k} in {line}"));
    let addr = |a: &str, p: &str| {
        SocketAddr::new(
            s(a).parse::<IpAddr>().unwrap(),
            u16::try_from(n(p)).unwrap(),
        )
    };
    let transport = match s("transport") {
        "udp" => Transport::Udp,
        "tcp" => Transport::Tcp,
        other => panic!("transport {other}"),
    };
    let e = Expected {
        index: n("index"),
        frame: u32::try_from(n("frame")).unwrap(),
        ts: v["ts"].as_f64().unwrap(),
        transport,
        src: addr("src", "sport"),
        dst: addr("dst", "dport"),
        bytes: hex::decode(s("hex")).unwrap(),
        truncated: b("truncated"),
        tunnel: v["tunnel"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect(),
        after_gap: b("tcp_after_gap"),
    };
    (s("file").to_string(), e)
}

/// How one extracted message differs from the oracle's, or `None` if it does not.
fn difference(got: &CapturedMessage, want: &Expected) -> Option<String> {
    let mut d = Vec::new();
    if got.frame != want.frame {
        d.push(format!("frame {} != {}", got.frame, want.frame));
    }
    if (got.ts - want.ts).abs() > 1e-5 {
        d.push(format!("ts {} != {}", got.ts, want.ts));
    }
    if got.transport != want.transport {
        d.push(format!(
            "transport {:?} != {:?}",
            got.transport, want.transport
        ));
    }
    if got.src != want.src || got.dst != want.dst {
        d.push(format!(
            "{} -> {} != {} -> {}",
            got.src, got.dst, want.src, want.dst
        ));
    }
    let tunnel: Vec<&str> = got.tunnel.iter().map(|t| t.name()).collect();
    if tunnel != want.tunnel {
        d.push(format!("tunnel {tunnel:?} != {:?}", want.tunnel));
    }
    if got.truncated != want.truncated {
        d.push(format!("truncated {} != {}", got.truncated, want.truncated));
    }
    if got.bytes != want.bytes {
        let at = got
            .bytes
            .iter()
            .zip(&want.bytes)
            .position(|(a, b)| a != b)
            .unwrap_or(got.bytes.len().min(want.bytes.len()));
        d.push(format!(
            "bytes differ at {at} (len {} != {})",
            got.bytes.len(),
            want.bytes.len()
        ));
    }
    (!d.is_empty()).then(|| d.join(", "))
}

fn describe(m: &CapturedMessage) -> String {
    format!(
        "frame {} {:?} {} -> {} len {}{}",
        m.frame,
        m.transport,
        m.src,
        m.dst,
        m.bytes.len(),
        if m.truncated { " truncated" } else { "" }
    )
}

/// Compares one file; returns the problems found (empty when it matches).
fn compare_file(got: &[CapturedMessage], want: &[&Expected]) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, pair) in got.iter().zip(want).enumerate() {
        if let Some(d) = difference(pair.0, pair.1) {
            problems.push(format!("message {i} (oracle index {}): {d}", pair.1.index));
        }
    }
    for extra in got.iter().skip(want.len()) {
        problems.push(format!("extra message: {}", describe(extra)));
    }
    for missing in want.iter().skip(got.len()) {
        problems.push(format!(
            "missing oracle index {}: frame {} {:?} {} -> {} len {}",
            missing.index,
            missing.frame,
            missing.transport,
            missing.src,
            missing.dst,
            missing.bytes.len()
        ));
    }
    problems
}

/// A missing corpus fails under CI (`.ci/run` guarantees it) and is a note elsewhere.
#[track_caller]
fn skip_without_corpus(dir: &std::path::Path) {
    assert!(
        std::env::var_os("CI").is_none(),
        "corpus missing at {} (CI must have ../shared)",
        dir.display()
    );
    // Straight to stderr, past the test harness's capture: a skip must be seen.
    let _ = std::io::Write::write_fmt(
        &mut std::io::stderr(),
        format_args!(
            "\n*** SKIPPED: capture corpus: no corpus at {} (set DNSFWD_CORPUS) ***\n",
            dir.display()
        ),
    );
}

#[test]
fn corpus_matches_oracle() {
    let dir = corpus_dir();
    let Ok(oracle) = std::fs::read_to_string(dir.join("oracle.jsonl")) else {
        return skip_without_corpus(&dir);
    };
    let mut by_file: BTreeMap<String, Vec<Expected>> = BTreeMap::new();
    for line in oracle.lines().filter(|l| !l.trim().is_empty()) {
        let (file, e) = parse_oracle_line(line);
        by_file.entry(file).or_default().push(e);
    }

    let mut names: Vec<String> = std::fs::read_dir(dir.join("pcaps"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pcap") || n.ends_with(".pcapng"))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no captures in {}", dir.display());
    // Every file the oracle mentions must be there, or the comparison would be vacuous.
    for f in by_file.keys() {
        assert!(
            names.contains(f),
            "oracle names {f}, which is not in pcaps/"
        );
    }

    let opts = Options::default();
    let (mut matched_files, mut matched_msgs, mut excluded_msgs) = (0, 0, 0);
    let mut tunnelled_msgs = 0;
    let mut skipped = Vec::new();
    let mut failures = Vec::new();
    for name in &names {
        let data = std::fs::read(dir.join("pcaps").join(name)).unwrap();
        assert!(capture::is_capture(&data), "{name}: not recognised");
        let summary = match capture::read_capture_detailed(&data, &opts) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{name}: read error: {e}"));
                continue;
            }
        };
        let oracle = by_file.get(name).map(Vec::as_slice).unwrap_or(&[]);
        if summary.unsupported_link_packets > 0 {
            let types: Vec<u32> = summary
                .link_types
                .iter()
                .copied()
                .filter(|&t| !capture::is_supported_link_type(t))
                .collect();
            skipped.push(format!(
                "{name}: {} packets of unsupported link type(s) {types:?} ({} oracle messages)",
                summary.unsupported_link_packets,
                oracle.len()
            ));
            continue;
        }
        let want: Vec<&Expected> = oracle.iter().filter(|e| !e.after_gap).collect();
        excluded_msgs += oracle.len() - want.len();
        tunnelled_msgs += want.iter().filter(|e| !e.tunnel.is_empty()).count();
        let problems = compare_file(&summary.messages, &want);
        if problems.is_empty() {
            matched_files += 1;
            matched_msgs += want.len();
        } else {
            let shown: Vec<&String> = problems.iter().take(8).collect();
            failures.push(format!(
                "{name}: {} problem(s), {} extracted vs {} expected:\n    {}",
                problems.len(),
                summary.messages.len(),
                want.len(),
                shown
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("\n    ")
            ));
        }
    }

    eprintln!(
        "corpus: {matched_files} of {} files match exactly ({matched_msgs} messages, \
         {tunnelled_msgs} of them in tunnels); {excluded_msgs} oracle messages out of scope \
         (after a TCP gap); {} files skipped",
        names.len(),
        skipped.len()
    );
    for s in &skipped {
        eprintln!("  skipped {s}");
    }
    assert!(
        failures.is_empty(),
        "{} file(s) differ from the oracle:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(matched_files > 0, "nothing was compared");
}

/// Real files, damaged: cut at many points and with bytes overwritten. Reading them must
/// never panic, and a cut file must yield no more complete messages than the whole one.
#[test]
fn damaged_corpus_files_never_panic() {
    let dir = corpus_dir().join("pcaps");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return skip_without_corpus(&dir);
    };
    let mut names: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    names.sort();
    // A fixed xorshift generator: failures reproduce.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let opts = Options::default();
    for path in names {
        let data = std::fs::read(&path).unwrap();
        // Keep the run short: damage the first 64 KiB of each file.
        let data = &data[..data.len().min(64 * 1024)];
        let whole = capture::read_capture(data, &opts)
            .map(|m| m.len())
            .unwrap_or(0);
        let cuts = (0..data.len().min(600)).chain((0..40).map(|_| rnd() as usize % data.len()));
        for cut in cuts {
            if let Ok(msgs) = capture::read_capture(&data[..cut], &opts) {
                let complete = msgs.iter().filter(|m| !m.truncated).count();
                assert!(complete <= whole, "{}: cut at {cut}", path.display());
            }
        }
        for _ in 0..40 {
            let mut m = data.to_vec();
            for _ in 0..=(rnd() % 8) {
                let at = rnd() as usize % m.len();
                m[at] = rnd() as u8;
            }
            let _ = capture::read_capture(&m, &opts);
        }
    }
}
