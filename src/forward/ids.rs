//! Randomness for the forwarder: transaction IDs, letter case and upstream socket
//! choices (RFC 5452 §9, draft-vixie-dnsext-dns0x20).
//!
//! Production draws from the operating system's CSPRNG (`getrandom`), a few kilobytes
//! at a time so that a query costs no system call; tests use a seeded generator so that
//! runs repeat. A generator that fails gives `None`, and the caller fails closed: no
//! query goes out with an ID that was not freshly drawn.

/// A source of random numbers. The core never reaches for global randomness.
pub trait IdSource: Send {
    /// 16 random bits, or `None` if the generator failed.
    fn next_u16(&mut self) -> Option<u16>;

    /// 64 random bits, or `None` if the generator failed: one call for all a new
    /// upstream query needs (its ID, socket and letter case), where each call through
    /// the `dyn` generator costs as much as the bits it hands out.
    fn next_u64(&mut self) -> Option<u64> {
        let mut w = 0u64;
        for _ in 0..4 {
            w = w << 16 | u64::from(self.next_u16()?);
        }
        Some(w)
    }

    /// A number in `0..n` (`n` > 0), uniform enough for choosing among a few sockets.
    fn below(&mut self, n: usize) -> Option<usize> {
        self.next_u16().map(|r| usize::from(r) % n.max(1))
    }
}

/// The OS CSPRNG, buffered.
pub struct OsRandom {
    buf: [u8; 4096],
    used: usize,
    /// The generator failed before: logged once, not again.
    failed: bool,
}

impl OsRandom {
    pub fn new() -> OsRandom {
        OsRandom {
            buf: [0; 4096],
            used: usize::MAX,
            failed: false,
        }
    }
}

impl Default for OsRandom {
    fn default() -> Self {
        OsRandom::new()
    }
}

impl OsRandom {
    /// The next `N` octets of the buffer, refilled from the kernel when it runs short
    /// (what is left over is dropped: fresh octets only); `None` if that failed.
    #[inline]
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        if self.used.saturating_add(N) > self.buf.len() {
            self.refill()?;
        }
        let at = self.used;
        let octets = self.buf.get(at..)?.first_chunk::<N>().copied();
        self.used = at + N;
        octets
    }

    #[cold]
    fn refill(&mut self) -> Option<()> {
        if let Err(e) = getrandom::fill(&mut self.buf) {
            // The kernel's generator does not fail once booted; if it ever does, no
            // query may go out with a predictable ID. Said once.
            if !self.failed {
                log::error!("getrandom failed: {e}; queries are answered SERVFAIL until it works");
            }
            self.failed = true;
            self.used = usize::MAX;
            return None;
        }
        if self.failed {
            log::info!("getrandom works again");
            self.failed = false;
        }
        self.used = 0;
        Some(())
    }
}

impl IdSource for OsRandom {
    fn next_u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_be_bytes)
    }

    fn next_u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_be_bytes)
    }
}

/// A small deterministic generator (SplitMix64) for tests and simulations.
pub struct SeededRandom(u64);

impl SeededRandom {
    pub fn new(seed: u64) -> SeededRandom {
        SeededRandom(seed)
    }
}

impl IdSource for SeededRandom {
    fn next_u16(&mut self) -> Option<u16> {
        self.next_u64().map(|z| z as u16)
    }

    fn next_u64(&mut self) -> Option<u64> {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Some(z ^ (z >> 31))
    }
}

/// A generator that has failed (tests of the fail-closed path).
pub struct BrokenRandom;

impl IdSource for BrokenRandom {
    fn next_u16(&mut self) -> Option<u16> {
        None
    }

    fn next_u64(&mut self) -> Option<u64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_random_spreads_over_the_id_space() {
        let mut r = OsRandom::new();
        let ids: std::collections::HashSet<u16> = (0..5000).filter_map(|_| r.next_u16()).collect();
        // 5000 draws from 65536 values: a handful of collisions at most, never a pattern.
        assert!(ids.len() > 4700, "only {} distinct", ids.len());
    }

    #[test]
    fn seeded_random_repeats() {
        let a: Vec<Option<u16>> = {
            let mut r = SeededRandom::new(7);
            (0..10).map(|_| r.next_u16()).collect()
        };
        let b: Vec<Option<u16>> = {
            let mut r = SeededRandom::new(7);
            (0..10).map(|_| r.next_u16()).collect()
        };
        assert_eq!(a, b);
        assert!(a.iter().any(|&x| x != a[0]));
    }
}
