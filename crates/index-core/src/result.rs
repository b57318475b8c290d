//! Scored results, the bounded top-k collector, and the merge of sorted result lists.

use crate::PointOffset;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A point and its distance to the query (smaller is closer).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredOffset {
    /// The point.
    pub offset: PointOffset,
    /// Its distance to the query.
    pub distance: f32,
}

impl ScoredOffset {
    /// A new result.
    pub fn new(offset: PointOffset, distance: f32) -> ScoredOffset {
        ScoredOffset { offset, distance }
    }
}

impl Eq for ScoredOffset {}

impl Ord for ScoredOffset {
    /// By distance (a total order: NaN sorts last), then offset, so ties break the same way
    /// everywhere.
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance
            .total_cmp(&other.distance)
            .then(self.offset.cmp(&other.offset))
    }
}

impl PartialOrd for ScoredOffset {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Keeps the `k` closest results pushed into it.
///
/// A max-heap of size `k`: the worst kept result is on top, so a candidate is compared with one
/// value and rejected without touching the heap in the common case.
#[derive(Debug, Clone)]
pub struct TopK {
    k: usize,
    heap: BinaryHeap<ScoredOffset>,
}

impl TopK {
    /// An empty collector for `k` results.
    pub fn new(k: usize) -> TopK {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k.saturating_add(1).min(1 << 16)),
        }
    }

    /// Offers a result; returns whether it was kept.
    #[inline]
    pub fn push(&mut self, candidate: ScoredOffset) -> bool {
        if self.heap.len() < self.k {
            self.heap.push(candidate);
            true
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if candidate < *worst {
                *worst = candidate;
                true
            } else {
                false
            }
        } else {
            false
        }
    }

    /// The distance a candidate must beat to be kept (infinity until `k` results are held).
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.heap.len() < self.k {
            f32::INFINITY
        } else {
            self.heap.peek().map_or(f32::INFINITY, |w| w.distance)
        }
    }

    /// Number of results held.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The results, closest first.
    pub fn into_sorted_vec(self) -> Vec<ScoredOffset> {
        self.heap.into_sorted_vec()
    }
}

/// Merges lists that are each sorted closest first into the `k` closest overall, closest
/// first, by a k-way heap merge. A pure function: shard and segment merges both use it.
///
/// `key` names the point a result is about (e.g. its external id); when two lists hold the same
/// key, only its closest result is kept.
pub fn merge_top_k<T: Clone, K: Eq + std::hash::Hash>(
    lists: &[Vec<T>],
    k: usize,
    distance: impl Fn(&T) -> f32,
    key: impl Fn(&T) -> K,
) -> Vec<T> {
    // Heap entries: (distance, list, position), smallest first via Reverse ordering.
    #[derive(PartialEq)]
    struct Head(f32, usize, usize);
    impl Eq for Head {}
    impl Ord for Head {
        fn cmp(&self, other: &Self) -> Ordering {
            other
                .0
                .total_cmp(&self.0)
                .then(other.1.cmp(&self.1))
                .then(other.2.cmp(&self.2))
        }
    }
    impl PartialOrd for Head {
        fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
            Some(self.cmp(other))
        }
    }
    // Duplicates are found by a scan of what is kept while that is short (the usual top 10:
    // a few comparisons), by a hash set beyond: building the set cost more than the merge.
    const SCAN_UP_TO: usize = 32;
    let mut seen = std::collections::HashSet::new();
    let mut is_new = |out: &[T], item: &T| {
        if k <= SCAN_UP_TO {
            let id = key(item);
            !out.iter().any(|o| key(o) == id)
        } else {
            seen.insert(key(item))
        }
    };
    // One non-empty list (one shard, or one segment with results): nothing to merge, the
    // common case.
    let mut non_empty = lists.iter().filter(|l| !l.is_empty());
    if let (Some(only), None) = (non_empty.next(), non_empty.next()) {
        let mut out = Vec::with_capacity(k.min(only.len()));
        for item in only {
            if out.len() == k {
                break;
            }
            if is_new(&out, item) {
                out.push(item.clone());
            }
        }
        return out;
    }
    let mut heap: BinaryHeap<Head> = lists
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| Head(distance(&l[0]), i, 0))
        .collect();
    let mut out = Vec::with_capacity(k.min(lists.iter().map(Vec::len).sum()));
    while out.len() < k {
        let Some(Head(_, list, pos)) = heap.pop() else {
            break;
        };
        let item = &lists[list][pos];
        if is_new(&out, item) {
            out.push(item.clone());
        }
        if let Some(next) = lists[list].get(pos + 1) {
            heap.push(Head(distance(next), list, pos + 1));
        }
    }
    out
}
