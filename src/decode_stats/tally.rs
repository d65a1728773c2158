//! The counts of one file (or of all files): what [`Tally::add`] learns from each message.
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use super::rtt::{Latencies, MatchCounts, Matcher, QueryKey};
use super::topk::TopCounter;
use crate::capture::Transport;
use crate::wire::{parse_header, parse_message, Edns, Header, Message, Name};

/// Distinct names (and clients) counted exactly; past it, the most frequent are found
/// approximately (see `topk`).
pub const TOP_CAPACITY: usize = 1 << 16;

/// Where a message came from, when it came from a capture.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    pub ts: f64,
    pub transport: Transport,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub tunnelled: bool,
    /// The capture holds only the start of the message.
    pub cut_short: bool,
}

/// EDNS as seen in the messages that parsed.
#[derive(Debug, Default)]
pub struct EdnsTally {
    pub queries: u64,
    pub responses: u64,
    pub do_queries: u64,
    pub do_responses: u64,
    /// UDP payload sizes advertised, in queries and responses.
    pub udp_size: BTreeMap<u16, u64>,
    pub version: BTreeMap<u8, u64>,
    /// Options by code, counted once per message that carries them.
    pub options: BTreeMap<u16, u64>,
}

/// Everything counted about a set of messages. Counts by header (queries, responses,
/// opcode, rcode, TC) include messages that do not parse, as long as their 12-octet
/// header is there; counts by question, EDNS and response times only take messages
/// that parse.
#[derive(Debug)]
pub struct Tally {
    /// Packets in the capture files (0 for a raw message).
    pub packets: u64,
    pub messages: u64,
    pub queries: u64,
    pub responses: u64,
    pub udp: u64,
    pub tcp: u64,
    pub ipv4: u64,
    pub ipv6: u64,
    pub tunnelled: u64,
    pub cut_short: u64,
    /// Messages that do not parse, by the parser's error name.
    pub malformed: BTreeMap<&'static str, u64>,
    pub opcode: BTreeMap<u8, u64>,
    /// Full RCODE of the responses (with the OPT record's upper bits when it parses).
    pub rcode: BTreeMap<u16, u64>,
    /// QTYPE of each question of the queries.
    pub qtype: BTreeMap<u16, u64>,
    /// Messages with TC=1.
    pub tc: u64,
    pub edns: EdnsTally,
    /// QNAME of each question of the queries, case folded.
    pub names: TopCounter<Name>,
    /// Source address of the queries.
    pub clients: TopCounter<IpAddr>,
    pub latencies: Latencies,
    pub matching: MatchCounts,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            packets: 0,
            messages: 0,
            queries: 0,
            responses: 0,
            udp: 0,
            tcp: 0,
            ipv4: 0,
            ipv6: 0,
            tunnelled: 0,
            cut_short: 0,
            malformed: BTreeMap::new(),
            opcode: BTreeMap::new(),
            rcode: BTreeMap::new(),
            qtype: BTreeMap::new(),
            tc: 0,
            edns: EdnsTally::default(),
            names: TopCounter::new(TOP_CAPACITY),
            clients: TopCounter::new(TOP_CAPACITY),
            latencies: Latencies::default(),
            matching: MatchCounts::default(),
        }
    }
}

fn bump<K: Ord>(map: &mut BTreeMap<K, u64>, key: K, n: u64) {
    *map.entry(key).or_insert(0) += n;
}

fn merge_map<K: Ord + Copy>(into: &mut BTreeMap<K, u64>, from: &BTreeMap<K, u64>) {
    for (&k, &n) in from {
        bump(into, k, n);
    }
}

impl Tally {
    /// Counts one message; `origin` is `None` for a message that was not captured, and
    /// `matcher` pairs the captured queries with their answers.
    pub fn add(&mut self, bytes: &[u8], origin: Option<&Origin>, matcher: &mut Matcher) {
        self.messages += 1;
        if let Some(o) = origin {
            self.add_origin(o);
        }
        let header = parse_header(bytes).ok().map(|(_, h)| h);
        let parsed = parse_message(bytes);
        if let Err(e) = &parsed {
            bump(&mut self.malformed, e.kind.name(), 1);
        }
        let Some(header) = header else {
            return;
        };
        self.add_header(&header);
        let Ok(m) = parsed else {
            if header.qr {
                bump(&mut self.rcode, header.rcode.0, 1);
            }
            return;
        };
        let edns = m.edns();
        if header.qr {
            bump(&mut self.rcode, m.rcode().0, 1);
        }
        if let Some(e) = &edns {
            self.add_edns(header.qr, e);
        }
        self.add_questions(m, origin, matcher);
    }

    fn add_origin(&mut self, o: &Origin) {
        match o.transport {
            Transport::Udp => self.udp += 1,
            Transport::Tcp => self.tcp += 1,
        }
        if o.src.is_ipv4() {
            self.ipv4 += 1;
        } else {
            self.ipv6 += 1;
        }
        self.tunnelled += u64::from(o.tunnelled);
        self.cut_short += u64::from(o.cut_short);
    }

    fn add_header(&mut self, h: &Header) {
        if h.qr {
            self.responses += 1;
        } else {
            self.queries += 1;
        }
        bump(&mut self.opcode, h.opcode.0, 1);
        self.tc += u64::from(h.tc);
    }

    fn add_edns(&mut self, response: bool, e: &Edns<'_>) {
        let t = &mut self.edns;
        if response {
            t.responses += 1;
            t.do_responses += u64::from(e.dnssec_ok);
        } else {
            t.queries += 1;
            t.do_queries += u64::from(e.dnssec_ok);
        }
        bump(&mut t.udp_size, e.udp_size, 1);
        bump(&mut t.version, e.version, 1);
        let mut codes: Vec<u16> = e.options.iter().map(|o| o.code).collect();
        codes.sort_unstable();
        codes.dedup();
        for c in codes {
            bump(&mut t.options, c, 1);
        }
    }

    /// Question counts of queries, and the pairing of queries with answers.
    fn add_questions(&mut self, m: Message<'_>, origin: Option<&Origin>, matcher: &mut Matcher) {
        let h = m.header;
        let first = m
            .questions
            .first()
            .map(|q| (q.qname.clone(), q.qtype, q.qclass));
        if !h.qr {
            if let Some(o) = origin {
                self.clients.add(o.src.ip());
            }
            for q in m.questions {
                bump(&mut self.qtype, q.qtype.0, 1);
                self.names.add(q.qname);
            }
        }
        let Some(o) = origin else {
            return;
        };
        let (client, server) = if h.qr { (o.dst, o.src) } else { (o.src, o.dst) };
        let key = QueryKey {
            transport: o.transport,
            client,
            server,
            id: h.id,
            question: first,
        };
        if h.qr {
            if let Some(t) = matcher.answer(&key, o.ts) {
                self.latencies.add(t);
            }
        } else {
            matcher.query(key, o.ts);
        }
    }

    /// Adds another tally's counts to this one (the names and clients approximately once
    /// more than [`TOP_CAPACITY`] are held; see `topk`).
    pub fn merge(&mut self, o: &Tally) {
        self.packets += o.packets;
        self.messages += o.messages;
        self.queries += o.queries;
        self.responses += o.responses;
        self.udp += o.udp;
        self.tcp += o.tcp;
        self.ipv4 += o.ipv4;
        self.ipv6 += o.ipv6;
        self.tunnelled += o.tunnelled;
        self.cut_short += o.cut_short;
        merge_map(&mut self.malformed, &o.malformed);
        merge_map(&mut self.opcode, &o.opcode);
        merge_map(&mut self.rcode, &o.rcode);
        merge_map(&mut self.qtype, &o.qtype);
        self.tc += o.tc;
        let (e, f) = (&mut self.edns, &o.edns);
        e.queries += f.queries;
        e.responses += f.responses;
        e.do_queries += f.do_queries;
        e.do_responses += f.do_responses;
        merge_map(&mut e.udp_size, &f.udp_size);
        merge_map(&mut e.version, &f.version);
        merge_map(&mut e.options, &f.options);
        self.names.merge(&o.names);
        self.clients.merge(&o.clients);
        self.latencies.merge(&o.latencies);
        self.matching.merge(&o.matching);
    }

    /// Messages that do not parse.
    pub fn malformed_total(&self) -> u64 {
        self.malformed.values().sum()
    }
}
