//! The summary as text for people and as one JSON object for tools. Both say the same:
//! counts keyed by mnemonic (`NXDOMAIN`, `AAAA`, `TYPE65280`), most frequent first.
use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::{json, Map, Value};

use super::rtt::MATCH_TIMEOUT;
use super::tally::Tally;
use super::topk::{Counted, TopCounter};
use super::{total, FileStats};
use crate::wire::{EdnsOption, Opcode, RType, Rcode};

/// `(mnemonic, count)` most frequent first, ties by key.
fn ranked<K: Copy + Ord>(map: &BTreeMap<K, u64>, name: impl Fn(K) -> String) -> Vec<(String, u64)> {
    let mut v: Vec<(K, u64)> = map.iter().map(|(&k, &n)| (k, n)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.into_iter().map(|(k, n)| (name(k), n)).collect()
}

fn option_name(code: u16) -> String {
    EdnsOption { code, data: &[] }
        .name()
        .map_or_else(|| format!("OPTION{code}"), str::to_string)
}

/// The tables of a tally, by heading: each `(mnemonic, count)`.
fn tables(t: &Tally) -> Vec<(&'static str, Vec<(String, u64)>)> {
    vec![
        (
            "opcode",
            ranked(&t.opcode, |o| Opcode(o).name().into_owned()),
        ),
        ("rcode", ranked(&t.rcode, |r| Rcode(r).name().into_owned())),
        ("qtype", ranked(&t.qtype, |q| RType(q).name().into_owned())),
        ("malformed", ranked(&t.malformed, |e: &str| e.to_string())),
    ]
}

fn top_names(t: &Tally, n: usize) -> Vec<(String, Counted)> {
    t.names
        .top(n, |k| k.to_lowercase_string())
        .into_iter()
        .map(|(k, c)| (k.to_lowercase_string(), c))
        .collect()
}

fn top_clients(t: &Tally, n: usize) -> Vec<(String, Counted)> {
    t.clients
        .top(n, |k| *k)
        .into_iter()
        .map(|(k, c)| (k.to_string(), c))
        .collect()
}

/// `{min, median, p90, p99, max}` in milliseconds, or `None` without matched answers.
fn times(t: &Tally) -> Option<[(&'static str, f64); 5]> {
    let l = &t.latencies;
    let (min, max) = l.min_max_ms()?;
    let p = |q| l.percentile_ms(q).unwrap_or(max);
    Some([
        ("min", min),
        ("median", p(50.0)),
        ("p90", p(90.0)),
        ("p99", p(99.0)),
        ("max", max),
    ])
}

/// The summary of every file, and the total of all when there are several.
pub fn text(files: &[FileStats], top: usize) -> String {
    let mut out = String::new();
    for f in files {
        file_text(&mut out, &f.file, &f.tally, top);
    }
    if files.len() > 1 {
        file_text(
            &mut out,
            &format!("total of {} inputs", files.len()),
            &total(files),
            top,
        );
    }
    out
}

fn pct(n: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        n as f64 * 100.0 / of as f64
    }
}

fn file_text(out: &mut String, title: &str, t: &Tally, top: usize) {
    let _ = writeln!(out, "== {title} ==");
    let mut line = |k: &str, v: String| {
        let _ = writeln!(out, "{k:<18} {v}");
    };
    line("packets", t.packets.to_string());
    line(
        "messages",
        format!(
            "{} (queries {}, responses {})",
            t.messages, t.queries, t.responses
        ),
    );
    line(
        "transport",
        format!(
            "udp {}, tcp {}; IPv4 {}, IPv6 {}; in tunnels {}",
            t.udp, t.tcp, t.ipv4, t.ipv6, t.tunnelled
        ),
    );
    line(
        "malformed",
        format!(
            "{} (cut short by the capture: {})",
            t.malformed_total(),
            t.cut_short
        ),
    );
    line("TC=1", t.tc.to_string());
    let e = &t.edns;
    line(
        "EDNS",
        format!(
            "queries {} (DO {}), responses {} (DO {})",
            e.queries, e.do_queries, e.responses, e.do_responses
        ),
    );
    let sizes = ranked(&e.udp_size, |s| s.to_string());
    let options = ranked(&e.options, option_name);
    let list = |v: &[(String, u64)]| {
        let items: Vec<String> = v.iter().take(8).map(|(k, n)| format!("{k} {n}")).collect();
        if items.is_empty() {
            "-".to_string()
        } else {
            items.join(", ") + if v.len() > 8 { ", ..." } else { "" }
        }
    };
    line("  UDP sizes", list(&sizes));
    line("  options", list(&options));
    let m = &t.matching;
    line(
        "response times",
        format!(
            "{} matched, {} unanswered, {} unmatched answers, {} retransmitted",
            m.matched, m.unanswered, m.unmatched_answers, m.retransmitted
        ),
    );
    if let Some(ts) = times(t) {
        let parts: Vec<String> = ts.iter().map(|(k, v)| format!("{k} {v:.3}")).collect();
        line("  ms", parts.join("  "));
    }
    for (heading, rows) in tables(t) {
        let of: u64 = rows.iter().map(|r| r.1).sum();
        if rows.is_empty() {
            continue;
        }
        let what = match heading {
            "rcode" => "rcode (responses)",
            "qtype" => "qtype (queries)",
            "malformed" => "malformed by error",
            other => other,
        };
        let _ = writeln!(out, "{what}");
        for (k, n) in rows {
            let _ = writeln!(out, "  {k:<16} {n:>10} {:>6.1}%", pct(n, of));
        }
    }
    top_text(out, "names queried", &t.names, &top_names(t, top));
    top_text(
        out,
        "clients (queries sent)",
        &t.clients,
        &top_clients(t, top),
    );
    out.push('\n');
}

fn top_text<K: std::hash::Hash + Eq + Clone>(
    out: &mut String,
    what: &str,
    counter: &TopCounter<K>,
    rows: &[(String, Counted)],
) {
    if rows.is_empty() {
        return;
    }
    let exact = if counter.is_exact() {
        format!("{} distinct", counter.distinct())
    } else {
        format!(
            "approximate: more than {} distinct; a count may include up to its ± of others",
            counter.distinct()
        )
    };
    let _ = writeln!(out, "top {} {what} ({exact})", rows.len());
    for (k, c) in rows {
        let err = if c.error > 0 {
            format!(" ±{}", c.error)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  {:>10} {:>6.1}%  {k}{err}",
            c.count,
            pct(c.count, counter.total())
        );
    }
}

/// `{"files": [...], "total": {...}}`: every file's summary and their sum.
pub fn json(files: &[FileStats], top: usize) -> Value {
    let per_file: Vec<Value> = files
        .iter()
        .map(|f| {
            let mut m = Map::new();
            m.insert("file".into(), json!(f.file));
            if let Value::Object(rest) = tally_json(&f.tally, top) {
                m.extend(rest);
            }
            Value::Object(m)
        })
        .collect();
    json!({"files": per_file, "total": tally_json(&total(files), top)})
}

fn counts_json(rows: Vec<(String, u64)>) -> Value {
    Value::Object(
        rows.into_iter()
            .map(|(k, n)| (k, json!(n)))
            .collect::<Map<_, _>>(),
    )
}

fn top_json(
    key: &str,
    counter_exact: bool,
    distinct: usize,
    rows: Vec<(String, Counted)>,
) -> Value {
    let entries: Vec<Value> = rows
        .into_iter()
        .map(|(k, c)| json!({key: k, "count": c.count, "error": c.error}))
        .collect();
    json!({"exact": counter_exact, "distinct": distinct, "entries": entries})
}

fn tally_json(t: &Tally, top: usize) -> Value {
    let mut v = json!({
        "packets": t.packets,
        "messages": t.messages,
        "queries": t.queries,
        "responses": t.responses,
        "transport": {"udp": t.udp, "tcp": t.tcp},
        "ip": {"4": t.ipv4, "6": t.ipv6},
        "tunnelled": t.tunnelled,
        "cut_short": t.cut_short,
        "tc": t.tc,
    });
    let Value::Object(m) = &mut v else {
        return v;
    };
    for (heading, rows) in tables(t) {
        m.insert(heading.into(), counts_json(rows));
    }
    m.insert("malformed_total".into(), json!(t.malformed_total()));
    let e = &t.edns;
    m.insert(
        "edns".into(),
        json!({
            "queries": e.queries, "responses": e.responses,
            "do_queries": e.do_queries, "do_responses": e.do_responses,
            "udp_size": counts_json(ranked(&e.udp_size, |s| s.to_string())),
            "version": counts_json(ranked(&e.version, |s| s.to_string())),
            "options": counts_json(ranked(&e.options, option_name)),
        }),
    );
    m.insert(
        "top_names".into(),
        top_json(
            "name",
            t.names.is_exact(),
            t.names.distinct(),
            top_names(t, top),
        ),
    );
    m.insert(
        "top_clients".into(),
        top_json(
            "client",
            t.clients.is_exact(),
            t.clients.distinct(),
            top_clients(t, top),
        ),
    );
    let mc = &t.matching;
    let ms = times(t).map(|ts| {
        Value::Object(
            ts.iter()
                .map(|(k, x)| ((*k).to_string(), json!(x)))
                .collect(),
        )
    });
    m.insert(
        "response_time".into(),
        json!({
            "matched": mc.matched, "unanswered": mc.unanswered,
            "unmatched_answers": mc.unmatched_answers, "retransmitted": mc.retransmitted,
            "evicted": mc.evicted, "timeout_s": MATCH_TIMEOUT, "ms": ms,
        }),
    );
    v
}
