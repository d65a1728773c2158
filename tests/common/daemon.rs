//! A `dnsfwd` binary run as a daemon by the tests that need signals or its log:
//! started with arguments, its stderr lines on a channel, killed on drop.
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use dnsfwd::wire::RType;

use super::{query, udp_ask};

const BIN: &str = env!("CARGO_BIN_EXE_dnsfwd");
/// Every wait for the daemon is bounded by this.
const WAIT: Duration = Duration::from_secs(5);

/// A running `dnsfwd`, killed on drop; its stderr lines arrive on a channel.
pub struct Daemon {
    pub child: Child,
    pub lines: Receiver<String>,
    pub addr: SocketAddr,
}

impl Daemon {
    #[track_caller]
    pub fn start(args: &[&str]) -> Daemon {
        let mut child = Command::new(BIN)
            .args(args)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut d = Daemon {
            child,
            lines,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        let startup = d.wait_line("listening on [");
        d.addr = startup
            .split("listening on [")
            .nth(1)
            .and_then(|s| s.split([']', ',']).next())
            .unwrap()
            .parse()
            .unwrap();
        d
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn hup(&self) {
        self.signal("HUP");
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill -{sig}");
    }

    /// The next stderr line containing `pattern` (within `WAIT`).
    #[track_caller]
    pub fn wait_line(&mut self, pattern: &str) -> String {
        let until = Instant::now() + WAIT;
        let mut seen = Vec::new();
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(pattern) => return line,
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!("no line with {pattern:?} within {WAIT:?}; saw {seen:?}");
    }

    /// The next stderr lines containing each of `patterns`, in whatever order they come
    /// (within `WAIT`), in the order of `patterns`: the loops of a group log on their own
    /// threads, so loop 1 may say it reloaded before loop 0 does.
    #[track_caller]
    pub fn wait_lines(&mut self, patterns: &[&str]) -> Vec<String> {
        let until = Instant::now() + WAIT;
        let mut found: Vec<Option<String>> = vec![None; patterns.len()];
        let mut seen = Vec::new();
        while found.iter().any(Option::is_none) {
            let Some(left) = until.checked_duration_since(Instant::now()) else {
                break;
            };
            let Ok(line) = self.lines.recv_timeout(left) else {
                break;
            };
            match (0..patterns.len()).find(|&i| found[i].is_none() && line.contains(patterns[i])) {
                Some(i) => found[i] = Some(line),
                None => seen.push(line),
            }
        }
        match found.into_iter().collect::<Option<Vec<String>>>() {
            Some(lines) => lines,
            None => panic!("not all of {patterns:?} within {WAIT:?}; saw {seen:?}"),
        }
    }

    #[track_caller]
    pub fn assert_alive(&mut self) {
        assert!(self.child.try_wait().unwrap().is_none(), "dnsfwd died");
    }

    #[track_caller]
    pub fn ask(&self, id: u16, name: &str) -> Vec<u8> {
        udp_ask(self.addr, &query(id, name, RType::A, None)).expect("an answer")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary with `args` (log off), killing it if it has not exited within 5 s (a
/// flag that was meant to be refused must never leave a server running).
pub fn run_bounded(args: &[&str]) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env("RUST_LOG", "off")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("dnsfwd {args:?} is still running");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}
