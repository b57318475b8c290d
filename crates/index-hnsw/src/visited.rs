//! The per-thread set of nodes a walk has visited.
//!
//! A bitset, one bit per node: 49 KB for 390,000 nodes, so the random lookups of a walk hit
//! the first- or second-level cache, where a byte or generation counter per node would be
//! 8 to 16 times larger and miss. The words a walk dirtied are remembered and cleared when the
//! next walk starts, so a walk pays for the nodes it touched, not for the graph's size.

use std::cell::RefCell;

pub(crate) struct Visited {
    bits: Vec<u64>,
    dirty: Vec<u32>,
}

impl Visited {
    /// Whether `node` is marked in this walk.
    #[inline]
    pub fn contains(&self, node: u32) -> bool {
        self.bits
            .get(node as usize / 64)
            .is_some_and(|w| w >> (node % 64) & 1 == 1)
    }

    /// Marks `node`; returns whether it was not marked before in this walk.
    #[inline]
    pub fn insert(&mut self, node: u32) -> bool {
        let w = node as usize / 64;
        if w >= self.bits.len() {
            // A node published after the walk started: grow rather than refuse it.
            self.bits.resize((w + 1).next_power_of_two(), 0);
        }
        let mask = 1u64 << (node % 64);
        let word = &mut self.bits[w];
        if *word & mask != 0 {
            return false;
        }
        if *word == 0 {
            self.dirty.push(w as u32);
        }
        *word |= mask;
        true
    }

    fn reset(&mut self, capacity: usize) {
        if self.dirty.len() > self.bits.len() / 8 {
            self.bits.fill(0);
        } else {
            for &w in &self.dirty {
                self.bits[w as usize] = 0;
            }
        }
        self.dirty.clear();
        let words = capacity.div_ceil(64);
        if self.bits.len() < words {
            self.bits.resize(words, 0);
        }
    }
}

thread_local! {
    static VISITED: RefCell<Visited> = const { RefCell::new(Visited { bits: Vec::new(), dirty: Vec::new() }) };
}

/// Runs `f` with this thread's visited set, emptied, sized for `capacity` nodes.
pub(crate) fn with_visited<R>(capacity: usize, f: impl FnOnce(&mut Visited) -> R) -> R {
    VISITED.with(|cell| {
        // A walk never starts another walk on the same thread, so the borrow is free; if it
        // ever were taken, fall back to a fresh set rather than panic.
        match cell.try_borrow_mut() {
            Ok(mut visited) => {
                visited.reset(capacity);
                f(&mut visited)
            }
            Err(_) => f(&mut Visited {
                bits: vec![0; capacity.div_ceil(64)],
                dirty: Vec::new(),
            }),
        }
    })
}
