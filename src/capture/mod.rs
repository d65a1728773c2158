//! Placeholder with the capture API; replaced by the real reader.
#![allow(dead_code, unused_variables)]
use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

#[derive(Debug, Clone)]
pub struct CapturedMessage {
    pub frame: u32,
    pub ts: f64,
    pub transport: Transport,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub bytes: Vec<u8>,
    pub truncated: bool,
}

#[derive(Debug)]
pub enum CaptureError {
    NotACapture,
}

impl std::fmt::Display for CaptureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a pcap or pcapng file")
    }
}

impl std::error::Error for CaptureError {}

pub struct Options {
    pub ports: Vec<u16>,
}

impl Default for Options {
    fn default() -> Self {
        Options { ports: vec![53] }
    }
}

pub fn read_capture(data: &[u8], opts: &Options) -> Result<Vec<CapturedMessage>, CaptureError> {
    Err(CaptureError::NotACapture)
}

pub fn is_capture(data: &[u8]) -> bool {
    false
}
