//! `dnsfwd decode`: print the DNS messages in a capture file, or one raw message.
//!
//! The input is a pcap/pcapng file (every DNS message in it, UDP and TCP, listed in
//! capture order), a file holding one message as hex text or as raw octets, or a hex
//! string on the command line. Messages that do not parse are listed with their error;
//! only an unreadable input is an error.
use std::io::{self, Write};
use std::path::Path;

use serde_json::{json, Value};

use crate::capture::{self, CaptureError, CapturedMessage, Transport};
use crate::present;
use crate::wire::parse_message;

/// What to decode and how to print it.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    /// A path, `-` for standard input, or a message in hex.
    pub input: String,
    /// One JSON object per line instead of dig-like text.
    pub json: bool,
    /// Ports whose UDP/TCP payloads are DNS (captures only).
    pub ports: Vec<u16>,
}

/// Why an input could not be decoded at all.
#[derive(Debug)]
pub enum DecodeError {
    Read(String, io::Error),
    Capture(String, CaptureError),
    Output(io::Error),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Read(what, e) => write!(f, "cannot read {what}: {e}"),
            DecodeError::Capture(what, e) => write!(f, "{what}: {e}"),
            DecodeError::Output(e) => write!(f, "cannot write output: {e}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// One message to print, with where it came from.
struct Item {
    bytes: Vec<u8>,
    meta: Value,
    origin: String,
}

/// Decodes `opts.input` and prints every message to `out`. Returns how many were printed.
pub fn decode(opts: &DecodeOptions, out: &mut dyn Write) -> Result<usize, DecodeError> {
    let items = load(opts)?;
    for item in &items {
        let parsed = parse_message(&item.bytes);
        let written = if opts.json {
            let v = present::json(&item.bytes, &parsed, item.meta.clone());
            writeln!(out, "{v}")
        } else {
            let body = match &parsed {
                Ok(m) => present::dig_text(m),
                Err(e) => format!(
                    ";; PARSE ERROR: {} ({e})\n;; hex: {}\n",
                    e.kind.name(),
                    hex::encode(&item.bytes)
                ),
            };
            writeln!(
                out,
                ";; {}, {} octets\n{body}",
                item.origin,
                item.bytes.len()
            )
        };
        written.map_err(DecodeError::Output)?;
    }
    Ok(items.len())
}

fn load(opts: &DecodeOptions) -> Result<Vec<Item>, DecodeError> {
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
        return Ok(vec![raw_item(None, hex_text(input).unwrap_or_default())]);
    };
    if capture::is_capture(&data) {
        let opts_c = capture::Options {
            ports: opts.ports.clone(),
            any_port: false,
        };
        let messages = capture::read_capture(&data, &opts_c)
            .map_err(|e| DecodeError::Capture(input.to_string(), e))?;
        let file = file_name(input);
        return Ok(messages
            .into_iter()
            .enumerate()
            .map(|(n, m)| captured_item(&file, n, m))
            .collect());
    }
    let bytes = std::str::from_utf8(&data)
        .ok()
        .and_then(hex_text)
        .unwrap_or(data);
    Ok(vec![raw_item(Some(input), bytes)])
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

/// A single message; `input` is the file it came from (`None`: the command line).
fn raw_item(input: Option<&str>, bytes: Vec<u8>) -> Item {
    Item {
        bytes,
        meta: json!({"file": input.map(file_name), "index": 0}),
        origin: "message 0".to_string(),
    }
}

fn captured_item(file: &str, index: usize, m: CapturedMessage) -> Item {
    let transport = match m.transport {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
    };
    let origin = format!(
        "message {index}: frame {}, {transport} {} -> {}{}",
        m.frame,
        m.src,
        m.dst,
        if m.truncated {
            ", cut short by the capture"
        } else {
            ""
        }
    );
    let meta = json!({
        "file": file, "index": index, "transport": transport, "frame": m.frame, "ts": m.ts,
        "ip": if m.src.is_ipv4() { 4 } else { 6 },
        "src": m.src.ip().to_string(), "sport": m.src.port(),
        "dst": m.dst.ip().to_string(), "dport": m.dst.port(),
        "truncated": m.truncated,
    });
    Item {
        bytes: m.bytes,
        meta,
        origin,
    }
}
