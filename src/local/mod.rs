//! Local data, answered without going upstream: names from hosts files and
//! `--local-record`s, and blocklists (with exceptions).
//!
//! Built from the settings ([`LocalData::load`]) at start-up and on every reload, so a
//! reload re-reads every file. Errors name the file (or flag) and the line. Hosts files
//! and records are the operator's own: any bad line is an error. Blocklists come from
//! third parties in large numbers: a bad line is skipped, counted and the first one
//! logged, so that one odd line of a million does not stop the server.
//!
//! What is answered (AA set; the client's ID, RD, CD, spelling and EDNS kept):
//! * a local name: its records of the asked type; for another type NODATA (NOERROR,
//!   no records, no SOA), so that a name defined here is never mixed with the public
//!   zone's answers. (dnsmasq forwards the other types of a /etc/hosts name; Unbound's
//!   local-data answers NODATA, as here.) A CNAME is followed through local names.
//! * a blocked name (listed, or under a listed domain, and not under an `--allow-name`
//!   entry): NXDOMAIN, or with `--block-answer null` 0.0.0.0 / :: for A / AAAA and
//!   NODATA for other types; with an EDNS Extended DNS Error 15 "Blocked" (RFC 8914
//!   §4.16) when the client sent EDNS. No SOA either: nothing here for a client to
//!   cache negatively longer than it would anyway.
//!
//! Only class IN is answered here; other classes go upstream.
mod nameset;
pub mod parse;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use nameset::NameSet;
use parse::LocalRr;

use crate::cache::Asker;
use crate::config::ConfigError;
use crate::wire::{
    Class, Edns, EdnsOption, Header, Message, Name, Question, RData, RType, Rcode, Record,
};

/// EDE INFO-CODE 15, "Blocked" (RFC 8914 §4.16).
pub const EDE_BLOCKED: u16 = 15;
/// TTL of names from hosts files (dnsmasq's `--local-ttl` default: edits show at once).
pub const HOSTS_TTL: u32 = 0;
/// TTL of the 0.0.0.0 / :: answers for blocked names.
pub const BLOCKED_TTL: u32 = 10;
/// Most CNAMEs followed through local names in one answer.
const MAX_CHAIN: usize = 8;

/// How a blocked name is answered (`--block-answer`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BlockAnswer {
    #[default]
    Nxdomain,
    /// 0.0.0.0 for A, :: for AAAA, NODATA for other types.
    Null,
}

/// Parses `--block-answer`: `nxdomain` or `null`.
pub fn parse_block_answer(s: &str) -> Result<BlockAnswer, String> {
    match s.to_ascii_lowercase().as_str() {
        "nxdomain" => Ok(BlockAnswer::Nxdomain),
        "null" => Ok(BlockAnswer::Null),
        _ => Err(format!("'{s}' is not nxdomain or null")),
    }
}

/// Where local data comes from (the settings; [`LocalData::load`] reads them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalConfig {
    /// hosts(5) files (`--hosts`).
    pub hosts: Vec<PathBuf>,
    /// Records in presentation format (`--local-record`, `local-record`).
    pub records: Vec<String>,
    /// Blocklists (`--block`).
    pub block: Vec<PathBuf>,
    /// Exceptions to them (`--allow-name`).
    pub allow_names: Vec<PathBuf>,
    pub block_answer: BlockAnswer,
}

impl LocalConfig {
    /// The local data flags of the command line.
    pub fn from_args(args: &crate::cli::ServeArgs) -> LocalConfig {
        LocalConfig {
            hosts: args.hosts.clone(),
            records: args.local_record.clone(),
            block: args.block.clone(),
            allow_names: args.allow_name.clone(),
            block_answer: args.block_answer.unwrap_or_default(),
        }
    }
}

/// What [`LocalData::answer`] produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Answered {
    /// From a local name (records, or NODATA).
    Local(Vec<u8>),
    /// For a blocked name.
    Blocked(Vec<u8>),
}

/// Local names and blocklists, ready to answer. Empty by default (answers nothing).
#[derive(Debug, Default)]
pub struct LocalData {
    /// Records by owner (folded wire form).
    names: HashMap<Vec<u8>, Vec<LocalRr>>,
    block: NameSet,
    allow: NameSet,
    block_answer: BlockAnswer,
}

impl LocalData {
    /// Reads every file `cfg` names and parses its records. The error names the file
    /// (or `--local-record`) and the line.
    pub fn load(cfg: &LocalConfig) -> Result<LocalData, ConfigError> {
        let mut data = LocalData {
            block_answer: cfg.block_answer,
            ..LocalData::default()
        };
        for path in &cfg.hosts {
            let text = read(path, "--hosts")?;
            data.add_hosts(&text)
                .map_err(|(line, why)| at("--hosts", path, line, why))?;
        }
        for (i, line) in cfg.records.iter().enumerate() {
            let (owner, rr) = parse::record(line)
                .and_then(|(owner, rr)| {
                    data.check_cname(&owner, &rr)?;
                    Ok((owner, rr))
                })
                .map_err(|why| {
                    ConfigError::Invalid("--local-record", format!("#{} '{line}': {why}", i + 1))
                })?;
            data.push(owner, rr);
        }
        let seed = seed();
        data.block = NameSet::with_seed(seed);
        data.allow = NameSet::with_seed(seed ^ 0xA11C);
        for path in &cfg.block {
            load_list(&mut data.block, path, "--block")?;
        }
        for path in &cfg.allow_names {
            load_list(&mut data.allow, path, "--allow-name")?;
        }
        if !data.is_empty() {
            log::info!(
                "local data: {} names, {} blocked domains, {} exceptions",
                data.names.len(),
                data.block.len(),
                data.allow.len()
            );
        }
        Ok(data)
    }

    /// Whether there is nothing to answer.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.block.is_empty()
    }

    /// Local names, blocked domains, exceptions.
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.names.len(), self.block.len(), self.allow.len())
    }

    /// Octets of heap the blocklists take.
    pub fn block_bytes(&self) -> usize {
        self.block.heap_bytes() + self.allow.heap_bytes()
    }

    /// Whether `name` (folded wire form) is blocked: it or a domain it is under is
    /// listed, and neither it nor a domain it is under is an exception.
    pub fn is_blocked(&self, name: &[u8]) -> bool {
        self.block.contains_suffix_of(name) && !self.allow.contains_suffix_of(name)
    }

    /// The answer to the question `name` (folded wire form), `qtype`, `qclass` for
    /// `asker`, if local data has one.
    pub fn answer(
        &self,
        name: &[u8],
        qtype: RType,
        qclass: Class,
        asker: &Asker,
    ) -> Option<Answered> {
        if self.is_empty() || qclass != Class::IN {
            return None;
        }
        if let Some(rrs) = self.names.get(name) {
            return Some(Answered::Local(self.local_answer(rrs, qtype, asker)));
        }
        if !self.is_blocked(name) {
            return None;
        }
        let (rcode, rdata): (_, &[u8]) = match (self.block_answer, qtype) {
            (BlockAnswer::Nxdomain, _) => (Rcode::NXDOMAIN, &[]),
            (BlockAnswer::Null, RType::A) => (Rcode::NOERROR, &[0; 4]),
            (BlockAnswer::Null, RType::AAAA) => (Rcode::NOERROR, &[0; 16]),
            (BlockAnswer::Null, _) => (Rcode::NOERROR, &[]),
        };
        let mut answers = Vec::new();
        if !rdata.is_empty() {
            answers.push(record(spelled(asker)?, qtype, BLOCKED_TTL, rdata));
        }
        Some(Answered::Blocked(write(
            asker, qtype, rcode, answers, true,
        )?))
    }

    /// The records of a local name for `qtype`, following CNAMEs through local names.
    fn local_answer(&self, rrs: &[LocalRr], qtype: RType, asker: &Asker) -> Vec<u8> {
        let mut answers = Vec::new();
        let mut owner = spelled(asker);
        let mut rrs = rrs;
        for _ in 0..MAX_CHAIN {
            let Some(o) = owner.take() else { break };
            let cname = rrs.iter().find(|r| r.rtype == RType::CNAME);
            let wanted = |r: &&LocalRr| r.rtype == qtype || qtype == RType::ANY;
            match cname {
                Some(c) if qtype != RType::CNAME && qtype != RType::ANY => {
                    answers.push(record(o, RType::CNAME, c.ttl, &c.rdata));
                    if let (Ok(next), Some(more)) =
                        (Name::from_wire(&c.rdata), self.names.get(&c.rdata))
                    {
                        owner = Some(next);
                        rrs = more;
                    }
                }
                _ => {
                    for r in rrs.iter().filter(wanted) {
                        answers.push(record(o.clone(), r.rtype, r.ttl, &r.rdata));
                    }
                }
            }
        }
        write(asker, qtype, Rcode::NOERROR, answers, false).unwrap_or_default()
    }

    /// Adds a hosts file's names: A/AAAA for each name, PTR to the line's first name
    /// for the first line of each address. `Err((line, why))`.
    fn add_hosts(&mut self, text: &str) -> Result<(), (usize, String)> {
        let mut reversed = std::collections::HashSet::new();
        for (n, line) in text.lines().enumerate() {
            let fail = |why: String| (n + 1, why);
            let Some((addr, names)) = parse::hosts_line(line).map_err(fail)? else {
                continue;
            };
            let (rtype, rdata) = match addr {
                IpAddr::V4(a) => (RType::A, a.octets().to_vec()),
                IpAddr::V6(a) => (RType::AAAA, a.octets().to_vec()),
            };
            let mut canonical = None;
            for name in names {
                let owner =
                    parse::domain(name).ok_or_else(|| fail(format!("'{name}' is not a name")))?;
                let rr = LocalRr {
                    rtype,
                    ttl: HOSTS_TTL,
                    rdata: rdata.clone(),
                };
                self.check_cname(&owner, &rr).map_err(fail)?;
                canonical.get_or_insert_with(|| owner.clone());
                self.push(owner, rr);
            }
            if let (Some(target), true) = (canonical, reversed.insert(addr)) {
                let rr = LocalRr {
                    rtype: RType::PTR,
                    ttl: HOSTS_TTL,
                    rdata: target,
                };
                self.push(parse::reverse_name(addr), rr);
            }
        }
        Ok(())
    }

    /// A CNAME cannot share its owner with other data (RFC 1034 §3.6.2).
    fn check_cname(&self, owner: &[u8], rr: &LocalRr) -> Result<(), String> {
        let Some(have) = self.names.get(owner) else {
            return Ok(());
        };
        let clash = if rr.rtype == RType::CNAME {
            have.iter()
                .any(|r| r.rtype != RType::CNAME || r.rdata != rr.rdata)
        } else {
            have.iter().any(|r| r.rtype == RType::CNAME)
        };
        if clash {
            return Err(format!("{} has a CNAME and other data", parse::show(owner)));
        }
        Ok(())
    }

    fn push(&mut self, owner: Vec<u8>, rr: LocalRr) {
        let rrs = self.names.entry(owner).or_default();
        if !rrs.contains(&rr) {
            rrs.push(rr);
        }
    }
}

/// The file's text; octets that are not UTF-8 become U+FFFD (and fail as names on
/// their line, rather than failing the whole file).
fn read(path: &Path, flag: &'static str) -> Result<String, ConfigError> {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| ConfigError::Invalid(flag, format!("{}: {e}", path.display())))
}

fn at(flag: &'static str, path: &Path, line: usize, why: String) -> ConfigError {
    ConfigError::Invalid(flag, format!("{}:{line}: {why}", path.display()))
}

/// Adds the names of one blocklist (or exceptions) file to `set`. Bad lines are
/// skipped; the first is logged with the count.
fn load_list(set: &mut NameSet, path: &Path, flag: &'static str) -> Result<(), ConfigError> {
    let text = read(path, flag)?;
    set.reserve(text.bytes().filter(|&b| b == b'\n').count() + 1);
    let mut buf = [0u8; crate::wire::MAX_NAME_LEN];
    let (mut bad, mut first_bad) = (0u64, None);
    for (n, line) in text.lines().enumerate() {
        let mut ok = true;
        let shape = parse::block_line(line, |name| {
            match parse::domain_wire(name.as_bytes(), &mut buf) {
                Some(len) => {
                    set.insert(buf.get(..len).unwrap_or_default());
                }
                None => ok = false,
            }
        });
        if !shape || !ok {
            bad += 1;
            first_bad.get_or_insert(n + 1);
        }
    }
    if let Some(line) = first_bad {
        log::warn!(
            "{flag} {}: {bad} lines skipped (neither a domain nor a 0.0.0.0/127.0.0.1 \
             hosts line), the first at line {line}",
            path.display()
        );
    }
    Ok(())
}

/// A seed for the blocklist hashes, from the OS generator (a fixed one if it fails:
/// the lists are the operator's choice, so this is defence in depth).
fn seed() -> u64 {
    let mut b = [0u8; 8];
    match getrandom::fill(&mut b) {
        Ok(()) => u64::from_le_bytes(b),
        Err(_) => 0x243F_6A88_85A3_08D3,
    }
}

/// The client's spelling of the question name.
fn spelled(asker: &Asker) -> Option<Name> {
    Name::from_wire(asker.qname.get(..asker.qname_len)?).ok()
}

fn record(name: Name, rtype: RType, ttl: u32, rdata: &[u8]) -> Record<'_> {
    Record {
        name,
        rtype,
        class: Class::IN,
        ttl,
        rdata: RData::Opaque(rdata),
    }
}

/// Our answer for `asker`: AA and RA set, its ID, RD, CD and spelling, `answers`, and
/// an OPT record if it sent one (with EDE 15 when `blocked`). Cut to its size with TC.
fn write(
    asker: &Asker,
    qtype: RType,
    rcode: Rcode,
    answers: Vec<Record<'_>>,
    blocked: bool,
) -> Option<Vec<u8>> {
    let flags = 0x8480 | u16::from(asker.rd) << 8 | u16::from(asker.cd) << 4 | rcode.0;
    let ede = EDE_BLOCKED.to_be_bytes();
    let mut m = Message {
        header: Header::from_parts(asker.id, flags, [0; 4]),
        questions: vec![Question {
            qname: spelled(asker)?,
            qtype,
            qclass: Class::IN,
        }],
        answers,
        ..Message::default()
    };
    if let Some(dnssec_ok) = asker.edns {
        let options = blocked.then_some(EdnsOption {
            code: EdnsOption::EDE,
            data: &ede,
        });
        let opt = Edns {
            udp_size: crate::forward::reply::OUR_UDP_SIZE,
            ext_rcode: 0,
            version: 0,
            dnssec_ok,
            z: 0,
            options: options.into_iter().collect(),
        };
        m.additional.push(opt.to_record());
    }
    Some(m.write(asker.max_response))
}

#[cfg(test)]
mod tests;
