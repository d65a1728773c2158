//! `dnsfwd decode --stats`, through the binary, checked against numbers computed
//! independently:
//! * response times on `testdata/stats/delays.pcap`, whose server answered after known delays
//!   (`testdata/stats/delays.py` says which, `delays.sh` beside it captures it);
//! * every count by header, question, EDNS and transport against tshark's decoding of
//!   the same captures (`tshark -T json`), for `testdata/` and a few corpus files;
//! * the same counts, the top names and clients, against the shared corpus's
//!   `oracle.jsonl` (dnspython), for every corpus file.
//!
//! Without tshark or the corpus, the checks that need them print a `*** SKIPPED` line
//! (and fail under CI, which installs tshark and provides the corpus).
// Test code: a failed unwrap or panic is how a helper reports a broken fixture.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};

use dnsfwd::wire::{parse_message, Opcode, RType, Rcode};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_dnsfwd");

fn testdata(name: &str) -> String {
    format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn corpus_dir() -> PathBuf {
    std::env::var_os("DNSFWD_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus")))
}

fn decode(args: &[&str]) -> Output {
    Command::new(BIN).arg("decode").args(args).output().unwrap()
}

/// `decode --stats --json` of `files`: the whole object.
fn stats_json(files: &[&str], extra: &[&str]) -> Value {
    let mut args = vec!["--stats", "--json"];
    args.extend_from_slice(extra);
    args.extend_from_slice(files);
    let out = decode(&args);
    assert!(
        out.status.success(),
        "{:?}: {}",
        files,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[track_caller]
fn skipped(what: &str) {
    assert!(std::env::var_os("CI").is_none(), "{what} (CI must have it)");
    // Straight to stderr, past the test harness's capture: a skip must be seen.
    let _ = std::io::Write::write_fmt(
        &mut std::io::stderr(),
        format_args!("\n*** SKIPPED: decode --stats: {what} ***\n"),
    );
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[test]
fn response_times_match_the_delays_of_the_server() {
    let v = stats_json(&[&testdata("stats/delays.pcap")], &[]);
    let f = &v["files"][0];
    assert_eq!(n(&f["queries"]), 17);
    assert_eq!(n(&f["responses"]), 16);
    assert_eq!(f["transport"], serde_json::json!({"udp": 29, "tcp": 4}));
    let rt = &f["response_time"];
    assert_eq!(n(&rt["matched"]), 14, "{rt}");
    assert_eq!(n(&rt["unanswered"]), 2, "drop and other: {rt}");
    assert_eq!(n(&rt["unmatched_answers"]), 2, "twice and other: {rt}");
    assert_eq!(n(&rt["retransmitted"]), 1, "retry: {rt}");
    // Times 0, 20, 40, 50, 60, 80, 100, 100, 120, 140, 150, 160, 180, 200 ms plus the
    // server's scheduling: by nearest rank the median is the 7th (100), p90 the 13th
    // (180), p99 and max the 14th (200).
    let ms = &rt["ms"];
    for (k, want) in [
        ("min", 0.0),
        ("median", 100.0),
        ("p90", 180.0),
        ("p99", 200.0),
        ("max", 200.0),
    ] {
        let got = ms[k].as_f64().unwrap();
        assert!(
            (want..want + 40.0).contains(&got),
            "{k}: {got} ms, want {want}"
        );
    }
    assert_eq!(ms["p99"], ms["max"]);
    assert_eq!(
        f["rcode"],
        serde_json::json!({"NOERROR": 14, "NXDOMAIN": 2})
    );
    assert_eq!(f["qtype"], serde_json::json!({"A": 16, "AAAA": 1}));
    let top = &f["top_names"]["entries"][0];
    assert_eq!(top["name"], "retry.delay.test.");
    assert_eq!(n(&top["count"]), 2);
}

/// tshark's `-z dns,tree` times every answer it pairs by ID (not by question): it
/// pairs one more than we do (the answer to `other` with another question), with the
/// same fastest and slowest.
#[test]
fn response_time_extremes_agree_with_tshark() {
    let Some(tree) = tshark(&["-q", "-z", "dns,tree", "-r", &testdata("stats/delays.pcap")]) else {
        return skipped("tshark not installed");
    };
    let line = tree
        .lines()
        .find(|l| l.trim_start().starts_with("request-response time"))
        .unwrap();
    let cols: Vec<&str> = line.split_whitespace().collect();
    // request-response time (msec) COUNT AVERAGE MIN MAX ...
    let (count, min, max): (u64, f64, f64) = (
        cols[3].parse().unwrap(),
        cols[5].parse().unwrap(),
        cols[6].parse().unwrap(),
    );
    let v = stats_json(&[&testdata("stats/delays.pcap")], &[]);
    let rt = &v["files"][0]["response_time"];
    assert_eq!(count, n(&rt["matched"]) + 1, "{line}");
    assert!(
        (rt["ms"]["min"].as_f64().unwrap() - min).abs() < 0.002,
        "{line}"
    );
    assert!(
        (rt["ms"]["max"].as_f64().unwrap() - max).abs() < 0.002,
        "{line}"
    );
}

fn tshark(args: &[&str]) -> Option<String> {
    let out = Command::new("tshark").args(args).output().ok()?;
    assert!(
        out.status.success(),
        "tshark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

/// Every value of `key` anywhere under `v`.
fn all_of(v: &Value, key: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k == key, x) {
                    (true, Value::String(s)) => out.push(s.clone()),
                    (true, Value::Array(a)) => {
                        out.extend(a.iter().filter_map(|s| s.as_str().map(str::to_string)))
                    }
                    _ => all_of(x, key, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| all_of(x, key, out)),
        _ => {}
    }
}

fn first_of(v: &Value, key: &str) -> Option<String> {
    let mut all = Vec::new();
    all_of(v, key, &mut all);
    all.into_iter().next()
}

fn num(s: &str) -> u64 {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).unwrap(),
        None => s.parse().unwrap(),
    }
}

/// The counts `--stats` reports, computed from tshark's decoding of `file`.
fn counts_from_tshark(file: &str) -> Option<Value> {
    let text = tshark(&[
        "-r",
        file,
        "-Y",
        "dns",
        "-T",
        "json",
        "--no-duplicate-keys",
        "-J",
        "dns",
    ])?;
    let packets: Vec<Value> = serde_json::from_str(&text).unwrap();
    let mut c = Counts::default();
    for p in &packets {
        let layers = &p["_source"]["layers"];
        let tcp = layers.get("tcp").is_some();
        let msgs = match &layers["dns"] {
            Value::Array(a) => a.clone(),
            one => vec![one.clone()],
        };
        for m in &msgs {
            let flag = |k: &str| first_of(m, k).map_or(0, |s| num(&s));
            let response = flag("dns.flags.response") == 1;
            let mut qtypes = Vec::new();
            all_of(m, "dns.qry.type", &mut qtypes);
            let ext = flag("dns.resp.ext_rcode");
            let rcode = (ext << 4) | flag("dns.flags.rcode");
            c.add(
                tcp,
                response,
                flag("dns.flags.opcode"),
                rcode,
                flag("dns.flags.truncated") == 1,
                qtypes.iter().map(|q| num(q)),
            );
        }
    }
    Some(c.to_json())
}

/// Counts as `--stats` keys them.
#[derive(Default)]
struct Counts {
    messages: u64,
    queries: u64,
    responses: u64,
    udp: u64,
    tcp: u64,
    tc: u64,
    opcode: BTreeMap<String, u64>,
    rcode: BTreeMap<String, u64>,
    qtype: BTreeMap<String, u64>,
}

impl Counts {
    fn add(
        &mut self,
        tcp: bool,
        response: bool,
        opcode: u64,
        rcode: u64,
        tc: bool,
        qtypes: impl Iterator<Item = u64>,
    ) {
        self.messages += 1;
        *if tcp { &mut self.tcp } else { &mut self.udp } += 1;
        self.tc += u64::from(tc);
        *self
            .opcode
            .entry(Opcode(opcode as u8).name().into_owned())
            .or_default() += 1;
        if response {
            self.responses += 1;
            *self
                .rcode
                .entry(Rcode(rcode as u16).name().into_owned())
                .or_default() += 1;
        } else {
            self.queries += 1;
            for q in qtypes {
                *self
                    .qtype
                    .entry(RType(q as u16).name().into_owned())
                    .or_default() += 1;
            }
        }
    }

    fn to_json(&self) -> Value {
        serde_json::json!({
            "messages": self.messages, "queries": self.queries, "responses": self.responses,
            "transport": {"udp": self.udp, "tcp": self.tcp}, "tc": self.tc,
            "opcode": self.opcode, "rcode": self.rcode, "qtype": self.qtype,
        })
    }
}

/// The fields of a `--stats` file object that `Counts` has, maps in key order.
fn comparable(f: &Value) -> Value {
    let sorted = |v: &Value| {
        let m: BTreeMap<String, u64> = v
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, x)| (k.clone(), n(x)))
            .collect();
        serde_json::to_value(m).unwrap()
    };
    serde_json::json!({
        "messages": f["messages"], "queries": f["queries"], "responses": f["responses"],
        "transport": f["transport"], "tc": f["tc"],
        "opcode": sorted(&f["opcode"]), "rcode": sorted(&f["rcode"]), "qtype": sorted(&f["qtype"]),
    })
}

#[test]
fn counts_agree_with_tshark() {
    let mut files: Vec<String> = [
        "auth-udp",
        "auth-tcp",
        "dnssec",
        "edns",
        "ipv6",
        "recursive",
        "stats/delays",
    ]
    .iter()
    .map(|f| testdata(&format!("{f}.pcap")))
    .collect();
    let corpus = corpus_dir().join("pcaps");
    // Corpus captures of several kinds: plain UDP, TCP, truncation, DNSSEC, mixed.
    for f in [
        "arkime__dns-error.pcap",
        "arkime__dns-dnskey.pcap",
        "arkime__dns-https.pcap",
        "arkime__dns-flags0110.pcap",
    ] {
        if corpus.join(f).exists() {
            files.push(corpus.join(f).to_string_lossy().into_owned());
        }
    }
    let mut compared = 0;
    for file in &files {
        let Some(want) = counts_from_tshark(file) else {
            return skipped("tshark not installed");
        };
        let v = stats_json(&[file], &[]);
        assert_eq!(comparable(&v["files"][0]), want, "{file}");
        compared += 1;
    }
    assert!(compared >= 7);
}

/// The counts `--stats` reports for one corpus file, from the oracle's lines for it.
/// Counts by header take every message with a header; by question, EDNS and client
/// only the messages that parse; rcode is the full one when the message parses.
fn counts_from_oracle(lines: &[Value]) -> (Value, BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let mut c = Counts::default();
    let (mut malformed, mut cut, mut tunnelled) = (0, 0, 0);
    let (mut edns_q, mut edns_r, mut do_q, mut do_r) = (0, 0, 0, 0);
    let mut names = BTreeMap::new();
    let mut clients = BTreeMap::new();
    for l in lines {
        let ok = l["parse_ok"] == true;
        malformed += u64::from(!ok);
        cut += u64::from(l["truncated"] == true);
        tunnelled += u64::from(!l["tunnel"].as_array().unwrap().is_empty());
        let Some(qr) = l["qr"].as_u64() else {
            // No whole header: a message, and malformed, but nothing more.
            c.messages += 1;
            *if l["transport"] == "tcp" {
                &mut c.tcp
            } else {
                &mut c.udp
            } += 1;
            continue;
        };
        let rcode = if ok {
            n(&l["rcode_ext"])
        } else {
            n(&l["rcode"])
        };
        let questions: Vec<&Value> = if ok {
            l["questions"].as_array().unwrap().iter().collect()
        } else {
            Vec::new()
        };
        c.add(
            l["transport"] == "tcp",
            qr == 1,
            n(&l["opcode"]),
            rcode,
            l["tc"] == 1,
            questions.iter().map(|q| n(&q[3])),
        );
        if ok && qr == 0 {
            for q in &questions {
                let name = q[0].as_str().unwrap().to_ascii_lowercase();
                *names.entry(name).or_insert(0) += 1;
            }
            *clients
                .entry(l["src"].as_str().unwrap().to_string())
                .or_insert(0) += 1;
        }
        if ok && !l["edns"].is_null() {
            let dnssec_ok = u64::from(l["edns"]["do"] == true);
            if qr == 1 {
                edns_r += 1;
                do_r += dnssec_ok;
            } else {
                edns_q += 1;
                do_q += dnssec_ok;
            }
        }
    }
    let mut v = c.to_json();
    let m = v.as_object_mut().unwrap();
    m.insert("malformed_total".into(), malformed.into());
    m.insert("cut_short".into(), cut.into());
    m.insert("tunnelled".into(), tunnelled.into());
    m.insert(
        "edns".into(),
        serde_json::json!({"queries": edns_q, "responses": edns_r, "do_queries": do_q, "do_responses": do_r}),
    );
    (v, names, clients)
}

/// Every listed entry's count is the oracle's, and the list holds the most frequent.
#[track_caller]
fn check_top(file: &str, what: &str, got: &Value, key: &str, want: &BTreeMap<String, u64>) {
    let entries = got["entries"].as_array().unwrap();
    assert_eq!(got["exact"], true, "{file}: {what}");
    assert_eq!(n(&got["distinct"]), want.len() as u64, "{file}: {what}");
    assert_eq!(entries.len(), want.len().min(10), "{file}: {what}");
    let mut counts: Vec<u64> = want.values().copied().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    for (e, top) in entries.iter().zip(&counts) {
        let k = e[key].as_str().unwrap();
        assert_eq!(want.get(k), Some(&n(&e["count"])), "{file}: {what} {k}");
        assert_eq!(n(&e["count"]), *top, "{file}: {what} not in order");
    }
}

#[test]
fn counts_agree_with_the_corpus_oracle() {
    let dir = corpus_dir();
    let Ok(oracle) = std::fs::read_to_string(dir.join("oracle.jsonl")) else {
        return skipped(&format!(
            "no corpus at {} (set DNSFWD_CORPUS)",
            dir.display()
        ));
    };
    let mut by_file: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for line in oracle.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap();
        by_file
            .entry(v["file"].as_str().unwrap().to_string())
            .or_default()
            .push(v);
    }
    let (mut compared, mut messages) = (0, 0);
    let mut out_of_scope = Vec::new();
    for (file, lines) in &by_file {
        // `capture` stops a TCP stream at a hole: those messages are not decoded at all.
        // And a few messages whose RDATA contents the oracle rejects are, on purpose,
        // accepted by our parser as opaque (tests/corpus.rs counts them): the oracle
        // has no questions or EDNS for them to count.
        let rejected_by_oracle_only = |l: &Value| {
            l["parse_ok"] == false
                && parse_message(&hex::decode(l["hex"].as_str().unwrap()).unwrap()).is_ok()
        };
        if lines
            .iter()
            .any(|l| l["tcp_after_gap"] == true || rejected_by_oracle_only(l))
        {
            out_of_scope.push(file.clone());
            continue;
        }
        let path = dir.join("pcaps").join(file);
        let v = stats_json(&[path.to_str().unwrap()], &[]);
        let f = &v["files"][0];
        let (want, names, clients) = counts_from_oracle(lines);
        let mut got = comparable(f);
        let m = got.as_object_mut().unwrap();
        for k in ["malformed_total", "cut_short", "tunnelled"] {
            m.insert(k.into(), f[k].clone());
        }
        let e = &f["edns"];
        m.insert(
            "edns".into(),
            serde_json::json!({"queries": e["queries"], "responses": e["responses"],
                "do_queries": e["do_queries"], "do_responses": e["do_responses"]}),
        );
        assert_eq!(got, want, "{file}");
        check_top(file, "names", &f["top_names"], "name", &names);
        check_top(file, "clients", &f["top_clients"], "client", &clients);
        compared += 1;
        messages += lines.len();
    }
    eprintln!(
        "decode --stats: {compared} corpus files ({messages} messages) agree with the oracle; \
         {} with messages after a TCP hole or opaque RDATA not compared: {out_of_scope:?}",
        out_of_scope.len()
    );
    assert!(
        compared >= 145 && out_of_scope.len() <= 8,
        "only {compared} files compared; out of scope: {out_of_scope:?}"
    );
}

/// Several inputs of every kind (tunnels, other ports, a raw message) with the options of
/// `decode`: each counted, and the total is their sum; a bad input fails the run
/// without hiding the others.
#[test]
fn several_inputs_their_total_and_the_options_of_decode() {
    let tunnels = testdata("linktypes/tunnel-nested.pcap");
    let anyport = testdata("linktypes/anyport.pcap");
    let raw = "123401000001000000000000076578616d706c6503636f6d0000010001";
    let v = stats_json(&[&tunnels, &anyport, raw], &["--any-port", "--top", "1"]);
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.len(), 3);
    assert_eq!(n(&files[0]["tunnelled"]), 2);
    assert_eq!(
        files[1]["transport"],
        serde_json::json!({"udp": 2, "tcp": 2})
    );
    assert_eq!(n(&files[1]["response_time"]["matched"]), 2);
    assert_eq!(files[2]["file"], "(command line)");
    assert_eq!(files[2]["qtype"], serde_json::json!({"A": 1}));
    let total = &v["total"];
    let sum = |k: &str| files.iter().map(|f| n(&f[k])).sum::<u64>();
    for k in ["messages", "queries", "responses", "packets", "tunnelled"] {
        assert_eq!(n(&total[k]), sum(k), "{k}");
    }
    assert_eq!(total["top_names"]["entries"].as_array().unwrap().len(), 1);
    // Text: a section per input and the total.
    let out = decode(&["--stats", "--any-port", &tunnels, &anyport]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    assert_eq!(text.matches("\n== ").count() + 1, 3, "{text}");
    assert!(text.contains("== total of 2 inputs =="), "{text}");
    // Without --port or --any-port, only port 53: anyport.pcap is found by content (a note).
    let out = decode(&["--stats", "--port", "53", &anyport, &tunnels]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no DNS messages found"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("tunnel-nested.pcap"));
}
