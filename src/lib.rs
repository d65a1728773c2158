//! dnsfwd: a lightweight DNS forwarder.
//!
//! `wire` turns bytes into DNS messages and back; `capture` pulls DNS messages out of
//! pcap/pcapng files; `present` renders decoded messages for people and for tools.
pub mod capture;
pub mod present;
pub mod wire;
