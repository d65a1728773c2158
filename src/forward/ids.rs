//! Randomness for the forwarder: transaction IDs and upstream choices (RFC 5452 §9).
//!
//! Production draws from the operating system's CSPRNG (`getrandom`), a few kilobytes
//! at a time so that a query costs no system call; tests use a seeded generator so that
//! runs repeat.

/// A source of random numbers. The core never reaches for global randomness.
pub trait IdSource: Send {
    fn next_u16(&mut self) -> u16;

    /// A number in `0..n` (`n` > 0), uniform enough for choosing among a few sockets.
    fn below(&mut self, n: usize) -> usize {
        usize::from(self.next_u16()) % n.max(1)
    }
}

/// The OS CSPRNG, buffered.
pub struct OsRandom {
    buf: [u8; 4096],
    used: usize,
}

impl OsRandom {
    pub fn new() -> OsRandom {
        OsRandom {
            buf: [0; 4096],
            used: usize::MAX,
        }
    }
}

impl Default for OsRandom {
    fn default() -> Self {
        OsRandom::new()
    }
}

impl IdSource for OsRandom {
    fn next_u16(&mut self) -> u16 {
        if self.used.saturating_add(2) > self.buf.len() {
            if let Err(e) = getrandom::fill(&mut self.buf) {
                // The kernel's generator does not fail once booted; if it ever does, the
                // IDs would be predictable, which is worth shouting about.
                log::error!("getrandom failed: {e}; transaction IDs are not random");
            }
            self.used = 0;
        }
        let at = self.used;
        self.used += 2;
        let b = |n| self.buf.get(at + n).copied().unwrap_or(0);
        u16::from_be_bytes([b(0), b(1)])
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
    fn next_u16(&mut self) -> u16 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_random_spreads_over_the_id_space() {
        let mut r = OsRandom::new();
        let ids: std::collections::HashSet<u16> = (0..5000).map(|_| r.next_u16()).collect();
        // 5000 draws from 65536 values: a handful of collisions at most, never a pattern.
        assert!(ids.len() > 4700, "only {} distinct", ids.len());
    }

    #[test]
    fn seeded_random_repeats() {
        let a: Vec<u16> = {
            let mut r = SeededRandom::new(7);
            (0..10).map(|_| r.next_u16()).collect()
        };
        let b: Vec<u16> = {
            let mut r = SeededRandom::new(7);
            (0..10).map(|_| r.next_u16()).collect()
        };
        assert_eq!(a, b);
        assert!(a.iter().any(|&x| x != a[0]));
    }
}
