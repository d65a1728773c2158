//! The per-file pipeline: a captured frame goes down the layers (link, IP, fragments,
//! tunnels, UDP/TCP) and DNS messages come out. Holds the reassembly tables, the
//! messages found, and the counts of what was seen instead, all bounded (see the
//! module documentation of `capture`).
use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use super::{
    file, frag, heuristic, ip, link, tcp, tunnel, udp, CapturedMessage, Options, Transport, Tunnel,
    MAX_PORTS_SEEN,
};

/// Where a transport payload came from, passed down the layers.
#[derive(Debug, Clone, Copy)]
struct Origin {
    frame: u32,
    ts: f64,
    src: IpAddr,
    dst: IpAddr,
    tunnel: tunnel::Path,
}

/// Where an IP packet came from: its frame, and the tunnels around it.
#[derive(Debug, Clone, Copy)]
struct Carrier {
    frame: u32,
    ts: f64,
    tunnel: tunnel::Path,
}

/// Per-file decoding state: the reassembly tables and the messages found so far.
pub(super) struct Extractor<'o> {
    opts: &'o Options,
    frags: frag::FragTable,
    tcp: tcp::TcpTable,
    /// TCP directions taken as DNS by the heuristic (any port), so that their later
    /// segments are too. At most `tcp::MAX_FLOWS`.
    heuristic_flows: HashSet<(SocketAddr, SocketAddr)>,
    out: Vec<CapturedMessage>,
    pub(super) unsupported_link_packets: u32,
    pub(super) ip_packets: u32,
    pub(super) ports_seen: BTreeMap<(Transport, u16), u32>,
}

impl<'o> Extractor<'o> {
    pub(super) fn new(opts: &'o Options) -> Self {
        Extractor {
            opts,
            frags: frag::FragTable::default(),
            tcp: tcp::TcpTable::default(),
            heuristic_flows: HashSet::new(),
            out: Vec::new(),
            unsupported_link_packets: 0,
            ip_packets: 0,
            ports_seen: BTreeMap::new(),
        }
    }

    fn is_dns(&self, sport: u16, dport: u16) -> bool {
        self.opts.ports.contains(&sport) || self.opts.ports.contains(&dport)
    }

    pub(super) fn packet(&mut self, pkt: &file::Packet<'_>) {
        if !link::is_supported(pkt.link_type) {
            self.unsupported_link_packets = self.unsupported_link_packets.saturating_add(1);
            return;
        }
        let Some(l3) = link::decode(pkt.link_type, pkt.data) else {
            return;
        };
        let at = Carrier {
            frame: pkt.frame,
            ts: pkt.ts,
            tunnel: tunnel::Path::default(),
        };
        if self.ip(at, l3) {
            self.ip_packets = self.ip_packets.saturating_add(1);
        }
    }

    /// Decodes one IP packet; false if it was not a well-formed one.
    fn ip(&mut self, at: Carrier, l3: link::L3<'_>) -> bool {
        let parsed = match l3 {
            link::L3::V4(b) => ip::parse_v4(b),
            link::L3::V6(b) => ip::parse_v6(b),
        };
        match parsed {
            Some(ip::Parsed::Whole(d)) => {
                let origin = Origin {
                    frame: at.frame,
                    ts: at.ts,
                    src: d.src,
                    dst: d.dst,
                    tunnel: at.tunnel,
                };
                self.transport(origin, d.proto, d.payload, d.cut);
                true
            }
            Some(ip::Parsed::Fragment(mut f)) => {
                f.tunnel = at.tunnel;
                let mut done = Vec::new();
                self.frags.insert(&f, at.frame, at.ts, &mut done);
                self.reassembled(done);
                true
            }
            None => false,
        }
    }

    /// Decodes the packet found inside a tunnel, unless that is one tunnel too many.
    fn tunnelled(&mut self, origin: Origin, kind: Tunnel, inner: link::L3<'_>) {
        let Some(tunnel) = origin.tunnel.push(kind) else {
            return;
        };
        let at = Carrier {
            frame: origin.frame,
            ts: origin.ts,
            tunnel,
        };
        self.ip(at, inner);
    }

    /// Hands datagrams that left the fragment table (complete, or incomplete ones that were
    /// evicted or left at the end) to the transport layer.
    fn reassembled(&mut self, done: Vec<frag::Reassembled>) {
        for r in done {
            let origin = Origin {
                frame: r.frame,
                ts: r.ts,
                src: r.src,
                dst: r.dst,
                tunnel: r.tunnel,
            };
            // An IPv6 datagram's fragmentable part may start with more extension headers.
            let inner = if r.src.is_ipv6() {
                ip::walk_v6_ext(r.proto, &r.payload)
            } else {
                Some((r.proto, r.payload.as_slice()))
            };
            let Some((proto, payload)) = inner else {
                continue;
            };
            if r.complete {
                self.transport(origin, proto, payload, false);
            } else if proto == ip::PROTO_UDP {
                // Only the UDP header and the first bytes are here; a TCP segment missing
                // its tail cannot be placed in a stream meaningfully, so it is dropped.
                self.transport(origin, proto, payload, true);
            }
        }
    }

    fn transport(&mut self, origin: Origin, proto: u8, payload: &[u8], cut: bool) {
        match proto {
            ip::PROTO_UDP => self.udp(origin, payload, cut),
            ip::PROTO_TCP => self.tcp(origin, payload),
            _ => {
                if let Some((kind, inner)) = tunnel::over_ip(proto, payload) {
                    self.tunnelled(origin, kind, inner);
                }
            }
        }
    }

    /// A datagram is DNS on a DNS port; else it may be a tunnel; else, with `any_port`,
    /// DNS if it looks like it.
    fn udp(&mut self, origin: Origin, payload: &[u8], cut: bool) {
        let Some(u) = udp::parse(payload) else {
            return;
        };
        if !self.is_dns(u.sport, u.dport) {
            if let Some((kind, inner)) = tunnel::over_udp(u.sport, u.dport, u.payload) {
                self.tunnelled(origin, kind, inner);
                return;
            }
            let guess = self.opts.any_port
                && heuristic::port_may_carry_dns(u.sport, u.dport)
                && heuristic::looks_like_dns(u.payload);
            if !guess {
                self.count_port(Transport::Udp, u.sport, u.dport);
                return;
            }
        }
        self.out.push(CapturedMessage {
            frame: origin.frame,
            ts: origin.ts,
            transport: Transport::Udp,
            src: SocketAddr::new(origin.src, u.sport),
            dst: SocketAddr::new(origin.dst, u.dport),
            bytes: u.payload.to_vec(),
            truncated: cut || u.truncated,
            tunnel: origin.tunnel.to_vec(),
        });
    }

    fn tcp(&mut self, origin: Origin, payload: &[u8]) {
        let Some(mut seg) = tcp::parse(payload) else {
            return;
        };
        let src = SocketAddr::new(origin.src, seg.sport);
        let dst = SocketAddr::new(origin.dst, seg.dport);
        if !self.is_dns(seg.sport, seg.dport) && !self.tcp_heuristic(src, dst, seg.payload) {
            self.count_port(Transport::Tcp, seg.sport, seg.dport);
            return;
        }
        seg.tunnel = origin.tunnel;
        self.tcp
            .segment(src, dst, &seg, origin.frame, origin.ts, &mut self.out);
    }

    /// With `any_port`: is this direction DNS? It is once a segment of it started with a
    /// length prefix and a whole message that looks like DNS.
    fn tcp_heuristic(&mut self, src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> bool {
        if !self.opts.any_port {
            return false;
        }
        if self.heuristic_flows.contains(&(src, dst)) {
            return true;
        }
        if !heuristic::port_may_carry_dns(src.port(), dst.port())
            || !heuristic::looks_like_dns_over_tcp(payload)
            || self.heuristic_flows.len() >= tcp::MAX_FLOWS
        {
            return false;
        }
        self.heuristic_flows.insert((src, dst));
        true
    }

    fn count_port(&mut self, transport: Transport, sport: u16, dport: u16) {
        let key = (transport, sport.min(dport));
        if self.ports_seen.len() < MAX_PORTS_SEEN || self.ports_seen.contains_key(&key) {
            let n = self.ports_seen.entry(key).or_insert(0);
            *n = n.saturating_add(1);
        }
    }

    pub(super) fn finish(mut self) -> Vec<CapturedMessage> {
        let leftovers = std::mem::take(&mut self.frags).finish();
        self.reassembled(leftovers);
        std::mem::take(&mut self.tcp).finish(&mut self.out);
        // Stable: messages of one frame keep the order they were found in.
        self.out.sort_by_key(|m| m.frame);
        self.out
    }
}
