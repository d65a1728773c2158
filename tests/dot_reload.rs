//! DNS over TLS and SIGHUP, on the real binary:
//! - the `--listen-tls` certificate is read again: new clients get the new one, open
//!   connections keep working, and a certificate that does not load (or does not match
//!   its key) leaves the last good one in place, with a log line saying why;
//! - a new `#NAME` (or CA) for a `tls://` upstream applies to every query from the
//!   reload on: the connection made under the old settings finishes its query in
//!   flight, then closes (close_notify), and nothing more goes over it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::daemon::Daemon;
use common::dot::{
    cert_der, client_config, make_pki, make_pki_as, served_cert, tls_ask, tls_connect, DotOpts,
    DotServer, TempDir,
};
use common::{query, udp_ask, wait_until, MockUpstream};
use dnsfwd::wire::{parse_message, RType, Rcode};
use rustls::HandshakeKind;

const WAIT: Duration = Duration::from_secs(5);

fn copy(dir: &TempDir, from: &str, to: &str) {
    std::fs::copy(dir.path(from), dir.path(to)).unwrap();
}

#[test]
fn sighup_gives_new_tls_clients_the_new_certificate() {
    let dir = TempDir::new("hup-cert");
    make_pki_as(&dir, "one-", "dns.test, first");
    make_pki_as(&dir, "two-", "dns.test, second");
    // A client trusting both CAs, to see which certificate it is shown.
    let both = [
        std::fs::read_to_string(dir.path("one-ca.pem")).unwrap(),
        std::fs::read_to_string(dir.path("two-ca.pem")).unwrap(),
    ]
    .concat();
    std::fs::write(dir.path("both-ca.pem"), both).unwrap();
    let client = client_config(&dir.path("both-ca.pem"));
    let (one, two) = (
        cert_der(&dir.path("one-cert.pem")),
        cert_der(&dir.path("two-cert.pem")),
    );
    copy(&dir, "one-cert.pem", "cert.pem");
    copy(&dir, "one-key.pem", "key.pem");
    let mock = MockUpstream::echo();
    let tls_addr = SocketAddr::from(([127, 0, 0, 1], common::free_port()));
    let mut d = Daemon::start(&[
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &mock.addr.to_string(),
        "--listen-tls",
        &tls_addr.to_string(),
        "--tls-cert",
        dir.path("cert.pem").to_str().unwrap(),
        "--tls-key",
        dir.path("key.pem").to_str().unwrap(),
    ]);
    let ask = |c: &mut common::dot::TlsClient, id: u16| {
        let r = tls_ask(c, &query(id, &format!("c{id}.example"), RType::A, None)).unwrap();
        let m = parse_message(&r).unwrap();
        assert_eq!((m.header.id, m.answers.len()), (id, 1));
    };
    let mut old = tls_connect(&client, tls_addr);
    assert_eq!(served_cert(&old), one);
    ask(&mut old, 1);
    assert_eq!(old.conn.handshake_kind(), Some(HandshakeKind::Full));

    // SIGHUP with the same files: the sessions are kept, a client resumes across it.
    d.hup();
    d.wait_line("reloaded");
    let mut again = tls_connect(&client, tls_addr);
    assert_eq!(again.conn.handshake_kind(), Some(HandshakeKind::Resumed));
    ask(&mut again, 8);

    // The files replaced, then SIGHUP: new clients get the new certificate; the open
    // connection goes on as it was.
    copy(&dir, "two-cert.pem", "cert.pem");
    copy(&dir, "two-key.pem", "key.pem");
    d.hup();
    d.wait_line("reloaded");
    let mut new = tls_connect(&client, tls_addr);
    assert_eq!(served_cert(&new), two, "the new certificate after SIGHUP");
    assert_eq!(new.conn.handshake_kind(), Some(HandshakeKind::Full));
    ask(&mut new, 2);
    ask(&mut old, 3);

    // A half-done rotation (the certificate replaced, not yet its key): the reload
    // fails, says why, and the last good certificate stays.
    copy(&dir, "one-cert.pem", "cert.pem");
    d.hup();
    let line = d.wait_line("reload failed");
    assert!(line.contains("--tls-cert"), "{line}");
    assert!(
        line.contains(dir.path("cert.pem").to_str().unwrap()),
        "{line}"
    );
    let mut after = tls_connect(&client, tls_addr);
    assert_eq!(served_cert(&after), two, "the last good certificate");
    ask(&mut after, 4);

    // Not a certificate at all: the same.
    std::fs::write(dir.path("cert.pem"), "not a certificate\n").unwrap();
    d.hup();
    let line = d.wait_line("reload failed");
    assert!(line.contains("--tls-cert"), "{line}");
    let mut after = tls_connect(&client, tls_addr);
    assert_eq!(served_cert(&after), two);
    ask(&mut after, 5);
    ask(&mut old, 6);
    ask(&mut new, 7);
}

#[test]
fn sighup_with_a_new_upstream_name_applies_to_every_later_query() {
    let dir = TempDir::new("hup-name");
    make_pki(&dir);
    let server = DotServer::start(&dir, DotOpts::default());
    let config = dir.path("dnsfwd.toml");
    let write = |name: &str| {
        let text = format!(
            "listen = [\"127.0.0.1:0\"]\nupstream = [\"tls://{}#{name}\"]\n\
             tls-ca = \"{}\"\ntimeout = 1000\ndeadline = 2000\ncache-size = 0\n",
            server.addr,
            dir.path("ca.pem").display()
        );
        std::fs::write(&config, text).unwrap();
    };
    write("dns.test");
    let mut d = Daemon::start(&["--config", config.to_str().unwrap()]);
    let addr = d.addr;
    let ask = move |id: u16, name: &str| {
        let r = udp_ask(addr, &query(id, name, RType::A, None)).expect("an answer");
        let m = parse_message(&r).unwrap();
        (m.header.rcode, m.answers.len())
    };
    assert_eq!(ask(1, "first.example"), (Rcode::NOERROR, 1));
    assert_eq!(server.accepts.load(Ordering::SeqCst), 1);

    // A query in flight on that connection (the server answers it after a second)...
    let slow = std::thread::spawn(move || ask(2, "slow.example"));
    assert!(wait_until(WAIT, || server.asked("slow.example") == 1));
    // ...when the name changes to one the certificate does not carry.
    write("wrong.test");
    d.hup();
    d.wait_line("reloaded");
    // The query in flight is answered on the old connection, which then closes
    // cleanly: nothing more goes over it.
    assert_eq!(
        slow.join().unwrap(),
        (Rcode::NOERROR, 1),
        "in flight: answered"
    );
    // From now on the new name is checked: the handshake fails, SERVFAIL, nothing
    // relayed.
    assert_eq!(ask(3, "after.example"), (Rcode::SERVFAIL, 0));
    assert_eq!(server.asked("after.example"), 0, "nothing sent to it");
    assert!(
        wait_until(WAIT, || server.client_close_notify.load(Ordering::SeqCst)
            == 1),
        "the old connection closed with close_notify"
    );

    // The right name again: answers again (no back-off left from the wrong one).
    write("dns.test");
    d.hup();
    d.wait_line("reloaded");
    assert_eq!(ask(4, "again.example"), (Rcode::NOERROR, 1));
    assert_eq!(server.asked("again.example"), 1);

    // Now the CA file changes (same path, another CA): the same again.
    let other = TempDir::new("hup-other-ca");
    make_pki(&other);
    std::fs::copy(other.path("ca.pem"), dir.path("ca.pem")).unwrap();
    d.hup();
    d.wait_line("reloaded");
    assert_eq!(ask(5, "new-ca.example"), (Rcode::SERVFAIL, 0));
    assert_eq!(server.asked("new-ca.example"), 0, "nothing sent to it");
    assert!(
        wait_until(WAIT, || server.client_close_notify.load(Ordering::SeqCst)
            == 2),
        "the connection made under the old CA closed with close_notify"
    );
}

/// The value of `key=` in a stats line.
fn stat(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

#[test]
fn a_reload_that_keeps_the_trust_keeps_the_tls_sessions() {
    let dir = TempDir::new("hup-sessions");
    make_pki(&dir);
    // Each connection carries one answer: every query costs a handshake.
    let opts = DotOpts {
        close_after: Some(1),
        ..DotOpts::default()
    };
    let server = DotServer::start(&dir, opts);
    let config = dir.path("dnsfwd.toml");
    let text = format!(
        "listen = [\"127.0.0.1:0\"]\nupstream = [\"tls://{}#dns.test\"]\n\
         tls-ca = \"{}\"\ncache-size = 0\n",
        server.addr,
        dir.path("ca.pem").display()
    );
    std::fs::write(&config, &text).unwrap();
    let mut d = Daemon::start(&["--config", config.to_str().unwrap()]);
    let addr = d.addr;
    let ask = |id: u16| {
        let r = udp_ask(addr, &query(id, &format!("s{id}.example"), RType::A, None)).unwrap();
        assert_eq!(parse_message(&r).unwrap().answers.len(), 1);
    };
    ask(1);
    ask(2);
    // A reload (the file rewritten as it was): the roots are the same, so the session
    // cache is kept and the next connection resumes.
    std::fs::write(&config, &text).unwrap();
    d.hup();
    d.wait_line("reloaded");
    ask(3);
    assert!(wait_until(WAIT, || server.accepts.load(Ordering::SeqCst) == 3));
    let ok = Command::new("kill")
        .args(["-USR1", &d.child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let line = d.wait_line("stats: ");
    assert_eq!(stat(&line, "tls_upstream_handshakes"), 3, "{line}");
    assert_eq!(stat(&line, "tls_upstream_resumed"), 2, "{line}");
}
