//! Heap allocations per query on the UDP hot paths (cache hit, forwarded miss), counted
//! by a global allocator in the server's thread only: the loop runs for real over
//! loopback, against a mock upstream whose thread (like the client's) is not counted.
//! After a warm-up (tables, pools and buffers at their working size), a query must
//! cost no allocation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{id_of, query, MockUpstream, WAIT};
use dnsfwd::config::Config;
use dnsfwd::server::Server;
use dnsfwd::wire::RType;

/// Counts allocations (and reallocations) made by threads that ask to be counted.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

static TRACE: AtomicU64 = AtomicU64::new(0);

fn count() {
    if COUNTED.with(Cell::get) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        if TRACE.load(Ordering::Relaxed) > 0 {
            TRACE.fetch_sub(1, Ordering::Relaxed);
            COUNTED.with(|c| c.set(false));
            eprintln!("{}", std::backtrace::Backtrace::force_capture());
            COUNTED.with(|c| c.set(true));
        }
    }
}

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Clients on a few fixed ports, as steady clients are: per-client state (rate limit,
/// fair shares) is made once per client, in the warm-up.
struct Clients {
    socks: Vec<UdpSocket>,
    next: u16,
}

impl Clients {
    fn new(n: usize) -> Clients {
        let socks = (0..n)
            .map(|_| {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                s.set_read_timeout(Some(WAIT)).unwrap();
                s
            })
            .collect();
        Clients { socks, next: 0 }
    }

    /// Asks `name` A from the next client and checks the answer's ID.
    #[track_caller]
    fn ask(&mut self, server: SocketAddr, name: &str) {
        self.next = self.next.wrapping_add(1);
        let id = self.next;
        let sock = &self.socks[usize::from(id) % self.socks.len()];
        sock.send_to(&query(id, name, RType::A, Some(1232)), server)
            .unwrap();
        let mut buf = [0u8; 2048];
        let n = sock.recv(&mut buf).expect("an answer");
        assert_eq!(id_of(&buf[..n]), id);
    }
}

/// Allocations made by the server thread while `f` runs, per query of `n`.
fn per_query(n: usize, f: impl FnOnce()) -> f64 {
    let before = ALLOCS.load(Ordering::SeqCst);
    f();
    // The answer is sent before the buffers go back: let that finish.
    std::thread::sleep(Duration::from_millis(50));
    (ALLOCS.load(Ordering::SeqCst) - before) as f64 / n as f64
}

/// Allocations per hit and per miss, with the cache on or off, after a warm-up.
fn measure(cache: bool) -> (f64, f64) {
    let upstream = MockUpstream::echo();
    let mut cfg = Config {
        listen: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0))],
        upstreams: vec![upstream.addr],
        ..Config::default()
    };
    if !cache {
        cfg.cache.max_entries = 0;
    }
    let server = Server::bind(cfg).unwrap();
    let addr = server.local_addrs()[0];
    let stop = server.stop_handle();
    let thread = std::thread::spawn(move || {
        COUNTED.with(|c| c.set(true));
        server.run().unwrap()
    });
    let mut clients = Clients::new(8);
    const N: usize = 2000;
    // Warm-up: misses for names not asked later, and the hit names' first (missed) ask.
    for i in 0..N {
        clients.ask(addr, &format!("warm{i}.example"));
    }
    for i in 0..100 {
        clients.ask(addr, &format!("hit{i}.example"));
    }
    // ALLOC_TRACE=n prints where the first n allocations after the warm-up come from.
    let trace = std::env::var("ALLOC_TRACE")
        .ok()
        .and_then(|v| v.parse().ok());
    TRACE.store(trace.unwrap_or(0), Ordering::SeqCst);
    let hits = per_query(N, || {
        for i in 0..N {
            clients.ask(addr, &format!("hit{}.example", i % 100));
        }
    });
    let misses = per_query(N, || {
        for i in 0..N {
            clients.ask(addr, &format!("miss{i}.example"));
        }
    });
    stop.stop();
    let stats = thread.join().unwrap();
    eprintln!("cache {cache}: allocations per query: hit {hits:.3}, miss {misses:.3}");
    let expected_hits = if cache { N as u64 } else { 0 };
    assert_eq!(stats.cache_hits, expected_hits, "{stats}");
    (hits, misses)
}

/// Allocations a miss makes to store its answer in the cache: none of its own (the
/// answer is checked, then copied into a block of the cache's slab, which a page holds
/// by the hundred; it was one allocation an entry, and 12 when it was decoded into an
/// owned `Message` and copied twice). What is left is a page now and then.
const STORE_ALLOCATIONS: f64 = 0.0;
/// At most one allocation in 50 misses: a 16 KiB page holds 128 of these answers.
const PAGES: f64 = 0.02;

/// Both configurations in one test: the counter is shared by the process.
#[test]
fn hits_and_misses_do_not_allocate_after_warm_up() {
    let (_, misses) = measure(false);
    assert_eq!(misses, 0.0, "a forwarded miss (cache off) allocates");
    let (hits, misses) = measure(true);
    assert_eq!(hits, 0.0, "a cache hit allocates");
    assert!(
        misses <= STORE_ALLOCATIONS + PAGES,
        "a miss with the cache on allocates {misses} times, more than storing takes"
    );
}
