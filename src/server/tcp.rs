//! TCP with the 2-octet length framing of RFC 1035 §4.2.2 (RFC 7766): buffers that
//! survive partial reads and writes, for client connections and for the connections
//! to upstreams (`upstream_tcp`).
use std::io::{self, Read, Write};
use std::net::SocketAddr;

use super::tls::Stream;
use crate::clock::Instant;

/// Most complete messages taken from one connection per loop turn, so that one busy
/// client cannot starve the others; the rest waits for the next turn.
pub const MAX_FRAMES_PER_TURN: usize = 64;
/// A client whose unread answers exceed this is not read from until it catches up.
pub const MAX_WRITE_BACKLOG: usize = 256 << 10;
/// Written octets are dropped from the front of the write buffer once this many pile
/// up, so a slow reader that keeps the buffer from emptying does not grow it forever.
const COMPACT_AFTER: usize = 64 << 10;

/// A byte stream with framed messages in both directions.
#[derive(Debug, Default)]
pub struct Framed {
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    /// Octets of `wbuf` already written.
    wpos: usize,
}

/// What a read turn found.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadState {
    /// Nothing more to read now.
    Drained,
    /// Stopped at the per-turn frame limit; read again next turn.
    More,
    /// The peer closed its side.
    Eof,
}

impl Framed {
    /// Reads until the socket would block, the peer closes, or `max_frames` messages
    /// were handed to `on_frame`. `scratch` is the loop's shared receive buffer.
    pub fn read_frames(
        &mut self,
        stream: &mut impl Read,
        scratch: &mut [u8],
        max_frames: usize,
        mut on_frame: impl FnMut(&[u8]),
    ) -> io::Result<ReadState> {
        let mut frames = 0;
        loop {
            frames += self.take_frames(max_frames - frames, &mut on_frame);
            if frames >= max_frames {
                return Ok(ReadState::More);
            }
            match stream.read(scratch) {
                Ok(0) => return Ok(ReadState::Eof),
                Ok(n) => self
                    .rbuf
                    .extend_from_slice(scratch.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadState::Drained),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Hands complete buffered messages to `on_frame`, at most `max`; returns how many.
    fn take_frames(&mut self, max: usize, on_frame: &mut impl FnMut(&[u8])) -> usize {
        let mut at = 0;
        let mut n = 0;
        while n < max {
            let Some(&[hi, lo]) = self.rbuf.get(at..at + 2) else {
                break;
            };
            let len = usize::from(u16::from_be_bytes([hi, lo]));
            let Some(msg) = self.rbuf.get(at + 2..at + 2 + len) else {
                break;
            };
            on_frame(msg);
            at += 2 + len;
            n += 1;
        }
        self.rbuf.drain(..at);
        n
    }

    /// Whether a complete message is already buffered.
    #[cfg(test)]
    pub fn has_frame(&self) -> bool {
        match self.rbuf.get(..2) {
            Some(&[hi, lo]) => self.rbuf.len() >= 2 + usize::from(u16::from_be_bytes([hi, lo])),
            _ => false,
        }
    }

    /// Queues a message with its length prefix. Messages over 65535 octets cannot be
    /// framed and are not queued (the writer never makes one).
    pub fn queue(&mut self, msg: &[u8]) -> bool {
        let Ok(len) = u16::try_from(msg.len()) else {
            return false;
        };
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
        }
        self.wbuf.extend_from_slice(&len.to_be_bytes());
        self.wbuf.extend_from_slice(msg);
        true
    }

    /// Queues a message padded to a multiple of `block` octets (RFC 8467), padded where
    /// it is written, in the write buffer: no copy of it is made. A message that cannot
    /// be padded (no OPT record last) is queued as it is.
    pub fn queue_padded(&mut self, msg: &[u8], block: usize) -> bool {
        if !self.queue(msg) {
            return false;
        }
        let start = self.wbuf.len() - msg.len();
        if crate::wire::padding::pad_from(&mut self.wbuf, start, block) {
            // pad_from keeps a message within 65535 octets.
            let len = u16::try_from(self.wbuf.len() - start).unwrap_or(u16::MAX);
            if let Some(prefix) = self.wbuf.get_mut(start - 2..start) {
                prefix.copy_from_slice(&len.to_be_bytes());
            }
        }
        true
    }

    /// Drops the written prefix of the write buffer once it is large.
    fn compact(&mut self) {
        if self.wpos >= COMPACT_AFTER {
            self.wbuf.drain(..self.wpos);
            self.wpos = 0;
        }
    }

    /// Writes what is queued until done or the socket would block. Returns whether
    /// everything was written (for TLS, the records it became too: `stream.flush`).
    pub fn flush(&mut self, stream: &mut impl Write) -> io::Result<bool> {
        while self.wpos < self.wbuf.len() {
            let pending = self.wbuf.get(self.wpos..).unwrap_or_default();
            match stream.write(pending) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.compact();
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        match stream.flush() {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Octets queued but not yet written.
    pub fn backlog(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// Octets read but not yet a whole message (the start of the next one).
    pub fn partial(&self) -> usize {
        self.rbuf.len()
    }
}

/// A client TCP connection (in clear, or DNS over TLS).
#[derive(Debug)]
pub struct ClientConn {
    pub stream: Stream,
    pub addr: SocketAddr,
    /// Told apart from an earlier connection in the same slot (answers to a closed
    /// connection must not reach its successor).
    pub generation: u32,
    pub io: Framed,
    /// The last complete query or answer: partial messages do not count, so a client
    /// sending a byte at a time is still idle.
    pub last_active: Instant,
    pub opened: Instant,
    /// Since when a message has been arriving without being complete.
    pub partial_since: Option<Instant>,
    /// When writing last made progress, or the backlog last started from empty: a
    /// client that leaves its answers unread for `--tcp-idle` is closed.
    pub last_write: Instant,
    /// Queries handed to the core and not answered yet.
    pub outstanding: usize,
    /// The client closed its sending side; close once the answers are out.
    pub read_closed: bool,
    /// Registered for WRITABLE as well as READABLE.
    pub want_write: bool,
    /// Stopped reading at the per-turn limit or because of the write backlog.
    pub read_paused: bool,
}

impl ClientConn {
    /// Idle: nothing in flight and nothing left to write.
    pub fn is_idle(&self) -> bool {
        self.outstanding == 0 && self.io.backlog() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_frames_across_and_within_reads() {
        let mut f = Framed::default();
        let mut got = Vec::new();
        // Two messages in one read, the third split in the middle of its length prefix.
        f.rbuf.extend_from_slice(&[0, 2, b'a', b'b', 0, 1, b'c', 0]);
        assert_eq!(f.take_frames(10, &mut |m: &[u8]| got.push(m.to_vec())), 2);
        assert!(!f.has_frame());
        f.rbuf.extend_from_slice(&[3, b'x', b'y']);
        assert_eq!(f.take_frames(10, &mut |m: &[u8]| got.push(m.to_vec())), 0);
        f.rbuf.push(b'z');
        assert!(f.has_frame());
        assert_eq!(f.take_frames(10, &mut |m: &[u8]| got.push(m.to_vec())), 1);
        assert_eq!(got, [b"ab".to_vec(), b"c".to_vec(), b"xyz".to_vec()]);
        assert!(f.rbuf.is_empty());
    }

    #[test]
    fn stops_at_the_frame_limit() {
        let mut f = Framed::default();
        for _ in 0..5 {
            f.rbuf.extend_from_slice(&[0, 1, 9]);
        }
        let mut n = 0;
        assert_eq!(f.take_frames(3, &mut |_: &[u8]| n += 1), 3);
        assert!(f.has_frame());
        assert_eq!(f.take_frames(3, &mut |_: &[u8]| n += 1), 2);
        assert_eq!(n, 5);
    }

    #[test]
    fn queue_frames_and_refuses_oversize() {
        let mut f = Framed::default();
        assert!(f.queue(b"hello"));
        assert_eq!(f.wbuf, [0, 5, b'h', b'e', b'l', b'l', b'o']);
        assert!(!f.queue(&vec![0; 70000]));
        assert_eq!(f.backlog(), 7);
    }

    #[test]
    fn queue_padded_pads_in_the_write_buffer() {
        #[rustfmt::skip]
        const ANSWER: [u8; 40] = [
            // header: ID 0x1234, QR RD RA, QDCOUNT 1, ARCOUNT 1
            0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 1,
            // question: example.org. A IN
            7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'o', b'r', b'g', 0, 0, 1, 0, 1,
            // OPT: root, type 41, size 1232, TTL 0, RDLENGTH 0
            0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0,
        ];
        let mut f = Framed::default();
        assert!(f.queue(b"xyz"));
        assert!(f.queue_padded(&ANSWER, 468));
        assert!(f.queue_padded(b"no OPT here", 468), "queued as it is");
        assert_eq!(f.wbuf[..5], [0, 3, b'x', b'y', b'z']);
        assert_eq!(
            f.wbuf[5..7],
            468u16.to_be_bytes(),
            "prefix of the padded length"
        );
        let padded = &f.wbuf[7..7 + 468];
        assert!(crate::wire::padding::is_padded(padded));
        assert_eq!(padded[..ANSWER.len() - 2], ANSWER[..ANSWER.len() - 2]);
        assert_eq!(f.wbuf[7 + 468..], [&[0, 11][..], b"no OPT here"].concat());
    }

    #[test]
    fn written_prefix_is_dropped_once_large() {
        let mut f = Framed::default();
        for _ in 0..40 {
            assert!(f.queue(&[7; 2000]));
        }
        f.wpos = 70_000; // as if that much had been written before the socket blocked
        f.compact();
        assert_eq!(f.wpos, 0);
        assert_eq!(f.backlog(), 40 * 2002 - 70_000);
    }
}
