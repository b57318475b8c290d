//! Filters materialised as row bitsets, kept current by the writes: how a shard answers
//! filtered searches fast without a payload index made by hand.
//!
//! A recommendation service sends the same few filters all day (one language, one content
//! type, one region). Evaluating such a filter on every point a walk visits costs a point
//! lookup and a JSON walk per node, and a narrow one makes the walk visit most of the graph;
//! a payload index helps only if someone made one, and even then turning its candidate ids
//! into rows is a lookup per candidate. So a shard keeps, for the filters it was asked
//! recently, the set of rows each one lets through, per segment: a bitset, as Lucene's query
//! cache keeps one per segment. With it the index's planner knows the exact count (to choose
//! between an exact scan and a walk) and tests a node with one bit.
//!
//! **Freshness.** Entries are never stale: every write the shard applies updates them under
//! the shard's write lock ([`FilterCache::point_written`]): a written point's row is
//! re-tested, and the row a delete or a re-upsert kills is cleared; the optimizer's move of
//! rows into an indexed segment carries their bits along ([`FilterCache::rows_moved`]). So an
//! entry holds live rows only, and is by itself the whole filter for a search.
//!
//! **When a filter is materialised** ([`FilterCache::should_materialise`]): at once when a
//! payload index narrows it or a sample says few points pass (the walk would pay for it
//! anyway); a filter that most points pass is materialised only when it is seen again, so a
//! one-off filter costs its walk and not a pass over every payload.
//!
//! **Bounds.** At most [`MAX_ENTRIES`] filters and [`MAX_BYTES`] of bitsets per shard, least
//! recently used evicted first.

use index_core::{AllowedSet, PointOffset};
use payload::Filter;
use std::collections::HashMap;
use std::sync::Arc;

/// Filters kept per shard.
pub(crate) const MAX_ENTRIES: usize = 64;
/// Bytes of bitsets kept per shard.
pub(crate) const MAX_BYTES: usize = 64 << 20;
/// Filters remembered as seen once (not materialised).
const MAX_SEEN: usize = 256;

/// The rows of each segment whose payload passes one filter.
#[derive(Debug, Clone, Default)]
pub(crate) struct FilterRows {
    /// Segment id → live rows whose payload passes.
    pub(crate) by_segment: HashMap<u64, AllowedSet>,
}

impl FilterRows {
    /// Marks whether `(segment, row)` passes.
    pub(crate) fn set(&mut self, segment: u64, row: PointOffset, passes: bool) {
        if passes {
            self.by_segment.entry(segment).or_default().insert(row);
        } else if let Some(rows) = self.by_segment.get_mut(&segment) {
            rows.remove(row);
        }
    }

    /// Whether `(segment, row)` passes.
    fn get(&self, segment: u64, row: PointOffset) -> bool {
        self.by_segment
            .get(&segment)
            .is_some_and(|rows| rows.contains(row))
    }

    /// The rows of one segment that pass (`None`: none do).
    pub(crate) fn segment(&self, segment: u64) -> Option<&AllowedSet> {
        self.by_segment.get(&segment).filter(|r| !r.is_empty())
    }

    fn bytes(&self) -> usize {
        self.by_segment
            .values()
            .map(|r| r.capacity_bytes() + 48)
            .sum()
    }
}

struct Entry {
    filter: Arc<Filter>,
    rows: Arc<FilterRows>,
    last_used: u64,
}

/// A shard's materialised filters; see the module documentation.
#[derive(Default)]
pub(crate) struct FilterCache {
    entries: Vec<Entry>,
    /// Filters seen once and not materialised, oldest first.
    seen: std::collections::VecDeque<Arc<Filter>>,
    clock: u64,
}

impl FilterCache {
    /// The materialised rows of `filter`, if it is cached.
    pub(crate) fn get(&mut self, filter: &Filter) -> Option<Arc<FilterRows>> {
        self.clock += 1;
        let clock = self.clock;
        self.entries
            .iter_mut()
            .find(|e| *e.filter == *filter)
            .map(|e| {
                e.last_used = clock;
                e.rows.clone()
            })
    }

    /// Whether a filter not in the cache should be materialised now. `narrow`: a payload
    /// index or a sample says the walk would meet few passing points. Otherwise the filter is
    /// remembered, and materialised the next time it comes.
    pub(crate) fn should_materialise(&mut self, filter: &Arc<Filter>, narrow: bool) -> bool {
        if narrow {
            return true;
        }
        if let Some(at) = self.seen.iter().position(|f| **f == **filter) {
            self.seen.remove(at);
            return true;
        }
        if self.seen.len() >= MAX_SEEN {
            self.seen.pop_front();
        }
        self.seen.push_back(filter.clone());
        false
    }

    /// Keeps `rows` as the materialised form of `filter`, evicting the least recently used
    /// entries past the bounds.
    pub(crate) fn insert(&mut self, filter: Arc<Filter>, rows: Arc<FilterRows>) {
        self.clock += 1;
        self.entries.retain(|e| *e.filter != *filter);
        self.entries.push(Entry {
            filter,
            rows,
            last_used: self.clock,
        });
        while self.entries.len() > MAX_ENTRIES
            || (self.entries.len() > 1
                && self.entries.iter().map(|e| e.rows.bytes()).sum::<usize>() > MAX_BYTES)
        {
            let oldest = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(i, _)| i)
                .expect("not empty");
            self.entries.remove(oldest);
        }
    }

    /// The point at `(segment, row)` was written (a new row, or a payload edit) or its row
    /// died (`passes` then says no): re-evaluates every cached filter on it with `passes`.
    pub(crate) fn point_written(
        &mut self,
        segment: u64,
        row: PointOffset,
        passes: impl Fn(&Filter) -> bool,
    ) {
        for e in &mut self.entries {
            let ok = passes(&e.filter);
            // Writers hold the shard's write lock, so no search holds a clone of the rows and
            // `make_mut` does not copy.
            Arc::make_mut(&mut e.rows).set(segment, row, ok);
        }
    }

    /// The optimizer moved rows `from[i]` of segment `src` to rows `to_base + i` of segment
    /// `dst` (only those for which `moved[i]`); carries their bits along and forgets `src`
    /// once `src_retired`.
    pub(crate) fn rows_moved(
        &mut self,
        src: u64,
        dst: u64,
        moves: &[(PointOffset, PointOffset)],
        src_retired: bool,
    ) {
        for e in &mut self.entries {
            let rows = Arc::make_mut(&mut e.rows);
            for &(from, to) in moves {
                let passes = rows.get(src, from);
                rows.set(dst, to, passes);
            }
            if src_retired {
                rows.by_segment.remove(&src);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter(v: &str) -> Arc<Filter> {
        Arc::new(
            Filter::from_json(&json!({"must": [{"key": "k", "match": {"value": v}}]})).unwrap(),
        )
    }

    #[test]
    fn a_wide_filter_is_materialised_the_second_time() {
        let mut cache = FilterCache::default();
        let a = filter("a");
        assert!(!cache.should_materialise(&a, false));
        assert!(cache.should_materialise(&filter("a"), false));
        assert!(cache.should_materialise(&filter("b"), true));
    }

    #[test]
    fn writes_and_moves_keep_entries_current() {
        let mut cache = FilterCache::default();
        let a = filter("a");
        let mut rows = FilterRows::default();
        rows.set(1, 0, true);
        cache.insert(a.clone(), Arc::new(rows));
        cache.point_written(1, 1, |_| true);
        cache.point_written(1, 0, |_| false);
        let got = cache.get(&a).unwrap();
        assert!(!got.get(1, 0) && got.get(1, 1));
        drop(got);
        cache.rows_moved(1, 7, &[(1, 10)], true);
        let got = cache.get(&a).unwrap();
        assert!(got.get(7, 10) && got.segment(1).is_none());
    }

    #[test]
    fn the_least_recently_used_entry_goes_first() {
        let mut cache = FilterCache::default();
        for i in 0..MAX_ENTRIES + 1 {
            cache.insert(filter(&i.to_string()), Arc::new(FilterRows::default()));
            // Keep the first one in use.
            assert!(cache.get(&filter("0")).is_some());
        }
        assert_eq!(cache.entries.len(), MAX_ENTRIES);
        assert!(cache.get(&filter("0")).is_some());
        assert!(cache.get(&filter("1")).is_none());
    }
}
