//! Sparse vectors (lexical weights such as BM25 or SPLADE): the vector type, Qdrant's IDF
//! weighting, and the inverted index a shard searches them with.
//!
//! A sparse vector scores against another by the dot product over the indices both hold; a
//! point that shares no index with the query is no match at all (Qdrant leaves it out of a
//! nearest search, rather than scoring it 0). Scores are higher-is-better.
//!
//! The index is term-at-a-time: each query index walks its posting list (the points holding
//! that index, with their weights) and adds `query weight x point weight` into one
//! accumulator slot per point. That is exact, and costs in proportion to the postings of the
//! query's indices, not to the collection: a query of a few dozen terms over a vocabulary of
//! tens of thousands touches a small share of the points. A replaced or deleted point's
//! postings stay until the dead ones outnumber the live, then the lists are compacted.

use index_core::PointId;
use std::collections::{HashMap, HashSet};

/// The most non-zero entries one sparse vector may hold.
pub const MAX_SPARSE_ENTRIES: usize = 65_536;

/// A sparse vector: unique indices, ascending, and their values.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SparseVector {
    /// Indices, unique and ascending.
    pub indices: Vec<u32>,
    /// The value at each index.
    pub values: Vec<f32>,
}

impl SparseVector {
    /// A sparse vector from indices and values in any order: the lengths must agree, the
    /// indices be unique and the values finite, at most [`MAX_SPARSE_ENTRIES`] of them (as
    /// Qdrant checks them); sorted by index.
    pub fn new(indices: Vec<u32>, values: Vec<f32>) -> Result<SparseVector, String> {
        if indices.len() != values.len() {
            return Err(format!(
                "indices and values must have the same length ({} and {})",
                indices.len(),
                values.len()
            ));
        }
        if indices.len() > MAX_SPARSE_ENTRIES {
            return Err(format!(
                "at most {MAX_SPARSE_ENTRIES} entries in a sparse vector, got {}",
                indices.len()
            ));
        }
        if let Some(v) = values.iter().find(|v| !v.is_finite()) {
            return Err(format!("values must be finite numbers, got {v}"));
        }
        let mut pairs: Vec<(u32, f32)> = indices.into_iter().zip(values).collect();
        pairs.sort_by_key(|p| p.0);
        if let Some(w) = pairs.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(format!("indices must be unique, {} appears twice", w[0].0));
        }
        Ok(SparseVector {
            indices: pairs.iter().map(|p| p.0).collect(),
            values: pairs.iter().map(|p| p.1).collect(),
        })
    }

    /// Checks what [`SparseVector::new`] ensures, for a vector built from its fields: as
    /// many values as indices, at most [`MAX_SPARSE_ENTRIES`], indices strictly ascending,
    /// values finite.
    pub fn check(&self) -> Result<(), String> {
        if self.indices.len() != self.values.len() {
            return Err(format!(
                "indices and values must have the same length ({} and {})",
                self.indices.len(),
                self.values.len()
            ));
        }
        if self.indices.len() > MAX_SPARSE_ENTRIES {
            return Err(format!(
                "at most {MAX_SPARSE_ENTRIES} entries in a sparse vector, got {}",
                self.indices.len()
            ));
        }
        if let Some(w) = self.indices.windows(2).find(|w| w[0] >= w[1]) {
            return Err(format!(
                "indices must be unique and ascending, {} comes before {}",
                w[0], w[1]
            ));
        }
        if let Some(v) = self.values.iter().find(|v| !v.is_finite()) {
            return Err(format!("values must be finite numbers, got {v}"));
        }
        Ok(())
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The dot product over the indices both hold, or `None` when they share none.
    pub fn dot(&self, other: &SparseVector) -> Option<f32> {
        let (mut i, mut j) = (0, 0);
        let mut sum = 0.0f32;
        let mut shared = false;
        while i < self.indices.len() && j < other.indices.len() {
            match self.indices[i].cmp(&other.indices[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    sum += self.values[i] * other.values[j];
                    shared = true;
                    i += 1;
                    j += 1;
                }
            }
        }
        shared.then_some(sum)
    }

    /// Bytes it holds, for memory accounting.
    pub fn bytes(&self) -> usize {
        self.indices.len() * 8
    }
}

/// Qdrant's sparse `average_vector` recommendation: `2·mean(positive) − mean(negative)` over
/// the union of their indices (a missing index counts 0), or `mean(positive)` when there are
/// no negatives.
pub fn recommend_average(positive: &[SparseVector], negative: &[SparseVector]) -> SparseVector {
    let mean = |vs: &[SparseVector]| -> std::collections::BTreeMap<u32, f64> {
        let mut sum = std::collections::BTreeMap::new();
        for v in vs {
            for (&i, &x) in v.indices.iter().zip(&v.values) {
                *sum.entry(i).or_insert(0.0) += x as f64;
            }
        }
        sum.values_mut().for_each(|x| *x /= vs.len().max(1) as f64);
        sum
    };
    let (pos, neg) = (mean(positive), mean(negative));
    if negative.is_empty() {
        return SparseVector {
            indices: pos.keys().copied().collect(),
            values: pos.values().map(|x| *x as f32).collect(),
        };
    }
    let mut out = pos.clone();
    out.values_mut().for_each(|x| *x *= 2.0);
    for (i, x) in neg {
        *out.entry(i).or_insert(0.0) -= x;
    }
    SparseVector {
        indices: out.keys().copied().collect(),
        values: out.values().map(|x| *x as f32).collect(),
    }
}

/// Qdrant's inverse document frequency of an index held by `df` of `n` points:
/// `ln((n − df + 0.5) / (df + 0.5) + 1)` (BM25's, kept positive).
pub fn idf(df: usize, n: usize) -> f32 {
    let (df, n) = (df as f64, n as f64);
    ((n - df + 0.5) / (df + 0.5) + 1.0).ln() as f32
}

/// The inverted index of one sparse vector over a shard's points.
#[derive(Debug, Default)]
pub(crate) struct SparseIndex {
    /// Slot → point; `None` once the point was removed or re-inserted at a new slot.
    slots: Vec<Option<PointId>>,
    slot_of: HashMap<PointId, u32>,
    /// Index → its postings.
    postings: HashMap<u32, Postings>,
    /// Index → live points holding it.
    df: HashMap<u32, u32>,
    live_entries: usize,
    dead_entries: usize,
    /// Slots of removed points (an empty vector leaves a slot and no entry behind).
    dead_slots: usize,
}

/// The points holding one index, with their weights, and bounds on those weights (over the
/// entries held, dead ones included: bounds, not exact extremes).
#[derive(Debug, Default)]
struct Postings {
    /// (slot, weight), slots ascending.
    entries: Vec<(u32, f32)>,
    max: f32,
    min: f32,
}

impl Postings {
    fn push(&mut self, slot: u32, w: f32) {
        if self.entries.is_empty() {
            (self.max, self.min) = (w, w);
        } else {
            self.max = self.max.max(w);
            self.min = self.min.min(w);
        }
        self.entries.push((slot, w));
    }
}

/// A query index's postings and weight, with the most it can add to a point's score.
struct Term<'a> {
    entries: &'a [(u32, f32)],
    weight: f32,
    bound: f32,
}

/// A hit kept while searching: higher score first, ties by lower id (the order of
/// [`best_first`]).
#[derive(Clone, Copy)]
struct Kept {
    score: f32,
    id: PointId,
}

impl Kept {
    /// Whether `self` ranks after `other`.
    fn worse(&self, other: &Kept) -> bool {
        self.score
            .total_cmp(&other.score)
            .then(other.id.cmp(&self.id))
            .is_lt()
    }
}

/// The best `limit` of what is offered, as a binary min-heap on [`Kept::worse`].
struct TopK {
    limit: usize,
    heap: Vec<Kept>,
}

impl TopK {
    fn new(limit: usize) -> TopK {
        TopK {
            limit,
            heap: Vec::with_capacity(limit + 1),
        }
    }

    fn is_full(&self) -> bool {
        self.heap.len() >= self.limit
    }

    /// The score a point must reach to be kept (a tie enters with a lower id).
    fn threshold(&self) -> f32 {
        if self.is_full() {
            self.heap[0].score
        } else {
            f32::NEG_INFINITY
        }
    }

    /// Whether `k` would be kept.
    fn admits(&self, k: &Kept) -> bool {
        self.limit > 0 && (!self.is_full() || self.heap[0].worse(k))
    }

    fn offer(&mut self, k: Kept) {
        if !self.admits(&k) {
            return;
        }
        if self.is_full() {
            self.heap[0] = k;
            self.sift_down(0);
        } else {
            self.heap.push(k);
            let mut i = self.heap.len() - 1;
            while i > 0 {
                let parent = (i - 1) / 2;
                if self.heap[i].worse(&self.heap[parent]) {
                    self.heap.swap(i, parent);
                    i = parent;
                } else {
                    break;
                }
            }
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut worst = i;
            if l < self.heap.len() && self.heap[l].worse(&self.heap[worst]) {
                worst = l;
            }
            if r < self.heap.len() && self.heap[r].worse(&self.heap[worst]) {
                worst = r;
            }
            if worst == i {
                return;
            }
            self.heap.swap(i, worst);
            i = worst;
        }
    }

    fn into_sorted(self) -> Vec<(PointId, f32)> {
        let mut out: Vec<(PointId, f32)> = self.heap.into_iter().map(|k| (k.id, k.score)).collect();
        best_first(&mut out, usize::MAX);
        out
    }
}

impl SparseIndex {
    /// Points holding the vector.
    pub(crate) fn len(&self) -> usize {
        self.slot_of.len()
    }

    /// Live points holding `index`.
    pub(crate) fn df(&self, index: u32) -> usize {
        self.df.get(&index).copied().unwrap_or(0) as usize
    }

    /// The points holding any of `indices`.
    pub(crate) fn holders(&self, indices: impl Iterator<Item = u32>) -> HashSet<PointId> {
        let mut out = HashSet::new();
        for i in indices {
            if let Some(p) = self.postings.get(&i) {
                out.extend(
                    p.entries
                        .iter()
                        .filter_map(|&(slot, _)| self.slots[slot as usize]),
                );
            }
        }
        out
    }

    /// Indexes `v` as point `id`'s vector, replacing what `old` (its previous one) put in.
    pub(crate) fn insert(&mut self, id: PointId, old: Option<&SparseVector>, v: &SparseVector) {
        self.remove(id, old);
        let slot = self.slots.len() as u32;
        self.slots.push(Some(id));
        self.slot_of.insert(id, slot);
        for (&i, &w) in v.indices.iter().zip(&v.values) {
            self.postings.entry(i).or_default().push(slot, w);
            *self.df.entry(i).or_default() += 1;
        }
        self.live_entries += v.indices.len();
    }

    /// Forgets point `id`, whose vector was `old` (nothing when it had none).
    pub(crate) fn remove(&mut self, id: PointId, old: Option<&SparseVector>) {
        let Some(slot) = self.slot_of.remove(&id) else {
            return;
        };
        self.slots[slot as usize] = None;
        self.dead_slots += 1;
        if let Some(old) = old {
            for i in &old.indices {
                if let Some(n) = self.df.get_mut(i) {
                    *n -= 1;
                    if *n == 0 {
                        self.df.remove(i);
                    }
                }
            }
            self.live_entries -= old.indices.len();
            self.dead_entries += old.indices.len();
        }
        if self.dead_entries > self.live_entries.max(1024)
            || self.dead_slots > self.slot_of.len().max(1024)
        {
            self.compact();
        }
    }

    /// Drops the postings of removed points, renumbers the slots densely and tightens the
    /// weight bounds.
    fn compact(&mut self) {
        let mut renumber = vec![u32::MAX; self.slots.len()];
        let mut slots = Vec::with_capacity(self.slot_of.len());
        for (old, id) in self.slots.iter().enumerate() {
            if let Some(id) = id {
                renumber[old] = slots.len() as u32;
                self.slot_of.insert(*id, slots.len() as u32);
                slots.push(Some(*id));
            }
        }
        self.slots = slots;
        self.postings.retain(|_, p| {
            let entries = std::mem::take(&mut p.entries);
            *p = Postings::default();
            for (slot, w) in entries {
                let new = renumber[slot as usize];
                if new != u32::MAX {
                    p.push(new, w);
                }
            }
            !p.entries.is_empty()
        });
        self.dead_entries = 0;
        self.dead_slots = 0;
    }

    /// The `limit` best points for `query` (dot product, higher first, ties by id) among
    /// those `passes` accepts (every point when `None`), scoring at least `min_score` when
    /// given; points sharing no index with the query are no match.
    ///
    /// With positive query weights over non-negative postings (BM25, SPLADE) the walk is
    /// document at a time with MaxScore pruning: the query's indices sorted by the most each
    /// can add, the ones whose bounds together cannot lift a point to the current `limit`-th
    /// score only probe the points the others bring up, and stop probing as soon as the rest
    /// cannot lift it either. Otherwise every posting is accumulated (term at a time).
    pub(crate) fn search(
        &self,
        query: &SparseVector,
        limit: usize,
        min_score: Option<f32>,
        passes: Option<&dyn Fn(PointId) -> bool>,
    ) -> Vec<(PointId, f32)> {
        let mut terms: Vec<Term<'_>> = Vec::with_capacity(query.indices.len());
        let mut prunable = true;
        for (i, &q) in query.indices.iter().zip(&query.values) {
            let Some(p) = self.postings.get(i) else {
                continue;
            };
            prunable &= q > 0.0 && p.min >= 0.0;
            terms.push(Term {
                entries: &p.entries,
                weight: q,
                bound: q * p.max,
            });
        }
        if prunable {
            self.search_max_score(terms, limit, min_score, passes)
        } else {
            self.search_accumulated(&terms, limit, min_score, passes)
        }
    }

    fn search_max_score(
        &self,
        mut terms: Vec<Term<'_>>,
        limit: usize,
        min_score: Option<f32>,
        passes: Option<&dyn Fn(PointId) -> bool>,
    ) -> Vec<(PointId, f32)> {
        terms.sort_by(|a, b| a.bound.total_cmp(&b.bound));
        // upto[i]: the most terms 0..=i can add together.
        let mut upto = Vec::with_capacity(terms.len());
        let mut sum = 0.0f32;
        for t in &terms {
            sum += t.bound;
            upto.push(sum);
        }
        // Rounding in the sums above must not prune a point that reaches the threshold.
        let slack = |x: f32| x + x.abs() * 1e-5 + f32::MIN_POSITIVE;
        let floor = min_score.unwrap_or(f32::NEG_INFINITY);
        let mut top = TopK::new(limit);
        let mut at = vec![0usize; terms.len()];
        // Terms below `essential` cannot lift a point on their own.
        let mut essential = 0;
        loop {
            let bar = top.threshold().max(floor);
            while essential < terms.len() && slack(upto[essential]) < bar {
                essential += 1;
            }
            if essential == terms.len() {
                break;
            }
            // The next point any essential term holds.
            let mut slot = u32::MAX;
            for (t, term) in terms.iter().enumerate().skip(essential) {
                if let Some(&(s, _)) = term.entries.get(at[t]) {
                    slot = slot.min(s);
                }
            }
            if slot == u32::MAX {
                break;
            }
            let mut score = 0.0f32;
            for (t, term) in terms.iter().enumerate().skip(essential) {
                if let Some(&(s, w)) = term.entries.get(at[t]) {
                    if s == slot {
                        score += term.weight * w;
                        at[t] += 1;
                    }
                }
            }
            let mut lifted = true;
            for t in (0..essential).rev() {
                if slack(score + upto[t]) < bar {
                    lifted = false;
                    break;
                }
                let entries = terms[t].entries;
                // Gallop to the first entry at or past `slot`.
                let from = at[t];
                let (mut lo, mut hi, mut step) = (from, from, 1);
                while hi < entries.len() && entries[hi].0 < slot {
                    lo = hi + 1;
                    hi = from + step;
                    step *= 2;
                }
                let hi = hi.min(entries.len());
                at[t] = lo + entries[lo..hi].partition_point(|e| e.0 < slot);
                if let Some(&(s, w)) = entries.get(at[t]) {
                    if s == slot {
                        score += terms[t].weight * w;
                        at[t] += 1;
                    }
                }
            }
            if !lifted || score < floor {
                continue;
            }
            let Some(id) = self.slots[slot as usize] else {
                continue;
            };
            let kept = Kept { score, id };
            if top.admits(&kept) && passes.is_none_or(|p| p(id)) {
                top.offer(kept);
            }
        }
        top.into_sorted()
    }

    fn search_accumulated(
        &self,
        terms: &[Term<'_>],
        limit: usize,
        min_score: Option<f32>,
        passes: Option<&dyn Fn(PointId) -> bool>,
    ) -> Vec<(PointId, f32)> {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let Scratch {
                scores,
                stamps,
                generation,
                touched,
            } = &mut *scratch;
            // A slot's score counts only when its stamp is this query's: no clearing of the
            // accumulator, whose size is the shard's, per query.
            *generation = generation.wrapping_add(1);
            if *generation == 0 {
                stamps.iter_mut().for_each(|s| *s = 0);
                *generation = 1;
            }
            if scores.len() < self.slots.len() {
                scores.resize(self.slots.len(), 0.0);
                stamps.resize(self.slots.len(), 0);
            }
            touched.clear();
            for term in terms {
                for &(slot, w) in term.entries {
                    let s = slot as usize;
                    if stamps[s] != *generation {
                        stamps[s] = *generation;
                        scores[s] = 0.0;
                        touched.push(slot);
                    }
                    scores[s] += term.weight * w;
                }
            }
            let mut top = TopK::new(limit);
            for &slot in touched.iter() {
                let score = scores[slot as usize];
                if min_score.is_some_and(|m| score < m) {
                    continue;
                }
                let Some(id) = self.slots[slot as usize] else {
                    continue;
                };
                let kept = Kept { score, id };
                if top.admits(&kept) && passes.is_none_or(|p| p(id)) {
                    top.offer(kept);
                }
            }
            top.into_sorted()
        })
    }
}

/// A search thread's accumulator, kept between queries.
#[derive(Default)]
struct Scratch {
    scores: Vec<f32>,
    /// The generation of the query that last wrote each slot's score.
    stamps: Vec<u32>,
    generation: u32,
    touched: Vec<u32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Sorts (id, score) pairs highest score first, ties by id, keeping the first `limit`.
pub(crate) fn best_first(hits: &mut Vec<(PointId, f32)>, limit: usize) {
    let order = |a: &(PointId, f32), b: &(PointId, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if hits.len() > limit {
        hits.select_nth_unstable_by(limit, order);
        hits.truncate(limit);
    }
    hits.sort_by(order);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sv(pairs: &[(u32, f32)]) -> SparseVector {
        SparseVector::new(
            pairs.iter().map(|p| p.0).collect(),
            pairs.iter().map(|p| p.1).collect(),
        )
        .unwrap()
    }

    #[test]
    fn vectors_are_checked_and_sorted() {
        assert_eq!(sv(&[(5, 1.0), (2, 3.0)]).indices, vec![2, 5]);
        assert_eq!(sv(&[(5, 1.0), (2, 3.0)]).values, vec![3.0, 1.0]);
        assert!(SparseVector::new(vec![1, 1], vec![1.0, 2.0])
            .unwrap_err()
            .contains("unique"));
        assert!(SparseVector::new(vec![1], vec![1.0, 2.0])
            .unwrap_err()
            .contains("same length"));
        assert!(SparseVector::new(vec![1], vec![f32::NAN])
            .unwrap_err()
            .contains("finite"));
        assert_eq!(
            sv(&[(1, 2.0), (3, 4.0)]).dot(&sv(&[(3, 0.5), (9, 1.0)])),
            Some(2.0)
        );
        assert_eq!(sv(&[(1, 2.0)]).dot(&sv(&[(2, 1.0)])), None);
    }

    /// The index against a scan of every point's vector, through inserts, replacements,
    /// removals and the compactions they trigger.
    #[test]
    fn the_index_answers_as_a_scan_does() {
        let mut state = 7u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        let mut index = SparseIndex::default();
        let mut stored: HashMap<PointId, SparseVector> = HashMap::new();
        for step in 0..20_000u32 {
            let id = PointId::Num((next() % 600) as u64);
            if next() % 4 == 0 {
                index.remove(id, stored.get(&id));
                stored.remove(&id);
            } else {
                let n = 1 + next() as usize % 12;
                let mut idx: Vec<u32> = (0..n).map(|_| next() % 200).collect();
                idx.sort();
                idx.dedup();
                let vals: Vec<f32> = idx.iter().map(|_| (next() % 1000) as f32 / 100.0).collect();
                let v = SparseVector::new(idx, vals).unwrap();
                index.insert(id, stored.get(&id), &v);
                stored.insert(id, v);
            }
            if step % 250 == 0 {
                let a = next() % 200;
                let b = next() % 200 + 200;
                // Positive weights take the pruned walk; a negative one the accumulation.
                let q = if step % 500 == 0 {
                    sv(&[(a, 1.5), (b, 1.0), (3, 0.25), (7, 0.5)])
                } else {
                    sv(&[(a, 1.5), (b, -1.0), (3, 0.25)])
                };
                let even = |id: PointId| matches!(id, PointId::Num(n) if n % 2 == 0);
                let limit = [1, 10, 50][(step / 250 % 3) as usize];
                let floor = (step % 750 == 0).then_some(4.0f32);
                for filter in [None, Some(&even as &dyn Fn(PointId) -> bool)] {
                    let got = index.search(&q, limit, floor, filter);
                    let mut want: Vec<(PointId, f32)> = stored
                        .iter()
                        .filter(|(id, _)| filter.is_none_or(|f| f(**id)))
                        .filter_map(|(id, v)| q.dot(v).map(|s| (*id, s)))
                        .filter(|(_, s)| floor.is_none_or(|f| *s >= f))
                        .collect();
                    best_first(&mut want, limit);
                    let ctx = format!("step {step} limit {limit} floor {floor:?} {q:?}");
                    assert_eq!(got.len(), want.len(), "{ctx}\n{got:?}\n{want:?}");
                    let mut seen = std::collections::HashSet::new();
                    for (g, w) in got.iter().zip(&want) {
                        // Equal scores may come in any order: compare scores by rank, and
                        // each point's own score.
                        assert!((g.1 - w.1).abs() < 1e-4, "{ctx}\n{got:?}\n{want:?}");
                        assert!((q.dot(&stored[&g.0]).unwrap() - g.1).abs() < 1e-4, "{ctx}");
                        assert!(filter.is_none_or(|f| f(g.0)) && seen.insert(g.0), "{ctx}");
                    }
                }
                assert_eq!(index.len(), stored.len());
                let df3 = stored.values().filter(|v| v.indices.contains(&3)).count();
                assert_eq!(index.df(3), df3);
            }
        }
        assert!(index.dead_entries <= index.live_entries.max(1024));
        // Empty vectors written and removed over and over leave no growing trail of slots.
        let empty = SparseVector::default();
        for round in 0..10_000u64 {
            let id = PointId::Num(1_000_000 + round % 7);
            index.insert(id, Some(&empty), &empty);
        }
        assert!(
            index.slots.len() <= index.len() + 1024 + 1,
            "{}",
            index.slots.len()
        );
    }

    #[test]
    fn recommend_average_is_qdrants() {
        let a = sv(&[(1, 1.0), (2, 2.0)]);
        let b = sv(&[(2, 4.0), (5, 1.0)]);
        let n = sv(&[(1, 1.0), (9, 2.0)]);
        // mean(a, b) = {1: 0.5, 2: 3, 5: 0.5}; 2·mean − n = {1: 0, 2: 6, 5: 1, 9: −2}.
        assert_eq!(
            recommend_average(&[a.clone(), b.clone()], &[n]),
            sv(&[(1, 0.0), (2, 6.0), (5, 1.0), (9, -2.0)])
        );
        assert_eq!(
            recommend_average(&[a.clone(), b], &[]),
            sv(&[(1, 0.5), (2, 3.0), (5, 0.5)])
        );
    }

    #[test]
    fn idf_is_qdrants() {
        assert!((idf(1, 10) - ((10.0 - 1.0 + 0.5f64) / 1.5 + 1.0).ln() as f32).abs() < 1e-6);
        assert!(
            idf(10, 10) > 0.0,
            "an index every point holds still weighs a little"
        );
    }
}
