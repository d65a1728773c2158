//! Giving memory back to the system after a burst.
//!
//! The core shrinks its tables once they empty out; the allocator then holds the freed
//! pages (glibc keeps them for reuse, and scattered small chunks stop it from trimming
//! the heap top). `malloc_trim(0)` releases every free page inside the heap.

/// Asks the allocator to return free memory to the system (glibc only; elsewhere the
/// allocator is left to its own policy).
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and only walks glibc's own heap state; it is
    // safe to call at any time from the thread that owns the allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn trim_can_be_called_any_time() {
        let big: Vec<Vec<u8>> = (0..1000).map(|n| vec![n as u8; 4096]).collect();
        drop(big);
        super::trim();
        super::trim();
    }
}
