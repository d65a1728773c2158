//! dnsfwd: a lightweight DNS forwarder.
//!
//! `wire` turns bytes into DNS messages and back; `capture` pulls DNS messages out of
//! pcap/pcapng files; `present` renders decoded messages for people and for tools;
//! `decode` is the `dnsfwd decode` command built from those.
pub mod capture;
pub mod cli;
pub mod decode;
pub mod present;
pub mod wire;
