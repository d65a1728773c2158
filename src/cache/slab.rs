//! Where the octets of entries live: blocks in pages, one size class a page, so that
//! storing an answer takes a block rather than an allocation of its own (malloc and its
//! wrappers were 186 instructions a forwarded miss, a sixth of storing it).
//!
//! A class holds blocks of one size (a multiple of [`GRAIN`], up to [`MAX_SLAB`]; longer
//! entries get an allocation of their own, see [`super::entry`]). Its blocks are kept
//! dense: a freed block is filled with the class's last one, whose owner (a node of
//! [`super::store`]) is told its new place, so a class never holds a free block but at its
//! end, and pages beyond what its blocks need go back to the allocator. A page begins
//! with the owners of its blocks, so the slab allocates nothing but pages and each class's
//! list of them: memory is what those take, counted as allocated ([`Slab::held`]); a class
//! keeps at most one page more than it fills, and gives that one back when room is needed
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
/// Octets of a block's owner (a node's index) at the start of its page.
const OWNER: usize = std::mem::size_of::<u32>();
/// Octets of a class's list entry for one page.
const PAGE_REF: usize = std::mem::size_of::<Vec<u8>>();
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

/// One size class. Valid values: `used` blocks are in use, the first ones;
/// `pages.len() << shift` ≥ `used`.
///
/// A page is `OWNER << shift` octets of owners (the node that owns each of its blocks in
/// use), then `block << shift` octets of blocks.
struct Class {
    /// Each allocated at its full size, not zeroed; its length is how far it has been
    /// zeroed (whatever blocks held there before; at least the blocks in use and the
    /// owners), so that a block is written where it lies.
    pages: Vec<Vec<u8>>,
    /// Blocks in use.
    used: usize,
    /// Octets a block.
    block: usize,
    /// log2 of the blocks a page holds.
    shift: u32,
}

impl Class {
    fn page_bytes(&self) -> usize {
        (OWNER + self.block) << self.shift
    }

    /// Blocks the pages hold beyond those in use.
    fn spare(&self) -> usize {
        (self.pages.len() << self.shift) - self.used
    }

    /// Octets the list of pages adds to [`Slab::held`] if it must grow for one more page.
    fn list_growth(&self) -> usize {
        let cap = self.pages.capacity();
        match self.pages.len() < cap {
            true => 0,
            false => list_bytes(cap + grow_by(cap)) - list_bytes(cap),
        }
    }

    /// The page of block `index`, and where the block lies in it.
    #[inline]
    fn range(&self, index: u32) -> Option<(usize, std::ops::Range<usize>)> {
        let index = index as usize;
        let mask = (1 << self.shift) - 1;
        let at = (OWNER << self.shift) + (index & mask) * self.block;
        Some((index >> self.shift, at..at + self.block))
    }

    /// The page of block `index`, and where its owner lies in it.
    fn owner_range(&self, index: usize) -> (usize, std::ops::Range<usize>) {
        let at = (index & ((1 << self.shift) - 1)) * OWNER;
        (index >> self.shift, at..at + OWNER)
    }

    fn owner(&self, index: usize) -> Option<u32> {
        let (page, r) = self.owner_range(index);
        let o = self.pages.get(page)?.get(r)?;
        Some(u32::from_ne_bytes(o.try_into().ok()?))
    }

    fn set_owner(&mut self, index: usize, owner: u32) -> Option<()> {
        let (page, r) = self.owner_range(index);
        let o = self.pages.get_mut(page)?.get_mut(r)?;
        o.copy_from_slice(&owner.to_ne_bytes());
        Some(())
    }
}

/// Octets a class's list of `cap` pages takes as allocated.
fn list_bytes(cap: usize) -> usize {
    match cap {
        0 => 0,
        n => heap_bytes(n * PAGE_REF),
    }
}

/// By how many pages a full list of `cap` grows: it doubles, from 4.
fn grow_by(cap: usize) -> usize {
    cap.max(4)
}

/// The blocks of every class. Valid values: `held` is what the pages and the classes'
/// lists of them take, as allocated.
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
                let per_page = (page / (OWNER + block)).max(1);
                Class {
                    pages: Vec::new(),
                    used: 0,
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

    /// Octets the pages and their lists take, as allocated.
    pub(super) fn held(&self) -> usize {
        self.held
    }

    /// Octets taking a block of `class` adds to [`held`](Self::held): 0 if a page has
    /// room, else a page (and the growth of the class's list of pages, if it is full).
    pub(super) fn cost(&self, class: u8) -> usize {
        match self.classes.get(usize::from(class)) {
            Some(c) if c.spare() > 0 => 0,
            Some(c) => heap_bytes(c.page_bytes()) + c.list_growth(),
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
        let index = c.used;
        let (page, r) = c.range(u32::try_from(index).ok()?)?;
        let block = Block {
            class,
            index: u32::try_from(index).ok()?,
            page: u32::try_from(page).ok()?,
            at: u32::try_from(r.start).ok()?,
        };
        if page == c.pages.len() {
            let bytes = c.page_bytes();
            let growth = c.list_growth();
            if growth > 0 {
                c.pages.reserve_exact(grow_by(c.pages.capacity()));
            }
            c.pages.push(Vec::with_capacity(bytes));
            self.held += heap_bytes(bytes) + growth;
        }
        let page_end = c.page_bytes();
        // The owner's place is in the same page, before the blocks (so zeroed with them).
        let (_, o) = c.owner_range(index);
        let p = c.pages.get_mut(page)?;
        if p.len() < r.end {
            p.resize((r.end + ZERO_AHEAD).min(page_end), 0);
        }
        write(p.get_mut(r.start..r.start + len)?);
        if let Some(at) = p.get_mut(o) {
            at.copy_from_slice(&owner.to_ne_bytes());
        }
        c.used += 1;
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
        let last = c.used.checked_sub(1).filter(|&l| index <= l)?;
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
            let owner = c.owner(last)?;
            c.set_owner(index, owner)?;
            Some(owner)
        });
        c.used = last;
        // Keep one page of room at most: a class that shrinks gives the rest back.
        if c.spare() >= 2 << c.shift && c.pages.pop().is_some() {
            self.held -= heap_bytes(c.page_bytes());
        }
        moved.flatten()
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
        // 4 KiB budget: 2-octet pages, so one block a page (and its owner: 52 octets).
        let page = heap_bytes(4 + 48);
        let mut s = Slab::new(4 << 10);
        let blocks: Vec<Block> = (0..5)
            .map(|n| s.take(2, 100 + n, 48, |_| ()).unwrap())
            .collect();
        for (n, &b) in blocks.iter().enumerate() {
            fill(&mut s, b, n as u8);
        }
        // The list of pages went from 4 to 8 for the fifth.
        assert_eq!(s.held(), 5 * page + list_bytes(8));
        // Block 1 freed: block 4 (owner 104) moves into it.
        assert_eq!(s.free(blocks[1]), Some(104));
        assert!(s.get(blocks[1], 48).unwrap().iter().all(|&v| v == 4));
        // The last one freed: nothing moves.
        assert_eq!(s.free(blocks[3]), None);
        // Two pages spare at most one: one went back, the other goes when asked.
        assert_eq!(s.held(), 4 * page + list_bytes(8));
        assert_eq!(s.cost(2), 0);
        assert_eq!(s.release_spare(), page);
        assert_eq!(s.cost(2), page);
        assert_eq!(s.held(), 3 * page + list_bytes(8));
    }

    #[test]
    fn pages_hold_many_blocks_and_are_given_back_when_empty() {
        let mut s = Slab::new(32 << 20);
        let class = Slab::class_of(80).unwrap();
        // 16 KiB pages hold 195 blocks of 80 and their owners: 128, a power of two, are
        // used.
        let blocks: Vec<Block> = (0..1000)
            .map(|n| s.take(class, n, 80, |_| ()).unwrap())
            .collect();
        assert_eq!(s.held(), 8 * heap_bytes(84 * 128) + list_bytes(8));
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
        // What is left is the list, at the length it reached.
        assert_eq!(s.held(), list_bytes(8));
    }

    /// What the slab has allocated, from the vectors themselves.
    fn allocated(s: &Slab) -> usize {
        s.classes
            .iter()
            .map(|c| {
                list_bytes(c.pages.capacity())
                    + c.pages
                        .iter()
                        .map(|p| heap_bytes(p.capacity()))
                        .sum::<usize>()
            })
            .sum()
    }

    #[test]
    fn held_is_what_the_slab_allocates_and_cost_foretells_it() {
        let mut s = Slab::new(1 << 20);
        let mut live: Vec<Block> = Vec::new();
        let mut owners = std::collections::HashMap::new();
        // xorshift: takes of every class, frees from anywhere, runs of each.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for step in 0..20_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let taking = (step / 2000) % 2 == 0;
            if (taking && !x.is_multiple_of(4)) || live.is_empty() {
                let class = (x >> 8) as u8 % 8 * 8;
                let before = s.held();
                let cost = s.cost(class);
                let b = s
                    .take(class, step, Slab::block_bytes(class), |_| ())
                    .unwrap();
                assert_eq!(s.held() - before, cost, "step {step}");
                owners.insert(step, b);
                live.push(b);
            } else {
                let b = live.swap_remove((x >> 8) as usize % live.len());
                let owner = *owners.iter().find(|(_, &v)| v == b).unwrap().0;
                owners.remove(&owner);
                if let Some(moved) = s.free(b) {
                    // The moved block's owner is told its new place, as the store does.
                    let old = owners.insert(moved, b).unwrap();
                    let i = live.iter().position(|&l| l == old).unwrap();
                    live[i] = b;
                }
            }
            assert_eq!(s.held(), allocated(&s), "step {step}");
        }
        s.release_spare();
        assert_eq!(s.held(), allocated(&s));
    }
}
