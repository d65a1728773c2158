//! `dnsfwd decode` as a tool, through the binary: tunnels in the output, `--any-port`,
//! what it says when a capture holds no DNS, text that is not a capture, link types it
//! does not decode, and a reader that stops early (`| head`).
// Test code: a failed unwrap or panic is how a helper reports a broken fixture.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_dnsfwd");

fn testdata(name: &str) -> String {
    format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn decode(args: &[&str]) -> Output {
    Command::new(BIN).arg("decode").args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A scratch directory for one test, removed by the caller.
fn scratch(name: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("dnsfwd-capture-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn tunnelled_messages_name_their_tunnels() {
    let out = decode(&["--json", &testdata("linktypes/tunnel-nested.pcap")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0]["tunnel"],
        serde_json::json!(["ipip", "gre", "vxlan"])
    );
    assert_eq!(lines[0]["parse_ok"], true);
    let out = decode(&[&testdata("linktypes/tunnel-vxlan.pcap")]);
    assert!(
        text(&out.stdout).contains(", tunnel vxlan, "),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn any_port_decodes_a_forwarder_on_other_ports() {
    let file = testdata("linktypes/anyport.pcap");
    let out = decode(&["--any-port", "--json", &file]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ports: Vec<(String, u64, u64)> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| {
            assert_eq!(v["parse_ok"], true);
            (
                v["transport"].as_str().unwrap().to_string(),
                v["sport"].as_u64().unwrap(),
                v["dport"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        vec![
            ("udp".into(), 40000, 5300),
            ("udp".into(), 5300, 40000),
            ("tcp".into(), 40002, 1053),
            ("tcp".into(), 1053, 40002),
        ]
    );
    // The port named on the command line works too, without the heuristic.
    let out = decode(&["--port", "5300", &file]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout).matches(";; ->>HEADER<<-").count(), 2);
}

#[test]
fn a_forwarder_on_other_ports_decodes_without_flags() {
    let out = decode(&[&testdata("linktypes/anyport.pcap")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).matches(";; ->>HEADER<<-").count(), 4);
    let err = text(&out.stderr);
    assert!(
        err.contains("no DNS on port 53; 4 message(s) found by content on port(s) 1053, 5300"),
        "{err}"
    );
}

#[test]
fn nothing_found_fails_and_says_what_was_seen() {
    let out = decode(&["--port", "53", &testdata("linktypes/anyport.pcap")]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = text(&out.stderr);
    for want in [
        "no DNS messages found",
        "7 packet(s) read",
        "link type 1 (ETHERNET)",
        "7 with IPv4/IPv6",
        "tcp 1053 (4 packets)",
        "udp 5300 (2 packets)",
        "udp 8080 (1 packet)",
        "looked for port 53",
        "try --port 1053 or --any-port",
    ] {
        assert!(err.contains(want), "{want:?} missing from {err}");
    }
    assert_eq!(err.lines().count(), 1, "{err}");
    // A wrong --port on a real capture.
    let out = decode(&["--port", "5353", &testdata("auth-udp.pcap")]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("udp 53 (") && err.contains("try --port 53"),
        "{err}"
    );
}

#[test]
fn no_dns_anywhere_fails_after_looking_by_content() {
    let dir = scratch("nodns");
    let file = dir.join("http.pcap");
    let payload = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n";
    let mut udp = vec![0x9c, 0x41, 0x1f, 0x90, 0, 8 + payload.len() as u8, 0, 0];
    udp.extend_from_slice(payload);
    let mut ip = vec![0x45, 0, 0, 20 + udp.len() as u8, 0, 1, 0, 0, 64, 17, 0, 0];
    ip.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 80]);
    ip.extend_from_slice(&udp);
    let mut frame = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    frame.extend_from_slice(&ip);
    std::fs::write(&file, pcap(1, &[&frame])).unwrap();
    let out = decode(&[file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "udp 8080 (1 packet); looked for port 53 and for DNS-like payloads on every port; \
             try --port 8080\n"
        ),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn text_is_not_a_capture_or_a_message() {
    let dir = scratch("text");
    let notes = dir.join("notes.txt");
    std::fs::write(&notes, "these are notes, not packets\n".repeat(200)).unwrap();
    let out = decode(&[notes.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains("not a capture or a DNS message"), "{err}");
    assert!(err.len() < 200, "{err}");
    // Hex text is still one message, and so are raw octets.
    let hex = dir.join("msg.hex");
    std::fs::write(&hex, "1234 0100 0001 0000 0000 0000 0000 0100 01\n").unwrap();
    assert!(decode(&[hex.to_str().unwrap()]).status.success());
    let raw = dir.join("msg.bin");
    std::fs::write(
        &raw,
        [0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1],
    )
    .unwrap();
    let out = decode(&[raw.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).contains("id: 4660"),
        "{}",
        text(&out.stdout)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A little-endian pcap of `link_type` with the given frames.
fn pcap(link_type: u32, frames: &[&[u8]]) -> Vec<u8> {
    let mut f = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&link_type.to_le_bytes());
    for frame in frames {
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        f.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        f.extend_from_slice(frame);
    }
    f
}

#[test]
fn unknown_link_type_is_named_once_per_file() {
    let dir = scratch("linktype");
    let file = dir.join("usb.pcap");
    std::fs::write(&file, pcap(220, &[b"one", b"two", b"three"])).unwrap();
    let out = decode(&[file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert_eq!(err.matches("warning").count(), 1, "{err}");
    assert!(
        err.contains("3 packet(s) skipped: link type 220 (USB_LINUX_MMAPPED) not decoded"),
        "{err}"
    );
    assert!(err.contains("no DNS messages found"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_reader_that_stops_early_ends_the_output_quietly() {
    // More output than a pipe buffers, so that the writes after `head` left fail.
    for args in [vec!["--json"], vec![]] {
        let mut child = Command::new(BIN)
            .arg("decode")
            .args(&args)
            .arg(testdata("recursive.pcap"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(!first.is_empty());
        // The reader is dropped here: the pipe is closed.
        let out = child.wait_with_output().unwrap();
        let err = text(&out.stderr);
        assert!(err.is_empty(), "{args:?}: {err}");
        assert!(out.status.success(), "{args:?}: {:?}", out.status);
    }
}
