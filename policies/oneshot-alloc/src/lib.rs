//! A bump allocator for policy components.
//!
//! The host runs every retention or scheduler call in a fresh instance and
//! throws it away after the answer (see `docs/policies.md`): memory a call
//! frees is never used again. A general allocator still pays for keeping
//! free lists, once for every string the host lowers into the component
//! (through `cabi_realloc`) and again when the answer's strings are freed
//! after the call. [`OneShot`] only moves a pointer: `alloc` bumps it,
//! `realloc` of the newest block grows or shrinks it in place, `dealloc`
//! of the newest block steps back, every other `dealloc` is a no-op.
//! Memory grows in steps that double up to [`MAX_STEP`] bytes (a small
//! call grows a page or two, a large one a few dozen times) and never
//! shrinks; a call's peak is the sum of what it allocated, so the
//! policy's memory budget (64 MiB by default) bounds it as before.
//!
//! Use it only in a single-threaded component whose instance serves one
//! call (retention, scheduler):
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: oneshot_alloc::OneShot = oneshot_alloc::OneShot::new();
//! ```

#![no_std]

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::ptr;

/// WebAssembly's page: the unit `memory.grow` counts in.
pub const PAGE: usize = 64 << 10;

/// The most one growth asks for beyond what the block needs (16 pages):
/// steps double from one page up to this, so that a call over a few
/// snapshots takes a page or two and one over many grows its memory tens
/// of times, not thousands, and leaves at most this much unused (the host
/// zeroes every page of a memory after the call).
pub const MAX_STEP: usize = 16 * PAGE;

/// Where fresh memory comes from.
pub trait Grow {
    /// Add `pages` pages; the address of the first new byte, or `None`
    /// when the memory may not grow that much.
    fn grow(&self, pages: usize) -> Option<usize>;
}

/// The component's own linear memory (`memory.grow` on memory 0).
#[derive(Debug, Default, Clone, Copy)]
pub struct LinearMemory;

#[cfg(target_arch = "wasm32")]
impl Grow for LinearMemory {
    fn grow(&self, pages: usize) -> Option<usize> {
        match core::arch::wasm32::memory_grow(0, pages) {
            usize::MAX => None,
            old => Some(old * PAGE),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Grow for LinearMemory {
    fn grow(&self, _pages: usize) -> Option<usize> {
        None
    }
}

/// The bump allocator: `[next, end)` is the free tail of the newest
/// region grown.
pub struct OneShot<G: Grow = LinearMemory> {
    next: Cell<usize>,
    end: Cell<usize>,
    /// Pages grown so far.
    grown: Cell<usize>,
    grower: G,
}

impl OneShot<LinearMemory> {
    pub const fn new() -> Self {
        Self::with(LinearMemory)
    }
}

impl Default for OneShot<LinearMemory> {
    fn default() -> Self {
        Self::new()
    }
}

impl<G: Grow> OneShot<G> {
    pub const fn with(grower: G) -> Self {
        OneShot { next: Cell::new(0), end: Cell::new(0), grown: Cell::new(0), grower }
    }

    /// `size` bytes aligned to `align` from the current region, if they fit.
    fn bump(&self, size: usize, align: usize) -> Option<usize> {
        let start = align_up(self.next.get(), align)?;
        let end = start.checked_add(size)?;
        if end > self.end.get() {
            return None;
        }
        self.next.set(end);
        Some(start)
    }

    /// Grow the memory so that `size` bytes aligned to `align` fit, and
    /// take them.
    fn refill(&self, size: usize, align: usize) -> Option<usize> {
        let pages = size.checked_add(align)?.div_ceil(PAGE);
        let step = pages.max(self.grown.get().clamp(1, MAX_STEP / PAGE));
        let (base, granted) = match self.grower.grow(step) {
            Some(base) => (base, step),
            // Near the memory budget: ask for no more than this block needs.
            None => (self.grower.grow(pages)?, pages),
        };
        let end = base.checked_add(granted * PAGE)?;
        self.grown.set(self.grown.get() + granted);
        // Growth right after the current region extends it; memory grown
        // by anyone else in between leaves the old tail unused.
        if base != self.end.get() {
            self.next.set(base);
        }
        self.end.set(end);
        self.bump(size, align)
    }
}

unsafe impl<G: Grow> GlobalAlloc for OneShot<G> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let (size, align) = (layout.size(), layout.align());
        match self.bump(size, align).or_else(|| self.refill(size, align)) {
            Some(addr) => addr as *mut u8,
            None => ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Only the newest block is taken back (a string built and dropped
        // at once); any other stays until the instance goes.
        if ptr as usize + layout.size() == self.next.get() {
            self.next.set(ptr as usize);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let (addr, old) = (ptr as usize, layout.size());
        if addr + old == self.next.get() {
            // The newest block grows or shrinks where it is when it fits.
            if let Some(end) = addr.checked_add(new_size)
                && end <= self.end.get()
            {
                self.next.set(end);
                return ptr;
            }
        } else if new_size <= old {
            return ptr;
        }
        // SAFETY: `GlobalAlloc::realloc`'s contract makes `new_size`, with
        // the old alignment, a valid layout.
        let new = unsafe { self.alloc(Layout::from_size_align_unchecked(new_size, layout.align())) };
        if !new.is_null() {
            // SAFETY: both blocks are live, distinct and at least this long.
            unsafe { ptr::copy_nonoverlapping(ptr, new, old.min(new_size)) };
        }
        new
    }
}

// SAFETY: a component without the threads proposal runs one thread, so
// the cells are never touched from two at once.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
unsafe impl<G: Grow + Sync> Sync for OneShot<G> {}

fn align_up(addr: usize, align: usize) -> Option<usize> {
    Some(addr.checked_add(align - 1)? & !(align - 1))
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::vec::Vec;

    /// A memory of `limit` pages at a page-aligned address of a host
    /// buffer, grown like `memory.grow`; `foreign` pages are grown by
    /// someone else before the next growth.
    struct Fake {
        buf: Vec<u8>,
        pages: Cell<usize>,
        limit: usize,
        foreign: Cell<usize>,
    }

    impl Fake {
        fn new(limit: usize) -> Fake {
            Fake { buf: std::vec![0; (limit + 1) * PAGE], pages: Cell::new(0), limit, foreign: Cell::new(0) }
        }
        fn base(&self) -> usize {
            align_up(self.buf.as_ptr() as usize, PAGE).unwrap()
        }
        fn contains(&self, addr: usize, len: usize) -> bool {
            addr >= self.base() && addr + len <= self.base() + self.pages.get() * PAGE
        }
    }

    impl Grow for &Fake {
        fn grow(&self, pages: usize) -> Option<usize> {
            let foreign = self.foreign.replace(0);
            let old = self.pages.get() + foreign;
            if old + pages > self.limit {
                return None;
            }
            self.pages.set(old + pages);
            Some(self.base() + old * PAGE)
        }
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn blocks_are_aligned_inside_grown_memory_and_do_not_overlap() {
        let mem = Fake::new(64);
        let a = OneShot::with(&mem);
        let mut taken: Vec<(usize, usize)> = Vec::new();
        for (i, align) in [1, 8, 2, 16, 4, 64, 1, 4096].iter().cycle().take(2_000).enumerate() {
            let size = 1 + (i * 37) % 300;
            let p = unsafe { a.alloc(layout(size, *align)) } as usize;
            assert_ne!(p, 0);
            assert_eq!(p % align, 0, "alignment {align}");
            assert!(mem.contains(p, size));
            taken.push((p, size));
        }
        taken.sort();
        for w in taken.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0, "blocks overlap: {w:?}");
        }
        // About 300 KiB of blocks: steps of 1, 1, 2 and 4 pages, then
        // the largest step.
        let used: usize = taken.iter().map(|t| t.1).sum();
        assert!(used > 250 << 10, "{used}");
        assert!(mem.pages.get() <= used.div_ceil(PAGE) + MAX_STEP / PAGE);
    }

    #[test]
    fn the_newest_block_grows_and_shrinks_in_place_and_others_are_copied() {
        let mem = Fake::new(64);
        let a = OneShot::with(&mem);
        unsafe {
            let l = layout(4, 1);
            let s = a.alloc(l);
            s.copy_from_nonoverlapping(b"abcd".as_ptr(), 4);
            let grown = a.realloc(s, l, 400);
            assert_eq!(grown, s, "the newest block grows in place");
            let other = a.alloc(layout(8, 8));
            let moved = a.realloc(grown, layout(400, 1), 1_000);
            assert_ne!(moved, grown, "a block that is not the newest moves");
            assert_eq!(std::slice::from_raw_parts(moved, 4), b"abcd");
            assert!(moved as usize > other as usize);
            let shrunk = a.realloc(other, layout(8, 8), 4);
            assert_eq!(shrunk, other, "shrinking never moves");
        }
    }

    #[test]
    fn freeing_the_newest_block_takes_it_back_and_others_stay() {
        let mem = Fake::new(64);
        let a = OneShot::with(&mem);
        unsafe {
            let first = a.alloc(layout(100, 1));
            let second = a.alloc(layout(100, 1));
            a.dealloc(first, layout(100, 1));
            let third = a.alloc(layout(100, 1));
            assert!(third as usize > second as usize, "an older block is not reused");
            a.dealloc(third, layout(100, 1));
            assert_eq!(a.alloc(layout(100, 1)), third, "the newest block is");
        }
    }

    #[test]
    fn steps_double_up_to_the_largest_and_a_full_budget_gives_null() {
        let mem = Fake::new(43);
        let a = OneShot::with(&mem);
        let mut grown = Vec::new();
        unsafe {
            for _ in 0..(24 * PAGE / 1024) {
                assert!(!a.alloc(layout(1024, 8)).is_null());
                if grown.last() != Some(&mem.pages.get()) {
                    grown.push(mem.pages.get());
                }
            }
            assert_eq!(grown, [1, 2, 4, 8, 16, 32], "steps of 1, 1, 2, 4, 8, 16 pages");
            // 8 pages are left; a block of 9 needs a step of 16, which
            // the budget of 43 refuses, so it gets the 10 it needs, in
            // one region with the pages left.
            let before = a.next.get();
            let big = a.alloc(layout(9 * PAGE, 8));
            assert!(mem.contains(big as usize, 9 * PAGE));
            assert_eq!(big as usize, before, "contiguous growth extends the region");
            assert_eq!(mem.pages.get(), 42);
            assert!(a.alloc(layout(12 * PAGE, 8)).is_null(), "over the budget");
            // What is left still serves small blocks.
            assert!(!a.alloc(layout(64, 8)).is_null());
        }
    }

    #[test]
    fn memory_grown_by_someone_else_is_left_alone() {
        let mem = Fake::new(64);
        let a = OneShot::with(&mem);
        unsafe {
            let first = a.alloc(layout(PAGE - 16, 16)) as usize;
            assert_eq!(mem.pages.get(), 1);
            mem.foreign.set(2);
            let next = a.alloc(layout(64, 16)) as usize;
            let foreign = (mem.base() + PAGE, mem.base() + 3 * PAGE);
            assert!(next >= foreign.1, "the block is after the other user's pages");
            assert!(next > first);
            assert!(mem.contains(next, 64));
        }
    }
}
