//! Which event loop owns a query (`--threads N`): a hash of its question name, the
//! same in the kernel and here.
//!
//! The N client UDP sockets of one address form a SO_REUSEPORT group (socket `i` of
//! the group is loop `i`'s: the group indexes sockets in the order they joined). A
//! classic BPF program attached to the group (SO_ATTACH_REUSEPORT_CBPF) picks the socket
//! of each datagram; for UDP the kernel runs it with the packet data starting at the
//! UDP payload (net/core/sock_reuseport.c, `run_bpf_filter` pulls the UDP header), so
//! its offsets are DNS message offsets. [`steer`] computes the same value in Rust for
//! queries that do not come through that group (TCP, DNS over TLS), which the loop
//! that read them hands to the owner.
//!
//! The hash walks the question name from offset 12, skipping the length octets and
//! OR-ing 0x20 into every other octet (ASCII case folding, and a few more octets made
//! equal, which only merges hash classes): `h = (h + (c | 0x20)) * K`, then
//! `(h ^ h >> 16) % N`. Names equal to the core (ASCII case-insensitive) thus always
//! meet in one loop, so coalescing and the cache are exact per loop.
//!
//! cBPF jumps only forward, so the walk is unrolled over the 255 positions a name may
//! take (15 instructions each, 3,838 in all, under the kernel's 4,096). A name that does
//! not end within them returns `u32::MAX`, which is ≥ N: the kernel then falls back to
//! its own hash. A datagram too short for the walk stops the program with 0 (cBPF's rule
//! for a load out of bounds): loop 0 gets it. Either way the core rejects the packet.
use std::io;
use std::os::fd::AsRawFd;

/// The multiplier of the hash (odd, so no bit of the sum is lost).
const K: u32 = 0x9E37_79B1;
/// The question name starts after the 12-octet header.
const NAME_AT: u32 = 12;
/// Positions a name may take (RFC 1035 §3.1: 255 octets with the length octets).
const MAX_NAME: u32 = 255;
/// What the program returns for a name that does not end in time (≥ any N).
const NO_OWNER: u32 = u32::MAX;

/// The loop (in 0..n) that owns the query `msg`, as the kernel's program picks it for
/// a UDP datagram; `None` when the program would give no owner (a name that does not
/// end within 255 octets, or a message too short for the walk).
pub fn steer(msg: &[u8], n: u32) -> Option<u32> {
    if n == 0 {
        return None;
    }
    let mut h: u32 = 0;
    // Position of the next length octet; 0 once the root label is read.
    let mut next = NAME_AT;
    for p in NAME_AT..NAME_AT + MAX_NAME {
        if p == next {
            let len = u32::from(*msg.get(p as usize)?);
            next = match len {
                0 => 0,
                _ => p + len + 1,
            };
        } else if next > p {
            let c = u32::from(*msg.get(p as usize)?);
            h = h.wrapping_add(c | 0x20).wrapping_mul(K);
        }
    }
    if next != 0 {
        return None;
    }
    Some((h ^ (h >> 16)) % n)
}

/// One classic BPF instruction (`struct sock_filter`).
type Insn = libc::sock_filter;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> Insn {
    Insn { code, jt, jf, k }
}

// Opcodes (linux/filter.h, linux/bpf_common.h).
const LD_IMM: u16 = 0x00; // A = k
const LD_MEM: u16 = 0x60; // A = M[k]
const LDB_ABS: u16 = 0x30; // A = packet[k] (one octet)
const ST: u16 = 0x02; // M[k] = A
const ADD_K: u16 = 0x04;
const ADD_X: u16 = 0x0c;
const MUL_K: u16 = 0x24;
const OR_K: u16 = 0x44;
const RSH_K: u16 = 0x74;
const XOR_X: u16 = 0xac;
const MOD_K: u16 = 0x94;
const JA: u16 = 0x05;
const JEQ_K: u16 = 0x15;
const JGT_K: u16 = 0x25;
const TAX: u16 = 0x07;
const RET_A: u16 = 0x16;
const RET_K: u16 = 0x06;

/// Scratch memory: the hash, and the position of the next length octet (0: done).
const M_HASH: u32 = 0;
const M_NEXT: u32 = 1;

/// The program for a group of `n` sockets (see the module docs).
pub fn program(n: u32) -> Vec<Insn> {
    let mut prog = vec![
        insn(LD_IMM, 0, 0, 0),
        insn(ST, 0, 0, M_HASH),
        insn(LD_IMM, 0, 0, NAME_AT),
        insn(ST, 0, 0, M_NEXT),
    ];
    for p in NAME_AT..NAME_AT + MAX_NAME {
        prog.extend([
            insn(LD_MEM, 0, 0, M_NEXT),
            // A length octet here: read it (jump 0), else see whether the name is over.
            insn(JEQ_K, 0, 5, p),
            insn(LDB_ABS, 0, 0, p),
            // The root label leaves 0 as the next position: done.
            insn(JEQ_K, 1, 0, 0),
            insn(ADD_K, 0, 0, p + 1),
            insn(ST, 0, 0, M_NEXT),
            insn(JA, 0, 0, 8),
            // Inside a label (next > p): hash the octet; past the name (next = 0): skip.
            insn(JGT_K, 0, 7, p),
            insn(LDB_ABS, 0, 0, p),
            insn(OR_K, 0, 0, 0x20),
            insn(TAX, 0, 0, 0),
            insn(LD_MEM, 0, 0, M_HASH),
            insn(ADD_X, 0, 0, 0),
            insn(MUL_K, 0, 0, K),
            insn(ST, 0, 0, M_HASH),
        ]);
    }
    prog.extend([
        insn(LD_MEM, 0, 0, M_NEXT),
        insn(JEQ_K, 0, 6, 0),
        insn(LD_MEM, 0, 0, M_HASH),
        insn(TAX, 0, 0, 0),
        insn(RSH_K, 0, 0, 16),
        insn(XOR_X, 0, 0, 0),
        insn(MOD_K, 0, 0, n.max(1)),
        insn(RET_A, 0, 0, 0),
        insn(RET_K, 0, 0, NO_OWNER),
    ]);
    prog
}

/// Attaches [`program`] for `n` sockets to the SO_REUSEPORT group of `sock` (any
/// member: the program is the group's).
pub fn attach(sock: &impl AsRawFd, n: u32) -> io::Result<()> {
    let mut prog = program(n);
    let len = u16::try_from(prog.len()).map_err(|_| io::Error::other("BPF program too long"))?;
    let fprog = libc::sock_fprog {
        len,
        filter: prog.as_mut_ptr(),
    };
    let size = libc::socklen_t::try_from(std::mem::size_of::<libc::sock_fprog>())
        .map_err(|_| io::Error::other("sock_fprog size"))?;
    // SAFETY: `fprog` points at `prog`, `len` instructions long, both alive for the
    // call; the kernel copies the program and keeps no pointer to it.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            std::ptr::addr_of!(fprog).cast(),
            size,
        )
    };
    match rc {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic BPF interpreter for the instructions [`program`] uses, with the
    /// kernel's rule that a load out of bounds ends the program with 0.
    fn run(prog: &[Insn], pkt: &[u8]) -> u32 {
        let (mut a, mut x, mut mem, mut pc) = (0u32, 0u32, [0u32; 16], 0usize);
        loop {
            let i = prog[pc];
            pc += 1;
            match i.code {
                LD_IMM => a = i.k,
                LD_MEM => a = mem[i.k as usize],
                LDB_ABS => match pkt.get(i.k as usize) {
                    Some(&b) => a = u32::from(b),
                    None => return 0,
                },
                ST => mem[i.k as usize] = a,
                ADD_K => a = a.wrapping_add(i.k),
                ADD_X => a = a.wrapping_add(x),
                MUL_K => a = a.wrapping_mul(i.k),
                OR_K => a |= i.k,
                RSH_K => a >>= i.k,
                XOR_X => a ^= x,
                MOD_K => a %= i.k,
                TAX => x = a,
                JA => pc += i.k as usize,
                JEQ_K | JGT_K => {
                    let taken = if i.code == JEQ_K { a == i.k } else { a > i.k };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                RET_A => return a,
                RET_K => return i.k,
                other => panic!("opcode {other:#x}"),
            }
        }
    }

    fn query(name: &str) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.').filter(|l| !l.is_empty()) {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        m
    }

    /// A deterministic stream of names: labels of 1..63 octets, any octet value.
    fn names(count: usize) -> Vec<Vec<u8>> {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        (0..count)
            .map(|_| {
                let mut m = vec![0u8; 12];
                let mut total = 1;
                loop {
                    let len = (next() % 64) as usize;
                    if len == 0 || total + len + 1 > 255 || next() % 5 == 0 {
                        break;
                    }
                    m.push(len as u8);
                    m.extend((0..len).map(|_| next() as u8));
                    total += len + 1;
                }
                m.extend_from_slice(&[0, 0, 1, 0, 1]);
                m
            })
            .collect()
    }

    #[test]
    fn program_fits_the_kernel_limit_and_ends_with_a_return() {
        let prog = program(2);
        assert_eq!(prog.len(), 3838);
        assert!(prog.len() <= 4096);
        assert_eq!(prog.last().map(|i| i.code), Some(RET_K));
    }

    #[test]
    fn program_and_steer_agree() {
        for n in [1, 2, 3, 7, 64] {
            let prog = program(n);
            for msg in names(2000) {
                let kernel = run(&prog, &msg);
                match steer(&msg, n) {
                    Some(loop_) => assert_eq!(kernel, loop_, "{msg:?}"),
                    None => assert!(kernel >= n, "{msg:?}"),
                }
            }
        }
    }

    #[test]
    fn letter_case_never_changes_the_owner() {
        let prog = program(4);
        for name in [
            "example.com",
            "WWW.Example.COM",
            "a.b.c.d.e.f.g",
            "xn--bcher-kva.ch",
        ] {
            let lower = query(&name.to_ascii_lowercase());
            let upper = query(&name.to_ascii_uppercase());
            assert_eq!(steer(&lower, 4), steer(&upper, 4), "{name}");
            assert_eq!(run(&prog, &lower), run(&prog, &upper), "{name}");
        }
    }

    #[test]
    fn names_spread_over_the_loops() {
        let mut seen = [0usize; 4];
        for i in 0..4000 {
            let owner = steer(&query(&format!("host{i}.example.net")), 4).unwrap();
            seen[owner as usize] += 1;
        }
        // Each of 4 loops gets a quarter, ±20 %.
        assert!(seen.iter().all(|&c| (800..=1200).contains(&c)), "{seen:?}");
    }

    #[test]
    fn bad_names_have_no_owner() {
        let mut long = vec![0u8; 12];
        for _ in 0..5 {
            long.push(63);
            long.extend([b'a'; 63]);
        }
        long.extend([0, 0, 1, 0, 1]);
        assert_eq!(steer(&long, 2), None, "a name of 321 octets");
        assert!(run(&program(2), &long) >= 2);
        let short = &query("example.com")[..15];
        assert_eq!(steer(short, 2), None);
        assert_eq!(
            run(&program(2), short),
            0,
            "the kernel's out-of-bounds rule"
        );
        // A compression pointer reads as a label of 0xC0 octets: no end in time.
        let mut ptr = vec![0u8; 12];
        ptr.extend([0xC0, 0x0C, 0, 1, 0, 1]);
        ptr.extend([b'a'; 300]);
        assert_eq!(steer(&ptr, 2), None);
        assert!(run(&program(2), &ptr) >= 2);
        assert_eq!(steer(&query("a"), 0), None);
    }
}
