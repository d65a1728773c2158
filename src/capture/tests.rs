//! End-to-end tests of the public API: hand-built capture files in every supported format
//! and link type, fragments and TCP through the whole pipeline, errors, and garbage input.
use std::net::IpAddr;

use super::testutil::*;
use super::*;

const CLIENT: [u8; 4] = [192, 168, 1, 10];
const SERVER: [u8; 4] = [8, 8, 8, 8];

fn sock(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::from(ip), port)
}

/// An Ethernet frame with a UDP datagram from CLIENT:40000 to SERVER:53.
fn udp_frame(payload: &[u8]) -> Vec<u8> {
    ether(0x0800, &ipv4(CLIENT, SERVER, 17, &udp(40000, 53, payload)))
}

fn read(data: &[u8]) -> Vec<CapturedMessage> {
    read_capture(data, &Options::default()).unwrap()
}

#[test]
fn legacy_pcap_all_variants() {
    let q = query(0x1234);
    let frame = udp_frame(&q);
    for (big_endian, nsec) in [(false, false), (true, false), (false, true), (true, true)] {
        let recs = [Rec {
            ts_sec: 1_700_000_000,
            ts_frac: if nsec { 250_000_000 } else { 250_000 },
            data: &frame,
            orig: None,
        }];
        let file = pcap_file(big_endian, nsec, 1, &recs);
        assert!(is_capture(&file));
        let s = read_capture_detailed(&file, &Options::default()).unwrap();
        assert_eq!(s.format, Format::Pcap);
        assert_eq!(
            (s.packets, s.link_types.clone(), s.cut_off_at),
            (1, vec![1], None)
        );
        assert_eq!(
            s.messages,
            vec![CapturedMessage {
                frame: 1,
                ts: 1_700_000_000.25,
                transport: Transport::Udp,
                src: sock(CLIENT, 40000),
                dst: sock(SERVER, 53),
                bytes: q.clone(),
                truncated: false,
                tunnel: vec![],
            }],
            "big_endian {big_endian} nsec {nsec}"
        );
    }
}

#[test]
fn frames_are_numbered_across_non_dns_packets() {
    let other = ether(0x0800, &ipv4(CLIENT, SERVER, 17, &udp(1, 2, b"not dns")));
    let arp = ether(0x0806, &[0; 28]);
    let reply = ether(0x0800, &ipv4(SERVER, CLIENT, 17, &udp(53, 40000, b"reply")));
    let file = pcap(1, &[other, arp, udp_frame(b"query"), reply]);
    let got: Vec<(u32, Vec<u8>, SocketAddr)> = read(&file)
        .into_iter()
        .map(|m| (m.frame, m.bytes, m.src))
        .collect();
    assert_eq!(
        got,
        vec![
            (3, b"query".to_vec(), sock(CLIENT, 40000)),
            (4, b"reply".to_vec(), sock(SERVER, 53)),
        ]
    );
}

#[test]
fn ports_option_selects_dns() {
    let mdns = ether(0x0800, &ipv4(CLIENT, SERVER, 17, &udp(5353, 5353, b"mdns")));
    let file = pcap(1, &[mdns, udp_frame(b"dns")]);
    let opts = Options {
        ports: vec![5353],
        any_port: false,
    };
    let got = read_capture(&file, &opts).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].bytes, b"mdns");
    assert_eq!(read(&file).len(), 1);
    assert!(read_capture(
        &file,
        &Options {
            ports: vec![],
            any_port: false,
        }
    )
    .unwrap()
    .is_empty());
}

#[test]
fn every_link_type() {
    let ip4 = ipv4(CLIENT, SERVER, 17, &udp(40000, 53, b"v4"));
    let ip6 = ipv6([1; 16], [2; 16], 17, &udp(40000, 53, b"v6"));
    let mut sll = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
    sll.extend_from_slice(&ip4);
    let mut sll2 = vec![
        0x86, 0xdd, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0,
    ];
    sll2.extend_from_slice(&ip6);
    let mut null_le = 2u32.to_le_bytes().to_vec();
    null_le.extend_from_slice(&ip4);
    let mut null_be = 30u32.to_be_bytes().to_vec();
    null_be.extend_from_slice(&ip6);
    let mut qinq = vec![0x00, 0x0a, 0x81, 0x00, 0x00, 0x0b, 0x86, 0xdd];
    qinq.extend_from_slice(&ip6);
    let cases: Vec<(u32, Vec<u8>, &[u8])> = vec![
        (1, ether(0x0800, &ip4), b"v4"),
        (1, ether(0x88a8, &qinq), b"v6"),
        (101, ip4.clone(), b"v4"),
        (101, ip6.clone(), b"v6"),
        (12, ip4.clone(), b"v4"),
        (14, ip6.clone(), b"v6"),
        (228, ip4.clone(), b"v4"),
        (229, ip6.clone(), b"v6"),
        (113, sll, b"v4"),
        (276, sll2, b"v6"),
        (0, null_le, b"v4"),
        (0, null_be.clone(), b"v6"),
        (108, null_be, b"v6"),
    ];
    for (lt, frame, want) in cases {
        let got = read(&pcap(lt, &[frame]));
        assert_eq!(got.len(), 1, "link type {lt}");
        assert_eq!(got[0].bytes, want, "link type {lt}");
    }
}

#[test]
fn unsupported_link_type_is_skipped_and_counted() {
    let file = pcap(147, &[udp_frame(b"x")]);
    let s = read_capture_detailed(&file, &Options::default()).unwrap();
    assert!(s.messages.is_empty());
    assert_eq!((s.packets, s.unsupported_link_packets), (1, 1));
    assert!(!is_supported_link_type(147));
}

#[test]
fn pcapng_interfaces_sections_and_resolutions() {
    let mut ng = PcapNg::new(false);
    ng.interface(1, None); // Ethernet, microseconds
    ng.interface(101, Some(9)); // raw IP, nanoseconds
    ng.interface(276, Some(0x80 | 10)); // SLL2, 1/1024 s
    ng.packet(0, 1_500_000, &udp_frame(b"eth"));
    ng.packet(
        1,
        2_250_000_000,
        &ipv4(CLIENT, SERVER, 17, &udp(1, 53, b"raw")),
    );
    let mut sll2 = vec![
        0x08, 0x00, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0,
    ];
    sll2.extend_from_slice(&ipv4(CLIENT, SERVER, 17, &udp(1, 53, b"sll2")));
    ng.packet(2, 3 * 1024 + 512, &sll2);
    ng.packet(7, 0, &udp_frame(b"no such interface"));
    ng.other_block(4, &[0, 0, 0, 0]); // name resolution block: ignored
                                      // A second, big-endian section: interfaces start again from 0.
    ng.section(true);
    ng.interface(101, None);
    ng.packet(0, 4_000_000, &ipv4(CLIENT, SERVER, 17, &udp(1, 53, b"be")));
    ng.simple_packet(&ipv4(CLIENT, SERVER, 17, &udp(1, 53, b"spb")));
    let s = read_capture_detailed(&ng.buf, &Options::default()).unwrap();
    assert_eq!(s.format, Format::PcapNg);
    assert_eq!(s.packets, 6);
    assert_eq!(s.link_types, vec![1, 101, 276]);
    let got: Vec<(u32, f64, &[u8])> = s
        .messages
        .iter()
        .map(|m| (m.frame, m.ts, m.bytes.as_slice()))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, 1.5, &b"eth"[..]),
            (2, 2.25, &b"raw"[..]),
            (3, 3.5, &b"sll2"[..]),
            (5, 4.0, &b"be"[..]),
            (6, 0.0, &b"spb"[..]),
        ]
    );
}

#[test]
fn snaplen_cut_udp_is_truncated() {
    let q = query(1);
    let frame = udp_frame(&q);
    let cut = &frame[..frame.len() - 10];
    let recs = [Rec {
        ts_sec: 0,
        ts_frac: 0,
        data: cut,
        orig: Some(frame.len() as u32),
    }];
    let got = read(&pcap_file(false, false, 1, &recs));
    assert_eq!(got.len(), 1);
    assert!(got[0].truncated);
    assert_eq!(got[0].bytes, q[..q.len() - 10].to_vec());
}

#[test]
fn ethernet_padding_is_not_part_of_the_message() {
    let mut frame = udp_frame(b"ab");
    frame.extend_from_slice(&[0; 16]);
    let got = read(&pcap(1, &[frame]));
    assert_eq!(
        (got[0].bytes.as_slice(), got[0].truncated),
        (&b"ab"[..], false)
    );
}

#[test]
fn empty_udp_payload_is_a_message() {
    let got = read(&pcap(1, &[udp_frame(b"")]));
    assert_eq!(got.len(), 1);
    assert!(got[0].bytes.is_empty());
    assert!(!got[0].truncated);
}

#[test]
fn ipv4_fragments_end_to_end() {
    let q = [query(1), vec![0xab; 40]].concat();
    let dgram = udp(40000, 53, &q);
    let (a, b) = dgram.split_at(24);
    let other = udp_frame(b"between");
    let f1 = ether(0x0800, &ipv4_frag(CLIENT, SERVER, 17, 9, 0, true, a));
    let f2 = ether(0x0800, &ipv4_frag(CLIENT, SERVER, 17, 9, 24, false, b));
    // Last fragment first; then an incomplete datagram whose tail never comes.
    let lone = ether(0x0800, &ipv4_frag(CLIENT, SERVER, 17, 10, 0, true, a));
    let file = pcap(1, &[f2, other, f1, lone, udp_frame(b"after")]);
    let got: Vec<(u32, usize, bool)> = read(&file)
        .iter()
        .map(|m| (m.frame, m.bytes.len(), m.truncated))
        .collect();
    assert_eq!(
        got,
        vec![
            (2, 7, false),
            (3, q.len(), false),
            (4, 16, true),
            (5, 5, false)
        ]
    );
    assert_eq!(read(&file)[1].bytes, q);
}

#[test]
fn ipv6_fragments_with_extension_headers_end_to_end() {
    let q = query(2);
    // Fragmentable part: destination options header, then UDP.
    let mut part = vec![17, 0, 1, 4, 0, 0, 0, 0];
    part.extend(udp(53, 40000, &q));
    let (a, b) = part.split_at(16);
    // Unfragmentable part: hop-by-hop before the fragment header.
    let with_hbh = |frag: Vec<u8>| {
        let mut p = frag.clone();
        let mut hbh = vec![44, 0, 1, 4, 0, 0, 0, 0];
        hbh.extend_from_slice(&frag[40..]);
        p.truncate(40);
        p[6] = 0;
        p[4..6].copy_from_slice(&(hbh.len() as u16).to_be_bytes());
        p.extend(hbh);
        p
    };
    let f1 = with_hbh(ipv6_frag([1; 16], [2; 16], 60, 77, 0, true, a));
    let f2 = with_hbh(ipv6_frag([1; 16], [2; 16], 60, 77, 16, false, b));
    let got = read(&pcap(101, &[f1, f2]));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].bytes, q);
    assert_eq!(got[0].frame, 2);
    assert_eq!(got[0].src, SocketAddr::new(IpAddr::from([1u8; 16]), 53));
}

#[test]
fn tcp_end_to_end_with_ipv6_and_frames() {
    let c = [0xfd; 16];
    let s = [0xfe; 16];
    let seg = |seq: u32, flags: u8, p: &[u8]| ipv6(c, s, 6, &tcp(40000, 53, seq, flags, p));
    let mut stream = framed(&query(1));
    stream.extend(framed(&query(2)));
    let (x, y) = stream.split_at(40);
    let file = pcap(
        101,
        &[
            seg(0, SYN, b""),
            seg(1, ACK, x),
            ipv4(CLIENT, SERVER, 17, &udp(40000, 53, b"udp in between")),
            seg(41, ACK | PSH, y),
        ],
    );
    let got: Vec<(u32, Transport, Vec<u8>)> = read(&file)
        .into_iter()
        .map(|m| (m.frame, m.transport, m.bytes))
        .collect();
    assert_eq!(
        got,
        vec![
            (2, Transport::Tcp, query(1)),
            (3, Transport::Udp, b"udp in between".to_vec()),
            (4, Transport::Tcp, query(2)),
        ]
    );
}

#[test]
fn file_errors() {
    let good = pcap(1, &[udp_frame(b"one"), udp_frame(b"two")]);
    assert_eq!(
        read_capture(b"hello world, not a capture", &Options::default()),
        Err(CaptureError::NotCapture)
    );
    assert_eq!(
        read_capture(&[], &Options::default()),
        Err(CaptureError::NotCapture)
    );
    assert!(!is_capture(b"GIF89a"));
    assert_eq!(
        read_capture(&good[..10], &Options::default()),
        Err(CaptureError::Truncated { offset: 10 })
    );
    // Cut inside the second record: the first message is still returned.
    let cut = &good[..good.len() - 3];
    let s = read_capture_detailed(cut, &Options::default()).unwrap();
    assert_eq!(s.messages.len(), 1);
    let second_record = good.len() - 16 - udp_frame(b"two").len();
    assert_eq!(s.cut_off_at, Some(second_record as u64));

    // pcapng: a block whose trailing length disagrees is malformed, not cut off.
    let mut ng = PcapNg::new(false);
    ng.interface(1, None);
    ng.packet(0, 0, &udp_frame(b"x"));
    let mut bad = ng.buf.clone();
    let n = bad.len();
    bad[n - 4] ^= 0x40;
    let err = read_capture(&bad, &Options::default()).unwrap_err();
    assert!(matches!(err, CaptureError::Malformed { .. }), "{err:?}");
    let cut = &ng.buf[..ng.buf.len() - 2];
    let s = read_capture_detailed(cut, &Options::default()).unwrap();
    assert!(s.cut_off_at.is_some());
    assert!(s.messages.is_empty());
}

#[test]
fn error_messages_are_one_clear_line() {
    assert_eq!(
        CaptureError::NotCapture.to_string(),
        "not a pcap or pcapng file"
    );
    assert_eq!(
        CaptureError::Truncated { offset: 42 }.to_string(),
        "truncated capture file at byte 42"
    );
    let all = [
        CaptureError::NotCapture,
        CaptureError::Truncated { offset: 1 },
        CaptureError::Malformed { offset: 7 },
        CaptureError::TooManyPackets,
    ];
    for e in all {
        let s = e.to_string();
        assert!(!s.is_empty() && !s.contains('\n'), "{s:?}");
        let _: &dyn std::error::Error = &e;
    }
}

/// A small deterministic generator, so that failures reproduce.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A file with a bit of everything, for the robustness tests.
fn rich_files() -> Vec<Vec<u8>> {
    let m = framed(&query(5));
    let tcp4 = |seq: u32, flags: u8, p: &[u8]| {
        ether(
            0x0800,
            &ipv4(CLIENT, SERVER, 6, &tcp(40000, 53, seq, flags, p)),
        )
    };
    let dgram = udp(40000, 53, &query(6));
    let frames = vec![
        udp_frame(&query(1)),
        tcp4(0, SYN, b""),
        tcp4(1, ACK, &m[..7]),
        tcp4(8, ACK, &m[7..]),
        ether(
            0x0800,
            &ipv4_frag(CLIENT, SERVER, 17, 3, 0, true, &dgram[..16]),
        ),
        ether(
            0x0800,
            &ipv4_frag(CLIENT, SERVER, 17, 3, 16, false, &dgram[16..]),
        ),
        ether(0x86dd, &ipv6([1; 16], [2; 16], 17, &udp(53, 1, b"v6"))),
    ];
    let mut ng = PcapNg::new(false);
    ng.interface(1, Some(6));
    ng.interface(101, None);
    for f in &frames {
        ng.packet(0, 12345, f);
    }
    ng.packet(1, 1, &ipv4(CLIENT, SERVER, 17, &udp(1, 53, b"raw")));
    vec![pcap(1, &frames), ng.buf]
}

#[test]
fn rich_files_decode() {
    for f in rich_files() {
        let got = read(&f);
        assert_eq!(
            got.len(),
            4 + usize::from(f.starts_with(&[0x0a, 0x0d])),
            "{got:?}"
        );
    }
}

#[test]
fn every_prefix_of_valid_files_is_handled() {
    for file in rich_files() {
        let full = read(&file);
        for n in 0..=file.len() {
            if let Ok(got) = read_capture(&file[..n], &Options::default()) {
                // A prefix never yields more complete messages than the whole file.
                let complete = got.iter().filter(|m| !m.truncated).count();
                assert!(complete <= full.len(), "prefix {n}");
            }
        }
    }
}

#[test]
fn random_bytes_and_mutations_never_panic() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let len = (rng.next() % 300) as usize;
        let mut data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Half of them get a valid magic, so the packet walkers are reached too.
        let magic: &[u8] = match rng.next() % 4 {
            0 => &[0xd4, 0xc3, 0xb2, 0xa1],
            1 => &[0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a],
            _ => &[],
        };
        data.splice(0..0, magic.iter().copied());
        let _ = read_capture(&data, &Options::default());
    }
    for file in rich_files() {
        for _ in 0..3000 {
            let mut m = file.clone();
            for _ in 0..=(rng.next() % 4) {
                let at = (rng.next() as usize) % m.len();
                m[at] = rng.next() as u8;
            }
            let _ = read_capture(&m, &Options::default());
        }
    }
}
