//! The descriptor limit: the upstream socket pools (up to 256 connected UDP sockets per
//! upstream, twice that while they rotate) need more than the usual soft limit of 1024.
//! The soft limit is raised to the hard limit at start-up, as Unbound and dnsdist do,
//! and the pools are sized to what is left.

/// Raises the soft RLIMIT_NOFILE to the hard limit (at most 1,048,576) and returns the
/// soft limit in force. On failure the current limit is returned.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed by pointer,
    // which lives on this stack frame for the whole call.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        let want = lim.rlim_max.min(1 << 20);
        if lim.rlim_cur < want {
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = want;
            }
        }
    }
    lim.rlim_cur
}

/// UDP sockets per upstream that fit in `fd_limit`: `wanted`, or fewer so that every
/// pool can rotate (two sockets a slot) and `reserved` descriptors stay for listeners,
/// client and upstream TCP connections.
pub fn pool_size(wanted: usize, upstreams: usize, fd_limit: u64, reserved: usize) -> usize {
    let budget = usize::try_from(fd_limit)
        .unwrap_or(usize::MAX)
        .saturating_sub(reserved);
    let per = budget / (2 * upstreams.max(1));
    wanted.min(per).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_fit_the_limit() {
        assert_eq!(pool_size(256, 2, 1 << 20, 2048), 256);
        assert_eq!(pool_size(256, 4, 4096, 2048), 256);
        assert_eq!(pool_size(256, 64, 20_000, 2048), 140);
        assert_eq!(pool_size(256, 2, 1024, 2048), 1, "never none");
        assert!(raise_fd_limit() >= 1024);
    }
}
