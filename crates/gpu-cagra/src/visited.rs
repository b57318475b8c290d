//! The walk's visited set: a small open-addressed hash table, as CAGRA keeps one per query
//! instead of a bitmap over every node, sized for the visits a walk can make and grown if it
//! makes more.

/// Node ids visited by one walk.
#[derive(Debug, Default)]
pub(crate) struct VisitedHash {
    slots: Vec<u32>,
    mask: usize,
    len: usize,
}

const EMPTY: u32 = u32::MAX;

impl VisitedHash {
    /// Empties the set and sizes it for about `expected` ids at a load of at most one half.
    pub(crate) fn reset(&mut self, expected: usize) {
        let size = (expected * 2).next_power_of_two().max(256);
        if self.slots.len() != size {
            self.slots = vec![EMPTY; size];
        } else {
            self.slots.fill(EMPTY);
        }
        self.mask = size - 1;
        self.len = 0;
    }

    #[inline]
    fn slot(&self, id: u32) -> usize {
        // Fibonacci hashing: consecutive ids spread over the table.
        ((id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & self.mask
    }

    /// Adds `id`; returns whether it was new.
    #[inline]
    pub(crate) fn insert(&mut self, id: u32) -> bool {
        if self.slots.is_empty() {
            self.reset(0);
        }
        let mut s = self.slot(id);
        loop {
            let key = self.slots[s];
            if key == id {
                return false;
            }
            if key == EMPTY {
                self.slots[s] = id;
                self.len += 1;
                if self.len * 2 > self.slots.len() {
                    self.grow();
                }
                return true;
            }
            s = (s + 1) & self.mask;
        }
    }

    fn grow(&mut self) {
        let old = std::mem::take(&mut self.slots);
        let size = old.len() * 2;
        self.slots = vec![EMPTY; size];
        self.mask = size - 1;
        self.len = 0;
        for id in old.into_iter().filter(|&k| k != EMPTY) {
            let mut s = self.slot(id);
            while self.slots[s] != EMPTY {
                s = (s + 1) & self.mask;
            }
            self.slots[s] = id;
            self.len += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_every_id_once_past_its_planned_size() {
        let mut v = VisitedHash::default();
        v.reset(10);
        for round in 0..2 {
            for id in (0..5_000u32).map(|i| i * 7_919) {
                assert_eq!(v.insert(id), round == 0, "id {id}, round {round}");
            }
        }
        assert_eq!(v.len, 5_000);
        v.reset(10);
        assert!(v.insert(7));
    }
}
