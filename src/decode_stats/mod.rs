//! `dnsfwd decode --stats`: a summary of the DNS traffic in captures, instead of the
//! messages themselves (what `dnstop` or `tshark -z dns,tree` are used for).
//!
//! Each input is read as `decode` reads it (every link type, tunnel, `--port`,
//! `--any-port`, raw messages) and counted into a [`Tally`]: messages, queries and
//! responses, transports, opcodes, rcodes, qtypes, EDNS, TC, malformed messages by the
//! parser's error, the names asked for most and the clients asking most, and the
//! response times of queries matched with their answers (see `rtt`). With several
//! inputs, a total follows. Output is text, or one JSON object with `--json`.
//!
//! Memory: the tables are bounded whatever the capture's size: names and clients are
//! counted exactly up to [`TOP_CAPACITY`] distinct ones each, then approximately (and
//! said so); at most [`rtt::MAX_PENDING`] queries wait for an answer, each at most
//! [`rtt::MATCH_TIMEOUT`]; response times go into a histogram. The capture file itself
//! and the messages extracted from it are held while its file is counted.
mod render;
pub mod rtt;
mod tally;
pub mod topk;

use std::io::{self, Write};
use std::process::ExitCode;

use crate::capture::CapturedMessage;
use crate::decode::{read_input, DecodeError, DecodeOptions, Input};

pub use render::{json, text};
pub use tally::{EdnsTally, Origin, Tally, TOP_CAPACITY};

/// The counts of one input.
#[derive(Debug)]
pub struct FileStats {
    /// The input as given on the command line (`(command line)` for a hex message).
    pub file: String,
    pub tally: Tally,
}

/// Counts one input, or says why it could not be read (warnings and notes go to `warn`).
pub fn file_stats(opts: &DecodeOptions, warn: &mut dyn Write) -> Result<FileStats, DecodeError> {
    let mut tally = Tally::default();
    let mut matcher = rtt::Matcher::default();
    let file = match read_input(opts, warn)? {
        Input::Raw { file, bytes } => {
            tally.add(&bytes, None, &mut matcher);
            file.map_or_else(|| "(command line)".to_string(), |_| opts.input.clone())
        }
        Input::Capture { summary, .. } => {
            tally.packets = u64::from(summary.packets);
            for m in &summary.messages {
                tally.add(&m.bytes, Some(&origin(m)), &mut matcher);
            }
            opts.input.clone()
        }
    };
    matcher.finish();
    tally.matching = matcher.counts;
    Ok(FileStats { file, tally })
}

fn origin(m: &CapturedMessage) -> Origin {
    Origin {
        ts: m.ts,
        transport: m.transport,
        src: m.src,
        dst: m.dst,
        tunnelled: !m.tunnel.is_empty(),
        cut_short: m.truncated,
    }
}

/// The sum of several inputs' counts.
pub fn total(files: &[FileStats]) -> Tally {
    let mut total = Tally::default();
    for f in files {
        total.merge(&f.tally);
    }
    total
}

/// The whole `decode --stats` subcommand: counts every input, prints the summary
/// (text, or JSON when the inputs ask for it) and returns the exit status: failure if
/// an input could not be counted (each is named on standard error; the others are
/// still summed up).
pub fn run(inputs: &[DecodeOptions], top: usize) -> ExitCode {
    let mut files = Vec::new();
    let mut failed = false;
    for opts in inputs {
        match file_stats(opts, &mut io::stderr()) {
            Ok(f) => files.push(f),
            Err(e) => {
                eprintln!("dnsfwd decode: {e}");
                failed = true;
            }
        }
    }
    let as_json = inputs.first().is_some_and(|o| o.json);
    let written = if files.is_empty() {
        Ok(())
    } else if as_json {
        let mut out = io::stdout().lock();
        writeln!(out, "{}", json(&files, top)).and_then(|_| out.flush())
    } else {
        let mut out = io::stdout().lock();
        out.write_all(text(&files, top).as_bytes())
            .and_then(|_| out.flush())
    };
    match written {
        // A reader that stops early (`| head`) is not an error.
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            eprintln!("dnsfwd decode: cannot write output: {e}");
            ExitCode::FAILURE
        }
        _ if failed => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    }
}
