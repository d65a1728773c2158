use std::io::Write;

use super::*;
use crate::wire::{parse_message, MessageView};

fn asker(name: &str, edns: Option<bool>) -> Asker {
    let mut m = Message {
        header: Header::from_parts(0x1234, 0x0110, [0; 4]),
        questions: vec![Question {
            qname: Name::from_ascii(name).unwrap(),
            qtype: RType::A,
            qclass: Class::IN,
        }],
        ..Message::default()
    };
    if let Some(d) = edns {
        m.additional.push(crate::forward::reply::our_opt(d));
    }
    let q = m.to_vec();
    Asker::from_query(&MessageView::parse(&q).unwrap(), 1232)
}

fn ask(data: &LocalData, name: &str, qtype: RType, edns: Option<bool>) -> Option<Answered> {
    let wire = parse::domain(name).unwrap();
    data.answer(&wire, qtype, Class::IN, &asker(name, edns))
}

/// The answer's octets, leaked so that a parsed message can outlive the call.
fn bytes(a: &Option<Answered>) -> &'static [u8] {
    match a {
        Some(Answered::Local(b)) | Some(Answered::Blocked(b)) => {
            Box::leak(b.clone().into_boxed_slice())
        }
        None => panic!("no answer"),
    }
}

fn file(text: &str) -> tempfile_lite::File {
    tempfile_lite::File::new(text)
}

/// A file in the target directory, removed when dropped (no dependency for this).
mod tempfile_lite {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    pub struct File(pub std::path::PathBuf);
    impl File {
        pub fn new(text: &str) -> File {
            let n = N.fetch_add(1, Ordering::SeqCst);
            let p = std::env::temp_dir().join(format!("dnsfwd-local-{}-{n}", std::process::id()));
            let mut f = std::fs::File::create(&p).unwrap();
            super::Write::write_all(&mut f, text.as_bytes()).unwrap();
            File(p)
        }
    }
    impl Drop for File {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

fn load(hosts: &[&str], records: &[&str], block: &[&str], allow: &[&str], null: bool) -> LocalData {
    let h: Vec<_> = hosts.iter().map(|t| file(t)).collect();
    let b: Vec<_> = block.iter().map(|t| file(t)).collect();
    let a: Vec<_> = allow.iter().map(|t| file(t)).collect();
    let cfg = LocalConfig {
        hosts: h.iter().map(|f| f.0.clone()).collect(),
        records: records.iter().map(|s| s.to_string()).collect(),
        block: b.iter().map(|f| f.0.clone()).collect(),
        allow_names: a.iter().map(|f| f.0.clone()).collect(),
        block_answer: if null {
            BlockAnswer::Null
        } else {
            BlockAnswer::Nxdomain
        },
    };
    LocalData::load(&cfg).unwrap()
}

#[test]
fn hosts_names_answer_a_aaaa_ptr_and_nodata() {
    let d = load(
        &["192.168.1.5 nas.lan nas\n192.168.1.5 other.lan\nfd00::5 nas.lan\n"],
        &[],
        &[],
        &[],
        false,
    );
    let a = ask(&d, "NAS.lan", RType::A, None);
    let m = parse_message(bytes(&a)).unwrap();
    assert!(matches!(a, Some(Answered::Local(_))));
    assert!(m.header.aa && m.header.qr && m.header.rd && m.header.cd && m.header.ra);
    assert_eq!(m.header.id, 0x1234);
    assert_eq!(
        m.questions[0].qname.to_string(),
        "NAS.lan.",
        "the client's spelling"
    );
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].rdata, RData::A("192.168.1.5".parse().unwrap()));
    assert_eq!(m.answers[0].ttl, HOSTS_TTL);
    assert!(m.additional.is_empty(), "no OPT for a client without EDNS");
    let m = parse_message(bytes(&ask(&d, "nas.lan", RType::AAAA, Some(true)))).unwrap();
    assert_eq!(m.answers[0].rdata, RData::Aaaa("fd00::5".parse().unwrap()));
    assert!(m.edns().unwrap().dnssec_ok && m.edns().unwrap().options.is_empty());
    let m = parse_message(bytes(&ask(
        &d,
        "5.1.168.192.in-addr.arpa",
        RType::PTR,
        None,
    )))
    .unwrap();
    assert_eq!(m.answers.len(), 1, "the first line of an address names it");
    assert_eq!(
        m.answers[0].rdata,
        RData::Ptr(Name::from_ascii("nas.lan").unwrap())
    );
    let m = parse_message(bytes(&ask(&d, "nas.lan", RType::MX, None))).unwrap();
    assert_eq!(
        (m.rcode(), m.answers.len(), m.authority.len()),
        (Rcode::NOERROR, 0, 0),
        "NODATA"
    );
    assert_eq!(
        ask(&d, "x.nas.lan", RType::A, None),
        None,
        "names under it go upstream"
    );
    assert_eq!(ask(&d, "example.com", RType::A, None), None);
    let wire = parse::domain("nas.lan").unwrap();
    assert_eq!(
        d.answer(&wire, RType::A, Class::CH, &asker("nas.lan", None)),
        None
    );
}

#[test]
fn local_records_of_each_type() {
    let d = load(
        &[],
        &[
            "nas.lan. 300 IN A 192.168.1.5",
            "nas.lan. 300 IN AAAA fd00::5",
            "www.lan. 60 CNAME nas.lan.",
            "far.lan. CNAME elsewhere.example.",
            r#"nas.lan. TXT "v=spf1 -all" "two""#,
            "lan. MX 10 mail.lan.",
            "_sip._tcp.lan. SRV 1 2 5060 sip.lan.",
            "9.1.168.192.in-addr.arpa. PTR printer.lan.",
        ],
        &[],
        &[],
        false,
    );
    let get = |name, t| {
        parse_message(bytes(&ask(&d, name, t, None)))
            .unwrap()
            .answers
            .into_iter()
            .map(|r| r.rdata)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        get("nas.lan", RType::A),
        [RData::A("192.168.1.5".parse().unwrap())]
    );
    assert_eq!(
        get("nas.lan", RType::AAAA),
        [RData::Aaaa("fd00::5".parse().unwrap())]
    );
    assert_eq!(get("nas.lan", RType::TXT).len(), 1);
    let m = parse_message(bytes(&ask(&d, "www.lan", RType::A, None))).unwrap();
    assert_eq!(m.answers.len(), 2, "the CNAME, then its local target's A");
    assert_eq!(
        m.answers[0].rdata,
        RData::Cname(Name::from_ascii("nas.lan").unwrap())
    );
    assert_eq!(m.answers[1].name.to_string(), "nas.lan.");
    assert_eq!(
        get("far.lan", RType::A).len(),
        1,
        "a target elsewhere: the CNAME alone"
    );
    assert_eq!(get("www.lan", RType::CNAME).len(), 1);
    assert_eq!(
        get("lan", RType::MX),
        [RData::Mx {
            preference: 10,
            exchange: Name::from_ascii("mail.lan").unwrap()
        }]
    );
    assert_eq!(
        get("_sip._tcp.lan", RType::SRV),
        [RData::Srv {
            priority: 1,
            weight: 2,
            port: 5060,
            target: Name::from_ascii("sip.lan").unwrap()
        }]
    );
    assert_eq!(
        get("9.1.168.192.in-addr.arpa", RType::PTR),
        [RData::Ptr(Name::from_ascii("printer.lan").unwrap())]
    );
    assert_eq!(get("nas.lan", RType::ANY).len(), 3);
}

#[test]
fn blocks_subdomains_spares_exceptions_and_says_why() {
    let list = "# a list\nads.example\n0.0.0.0 tracker.example\n127.0.0.1 localhost\nnot a line\n";
    let d = load(
        &["192.168.1.7 ads.example"],
        &[],
        &[list],
        &["ok.ads.example\n"],
        false,
    );
    assert_eq!(d.counts(), (2, 2, 1));
    let a = ask(&d, "x.tracker.example", RType::A, Some(false));
    assert!(matches!(a, Some(Answered::Blocked(_))));
    let m = parse_message(bytes(&a)).unwrap();
    assert_eq!((m.rcode(), m.answers.len()), (Rcode::NXDOMAIN, 0));
    assert!(m.header.aa);
    let ede = &m.edns().unwrap().options[0];
    assert_eq!((ede.code, ede.data), (EdnsOption::EDE, &[0u8, 15][..]));
    let m = parse_message(bytes(&ask(&d, "tracker.example", RType::A, None))).unwrap();
    assert_eq!(
        (m.rcode(), m.additional.len()),
        (Rcode::NXDOMAIN, 0),
        "no OPT without EDNS"
    );
    assert!(matches!(
        ask(&d, "a.ads.example", RType::A, None),
        Some(Answered::Blocked(_))
    ));
    assert!(
        matches!(
            ask(&d, "ads.example", RType::A, None),
            Some(Answered::Local(_))
        ),
        "local names first"
    );
    assert_eq!(
        ask(&d, "ok.ads.example", RType::A, None),
        None,
        "an exception"
    );
    assert_eq!(
        ask(&d, "deep.ok.ads.example", RType::A, None),
        None,
        "under an exception"
    );
    assert_eq!(
        ask(&d, "localhost", RType::A, None),
        None,
        "hosts boilerplate is not blocked"
    );
    assert_eq!(ask(&d, "example", RType::A, None), None);
}

#[test]
fn null_answers_for_blocked_names() {
    let d = load(&[], &[], &["ads.example"], &[], true);
    let m = parse_message(bytes(&ask(&d, "ads.example", RType::A, Some(false)))).unwrap();
    assert_eq!(m.rcode(), Rcode::NOERROR);
    assert_eq!(
        m.answers[0].rdata,
        RData::A(std::net::Ipv4Addr::UNSPECIFIED)
    );
    assert_eq!(m.edns().unwrap().options[0].data, &[0, 15]);
    let m = parse_message(bytes(&ask(&d, "x.ads.example", RType::AAAA, None))).unwrap();
    assert_eq!(
        m.answers[0].rdata,
        RData::Aaaa(std::net::Ipv6Addr::UNSPECIFIED)
    );
    let m = parse_message(bytes(&ask(&d, "ads.example", RType::TXT, None))).unwrap();
    assert_eq!((m.rcode(), m.answers.len()), (Rcode::NOERROR, 0));
}

#[test]
fn errors_name_the_file_and_line() {
    let bad = file("192.168.1.5 nas.lan\nnas.lan 192.168.1.5\n");
    let cfg = LocalConfig {
        hosts: vec![bad.0.clone()],
        ..LocalConfig::default()
    };
    let e = LocalData::load(&cfg).unwrap_err().to_string();
    assert!(
        e.contains("--hosts") && e.contains(&format!("{}:2:", bad.0.display())),
        "{e}"
    );
    let cfg = LocalConfig {
        hosts: vec!["/nonexistent/hosts".into()],
        ..LocalConfig::default()
    };
    let e = LocalData::load(&cfg).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/hosts"), "{e}");
    let cfg = LocalConfig {
        records: vec!["a.lan A 10.0.0.1".into(), "a.lan CNAME b.lan".into()],
        ..LocalConfig::default()
    };
    let e = LocalData::load(&cfg).unwrap_err().to_string();
    assert!(
        e.contains("--local-record") && e.contains("#2") && e.contains("CNAME and other data"),
        "{e}"
    );
    let cfg = LocalConfig {
        block: vec!["/nonexistent/list".into()],
        ..LocalConfig::default()
    };
    assert!(LocalData::load(&cfg)
        .unwrap_err()
        .to_string()
        .contains("--block"));
    assert!(LocalData::load(&LocalConfig::default()).unwrap().is_empty());
}
