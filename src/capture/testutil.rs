//! Test-only builders for packets and capture files, so that unit tests can state exactly
//! which bytes they feed in. Checksums are left zero: the decoders do not check them.

/// An IPv4 header (no options) around `payload`.
pub(crate) fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Vec<u8> {
    ipv4_frag(src, dst, proto, 0, 0, false, payload)
}

/// An IPv4 fragment: `offset` in bytes (a multiple of 8 unless testing nonsense).
pub(crate) fn ipv4_frag(
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    id: u16,
    offset: u16,
    more: bool,
    payload: &[u8],
) -> Vec<u8> {
    let total = u16::try_from(20 + payload.len()).unwrap();
    let flags = (offset / 8) | if more { 0x2000 } else { 0 };
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&flags.to_be_bytes());
    p.extend_from_slice(&[64, proto, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

/// An IPv6 header with next header `nh` around `payload`.
pub(crate) fn ipv6(src: [u8; 16], dst: [u8; 16], nh: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
    p.extend_from_slice(&[nh, 64]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(payload);
    p
}

/// An IPv6 packet carrying one fragment (fragment header, then `data`).
pub(crate) fn ipv6_frag(
    src: [u8; 16],
    dst: [u8; 16],
    nh: u8,
    id: u32,
    offset: u16,
    more: bool,
    data: &[u8],
) -> Vec<u8> {
    let mut f = vec![nh, 0];
    f.extend_from_slice(&(offset | u16::from(more)).to_be_bytes());
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(data);
    ipv6(src, dst, 44, &f)
}

pub(crate) fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&u16::try_from(8 + payload.len()).unwrap().to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

pub(crate) const FIN: u8 = 0x01;
pub(crate) const SYN: u8 = 0x02;
pub(crate) const ACK: u8 = 0x10;
pub(crate) const PSH: u8 = 0x08;

pub(crate) fn tcp(sport: u16, dport: u16, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    t.extend_from_slice(payload);
    t
}

/// An Ethernet II frame.
pub(crate) fn ether(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A length-prefixed DNS-over-TCP message.
pub(crate) fn framed(msg: &[u8]) -> Vec<u8> {
    let mut v = u16::try_from(msg.len()).unwrap().to_be_bytes().to_vec();
    v.extend_from_slice(msg);
    v
}

/// A small, plausible DNS query with the given ID.
pub(crate) fn query(id: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    q.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
    q
}

/// One packet record for the legacy writer.
pub(crate) struct Rec<'a> {
    pub ts_sec: u32,
    pub ts_frac: u32,
    pub data: &'a [u8],
    /// Original length, if larger than `data` (snap length cut).
    pub orig: Option<u32>,
}

pub(crate) fn rec(ts_sec: u32, data: &[u8]) -> Rec<'_> {
    Rec {
        ts_sec,
        ts_frac: 0,
        data,
        orig: None,
    }
}

/// A legacy pcap file: `big_endian` byte order, `nsec` timestamps.
pub(crate) fn pcap_file(big_endian: bool, nsec: bool, linktype: u32, recs: &[Rec<'_>]) -> Vec<u8> {
    let w32 = |v: &mut Vec<u8>, x: u32| {
        v.extend_from_slice(&if big_endian {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        })
    };
    let w16 = |v: &mut Vec<u8>, x: u16| {
        v.extend_from_slice(&if big_endian {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        })
    };
    let mut f = Vec::new();
    w32(&mut f, if nsec { 0xa1b2_3c4d } else { 0xa1b2_c3d4 });
    w16(&mut f, 2);
    w16(&mut f, 4);
    w32(&mut f, 0);
    w32(&mut f, 0);
    w32(&mut f, 65535);
    w32(&mut f, linktype);
    for r in recs {
        let len = u32::try_from(r.data.len()).unwrap();
        w32(&mut f, r.ts_sec);
        w32(&mut f, r.ts_frac);
        w32(&mut f, len);
        w32(&mut f, r.orig.unwrap_or(len));
        f.extend_from_slice(r.data);
    }
    f
}

/// A little-endian microsecond pcap with one second between packets.
pub(crate) fn pcap(linktype: u32, frames: &[Vec<u8>]) -> Vec<u8> {
    let recs: Vec<Rec<'_>> = frames
        .iter()
        .enumerate()
        .map(|(i, d)| rec(1_000 + i as u32, d))
        .collect();
    pcap_file(false, false, linktype, &recs)
}

/// A pcapng writer, block by block.
pub(crate) struct PcapNg {
    pub buf: Vec<u8>,
    big_endian: bool,
}

impl PcapNg {
    pub(crate) fn new(big_endian: bool) -> Self {
        let mut ng = PcapNg {
            buf: Vec::new(),
            big_endian,
        };
        ng.section(big_endian);
        ng
    }

    fn u32b(&self, x: u32) -> [u8; 4] {
        if self.big_endian {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        }
    }

    fn u16b(&self, x: u16) -> [u8; 2] {
        if self.big_endian {
            x.to_be_bytes()
        } else {
            x.to_le_bytes()
        }
    }

    fn block(&mut self, ty: u32, body: &[u8]) {
        let mut body = body.to_vec();
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        let len = u32::try_from(body.len() + 12).unwrap();
        let (t, l) = (self.u32b(ty), self.u32b(len));
        self.buf.extend_from_slice(&t);
        self.buf.extend_from_slice(&l);
        self.buf.extend_from_slice(&body);
        self.buf.extend_from_slice(&l);
    }

    /// Starts a new section, possibly switching byte order.
    pub(crate) fn section(&mut self, big_endian: bool) {
        self.big_endian = big_endian;
        let mut body = self.u32b(0x1a2b_3c4d).to_vec();
        body.extend_from_slice(&self.u16b(1));
        body.extend_from_slice(&self.u16b(0));
        body.extend_from_slice(&[0xff; 8]);
        self.block(0x0a0d_0d0a, &body);
    }

    /// An interface; `tsresol` is written as an option when given.
    pub(crate) fn interface(&mut self, linktype: u16, tsresol: Option<u8>) {
        let mut body = self.u16b(linktype).to_vec();
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&self.u32b(0));
        if let Some(r) = tsresol {
            body.extend_from_slice(&self.u16b(9));
            body.extend_from_slice(&self.u16b(1));
            body.extend_from_slice(&[r, 0, 0, 0]);
            body.extend_from_slice(&[0; 4]); // opt_endofopt
        }
        self.block(1, &body);
    }

    /// An Enhanced Packet Block with a raw timestamp.
    pub(crate) fn packet(&mut self, if_id: u32, ts: u64, data: &[u8]) {
        let mut body = self.u32b(if_id).to_vec();
        body.extend_from_slice(&self.u32b((ts >> 32) as u32));
        body.extend_from_slice(&self.u32b(ts as u32));
        let len = u32::try_from(data.len()).unwrap();
        body.extend_from_slice(&self.u32b(len));
        body.extend_from_slice(&self.u32b(len));
        body.extend_from_slice(data);
        self.block(6, &body);
    }

    pub(crate) fn simple_packet(&mut self, data: &[u8]) {
        let mut body = self.u32b(u32::try_from(data.len()).unwrap()).to_vec();
        body.extend_from_slice(data);
        self.block(3, &body);
    }

    pub(crate) fn other_block(&mut self, ty: u32, body: &[u8]) {
        self.block(ty, body);
    }
}
