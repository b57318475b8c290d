//! Per-collection epochs: the counter a write bumps so that every earlier
//! answer of the collection stops matching any lookup key.

use std::collections::HashMap;

use parking_lot::RwLock;

/// The epochs of all collections, in a map of bounded size.
///
/// Two rules make answers unreachable without ever touching the cached
/// entries:
///
/// - **Epochs never repeat.** Every new epoch comes from one counter shared
///   by all collections, so an epoch handed out now is larger than every
///   epoch any collection has had before. An answer stored under an old
///   epoch can therefore never match again, even after its collection was
///   forgotten and recreated.
/// - **Collections without an entry share the floor.** A collection that
///   has not been written since the last reset reads the `floor` epoch.
///   Whenever an entry is removed (forget, or the map reaching its bound),
///   the floor moves to a fresh epoch, so a forgotten collection that later
///   reads the floor cannot meet its own old answers. The price is that
///   collections never written since start-up lose their answers too; that
///   happens only on collection delete, which is rare.
#[derive(Debug)]
pub(crate) struct EpochTable {
    state: RwLock<EpochState>,
    /// The most collections the map holds before it is reset.
    capacity: usize,
}

#[derive(Debug, Default)]
struct EpochState {
    by_collection: HashMap<Box<str>, u64>,
    floor: u64,
    /// The largest epoch handed out so far. A `u64` bumped once per write
    /// would take centuries to wrap at a billion writes per second.
    last_issued: u64,
}

impl EpochState {
    fn issue(&mut self) -> u64 {
        self.last_issued += 1;
        self.last_issued
    }

    /// Moves every collection to one fresh epoch at once.
    fn reset(&mut self) {
        self.by_collection.clear();
        self.floor = self.issue();
    }
}

impl EpochTable {
    /// A table that holds at most `capacity` collections (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        EpochTable {
            state: RwLock::new(EpochState::default()),
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn current(&self, collection: &str) -> u64 {
        let state = self.state.read();
        state
            .by_collection
            .get(collection)
            .copied()
            .unwrap_or(state.floor)
    }

    pub(crate) fn invalidate(&self, collection: &str) -> u64 {
        let mut state = self.state.write();
        if state.by_collection.contains_key(collection) {
            let next = state.issue();
            state.by_collection.insert(collection.into(), next);
            return next;
        }
        if state.by_collection.len() >= self.capacity {
            // Full: rather than evict one collection (which would need the
            // same floor bump anyway), start every collection afresh. The
            // collection being invalidated reads the new floor, which is
            // newer than any of its answers.
            state.reset();
            return state.floor;
        }
        let next = state.issue();
        state.by_collection.insert(collection.into(), next);
        next
    }

    pub(crate) fn forget(&self, collection: &str) {
        let mut state = self.state.write();
        state.by_collection.remove(collection);
        // Even when the collection had no entry, its answers may be stored
        // under the current floor: move the floor so they cannot be met by
        // a collection of the same name created later.
        state.floor = state.issue();
    }

    pub(crate) fn tracked(&self) -> usize {
        self.state.read().by_collection.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_epoch_is_newer_than_every_epoch_before_it() {
        let table = EpochTable::new(2);
        let mut newest = table.current("a");
        let mut check = |epoch: u64, what: &str| {
            assert!(
                epoch > newest,
                "{what}: epoch {epoch} is not newer than {newest}"
            );
            newest = epoch;
        };
        check(table.invalidate("a"), "first write to a");
        check(table.invalidate("b"), "first write to b");
        check(table.invalidate("a"), "second write to a");
        table.forget("a");
        check(table.current("a"), "a after forget");
        check(table.invalidate("c"), "first write to c");
        assert_eq!(table.tracked(), 2);
        // A third collection does not fit: every collection starts afresh.
        check(table.invalidate("d"), "write to d that resets the table");
        assert_eq!(table.tracked(), 0);
        assert_eq!(table.current("b"), newest, "b reads the new floor");
        assert_eq!(table.current("c"), newest, "c reads the new floor");
    }

    #[test]
    fn forgetting_an_unwritten_collection_still_moves_its_epoch() {
        let table = EpochTable::new(8);
        let before = table.current("never-written");
        table.forget("never-written");
        assert!(table.current("never-written") > before);
        assert_eq!(table.tracked(), 0);
    }
}
