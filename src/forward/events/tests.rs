use super::*;

#[test]
fn rtt_buckets_hold_their_upper_bounds() {
    let mut u = UpstreamCounters::default();
    for (us, bucket) in [
        (0, 0),
        (250, 0),
        (251, 1),
        (500, 1),
        (501, 2),
        (1000, 2),
        (8_192_000, 15),
        (8_192_001, 16),
        (u64::MAX / 2, 16),
    ] {
        let before = u.rtt[bucket];
        u.observe(us);
        assert_eq!(u.rtt[bucket], before + 1, "{us} µs");
    }
    assert_eq!(u.rtt_count, 9);
    assert_eq!(rtt_bucket_le(0), 0.00025);
    assert_eq!(rtt_bucket_le(15), 8.192);
}

#[rustfmt::skip]
const ANSWER: &[u8] = &[
    0x12, 0x34, 0x81, 0x83, 0, 1, 0, 0, 0, 0, 0, 0, // header: NXDOMAIN, QDCOUNT 1
    3, b'w', b'.', b'w', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0, // w\.w.example.
    0, 28, 0, 1, // AAAA IN
];

#[test]
fn record_reads_name_type_and_rcode_from_the_answer() {
    let r = QueryRecord {
        client: Client::Prefetch,
        answer: ANSWER,
        source: AnswerSource::Upstream,
        upstream: None,
        elapsed: Duration::ZERO,
    };
    assert_eq!(r.rcode(), Rcode::NXDOMAIN);
    assert_eq!(r.qname().to_string(), "w\\.w.example.");
    assert_eq!(r.qtype(), Some(RType::AAAA));
    let short = QueryRecord {
        answer: &ANSWER[..20],
        ..r
    };
    assert_eq!(short.qname().to_string(), "?");
    assert_eq!(short.qtype(), None);
}

type Seen = std::sync::Arc<std::sync::Mutex<Vec<(AnswerSource, Option<SocketAddr>, u64, Rcode)>>>;

struct Sink(Seen);

impl QueryLog for Sink {
    fn answered(&mut self, r: &QueryRecord<'_>) {
        let ms = r.elapsed.as_millis() as u64;
        self.0
            .lock()
            .unwrap()
            .push((r.source, r.upstream, ms, r.rcode()));
    }
}

#[test]
fn the_core_reports_each_answer_with_its_provenance() {
    use super::super::tests::{answer_to, client, drain, one, query_msg, udp_source};
    use super::super::{ForwarderConfig, SeededRandom};
    let up: SocketAddr = "127.0.0.1:5300".parse().unwrap();
    let mut f = super::super::Forwarder::new(
        ForwarderConfig::new(vec![up]),
        Box::new(SeededRandom::new(1)),
    );
    let seen = Seen::default();
    f.set_query_log(Some(Box::new(Sink(seen.clone()))));
    let t0 = Instant::now();
    assert!(f.handle_query(t0, client(1), &query_msg(7, &["a.example"], None)));
    let q = one(&mut f);
    let t1 = t0 + Duration::from_millis(5);
    f.handle_response(t1, udp_source(&q), &answer_to(&q.bytes, 1, Rcode::NOERROR));
    assert_eq!(drain(&mut f).len(), 1);
    assert!(f.handle_query(t1, client(2), &query_msg(8, &["a.example"], None)));
    assert_eq!(drain(&mut f).len(), 1, "from the cache");
    let no_question = query_msg(9, &[], None);
    assert!(f.handle_query(t1, client(3), &no_question));
    assert_eq!(drain(&mut f).len(), 1, "FORMERR");
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (AnswerSource::Upstream, Some(up), 5, Rcode::NOERROR),
            (AnswerSource::Cache, None, 0, Rcode::NOERROR),
            (AnswerSource::Error, None, 0, Rcode::FORMERR),
        ]
    );
    // Expired, and the upstream silent: the stale answer after 1.8 s (RFC 8767).
    let t2 = t1 + Duration::from_secs(301);
    assert!(f.handle_query(t2, client(4), &query_msg(10, &["a.example"], None)));
    let mut answered = false;
    for _ in 0..10 {
        answered |= drain(&mut f)
            .iter()
            .any(|t| matches!(t.to, super::super::Dest::Client(_)));
        match f.poll_timeout() {
            Some(at) if !answered => f.handle_timeout(at),
            _ => break,
        }
    }
    assert!(answered);
    assert_eq!(
        seen.lock().unwrap().last(),
        Some(&(AnswerSource::Stale, Some(up), 1800, Rcode::NOERROR))
    );
    seen.lock().unwrap().pop();
    let e = f.events();
    assert_eq!(e.answers[0][AnswerSource::Stale as usize], 1);
    assert_eq!(e.upstreams[0].failures[FailKind::Timeout as usize], 1);
    assert_eq!(e.queries_udp, 4);
    assert_eq!(e.answers[0][AnswerSource::Upstream as usize], 1);
    assert_eq!(e.answers[0][AnswerSource::Cache as usize], 1);
    assert_eq!(e.answers[1][AnswerSource::Error as usize], 1);
    assert_eq!(e.upstreams[0].rtt_count, 1);
    assert_eq!(e.upstreams[0].rtt[5], 1, "5 ms is in (4, 8] ms");
}

#[test]
fn answers_are_counted_by_rcode_and_source() {
    let mut e = Events::new(&[], Duration::from_secs(4));
    e.answered(Client::Prefetch, ANSWER);
    assert_eq!(e.answers[3][AnswerSource::Error as usize], 1);
    let now = Instant::now();
    e.answering(now, now, None, AnswerSource::Cache);
    e.answered(Client::Prefetch, ANSWER);
    e.source(AnswerSource::Stale);
    e.answered(Client::Prefetch, ANSWER);
    assert_eq!(e.answers[3][AnswerSource::Cache as usize], 1);
    assert_eq!(e.answers[3][AnswerSource::Stale as usize], 1);
}
