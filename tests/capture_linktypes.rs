//! Every link type and tunnel `capture` decodes, on the captures `testdata/linktypes.py`
//! builds: each holds the first query and response of `testdata/auth-udp.pcap` (real dig
//! and knotd messages) wrapped in that encapsulation, and exactly those two messages must
//! come out, byte for byte, with their addresses and the tunnels removed. Then every
//! fixture is cut and damaged to check that no header length is trusted.
// Test code: a failed unwrap or panic is how a helper reports a broken fixture. Clippy
// treats only `#[test]` functions (not their helpers) as tests in an integration test crate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use std::net::SocketAddr;
use std::path::PathBuf;

use dnsfwd::capture::{self, CapturedMessage, Options, Transport, Tunnel};

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata")).join(name)
}

fn fixture(name: &str) -> Vec<u8> {
    let path = testdata("linktypes").join(format!("{name}.pcap"));
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run testdata/linktypes.py)", path.display()))
}

/// The query and the response the fixtures carry, read from the capture they came from.
fn query_and_response() -> (Vec<u8>, Vec<u8>) {
    let data = std::fs::read(testdata("auth-udp.pcap")).unwrap();
    let msgs = capture::read_capture(&data, &Options::default()).unwrap();
    let is_response = |m: &&CapturedMessage| m.bytes.len() >= 12 && m.bytes[2] & 0x80 != 0;
    let q = msgs.iter().position(|m| !is_response(&m)).unwrap();
    let r = msgs.iter().skip(q).find(is_response).unwrap();
    (msgs[q].bytes.clone(), r.bytes.clone())
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const Q4: (&str, &str) = ("192.0.2.1:40000", "192.0.2.53:53");
const Q6: (&str, &str) = ("[2001:db8::1]:40000", "[2001:db8::53]:53");
const R4: (&str, &str) = ("192.0.2.53:53", "192.0.2.1:40000");
const R6: (&str, &str) = ("[2001:db8::53]:53", "[2001:db8::1]:40000");

/// One expected message: frame, addresses, query (false) or response (true), tunnels.
type Want = (u32, (&'static str, &'static str), bool, &'static [Tunnel]);

#[track_caller]
fn check(name: &str, link_type: u32, want: &[Want]) {
    let (q, r) = query_and_response();
    let s = capture::read_capture_detailed(&fixture(name), &Options::default()).unwrap();
    assert_eq!(s.link_types, vec![link_type], "{name}");
    assert!(capture::is_supported_link_type(link_type), "{name}");
    assert_eq!(s.unsupported_link_packets, 0, "{name}");
    let got: Vec<_> = s
        .messages
        .iter()
        .map(|m| {
            (
                m.frame,
                m.src,
                m.dst,
                m.transport,
                m.truncated,
                &m.bytes,
                m.tunnel.clone(),
            )
        })
        .collect();
    let want: Vec<_> = want
        .iter()
        .map(|&(frame, (src, dst), response, tunnel)| {
            let bytes = if response { &r } else { &q };
            (
                frame,
                addr(src),
                addr(dst),
                Transport::Udp,
                false,
                bytes,
                tunnel.to_vec(),
            )
        })
        .collect();
    assert_eq!(got, want, "{name}");
}

/// A fixture with the IPv4 query in frame 1 and the IPv6 response in frame 2, no tunnel.
#[track_caller]
fn check_link(name: &str, link_type: u32) {
    check(name, link_type, &[(1, Q4, false, &[]), (2, R6, true, &[])]);
}

macro_rules! link_types {
    ($($test:ident: $file:literal, $link_type:literal;)*) => {
        $(
            #[test]
            fn $test() {
                check_link($file, $link_type);
            }
        )*
        const LINK_FIXTURES: &[&str] = &[$($file),*];
    };
}

link_types! {
    ethernet_vlan_8021q: "vlan", 1;
    ethernet_qinq: "qinq", 1;
    ethernet_mpls_label_stack: "mpls-ether", 1;
    raw_mpls: "mpls-raw", 219;
    ethernet_pppoe: "pppoe", 1;
    ethernet_8023_llc_snap: "llc-8023", 1;
    ppp: "ppp", 9;
    ppp_hdlc: "ppp-hdlc", 50;
    ppp_ether: "ppp-ether", 51;
    ppp_with_direction: "ppp-with-dir", 204;
    linux_sll: "linux-sll", 113;
    linux_sll2: "linux-sll2", 276;
    bsd_null: "null", 0;
    openbsd_loop: "loop", 108;
    openbsd_pflog: "pflog", 117;
    openbsd_enc: "enc", 109;
    linux_nflog: "nflog", 239;
    macos_pktap: "pktap", 258;
    ieee802_11_bare: "ieee802-11", 105;
    ieee802_11_radiotap_with_fcs: "radiotap", 127;
    ieee802_11_prism: "prism", 119;
    ieee802_11_avs: "avs", 163;
    ieee802_11_ppi: "ppi", 192;
    cisco_hdlc: "c-hdlc", 104;
    frame_relay: "frelay", 107;
    atm_rfc1483_llc_snap: "atm-rfc1483", 100;
    ip_over_infiniband: "ipoib", 242;
    fddi: "fddi", 10;
    token_ring_with_source_route: "token-ring", 6;
    arcnet_bsd: "arcnet-bsd", 7;
    arcnet_linux: "arcnet-linux", 129;
}

use Tunnel::*;

#[test]
fn tunnel_gre() {
    check(
        "tunnel-gre",
        1,
        &[(1, Q4, false, &[Gre]), (2, R6, true, &[Gre])],
    );
}

#[test]
fn tunnel_gre_ethernet_bridging() {
    check(
        "tunnel-gre-teb",
        1,
        &[(1, Q4, false, &[Gre]), (2, R6, true, &[Gre])],
    );
}

#[test]
fn tunnel_erspan_types_2_and_3() {
    check(
        "tunnel-erspan",
        1,
        &[(1, Q4, false, &[Erspan]), (2, R6, true, &[Erspan])],
    );
}

#[test]
fn tunnel_pptp_enhanced_gre() {
    check(
        "tunnel-pptp",
        1,
        &[(1, Q4, false, &[Gre]), (2, R6, true, &[Gre])],
    );
}

#[test]
fn tunnel_vxlan() {
    check(
        "tunnel-vxlan",
        1,
        &[(1, Q4, false, &[Vxlan]), (2, R6, true, &[Vxlan])],
    );
}

#[test]
fn tunnel_geneve() {
    check(
        "tunnel-geneve",
        1,
        &[(1, Q4, false, &[Geneve]), (2, R6, true, &[Geneve])],
    );
}

#[test]
fn tunnel_gtpu_with_extension_header_and_over_ipv6() {
    check(
        "tunnel-gtpu",
        1,
        &[(1, Q4, false, &[GtpU]), (2, R6, true, &[GtpU])],
    );
}

#[test]
fn tunnel_ip_in_ip_and_6in4() {
    check(
        "tunnel-ipip",
        1,
        &[(1, Q4, false, &[IpIp]), (2, R6, true, &[IpIp])],
    );
}

#[test]
fn tunnel_teredo_with_origin_indication() {
    check(
        "tunnel-teredo",
        1,
        &[(1, Q6, false, &[Teredo]), (2, R6, true, &[Teredo])],
    );
}

#[test]
fn tunnel_l2tpv2_over_udp_and_l2tpv3_over_ip() {
    check(
        "tunnel-l2tp",
        1,
        &[(1, Q4, false, &[L2tp]), (2, R6, true, &[L2tp])],
    );
}

#[test]
fn nested_tunnels_stop_past_the_depth_bound() {
    assert_eq!(capture::MAX_TUNNEL_DEPTH, 4);
    // Frame 2 is five IP-in-IP headers deep: skipped. Frame 3 is four deep: found.
    check(
        "tunnel-nested",
        1,
        &[
            (1, Q4, false, &[IpIp, Gre, Vxlan]),
            (3, R4, true, &[IpIp, IpIp, IpIp, IpIp]),
        ],
    );
}

#[test]
fn any_port_finds_dns_on_other_ports() {
    let (q, r) = query_and_response();
    let data = fixture("anyport");
    let plain = capture::read_capture_detailed(&data, &Options::default()).unwrap();
    assert!(plain.messages.is_empty());
    let ports: Vec<(Transport, u16)> = plain
        .other_ports
        .iter()
        .map(|p| (p.transport, p.port))
        .collect();
    assert!(ports.contains(&(Transport::Udp, 5300)), "{ports:?}");
    assert!(ports.contains(&(Transport::Tcp, 1053)), "{ports:?}");
    assert_eq!(plain.ip_packets, 7);

    let opts = Options {
        any_port: true,
        ..Options::default()
    };
    let got: Vec<_> = capture::read_capture(&data, &opts)
        .unwrap()
        .into_iter()
        .map(|m| (m.frame, m.transport, m.dst.port(), m.bytes))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, Transport::Udp, 5300, q.clone()),
            (3, Transport::Udp, 40000, r.clone()),
            (6, Transport::Tcp, 1053, q),
            (7, Transport::Tcp, 40002, r),
        ]
    );
}

/// The records of a little-endian legacy pcap (what linktypes.py writes).
fn records(file: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = &file[24..];
    while rest.len() >= 16 {
        let len = u32::from_le_bytes(rest[8..12].try_into().unwrap()) as usize;
        out.push(&rest[16..16 + len]);
        rest = &rest[16 + len..];
    }
    out
}

fn pcap(link_type: u32, frame: &[u8]) -> Vec<u8> {
    let mut f = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&link_type.to_le_bytes());
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    f.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    f.extend_from_slice(frame);
    f
}

/// Every prefix of every frame, and frames with bytes overwritten, under every link type
/// the fixtures use: no panic, and never more than the one message a frame holds.
#[test]
fn cut_and_damaged_fixtures_never_panic() {
    let mut names: Vec<String> = LINK_FIXTURES.iter().map(|s| s.to_string()).collect();
    for t in [
        "gre", "gre-teb", "erspan", "pptp", "vxlan", "geneve", "gtpu", "ipip", "teredo", "l2tp",
        "nested",
    ] {
        names.push(format!("tunnel-{t}"));
    }
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let opts = Options {
        any_port: true,
        ..Options::default()
    };
    for name in names {
        let file = fixture(&name);
        let link_type = u32::from_le_bytes(file[20..24].try_into().unwrap());
        for frame in records(&file) {
            for cut in 0..frame.len() {
                let msgs = capture::read_capture(&pcap(link_type, &frame[..cut]), &opts).unwrap();
                assert!(msgs.len() <= 1, "{name} cut at {cut}");
            }
            for _ in 0..200 {
                let mut f = frame.to_vec();
                for _ in 0..=(rnd() % 4) {
                    let at = rnd() as usize % f.len();
                    f[at] = rnd() as u8;
                }
                let _ = capture::read_capture(&pcap(link_type, &f), &opts).unwrap();
            }
        }
    }
}
