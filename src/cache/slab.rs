//! Where the octets of entries live: blocks in pages, one size class a page, so that
//! storing an answer takes a block rather than an allocation of its own (malloc and its
//! wrappers were 186 instructions a forwarded miss, a sixth of storing it).
//!
//! A class holds blocks of one size (a multiple of [`GRAIN`], up to [`MAX_SLAB`]; longer
//! entries get an allocation of their own, see [`super::entry`]). Its blocks are kept
//! dense: a freed block is filled with the class's last one, whose owner (a node of
//! [`super::store`]) is told its new place, so a class never holds a free block but at its
//! end, and pages beyond what its blocks need go back to the allocator. Memory is
//! therefore what the pages take, counted as allocated ([`Slab::held`]); a class keeps at
//! most one page more than it fills, and gives that one back when room is needed
//! ([`Slab::release_spare`]).
use super::heap_bytes;

/// Block sizes are multiples of this: malloc's own rounding, so a block wastes no more
/// than an allocation of the same length did (and has no 8-octet header).
pub(super) const GRAIN: usize = 16;
/// The longest entry kept in a block. Longer ones are rare (large DNSSEC answers) and
/// would make pages large.
pub(super) const MAX_SLAB: usize = 1024;
const CLASSES: usize = MAX_SLAB / GRAIN;
/// Largest page, in octets (a page of a 1 KiB class holds 16 blocks).
const MAX_PAGE: usize = 16 << 10;
/// How far past a block it takes a page is zeroed, at most: one `memset` for several
/// small blocks (one a block was ~30 instructions an insertion), and a class that holds
/// few entries touches little of its page.
const ZERO_AHEAD: usize = 1 << 10;

/// Where an entry's block is: its class and its index in the class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Block {
    pub(super) class: u8,
    pub(super) index: u32,
    /// Where it is, from `index` (so that a lookup does no arithmetic): its page in the
    /// class, and its offset in the page.
    page: u32,
    at: u32,
}

/// One size class. Valid values: `owners.len()` blocks are in use, the first ones;
/// `pages.len() << shift` ≥ `owners.len()`.
struct Class {
    /// Each allocated at its full size, not zeroed; its length is how far it has been
    /// zeroed (whatever blocks held there before; at least the blocks in use), so that a
    /// block is written where it lies.
    pages: Vec<Vec<u8>>,
    /// The node that owns each block in use.
    owners: Vec<u32>,
    /// Octets a block.
    block: usize,
    /// log2 of the blocks a page holds.
    shift: u32,
}

impl Class {
    fn page_bytes(&self) -> usize {
        self.block << self.shift
    }

    /// Blocks the pages hold beyond those in use.
    fn spare(&self) -> usize {
        (self.pages.len() << self.shift) - self.owners.len()
    }

    #[inline]
    fn range(&self, index: u32) -> Option<(usize, std::ops::Range<usize>)> {
        let index = index as usize;
        let mask = (1 << self.shift) - 1;
        let at = (index & mask) * self.block;
        Some((index >> self.shift, at..at + self.block))
    }
}

/// The blocks of every class. Valid values: `held` is what the pages take.
pub(super) struct Slab {
    classes: Vec<Class>,
    held: usize,
}

impl Slab {
    /// Pages of about `max_bytes / 2048` octets (at most 16 KiB, one block at least):
    /// small beside the budget, which must also hold each class's page in part filled.
    pub(super) fn new(max_bytes: usize) -> Slab {
        let page = (max_bytes / 2048).min(MAX_PAGE);
        let classes = (1..=CLASSES)
            .map(|n| {
                let block = n * GRAIN;
                let per_page = (page / block).max(1);
                Class {
                    pages: Vec::new(),
                    owners: Vec::new(),
                    block,
                    shift: per_page.ilog2(),
                }
            })
            .collect();
        Slab { classes, held: 0 }
    }

    /// The class of an entry of `len` octets, if it goes in a block.
    pub(super) fn class_of(len: usize) -> Option<u8> {
        match len {
            1..=MAX_SLAB => u8::try_from((len - 1) / GRAIN).ok(),
            _ => None,
        }
    }

    /// Octets a block of `class` takes (what its entry is charged).
    pub(super) fn block_bytes(class: u8) -> usize {
        (usize::from(class) + 1) * GRAIN
    }

    /// Octets the pages take, as allocated.
    pub(super) fn held(&self) -> usize {
        self.held
    }

    /// Octets taking a block of `class` adds to [`held`](Self::held): 0 if a page has
    /// room, else a page.
    pub(super) fn cost(&self, class: u8) -> usize {
        match self.classes.get(usize::from(class)) {
            Some(c) if c.spare() > 0 => 0,
            Some(c) => heap_bytes(c.page_bytes()),
            None => 0,
        }
    }

    /// A block of `class` for node `owner` (a page more if the class has no room), its
    /// first `len` octets written by `write` (the rest of the block as it was: zero, or
    /// what a block there held before). `write` is called only if a block is taken.
    pub(super) fn take(
        &mut self,
        class: u8,
        owner: u32,
        len: usize,
        write: impl FnOnce(&mut [u8]),
    ) -> Option<Block> {
        let c = self
            .classes
            .get_mut(usize::from(class))
            .filter(|c| len <= c.block)?;
        let index = c.owners.len();
        let (page, r) = c.range(u32::try_from(index).ok()?)?;
        let block = Block {
            class,
            index: u32::try_from(index).ok()?,
            page: u32::try_from(page).ok()?,
            at: u32::try_from(r.start).ok()?,
        };
        if page == c.pages.len() {
            let bytes = c.page_bytes();
            c.pages.push(Vec::with_capacity(bytes));
            self.held += heap_bytes(bytes);
        }
        let page_end = c.page_bytes();
        let p = c.pages.get_mut(page)?;
        if p.len() < r.end {
            p.resize((r.end + ZERO_AHEAD).min(page_end), 0);
        }
        write(p.get_mut(r.start..r.start + len)?);
        c.owners.push(owner);
        Some(block)
    }

    /// The first `len` octets of block `b` (what its entry holds).
    #[inline]
    pub(super) fn get(&self, b: Block, len: usize) -> Option<&[u8]> {
        let at = b.at as usize;
        self.classes
            .get(usize::from(b.class))?
            .pages
            .get(b.page as usize)?
            .get(at..at + len)
    }

    #[cfg(test)]
    pub(super) fn get_mut(&mut self, b: Block) -> &mut [u8] {
        let Some(c) = self.classes.get_mut(usize::from(b.class)) else {
            return &mut [];
        };
        match c.range(b.index) {
            Some((page, r)) => c.pages.get_mut(page).and_then(|p| p.get_mut(r)),
            None => None,
        }
        .unwrap_or_default()
    }

    /// Frees block `b`: the class's last block moves into it. Returns the node that owns
    /// the moved block (its block is now `b`), if one moved.
    pub(super) fn free(&mut self, b: Block) -> Option<u32> {
        let c = self.classes.get_mut(usize::from(b.class))?;
        let index = b.index as usize;
        let last = c.owners.len().checked_sub(1).filter(|&l| index <= l)?;
        let moved = (index < last).then(|| {
            if let (Some((fp, fr)), Some((tp, tr))) = (c.range(last as u32), c.range(b.index)) {
                if fp == tp {
                    if let Some(p) = c.pages.get_mut(fp).filter(|p| p.len() >= fr.end) {
                        p.copy_within(fr, tr.start);
                    }
                } else {
                    // `index` < `last`, so its page comes first.
                    let (low, high) = c.pages.split_at_mut(fp);
                    let src = high.first().and_then(|p| p.get(fr));
                    if let (Some(src), Some(dst)) =
                        (src, low.get_mut(tp).and_then(|p| p.get_mut(tr)))
                    {
                        dst.copy_from_slice(src);
                    }
                }
            }
            c.owners.swap_remove(index)
        });
        if moved.is_none() {
            c.owners.pop();
        }
        // Keep one page of room at most: a class that shrinks gives the rest back.
        if c.spare() >= 2 << c.shift && c.pages.pop().is_some() {
            self.held -= heap_bytes(c.page_bytes());
        }
        moved.and_then(|_| c.owners.get(index).copied())
    }

    /// Gives back every page no block uses. Returns the octets given back.
    pub(super) fn release_spare(&mut self) -> usize {
        let mut freed = 0;
        for c in &mut self.classes {
            while c.spare() >= 1 << c.shift {
                if c.pages.pop().is_none() {
                    break;
                }
                freed += heap_bytes(c.page_bytes());
            }
        }
        self.held -= freed;
        freed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(s: &mut Slab, b: Block, v: u8) {
        s.get_mut(b).fill(v);
    }

    #[test]
    fn classes_round_up_to_the_grain() {
        assert_eq!(Slab::class_of(0), None);
        assert_eq!(Slab::class_of(1), Some(0));
        assert_eq!(Slab::class_of(16), Some(0));
        assert_eq!(Slab::class_of(17), Some(1));
        assert_eq!(Slab::class_of(MAX_SLAB), Some((CLASSES - 1) as u8));
        assert_eq!(Slab::class_of(MAX_SLAB + 1), None);
        assert_eq!(Slab::block_bytes(1), 32);
    }

    #[test]
    fn a_freed_block_is_filled_with_the_last_one() {
        // 4 KiB budget: 2-octet pages, so one block a page.
        let mut s = Slab::new(4 << 10);
        let blocks: Vec<Block> = (0..5)
            .map(|n| s.take(2, 100 + n, 48, |_| ()).unwrap())
            .collect();
        for (n, &b) in blocks.iter().enumerate() {
            fill(&mut s, b, n as u8);
        }
        assert_eq!(s.held(), 5 * heap_bytes(48));
        // Block 1 freed: block 4 (owner 104) moves into it.
        assert_eq!(s.free(blocks[1]), Some(104));
        assert!(s.get(blocks[1], 48).unwrap().iter().all(|&v| v == 4));
        // The last one freed: nothing moves.
        assert_eq!(s.free(blocks[3]), None);
        // Two pages spare at most one: one went back, the other goes when asked.
        assert_eq!(s.held(), 4 * heap_bytes(48));
        assert_eq!(s.cost(2), 0);
        assert_eq!(s.release_spare(), heap_bytes(48));
        assert_eq!(s.cost(2), heap_bytes(48));
        assert_eq!(s.held(), 3 * heap_bytes(48));
    }

    #[test]
    fn pages_hold_many_blocks_and_are_given_back_when_empty() {
        let mut s = Slab::new(32 << 20);
        let class = Slab::class_of(80).unwrap();
        // 16 KiB pages hold 204 blocks of 80: 128, a power of two, are used.
        let blocks: Vec<Block> = (0..1000)
            .map(|n| s.take(class, n, 80, |_| ()).unwrap())
            .collect();
        assert_eq!(s.held(), 1000usize.div_ceil(128) * heap_bytes(80 * 128));
        for (n, &b) in blocks.iter().enumerate() {
            fill(&mut s, b, n as u8);
        }
        // The first freed takes the last one's octets, from another page.
        assert_eq!(s.free(blocks[0]), Some(999));
        assert!(s
            .get(blocks[0], 80)
            .unwrap()
            .iter()
            .all(|&v| v == (999 % 256) as u8));
        for &b in blocks[..999].iter().rev() {
            s.free(b);
        }
        s.release_spare();
        assert_eq!(s.held(), 0);
    }
}
