//! Reassembly through the flow table: ordering, holes, retransmissions, ends, bounds.
use super::*;
use crate::capture::testutil::{framed, query, tcp, ACK, FIN, PSH, SYN};
use crate::capture::Transport;

fn client() -> SocketAddr {
    "10.0.0.1:40000".parse().unwrap()
}
fn server() -> SocketAddr {
    "10.0.0.2:53".parse().unwrap()
}

/// Feeds segments (seq, flags, payload) from client to server, frames numbered from 1.
fn run(segs: &[(u32, u8, Vec<u8>)]) -> Vec<CapturedMessage> {
    let mut t = TcpTable::default();
    let mut out = Vec::new();
    for (i, (seq, flags, payload)) in segs.iter().enumerate() {
        let raw = tcp(40000, 53, *seq, *flags, payload);
        let seg = parse(&raw).unwrap();
        let frame = u32::try_from(i + 1).unwrap();
        t.segment(client(), server(), &seg, frame, f64::from(frame), &mut out);
    }
    t.finish(&mut out);
    out
}

fn summary(out: &[CapturedMessage]) -> Vec<(u32, Vec<u8>, bool)> {
    out.iter()
        .map(|m| (m.frame, m.bytes.clone(), m.truncated))
        .collect()
}

#[test]
fn parse_header() {
    let raw = tcp(1, 2, 0xdead_beef, SYN | ACK, b"xy");
    let s = parse(&raw).unwrap();
    assert_eq!(
        (s.sport, s.dport, s.seq, s.flags),
        (1, 2, 0xdead_beef, SYN | ACK)
    );
    assert_eq!(s.payload, b"xy");
    let mut bad = raw.clone();
    bad[12] = 0x40; // data offset 4 words
    assert_eq!(parse(&bad), None);
    bad[12] = 0xf0; // 60 bytes: more than there is
    assert_eq!(parse(&bad), None);
    assert_eq!(parse(&raw[..19]), None);
}

#[test]
fn one_message_over_several_segments() {
    let m = framed(&query(1));
    let out = run(&[
        (100, SYN, vec![]),
        (101, ACK, m[..1].to_vec()), // half the length prefix
        (102, ACK, m[1..10].to_vec()),
        (111, ACK | PSH, m[10..].to_vec()),
    ]);
    assert_eq!(summary(&out), vec![(4, query(1), false)]);
    assert_eq!((out[0].src, out[0].dst), (client(), server()));
    assert_eq!(out[0].transport, Transport::Tcp);
    assert_eq!(out[0].ts, 4.0);
}

#[test]
fn several_messages_in_one_segment() {
    let mut data = framed(&query(1));
    data.extend(framed(&query(2)));
    data.extend(framed(b""));
    data.extend(framed(&query(3))[..5].to_vec());
    let rest = framed(&query(3))[5..].to_vec();
    let n = data.len() as u32;
    let out = run(&[(0, SYN, vec![]), (1, ACK, data), (1 + n, ACK, rest)]);
    assert_eq!(
        summary(&out),
        vec![
            (2, query(1), false),
            (2, query(2), false),
            (2, vec![], false),
            (3, query(3), false),
        ]
    );
}

#[test]
fn out_of_order_segments_wait_for_the_hole() {
    let mut data = framed(&query(1));
    data.extend(framed(&query(2)));
    let (a, rest) = data.split_at(10);
    let (b, c) = rest.split_at(25);
    let out = run(&[
        (1000, SYN, vec![]),
        (1036, ACK, c.to_vec()), // frame 2: last part first
        (1011, ACK, b.to_vec()), // frame 3: middle
        (1001, ACK, a.to_vec()), // frame 4: fills the hole
    ]);
    // query(1) ends inside b (frame 3); query(2) ends inside c (frame 2). Both complete
    // only when frame 4 arrives, but carry the frame of their last byte.
    let q1_last = framed(&query(1)).len() - 1;
    assert!((10..35).contains(&q1_last));
    assert_eq!(
        summary(&out),
        vec![(3, query(1), false), (2, query(2), false)]
    );
}

#[test]
fn retransmissions_and_overlaps_are_dropped_first_copy_wins() {
    let m = framed(&query(7));
    let mut forged = m.clone();
    forged[5] ^= 0xff;
    let out = run(&[
        (0, SYN, vec![]),
        (1, ACK, m[..8].to_vec()),
        (1, ACK, m[..8].to_vec()),        // exact retransmission
        (5, ACK, forged[4..12].to_vec()), // overlap with different old bytes
        (0, SYN, vec![]),                 // retransmitted SYN
    ]);
    // Frame 4 delivered bytes 8..12 only; the message still needs the rest.
    assert_eq!(out.len(), 1);
    assert!(out[0].truncated);
    assert_eq!(out[0].bytes, m[2..12].to_vec());
    assert_eq!(out[0].frame, 4);

    let out = run(&[
        (0, SYN, vec![]),
        (1, ACK, m.clone()),
        (1, ACK, m.clone()),
        (3, ACK, m[2..].to_vec()),
    ]);
    assert_eq!(summary(&out), vec![(2, query(7), false)]);
}

#[test]
fn stream_ending_mid_message_is_truncated() {
    let m = framed(&query(9));
    let out = run(&[(0, SYN, vec![]), (1, ACK, m[..20].to_vec())]);
    assert_eq!(summary(&out), vec![(2, m[2..20].to_vec(), true)]);
    // With a FIN the direction closes at once; later retransmissions change nothing.
    let out = run(&[
        (0, SYN, vec![]),
        (1, ACK | FIN, m[..20].to_vec()),
        (1, ACK, m.clone()),
    ]);
    assert_eq!(summary(&out), vec![(2, m[2..20].to_vec(), true)]);
    // A FIN on a stale retransmission does not end the stream early.
    let out = run(&[
        (0, SYN, vec![]),
        (1, ACK, m[..20].to_vec()),
        (1, ACK | FIN, m[..4].to_vec()),
        (21, ACK | FIN, m[20..].to_vec()),
    ]);
    assert_eq!(summary(&out), vec![(4, query(9), false)]);
    // One byte of length prefix is not a message.
    assert!(run(&[(0, SYN, vec![]), (1, ACK, vec![0])]).is_empty());
}

#[test]
fn hole_that_never_fills_stops_the_direction() {
    let m1 = framed(&query(1));
    let m2 = framed(&query(2));
    let n1 = m1.len() as u32;
    let out = run(&[
        (0, SYN, vec![]),
        (1, ACK, m1[..10].to_vec()),
        // bytes 10..n1 of m1 never arrive
        (1 + n1, ACK, m2.clone()),
    ]);
    assert_eq!(summary(&out), vec![(2, m1[2..10].to_vec(), true)]);
}

#[test]
fn connection_without_handshake_starts_at_first_segment() {
    let m = framed(&query(3));
    let out = run(&[
        (5000, ACK, m.clone()),
        (5000 + m.len() as u32, ACK | FIN, vec![]),
    ]);
    assert_eq!(summary(&out), vec![(1, query(3), false)]);
}

#[test]
fn late_syn_of_a_started_stream_is_adopted() {
    let m = framed(&query(3));
    let out = run(&[
        (5001, ACK, m[..6].to_vec()),
        (5000, SYN, vec![]),
        (5007, ACK, m[6..].to_vec()),
    ]);
    assert_eq!(summary(&out), vec![(3, query(3), false)]);
}

#[test]
fn new_syn_on_same_ports_ends_the_old_connection() {
    let m = framed(&query(4));
    let out = run(&[
        (0, SYN, vec![]),
        (1, ACK, m[..9].to_vec()),
        (7777, SYN, vec![]),
        (7778, ACK, m.clone()),
    ]);
    assert_eq!(
        summary(&out),
        vec![(2, m[2..9].to_vec(), true), (4, query(4), false)]
    );
}

#[test]
fn sequence_numbers_wrap() {
    let m = framed(&query(5));
    let isn = u32::MAX - 3;
    let out = run(&[
        (isn, SYN, vec![]),
        (isn.wrapping_add(1), ACK, m[..6].to_vec()),
        (isn.wrapping_add(7), ACK, m[6..].to_vec()),
    ]);
    assert_eq!(summary(&out), vec![(3, query(5), false)]);
}

#[test]
fn out_of_order_stash_is_bounded() {
    let mut t = TcpTable::default();
    let mut out = Vec::new();
    let syn = tcp(40000, 53, 0, SYN, b"");
    t.segment(client(), server(), &parse(&syn).unwrap(), 1, 0.0, &mut out);
    let chunk = vec![0u8; 1000];
    // Leave byte 1 missing, then offer far more than the stash may hold.
    for i in 0..3000u32 {
        let raw = tcp(40000, 53, 2 + i * 1000, ACK, &chunk);
        t.segment(
            client(),
            server(),
            &parse(&raw).unwrap(),
            2 + i,
            0.0,
            &mut out,
        );
    }
    let d = &t.flows[&(client(), server())];
    assert!(d.stash_bytes <= MAX_OOO_BYTES);
    assert!(d.stash.len() <= MAX_OOO_SEGMENTS);
    assert_eq!(t.held, d.held());
    // Too far ahead of the stream: not kept at all.
    let raw = tcp(40000, 53, 5_000_000, ACK, &chunk);
    let before = t.flows[&(client(), server())].stash.len();
    t.segment(
        client(),
        server(),
        &parse(&raw).unwrap(),
        9999,
        0.0,
        &mut out,
    );
    assert_eq!(t.flows[&(client(), server())].stash.len(), before);
    assert!(out.is_empty());
}

#[test]
fn flow_table_is_bounded_and_evicts_least_recent() {
    let mut t = TcpTable::default();
    let mut out = Vec::new();
    let m = framed(&query(1));
    for i in 0..(MAX_FLOWS as u32 + 5) {
        let src = SocketAddr::new("10.1.0.1".parse().unwrap(), (i % 60000) as u16);
        let src = SocketAddr::new(
            std::net::Ipv4Addr::from(0x0a01_0000 + i / 60000).into(),
            src.port(),
        );
        let raw = tcp(src.port(), 53, 1, ACK, &m[..5]);
        t.segment(src, server(), &parse(&raw).unwrap(), i + 1, 0.0, &mut out);
    }
    assert_eq!(t.flows.len(), MAX_FLOWS);
    assert_eq!(t.lru.len(), MAX_FLOWS);
    // The five oldest were ended, each with its started message.
    assert_eq!(out.len(), 5);
    assert_eq!(
        out.iter().map(|m| m.frame).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert!(out.iter().all(|m| m.truncated));
}

#[test]
fn total_buffered_bytes_are_bounded() {
    let mut t = TcpTable::default();
    let mut out = Vec::new();
    let chunk = vec![0xffu8; 60_000];
    // Many connections, each with a hole at the start and a stash behind it.
    for i in 0..200u32 {
        let src = SocketAddr::new("10.9.0.1".parse().unwrap(), 1000 + i as u16);
        let syn = tcp(src.port(), 53, 0, SYN, b"");
        t.segment(src, server(), &parse(&syn).unwrap(), 1, 0.0, &mut out);
        for k in 0..16u32 {
            let raw = tcp(src.port(), 53, 2 + k * 60_000, ACK, &chunk);
            t.segment(src, server(), &parse(&raw).unwrap(), 2, 0.0, &mut out);
        }
    }
    assert!(t.held <= MAX_TOTAL_HELD);
    let real: usize = t.flows.values().map(Direction::held).sum();
    assert_eq!(real, t.held);
}
