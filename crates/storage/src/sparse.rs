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
use std::collections::HashMap;

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
    /// Index → (slot, weight), slots ascending.
    postings: HashMap<u32, Vec<(u32, f32)>>,
    /// Index → live points holding it.
    df: HashMap<u32, u32>,
    live_entries: usize,
    dead_entries: usize,
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

    /// Indexes `v` as point `id`'s vector, replacing what `old` (its previous one) put in.
    pub(crate) fn insert(&mut self, id: PointId, old: Option<&SparseVector>, v: &SparseVector) {
        self.remove(id, old);
        let slot = self.slots.len() as u32;
        self.slots.push(Some(id));
        self.slot_of.insert(id, slot);
        for (&i, &w) in v.indices.iter().zip(&v.values) {
            self.postings.entry(i).or_default().push((slot, w));
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
        if self.dead_entries > self.live_entries.max(1024) {
            self.compact();
        }
    }

    /// Drops the postings of removed points and renumbers the slots densely.
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
        self.postings.retain(|_, list| {
            list.retain_mut(|(slot, _)| {
                let new = renumber[*slot as usize];
                *slot = new;
                new != u32::MAX
            });
            !list.is_empty()
        });
        self.dead_entries = 0;
    }

    /// The `limit` best points for `query` (dot product, higher first, ties by id) among
    /// those `passes` accepts, scoring at least `min_score` when given; points sharing no
    /// index with the query are no match.
    pub(crate) fn search(
        &self,
        query: &SparseVector,
        limit: usize,
        min_score: Option<f32>,
        passes: impl Fn(PointId) -> bool,
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
            for (i, &q) in query.indices.iter().zip(&query.values) {
                let Some(list) = self.postings.get(i) else {
                    continue;
                };
                for &(slot, w) in list {
                    let s = slot as usize;
                    if stamps[s] != *generation {
                        stamps[s] = *generation;
                        scores[s] = 0.0;
                        touched.push(slot);
                    }
                    scores[s] += q * w;
                }
            }
            let mut hits: Vec<(PointId, f32)> = touched
                .iter()
                .filter_map(|&slot| {
                    let id = self.slots[slot as usize]?;
                    let score = scores[slot as usize];
                    (min_score.is_none_or(|m| score >= m) && passes(id)).then_some((id, score))
                })
                .collect();
            best_first(&mut hits, limit);
            hits
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
            if step % 500 == 0 {
                let q = sv(&[(next() % 200, 1.5), (next() % 200 + 200, 1.0), (3, 0.25)]);
                let even = |id: PointId| matches!(id, PointId::Num(n) if n % 2 == 0);
                let got = index.search(&q, 10, None, even);
                let mut want: Vec<(PointId, f32)> = stored
                    .iter()
                    .filter(|(id, _)| even(**id))
                    .filter_map(|(id, v)| q.dot(v).map(|s| (*id, s)))
                    .collect();
                best_first(&mut want, 10);
                assert_eq!(got.len(), want.len(), "step {step}");
                for (g, w) in got.iter().zip(&want) {
                    assert_eq!(g.0, w.0, "step {step}");
                    assert!((g.1 - w.1).abs() < 1e-4, "step {step}");
                }
                assert_eq!(index.len(), stored.len());
                let df3 = stored.values().filter(|v| v.indices.contains(&3)).count();
                assert_eq!(index.df(3), df3);
            }
        }
        assert!(index.dead_entries <= index.live_entries.max(1024));
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
