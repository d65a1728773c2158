//! The command line (clap): `dnsfwd decode FILE` and the forwarder's flags.
use clap::{Parser, Subcommand};

/// A lightweight DNS forwarder.
#[derive(Debug, Parser)]
#[command(name = "dnsfwd", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the DNS messages in a pcap/pcapng file, or one message given as hex or as a
    /// binary file, in dig-like text (or JSON with --json).
    Decode {
        /// A pcap/pcapng file, a file holding one message (hex text or raw octets), a
        /// message in hex, or `-` for standard input.
        input: String,
        /// Print one JSON object per message (the shape of the shared corpus's oracle.jsonl).
        #[arg(long)]
        json: bool,
        /// UDP/TCP ports that carry DNS in a capture (repeatable).
        #[arg(long = "port", value_name = "PORT", default_values_t = [53u16])]
        ports: Vec<u16>,
    },
}
