//! `dnsfwd decode`: print the DNS messages in a capture file, or one raw message.
//!
//! The input is a pcap/pcapng file (every DNS message in it, UDP and TCP, tunnels removed,
//! listed in capture order), a file holding one message as hex text or as raw octets, or
//! a hex string on the command line. Messages that do not parse are listed with their
//! error. Without `--port`, a capture with nothing on port 53 is searched by content on
//! every port (as `--any-port`), with a note. It is an error (non-zero exit) when the
//! input cannot be read, is text that is neither hex nor a capture, or is a capture in
//! which no DNS message was found; that last error says what the capture held instead
//! (packets, link types, busy ports) and which `--port` to try. Link types that are not
//! decoded are named in one warning per file. A reader that stops early (`| head`) ends
//! the output quietly.
use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use serde_json::{json, Value};

use crate::capture::{self, CaptureError, CaptureSummary, CapturedMessage, Transport};
use crate::present;
use crate::wire::parse_message;

/// What to decode and how to print it.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    /// A path, `-` for standard input, or a message in hex.
    pub input: String,
    /// One JSON object per line instead of dig-like text.
    pub json: bool,
    /// Ports whose UDP/TCP payloads are DNS (captures only). Empty: port 53, and if no
    /// message is found there, any port (as `any_port`), with a note saying so.
    pub ports: Vec<u16>,
    /// Also take UDP/TCP payloads on other ports that look like DNS (captures only).
    pub any_port: bool,
}

/// Why an input could not be decoded at all.
#[derive(Debug)]
pub enum DecodeError {
    Read(String, io::Error),
    Capture(String, CaptureError),
    /// Neither a capture file nor something that could be one DNS message.
    NotDns(String),
    /// A capture without a single DNS message; the text says what it held instead.
    NothingFound(String, String),
    Output(io::Error),
}

impl DecodeError {
    /// The reader of our output went away (`dnsfwd decode … | head`): not worth a word.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, DecodeError::Output(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Read(what, e) => write!(f, "cannot read {what}: {e}"),
            DecodeError::Capture(what, e) => write!(f, "{what}: {e}"),
            DecodeError::NotDns(what) => write!(f, "{what}: not a capture or a DNS message"),
            DecodeError::NothingFound(what, seen) => {
                write!(f, "{what}: no DNS messages found; {seen}")
            }
            DecodeError::Output(e) => write!(f, "cannot write output: {e}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// The whole `decode` subcommand for one input: see [`run_all`].
pub fn run(opts: &DecodeOptions) -> ExitCode {
    run_all(std::slice::from_ref(opts))
}

/// The whole `decode` subcommand: decodes each input in turn to standard output, reports
/// to standard error (one line per input that fails, the others are still decoded), and
/// returns the exit status (failure if any input failed).
pub fn run_all(inputs: &[DecodeOptions]) -> ExitCode {
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut failed = false;
    for opts in inputs {
        match decode_reporting(opts, &mut out, &mut io::stderr()) {
            Ok(_) => {}
            // Nobody reads the rest; what is left in the buffer is dropped with it.
            Err(e) if e.is_broken_pipe() => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("dnsfwd decode: {e}");
                failed = true;
            }
        }
    }
    match out.flush().map_err(DecodeError::Output) {
        Err(e) if !e.is_broken_pipe() => {
            eprintln!("dnsfwd decode: {e}");
            ExitCode::FAILURE
        }
        _ if failed => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    }
}

/// Decodes `opts.input` and prints every message to `out`. Returns how many were printed.
pub fn decode(opts: &DecodeOptions, out: &mut dyn Write) -> Result<usize, DecodeError> {
    decode_reporting(opts, out, &mut io::sink())
}

/// As [`decode`], with warnings (link types not decoded) written to `warn`.
///
/// Each message is printed as soon as it is parsed, and only what the output needs is
/// built: the JSON fields of its origin, or its text line.
pub fn decode_reporting(
    opts: &DecodeOptions,
    out: &mut dyn Write,
    warn: &mut dyn Write,
) -> Result<usize, DecodeError> {
    match read_input(opts, warn)? {
        Input::Raw { file, bytes } => {
            let meta = || json!({"file": file, "index": 0});
            print_message(opts.json, out, &bytes, meta, || "message 0".to_string())?;
            Ok(1)
        }
        Input::Capture { file, summary } => {
            for (n, m) in summary.messages.iter().enumerate() {
                let meta = || captured_meta(&file, n, m);
                print_message(opts.json, out, &m.bytes, meta, || captured_origin(n, m))?;
            }
            Ok(summary.messages.len())
        }
    }
}

/// Prints one message: as JSON with the fields of `meta`, or as text under `origin`.
fn print_message(
    as_json: bool,
    out: &mut dyn Write,
    bytes: &[u8],
    meta: impl FnOnce() -> Value,
    origin: impl FnOnce() -> String,
) -> Result<(), DecodeError> {
    let parsed = parse_message(bytes);
    let written = if as_json {
        let v = present::json(bytes, &parsed, meta());
        // Straight into the buffer: formatting through Display costs a call per piece.
        serde_json::to_writer(&mut *out, &v)
            .map_err(io::Error::from)
            .and_then(|_| out.write_all(b"\n"))
    } else {
        let body = match &parsed {
            Ok(m) => present::dig_text(m),
            Err(e) => format!(
                ";; PARSE ERROR: {} ({e})\n;; hex: {}\n",
                e.kind.name(),
                hex::encode(bytes)
            ),
        };
        writeln!(out, ";; {}, {} octets\n{body}", origin(), bytes.len())
    };
    written.map_err(DecodeError::Output)
}

/// The largest DNS message there is: what a TCP length prefix can announce.
const MAX_MESSAGE: usize = 65_535;

/// An input read and taken apart: one raw message, or a capture's DNS messages.
pub enum Input {
    /// One message; `file` is where it came from (`None`: the command line).
    Raw {
        file: Option<String>,
        bytes: Vec<u8>,
    },
    /// A capture file (by its file name) and what was found in it.
    Capture {
        file: String,
        summary: CaptureSummary,
    },
}

/// Reads `opts.input` (a file, `-`, or hex on the command line) and finds its messages,
/// with warnings and notes written to `warn`. A capture without any DNS message is an
/// error saying what it held.
pub fn read_input(opts: &DecodeOptions, warn: &mut dyn Write) -> Result<Input, DecodeError> {
    let input = opts.input.as_str();
    let data = if input == "-" {
        let mut buf = Vec::new();
        io::Read::read_to_end(&mut io::stdin(), &mut buf)
            .map_err(|e| DecodeError::Read("standard input".into(), e))?;
        buf
    } else if Path::new(input).exists() || hex_text(input).is_none() {
        std::fs::read(input).map_err(|e| DecodeError::Read(input.to_string(), e))?
    } else {
        // Not a file, but valid hex: one message given on the command line.
        let bytes = hex_text(input).unwrap_or_default();
        return Ok(Input::Raw { file: None, bytes });
    };
    if capture::is_capture(&data) {
        let summary = load_capture(opts, &data, warn)?;
        let file = file_name(input);
        return Ok(Input::Capture { file, summary });
    }
    let file = Some(file_name(input));
    let text = std::str::from_utf8(&data).ok();
    if let Some(bytes) = text.and_then(hex_text) {
        return Ok(Input::Raw { file, bytes });
    }
    // Text that is not hex, or more octets than any message: printing it as one
    // unparsable "message" would only bury the real problem.
    if looks_like_text(&data) || data.len() > MAX_MESSAGE {
        return Err(DecodeError::NotDns(input.to_string()));
    }
    Ok(Input::Raw { file, bytes: data })
}

/// The port DNS is looked for on when none is given.
const DEFAULT_PORT: u16 = 53;

fn load_capture(
    opts: &DecodeOptions,
    data: &[u8],
    warn: &mut dyn Write,
) -> Result<CaptureSummary, DecodeError> {
    let input = opts.input.as_str();
    let ports = if opts.ports.is_empty() {
        vec![DEFAULT_PORT]
    } else {
        opts.ports.clone()
    };
    let read = |any_port: bool| {
        let opts_c = capture::Options {
            ports: ports.clone(),
            any_port,
        };
        capture::read_capture_detailed(data, &opts_c)
            .map_err(|e| DecodeError::Capture(input.to_string(), e))
    };
    let mut summary = read(opts.any_port)?;
    if summary.messages.is_empty() && opts.ports.is_empty() && !opts.any_port {
        // No port was named and port 53 holds nothing: a forwarder on 1053 or 5300 is
        // the usual reason, so look by content, and say so.
        let guessed = read(true)?;
        if !guessed.messages.is_empty() {
            let _ = writeln!(
                warn,
                "dnsfwd decode: note: {input}: no DNS on port {DEFAULT_PORT}; {} message(s) \
                 found by content on port(s) {} (as with --any-port)",
                guessed.messages.len(),
                ports_of(&guessed.messages)
            );
            summary = guessed;
        }
    }
    if summary.unsupported_link_packets > 0 {
        // A failed warning must not stop the decoding.
        let _ = writeln!(
            warn,
            "dnsfwd decode: warning: {input}: {} packet(s) skipped: link type {} not decoded",
            summary.unsupported_link_packets,
            unsupported_types(&summary)
        );
    }
    if summary.messages.is_empty() {
        return Err(DecodeError::NothingFound(
            input.to_string(),
            // Without a port named, the content was tried too.
            what_was_seen(&summary, &ports, opts.any_port || opts.ports.is_empty()),
        ));
    }
    Ok(summary)
}

/// Text: no NUL and no control characters other than whitespace, in valid UTF-8. A DNS
/// message starts with a 16-bit ID and flags and almost always holds zero octets.
fn looks_like_text(data: &[u8]) -> bool {
    std::str::from_utf8(data)
        .is_ok_and(|s| !s.is_empty() && s.chars().all(|c| !c.is_control() || c.is_whitespace()))
}

fn link_type_text(t: u32) -> String {
    match capture::link_type_name(t) {
        Some(name) => format!("{t} ({name})"),
        None => t.to_string(),
    }
}

fn unsupported_types(s: &CaptureSummary) -> String {
    let types: Vec<String> = s
        .link_types
        .iter()
        .filter(|&&t| !capture::is_supported_link_type(t))
        .map(|&t| link_type_text(t))
        .collect();
    types.join(", ")
}

/// The server-side ports of `messages` (the lower of each pair), in order, once each.
fn ports_of(messages: &[CapturedMessage]) -> String {
    let mut ports: Vec<u16> = messages
        .iter()
        .map(|m| m.src.port().min(m.dst.port()))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    ports.join(", ")
}

/// What a capture without DNS held: packets, link types, IP packets, the busiest ports,
/// and which flag to try.
fn what_was_seen(s: &CaptureSummary, wanted: &[u16], any_port: bool) -> String {
    let types: Vec<String> = s.link_types.iter().map(|&t| link_type_text(t)).collect();
    let mut text = format!(
        "{} packet(s) read, link type {}",
        s.packets,
        if types.is_empty() {
            "none".to_string()
        } else {
            types.join(", ")
        }
    );
    if s.unsupported_link_packets > 0 {
        text += &format!(
            " ({} packet(s) of a link type not decoded)",
            s.unsupported_link_packets
        );
    }
    text += &format!(", {} with IPv4/IPv6", s.ip_packets);
    let ports: Vec<String> = s
        .other_ports
        .iter()
        .take(8)
        .map(|p| {
            let t = match p.transport {
                Transport::Udp => "udp",
                Transport::Tcp => "tcp",
            };
            let s = if p.packets == 1 { "" } else { "s" };
            format!("{t} {} ({} packet{s})", p.port, p.packets)
        })
        .collect();
    if ports.is_empty() {
        text += "; no UDP or TCP traffic";
        return text;
    }
    let wanted: Vec<String> = wanted.iter().map(u16::to_string).collect();
    text += &format!(
        "; UDP/TCP traffic by port: {}; looked for port {}{}",
        ports.join(", "),
        wanted.join(", "),
        if any_port {
            " and for DNS-like payloads on every port"
        } else {
            ""
        }
    );
    if let Some(busiest) = s.other_ports.first() {
        text += &format!(
            "; try --port {}{}",
            busiest.port,
            if any_port { "" } else { " or --any-port" }
        );
    }
    text
}

/// The octets of `s` read as hex (whitespace ignored), if it is non-empty valid hex.
fn hex_text(s: &str) -> Option<Vec<u8>> {
    let digits: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.is_empty() {
        return None;
    }
    hex::decode(digits).ok()
}

fn file_name(input: &str) -> String {
    Path::new(input)
        .file_name()
        .map_or_else(|| input.to_string(), |f| f.to_string_lossy().into_owned())
}

fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
    }
}

/// The line above a captured message in text.
fn captured_origin(index: usize, m: &CapturedMessage) -> String {
    let tunnel: Vec<&str> = m.tunnel.iter().map(|t| t.name()).collect();
    format!(
        "message {index}: frame {}, {} {} -> {}{}{}",
        m.frame,
        transport_name(m.transport),
        m.src,
        m.dst,
        if tunnel.is_empty() {
            String::new()
        } else {
            format!(", tunnel {}", tunnel.join("/"))
        },
        if m.truncated {
            ", cut short by the capture"
        } else {
            ""
        }
    )
}

/// The JSON fields of a captured message's origin (the oracle's names).
fn captured_meta(file: &str, index: usize, m: &CapturedMessage) -> Value {
    let tunnel: Vec<&str> = m.tunnel.iter().map(|t| t.name()).collect();
    json!({
        "file": file, "index": index, "transport": transport_name(m.transport),
        "frame": m.frame, "ts": m.ts,
        "ip": if m.src.is_ipv4() { 4 } else { 6 },
        "src": m.src.ip().to_string(), "sport": m.src.port(),
        "dst": m.dst.ip().to_string(), "dport": m.dst.port(),
        "tunnel": tunnel,
        "truncated": m.truncated,
    })
}
