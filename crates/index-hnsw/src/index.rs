//! The graph: insert, search, delete, repair.

use crate::arena::{Arena, SlotState};
use crate::config::{HnswConfig, StorageKind};
use crate::visited::with_visited;
use half::f16;
use index_core::{
    prepared_vector, IndexError, MemoryUsage, PointFilter, PointOffset, Result, ScoredOffset,
    SearchParams, TopK, VectorIndex, VectorIndexWrite,
};
use quant::{
    kernels, BinaryQuantizer, BinaryQuantizerConfig, Kernels, Metric, ScalarQuantizer,
    ScalarQuantizerConfig,
};
use rayon::prelude::*;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};

/// Stripes of the locks that serialise writers of one node's links.
const LINK_LOCK_STRIPES: usize = 4096;
/// The highest level a node may get (a level needs `M^level` nodes to be likely at all).
const MAX_LEVEL: usize = 16;
/// Deleted nodes a repair walks through, per link list, looking for live replacements.
const REPAIR_EXPANSION: usize = 64;
/// How many nodes ahead of the one being measured a walk prefetches.
const PREFETCH_AHEAD: usize = 4;
/// How many disallowed neighbours' link lists a filter-first expansion prefetches: about as
/// many as it looks through when a tenth of the points pass.
const LOOK_THROUGH_PREFETCH: usize = 16;
/// How many listed offsets ahead of the one being measured an exact scan prefetches.
const SCAN_PREFETCH_AHEAD: usize = 8;
/// Batches of [`HnswIndex::insert_all`] from this many vectors walk 8-bit codes of them: below,
/// training and encoding would cost about what they save.
const BATCH_CODES_MIN: usize = 1_000;
/// Rounds of [`HnswIndex::link_unfindable`] at most (each after the first checks only the
/// nodes the one before changed, a handful).
const UNFINDABLE_ROUNDS: usize = 8;
/// `entry` when the graph is empty.
const NO_ENTRY: u64 = u64::MAX;
/// Offsets a filter that cannot count itself is tried on to estimate how many points pass.
const FILTER_SAMPLE: usize = 256;
/// Below this share of points passing a filter, the walk moves only through allowed nodes,
/// reaching past disallowed neighbours to theirs (two hops), instead of walking every node
/// and keeping the allowed ones: the plain walk's stopping rule waits for `ef` allowed
/// results, so with few of them it crawls through most of the graph.
const FILTER_FIRST_BELOW: f64 = 0.5;

/// How a filtered search runs; see [`HnswIndex::plan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FilterPlan {
    /// Exact distances to every allowed point.
    Scan,
    /// The walk over allowed nodes only, with two-hop expansion past disallowed ones.
    FilterFirst,
    /// The ordinary walk through every node, keeping allowed ones as results.
    PassThrough,
}

/// How payloads are encoded and measured: the quantizer of a quantized storage.
#[derive(Debug, Clone)]
pub(crate) enum Codec {
    F32,
    F16,
    Sq8(ScalarQuantizer),
    Binary(BinaryQuantizer),
}

impl Codec {
    pub(crate) fn kind(&self) -> StorageKind {
        match self {
            Codec::F32 => StorageKind::F32,
            Codec::F16 => StorageKind::F16,
            Codec::Sq8(_) => StorageKind::Sq8,
            Codec::Binary(_) => StorageKind::Binary,
        }
    }

    pub(crate) fn payload_bytes(&self, dim: usize) -> usize {
        match self {
            Codec::F32 => dim * 4,
            Codec::F16 => dim * 2,
            Codec::Sq8(_) => 4 + dim,
            Codec::Binary(_) => dim.div_ceil(64) * 8,
        }
    }

    /// Encodes a prepared vector into `out` (sized `payload_bytes`).
    fn encode(&self, v: &[f32], out: &mut Vec<u8>) -> Result<()> {
        out.clear();
        match self {
            Codec::F32 => out.extend_from_slice(bytemuck::cast_slice(v)),
            Codec::F16 => v
                .iter()
                .for_each(|&x| out.extend_from_slice(&f16::from_f32(x).to_le_bytes())),
            Codec::Sq8(sq) => {
                let (codes, correction) = sq.encode(v)?;
                out.extend_from_slice(&correction.to_le_bytes());
                out.extend_from_slice(&codes);
            }
            Codec::Binary(bq) => out.extend_from_slice(bytemuck::cast_slice(&bq.encode(v)?)),
        }
        Ok(())
    }
}

/// A hierarchical navigable small-world graph over vectors addressed by [`PointOffset`].
///
/// See the crate documentation for the design; every method takes `&self`, so inserts,
/// deletes and searches run from any number of threads at once.
pub struct HnswIndex {
    pub(crate) dim: usize,
    pub(crate) metric: Metric,
    pub(crate) config: HnswConfig,
    pub(crate) codec: Codec,
    pub(crate) arena: Arena,
    /// Links of the levels above 0, for the few nodes that have them: level `l ≥ 1` of a node
    /// is words `(l − 1)·(1 + M) ..` of its entry, a count then ids.
    pub(crate) upper: RwLock<HashMap<u32, Box<[AtomicU32]>>>,
    /// Entry point and top level, packed `level << 32 | offset` ([`NO_ENTRY`] when empty).
    pub(crate) entry: AtomicU64,
    entry_lock: Mutex<()>,
    link_locks: Box<[Mutex<()>]>,
    pub(crate) live: AtomicUsize,
    /// One past the highest offset ever claimed.
    pub(crate) end: AtomicU32,
    /// Nodes below this offset were checked by [`HnswIndex::link_unfindable`].
    pub(crate) checked_findable: AtomicU32,
    kernels: &'static Kernels,
}

impl std::fmt::Debug for HnswIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HnswIndex")
            .field("dim", &self.dim)
            .field("metric", &self.metric)
            .field("config", &self.config)
            .field("live", &self.live.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A candidate: distance then offset, the order of [`ScoredOffset`].
type Candidate = ScoredOffset;

/// A node's vector as the link heuristic reads it.
#[derive(Clone, Copy)]
enum NodeVector<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
}

/// 8-bit codes of a batch of vectors, which its inserts walk instead of the full vectors. An
/// insert's walks are most of a build, and the profile shows them waiting on the loads of the
/// vectors they measure: a 50-dimensional `f32` vector spans four cache lines, its code one.
/// The candidates a walk finds are measured again exactly before the heuristic chooses among
/// them, so links are still chosen by exact distances; only the set of candidates may differ
/// slightly. The codes live in an anonymous map, so that the memory goes back to the system
/// when the batch ends (a heap allocation of this size can stay in the process).
pub(crate) struct BuildCodes {
    sq: ScalarQuantizer,
    /// `n · dim` code bytes, then `n` corrections (`f32`, little-endian) from `corrections_at`.
    map: memmap2::MmapMut,
    dim: usize,
    n: usize,
    corrections_at: usize,
    /// Offset of the first code's vector.
    first: u32,
}

impl BuildCodes {
    /// Codes of `data` (vectors as users send them; prepared here), at offsets from `first`.
    /// `None` where codes do not apply: quantized storages (their inserts measure the full
    /// vectors kept apart) and Manhattan (whose 8-bit walk takes another scorer).
    fn new(index: &HnswIndex, first: u32, data: &[f32]) -> Result<Option<BuildCodes>> {
        let dim = index.dim;
        let n = data.len() / dim;
        if index.config.storage.is_quantized() || index.metric == Metric::Manhattan || n < 2 {
            return Ok(None);
        }
        let prepare = |rows: &[f32], out: &mut Vec<f32>| {
            out.clear();
            out.extend_from_slice(rows);
            out.chunks_exact_mut(dim)
                .for_each(|v| index.metric.prepare(v));
        };
        // Trained on at most 20,000 vectors spread evenly over the batch (bounds for a walk
        // whose candidates are measured again exactly need no more; a prefix of a batch in
        // time or category order would clamp the rest), encoded in blocks through one buffer.
        let stride = n.div_ceil(20_000);
        let sample: Vec<f32> = data
            .chunks_exact(dim)
            .step_by(stride)
            .flatten()
            .copied()
            .collect();
        let mut buf = Vec::with_capacity(sample.len().max(1024 * dim));
        prepare(&sample, &mut buf);
        drop(sample);
        let sq = ScalarQuantizer::train(
            &buf,
            dim,
            &ScalarQuantizerConfig {
                quantile: 1.0,
                ..ScalarQuantizerConfig::default()
            },
        )?;
        let corrections_at = (n * dim).next_multiple_of(4);
        let mut map = memmap2::MmapMut::map_anon(corrections_at + n * 4)?;
        let (codes, corrections) = map.split_at_mut(corrections_at);
        for (b, block) in data.chunks(1024 * dim).enumerate() {
            prepare(block, &mut buf);
            for (i, v) in buf.chunks_exact(dim).enumerate() {
                let row = b * 1024 + i;
                let correction = sq.encode_into(v, &mut codes[row * dim..(row + 1) * dim])?;
                corrections[row * 4..row * 4 + 4].copy_from_slice(&correction.to_le_bytes());
            }
        }
        Ok(Some(BuildCodes {
            sq,
            map,
            dim,
            n,
            corrections_at,
            first,
        }))
    }

    /// The code and correction of the node at `offset`, if it is one of the batch.
    #[inline]
    fn get(&self, offset: u32) -> Option<(&[u8], f32)> {
        let i = offset.checked_sub(self.first)? as usize;
        if i >= self.n {
            return None;
        }
        let c = self.corrections_at + i * 4;
        let correction = f32::from_le_bytes(self.map[c..c + 4].try_into().expect("4 bytes"));
        Some((&self.map[i * self.dim..(i + 1) * self.dim], correction))
    }
}

/// Buffers a walk reuses from one search to the next on the same thread.
#[derive(Default)]
struct SearchHeaps {
    frontier: Frontier,
    buf: Vec<u32>,
}

/// The two heaps of a best-first walk: nodes to expand, closest first, and the `ef` best
/// results, farthest on top.
#[derive(Default)]
struct Frontier {
    candidates: BinaryHeap<Reverse<Candidate>>,
    results: BinaryHeap<Candidate>,
}

impl Frontier {
    /// Takes a measured node: a candidate to expand when the results are not full or it is
    /// closer than the farthest of them, and a result too when `ok` (it may be returned).
    #[inline]
    fn offer(&mut self, node: u32, distance: f32, ok: bool, ef: usize) {
        if self.results.len() < ef || self.results.peek().is_some_and(|w| distance < w.distance) {
            let cand = Candidate::new(node, distance);
            self.candidates.push(Reverse(cand));
            if ok {
                self.results.push(cand);
                if self.results.len() > ef {
                    self.results.pop();
                }
            }
        }
    }

    /// The next node to expand, or `None` when the walk is done: nothing is left, or the
    /// closest candidate is farther than the farthest of `ef` results.
    #[inline]
    fn next(&mut self, ef: usize) -> Option<Candidate> {
        let Reverse(c) = self.candidates.pop()?;
        let done = self.results.len() >= ef
            && self.results.peek().is_some_and(|w| c.distance > w.distance);
        (!done).then_some(c)
    }

    /// The results, closest first; the heaps are left empty.
    fn take_sorted(&mut self) -> Vec<Candidate> {
        self.candidates.clear();
        let mut out: Vec<Candidate> = self.results.drain().collect();
        out.sort();
        out
    }
}

thread_local! {
    static SEARCH_HEAPS: std::cell::RefCell<SearchHeaps> = std::cell::RefCell::new(SearchHeaps::default());
}

/// Runs `f` with this thread's visited set (sized for `capacity` nodes) and walk buffers,
/// all emptied.
fn with_walk_state<R>(
    capacity: usize,
    f: impl FnOnce(&mut crate::visited::Visited, &mut Frontier, &mut Vec<u32>) -> R,
) -> R {
    with_visited(capacity, |visited| {
        SEARCH_HEAPS.with(|heaps| {
            let mut heaps = heaps.borrow_mut();
            let SearchHeaps { frontier, buf } = &mut *heaps;
            frontier.candidates.clear();
            frontier.results.clear();
            f(visited, frontier, buf)
        })
    })
}

impl HnswIndex {
    /// An empty index with `f32` or `f16` storage. Quantized storages need training data:
    /// use [`HnswIndex::with_training`] or [`HnswIndex::build`].
    pub fn new(dim: usize, metric: Metric, config: HnswConfig) -> Result<HnswIndex> {
        if config.storage.is_quantized() {
            return Err(IndexError::InvalidParameter {
                name: "storage",
                reason: format!(
                    "{:?} storage needs training vectors: use with_training or build",
                    config.storage
                ),
            });
        }
        let codec = match config.storage {
            StorageKind::F16 => Codec::F16,
            _ => Codec::F32,
        };
        Self::with_codec(dim, metric, config, codec)
    }

    /// An empty index whose quantizer (for [`StorageKind::Sq8`] and [`StorageKind::Binary`])
    /// is trained on `sample`, a flat buffer of vectors as users send them.
    pub fn with_training(
        dim: usize,
        metric: Metric,
        config: HnswConfig,
        sample: &[f32],
    ) -> Result<HnswIndex> {
        let mut prepared = sample.to_vec();
        if dim > 0 {
            prepared
                .chunks_exact_mut(dim)
                .for_each(|v| metric.prepare(v));
        }
        let codec = match config.storage {
            StorageKind::F32 => Codec::F32,
            StorageKind::F16 => Codec::F16,
            StorageKind::Sq8 => {
                let sq_config = ScalarQuantizerConfig {
                    quantile: config.quantile,
                    ..ScalarQuantizerConfig::default()
                };
                Codec::Sq8(ScalarQuantizer::train(&prepared, dim, &sq_config)?)
            }
            StorageKind::Binary => Codec::Binary(BinaryQuantizer::train(
                &prepared,
                dim,
                &BinaryQuantizerConfig::default(),
            )?),
        };
        Self::with_codec(dim, metric, config, codec)
    }

    pub(crate) fn with_codec(
        dim: usize,
        metric: Metric,
        config: HnswConfig,
        codec: Codec,
    ) -> Result<HnswIndex> {
        config.validate()?;
        if dim == 0 || dim > quant::MAX_DIMENSION {
            return Err(IndexError::InvalidParameter {
                name: "dim",
                reason: format!("{dim} is not between 1 and {}", quant::MAX_DIMENSION),
            });
        }
        let secondary = if config.storage.is_quantized() {
            dim * 4
        } else {
            0
        };
        let arena = Arena::new(1 + config.m0(), codec.payload_bytes(dim), secondary);
        Ok(HnswIndex {
            dim,
            metric,
            config,
            codec,
            arena,
            upper: RwLock::new(HashMap::new()),
            entry: AtomicU64::new(NO_ENTRY),
            entry_lock: Mutex::new(()),
            link_locks: (0..LINK_LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            live: AtomicUsize::new(0),
            end: AtomicU32::new(0),
            checked_findable: AtomicU32::new(0),
            kernels: kernels(),
        })
    }

    /// Builds an index over `data` (a flat buffer of `n` vectors, which get offsets
    /// `0 .. n`), inserting from every thread of the current rayon pool. Quantizers are
    /// trained on `data`.
    pub fn build(
        dim: usize,
        metric: Metric,
        config: HnswConfig,
        data: &[f32],
    ) -> Result<HnswIndex> {
        if dim == 0 || !data.len().is_multiple_of(dim) {
            return Err(IndexError::InvalidParameter {
                name: "data",
                reason: format!(
                    "{} values are not whole vectors of dimension {dim}",
                    data.len()
                ),
            });
        }
        let index = if config.storage.is_quantized() {
            HnswIndex::with_training(dim, metric, config, data)?
        } else {
            HnswIndex::new(dim, metric, config)?
        };
        index.insert_all(0, data)?;
        // Make every node reachable and findable by a search for its own vector.
        index.link_unreachable();
        Ok(index)
    }

    /// Inserts the vectors of `data` at offsets `first, first + 1, ...`, in parallel. A batch
    /// of at least 1,000 vectors is walked through 8-bit codes of its own
    /// vectors (see `BuildCodes`), the links still chosen by exact distances; call
    /// [`HnswIndex::link_unreachable`] after it.
    pub fn insert_all(&self, first: PointOffset, data: &[f32]) -> Result<()> {
        let n = data.len() / self.dim;
        let codes = if n >= BATCH_CODES_MIN {
            BuildCodes::new(self, first, data)?
        } else {
            None
        };
        if (first as u64 + n as u64) >= u32::MAX as u64 {
            return Err(IndexError::OffsetOutOfRange {
                offset: first,
                limit: u32::MAX as usize,
            });
        }
        data.par_chunks_exact(self.dim)
            .enumerate()
            .try_for_each(|(i, v)| {
                let offset = first + i as u32;
                let v = prepared_vector(v, self.dim, self.metric)?;
                self.insert_prepared(offset, &v, codes.as_ref())
            })
    }

    /// The stored full-precision vector of a live or deleted node, as prepared at insert
    /// (normalised for cosine), converted from `f16` where that is the storage; `None` for an
    /// offset never inserted or a quantized index whose full vectors were not kept.
    pub fn vector(&self, offset: PointOffset) -> Option<Vec<f32>> {
        if offset >= self.end.load(Ordering::Acquire) {
            return None;
        }
        match &self.codec {
            Codec::F16 => self
                .half_vector(offset)
                .map(|v| v.iter().map(|h| h.to_f32()).collect()),
            _ => self.full_vector(offset).map(<[f32]>::to_vec),
        }
    }

    /// Exact distance from `query` (as users send it; prepared here) to each of `offsets`,
    /// closest first, skipping offsets that hold no vector: the exact path storage takes when
    /// a payload index leaves few candidates.
    pub fn exact_search(
        &self,
        query: &[f32],
        offsets: &[PointOffset],
        limit: usize,
    ) -> Result<Vec<ScoredOffset>> {
        let q = prepared_vector(query, self.dim, self.metric)?;
        let end = self.end.load(Ordering::Acquire);
        let mut top = TopK::new(limit);
        for &o in offsets {
            if o < end && self.arena.state(o) == SlotState::Live {
                top.push(ScoredOffset::new(o, self.exact_distance(&q, o)));
            }
        }
        Ok(top.into_sorted_vec())
    }

    /// Gives every live node that no search can reach a link from the reachable graph, and
    /// every node inserted since the last call that a search for its own vector does not find
    /// a link from where that search ends; call after a batch of
    /// [`VectorIndexWrite::insert`]s (a bulk [`HnswIndex::build`] does it itself).
    pub fn link_unreachable(&self) {
        let end = self.end.load(Ordering::Acquire);
        self.link_orphans(end);
        let from = self
            .checked_findable
            .fetch_max(end, Ordering::AcqRel)
            .min(end);
        if self.link_unfindable(from, end) > 0 {
            // A link given in place of another can leave the node that lost it with none.
            self.link_orphans(end);
        }
    }

    /// The configuration.
    pub fn config(&self) -> &HnswConfig {
        &self.config
    }

    fn lock_links(&self, node: u32) -> std::sync::MutexGuard<'_, ()> {
        // The guarded data is the node's atomics, which stay consistent whatever a panicking
        // holder did, so a poisoned stripe is still usable.
        self.link_locks[node as usize % LINK_LOCK_STRIPES]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The level of a node: depends only on the seed and the offset.
    fn level_for(&self, offset: u32) -> usize {
        let mut x = self.config.seed ^ (offset as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        // splitmix64
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^= x >> 31;
        let uniform = ((x >> 11) as f64 + 1.0) / (1u64 << 53) as f64; // in (0, 1]
        let ml = 1.0 / (self.config.m as f64).ln();
        ((-uniform.ln() * ml) as usize).min(MAX_LEVEL)
    }

    fn entry(&self) -> Option<(u32, usize)> {
        let e = self.entry.load(Ordering::Acquire);
        (e != NO_ENTRY).then_some((e as u32, (e >> 32) as usize))
    }

    /// Runs `f` on the link words of `node` at `level` (`[count, id, id, ...]`), if the node
    /// has that level: level 0 lives in the node's record, the levels above in `upper`.
    #[inline]
    fn with_link_words<R>(
        &self,
        node: u32,
        level: usize,
        f: impl FnOnce(&[AtomicU32]) -> R,
    ) -> Option<R> {
        if level == 0 {
            let words = self.arena.links(node);
            return (!words.is_empty()).then(|| f(words));
        }
        let upper = self.upper.read().unwrap_or_else(|e| e.into_inner());
        let stride = 1 + self.config.m;
        let start = (level - 1) * stride;
        upper.get(&node)?.get(start..start + stride).map(f)
    }

    /// Neighbours of `node` at `level`, copied out.
    #[inline]
    fn neighbours(&self, node: u32, level: usize, out: &mut Vec<u32>) {
        out.clear();
        self.with_link_words(node, level, |words| {
            let count = (words[0].load(Ordering::Acquire) as usize).min(words.len() - 1);
            out.extend(
                words[1..1 + count]
                    .iter()
                    .map(|w| w.load(Ordering::Relaxed)),
            );
        });
    }

    /// Replaces the neighbours of `node` at `level`. The caller holds the node's link lock.
    fn set_neighbours(&self, node: u32, level: usize, ids: &[u32]) {
        self.with_link_words(node, level, |words| {
            let n = ids.len().min(words.len() - 1);
            for (w, &id) in words[1..].iter().zip(&ids[..n]) {
                w.store(id, Ordering::Relaxed);
            }
            words[0].store(n as u32, Ordering::Release);
        });
    }

    fn max_links(&self, level: usize) -> usize {
        if level == 0 {
            self.config.m0()
        } else {
            self.config.m
        }
    }

    /// The full-precision (prepared) vector of a published node, where one is stored.
    #[inline]
    fn full_vector(&self, node: u32) -> Option<&[f32]> {
        match &self.codec {
            Codec::F32 => self
                .arena
                .payload(node)
                .map(|p| &bytemuck::cast_slice(p)[..self.dim]),
            Codec::Sq8(_) | Codec::Binary(_) => self
                .arena
                .secondary(node)
                .map(|p| &bytemuck::cast_slice(p)[..self.dim]),
            Codec::F16 => None,
        }
    }

    #[inline]
    fn half_vector(&self, node: u32) -> Option<&[f16]> {
        self.arena
            .payload(node)
            .map(|p| &bytemuck::cast_slice(p)[..self.dim])
    }

    /// Exact distance from a prepared query to a node (full precision, or `f16`).
    #[inline]
    fn exact_distance(&self, query: &[f32], node: u32) -> f32 {
        match &self.codec {
            Codec::F16 => self.half_vector(node).map_or(f32::INFINITY, |v| {
                self.metric.distance_f16(self.kernels, query, v)
            }),
            _ => self.full_vector(node).map_or(f32::INFINITY, |v| {
                self.metric.distance(self.kernels, query, v)
            }),
        }
    }

    /// Exact distance from a prepared query to a published node, and whether it is live: one
    /// record lookup for what an insert's walk needs.
    #[inline]
    fn measure_exact(&self, query: &[f32], node: u32) -> Option<(f32, bool)> {
        let (p, live) = self.arena.payload_and_liveness(node)?;
        let d = match &self.codec {
            Codec::F32 => {
                self.metric
                    .distance(self.kernels, query, &bytemuck::cast_slice(p)[..self.dim])
            }
            Codec::F16 => {
                self.metric
                    .distance_f16(self.kernels, query, &bytemuck::cast_slice(p)[..self.dim])
            }
            Codec::Sq8(_) | Codec::Binary(_) => {
                let full = self.arena.secondary(node)?;
                self.metric
                    .distance(self.kernels, query, &bytemuck::cast_slice(full)[..self.dim])
            }
        };
        Some((d, live))
    }

    /// A greedy walk on one upper level: the closest node reachable from `start`.
    fn greedy<M: Fn(u32) -> Option<(f32, bool)>>(
        &self,
        measure: &M,
        mut best: Candidate,
        level: usize,
        buf: &mut Vec<u32>,
    ) -> Candidate {
        loop {
            let mut improved = false;
            self.neighbours(best.offset, level, buf);
            for &n in buf.iter() {
                if let Some((d, _)) = measure(n) {
                    let c = Candidate::new(n, d);
                    if c < best {
                        best = c;
                        improved = true;
                    }
                }
            }
            if !improved {
                return best;
            }
        }
    }

    /// Best-first search of one level (Algorithm 2 of the paper): up to `ef` closest nodes.
    ///
    /// `measure` gives a node's distance and whether it may be a result (live, allowed by the
    /// filter), or `None` for a node not yet published. The walk goes through every node, so a
    /// restrictive filter or deleted nodes do not cut the graph apart.
    fn search_level<M: Fn(u32) -> Option<(f32, bool)>, P: Fn(u32)>(
        &self,
        measure: &M,
        prefetch: &P,
        entries: &[u32],
        ef: usize,
        level: usize,
    ) -> Vec<Candidate> {
        with_walk_state(
            self.end.load(Ordering::Acquire) as usize,
            |visited, frontier, buf| {
                for &e in entries {
                    if visited.insert(e) {
                        if let Some((d, ok)) = measure(e) {
                            frontier.candidates.push(Reverse(Candidate::new(e, d)));
                            if ok {
                                frontier.results.push(Candidate::new(e, d));
                            }
                        }
                    }
                }
                while frontier.results.len() > ef {
                    frontier.results.pop();
                }
                while let Some(c) = frontier.next(ef) {
                    self.neighbours(c.offset, level, buf);
                    buf.retain(|&n| visited.insert(n));
                    // Prefetch a few nodes ahead of the one being measured (what `measure`
                    // reads): enough to hide the memory latency, few enough not to overflow the
                    // CPU's miss buffers.
                    for &n in buf.iter().take(PREFETCH_AHEAD) {
                        prefetch(n);
                    }
                    for (k, &n) in buf.iter().enumerate() {
                        if let Some(&ahead) = buf.get(k + PREFETCH_AHEAD) {
                            prefetch(ahead);
                        }
                        if let Some((d, ok)) = measure(n) {
                            frontier.offer(n, d, ok, ef);
                        }
                    }
                    // The closest candidate is most likely expanded next: start loading its
                    // links while the heap is popped.
                    if level == 0 {
                        if let Some(Reverse(next)) = frontier.candidates.peek() {
                            self.arena.prefetch_links(next.offset);
                        }
                    }
                }
                frontier.take_sorted()
            },
        )
    }

    /// Best-first search of level 0 that moves only through nodes `allowed` lets through
    /// (the idea of ACORN-1, Patel et al., SIGMOD 2024): a disallowed neighbour is not
    /// measured but looked through, its own allowed neighbours taken in its place, up to the
    /// layer's link count per expansion. Distances are computed for allowed nodes only, and
    /// the stopping rule sees only allowed candidates, so a filter that passes a few percent
    /// of the points neither cuts the walk off nor lets it crawl the whole graph. The start
    /// node may be disallowed: it is expanded, never returned.
    fn search_level_filter_first<M, A>(
        &self,
        measure: &M,
        allowed: &A,
        start: u32,
        ef: usize,
    ) -> Vec<Candidate>
    where
        M: Fn(u32) -> Option<(f32, bool)>,
        A: Fn(u32) -> bool,
    {
        let fan_out = self.config.m0();
        with_walk_state(
            self.end.load(Ordering::Acquire) as usize,
            |visited, frontier, buf| {
                let mut hop = Vec::with_capacity(fan_out);
                let mut next: Vec<u32> = Vec::with_capacity(fan_out);
                let mut through: Vec<u32> = Vec::with_capacity(fan_out);
                visited.insert(start);
                if let Some((d, ok)) = measure(start) {
                    frontier.candidates.push(Reverse(Candidate::new(start, d)));
                    if ok {
                        frontier.results.push(Candidate::new(start, d));
                    }
                }
                while let Some(c) = frontier.next(ef) {
                    self.neighbours(c.offset, 0, buf);
                    next.clear();
                    through.clear();
                    // Allowed neighbours first; the disallowed ones are looked through only
                    // while the expansion has fewer than `fan_out` allowed nodes, and marked
                    // visited only when they are (a later expansion may look through the rest).
                    for &n in buf.iter() {
                        if visited.contains(n) {
                            continue;
                        }
                        if allowed(n) {
                            visited.insert(n);
                            next.push(n);
                            self.arena.prefetch(n);
                        } else {
                            // Only the first few are likely to be looked through; prefetching
                            // every one would overflow the CPU's miss buffers.
                            if through.len() < LOOK_THROUGH_PREFETCH {
                                self.arena.prefetch_links(n);
                            }
                            through.push(n);
                        }
                    }
                    for &n in through.iter() {
                        if next.len() >= fan_out {
                            break;
                        }
                        if !visited.insert(n) {
                            continue;
                        }
                        self.neighbours(n, 0, &mut hop);
                        for &h in &hop {
                            if next.len() >= fan_out {
                                break;
                            }
                            // The visited test first: it is one bit, a predicate may not be.
                            if !visited.contains(h) && allowed(h) {
                                visited.insert(h);
                                next.push(h);
                                self.arena.prefetch(h);
                            }
                        }
                    }
                    for &n in &next {
                        if let Some((d, ok)) = measure(n) {
                            frontier.offer(n, d, ok, ef);
                        }
                    }
                    if let Some(Reverse(next)) = frontier.candidates.peek() {
                        self.arena.prefetch_links(next.offset);
                    }
                }
                frontier.take_sorted()
            },
        )
    }

    /// The neighbour-selection heuristic (Algorithm 4 of the paper): keep a candidate only if it
    /// is closer to the base than to every neighbour kept so far, so links point in diverse
    /// directions. `candidates` are sorted closest first.
    fn select_neighbours(&self, candidates: &[Candidate], max: usize) -> Vec<u32> {
        // Look each candidate's vector up once: the pairwise checks below would otherwise
        // repeat the record lookup for every pair.
        let mut kept: Vec<(u32, Option<NodeVector<'_>>)> = Vec::with_capacity(max);
        for c in candidates {
            if kept.len() >= max {
                break;
            }
            let v = self.node_vector(c.offset);
            let diverse = kept
                .iter()
                .all(|(_, k)| self.pair_distance(v, *k) > c.distance);
            if diverse {
                kept.push((c.offset, v));
            }
        }
        kept.into_iter().map(|(n, _)| n).collect()
    }

    /// The vector the link heuristic measures a node by: full precision, or `f16`.
    #[inline]
    fn node_vector(&self, node: u32) -> Option<NodeVector<'_>> {
        match &self.codec {
            Codec::F16 => self.half_vector(node).map(NodeVector::F16),
            _ => self.full_vector(node).map(NodeVector::F32),
        }
    }

    #[inline]
    fn pair_distance(&self, a: Option<NodeVector<'_>>, b: Option<NodeVector<'_>>) -> f32 {
        match (a, b) {
            (Some(NodeVector::F32(x)), Some(NodeVector::F32(y))) => {
                self.metric.distance(self.kernels, x, y)
            }
            (Some(NodeVector::F16(x)), Some(NodeVector::F16(y))) => {
                self.metric.distance_f16_f16(self.kernels, x, y)
            }
            _ => f32::INFINITY,
        }
    }

    /// The heuristic's choice for `node`'s list at `level` among `ids`, measured from `node`.
    fn select_among(&self, node: u32, ids: &[u32], level: usize) -> Vec<u32> {
        let base = self.node_vector(node);
        let mut scored: Vec<Candidate> = ids
            .iter()
            .map(|&n| Candidate::new(n, self.pair_distance(base, self.node_vector(n))))
            .collect();
        scored.sort();
        self.select_neighbours(&scored, self.max_links(level))
    }

    /// Gives `host` a level-0 link to `node`, in place of its farthest link when its list is
    /// full. `None` when it had one already, else the node that lost its link, if any.
    fn link_from(&self, host: u32, node: u32, buf: &mut Vec<u32>) -> Option<Option<u32>> {
        let _guard = self.lock_links(host);
        self.neighbours(host, 0, buf);
        if buf.contains(&node) {
            return None;
        }
        let displaced = if buf.len() < self.config.m0() {
            buf.push(node);
            None
        } else {
            let base = self.node_vector(host);
            let farthest = buf
                .iter()
                .map(|&n| self.pair_distance(base, self.node_vector(n)))
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(i, _)| i)
                .expect("a full list is not empty");
            Some(std::mem::replace(&mut buf[farthest], node))
        };
        self.set_neighbours(host, 0, buf);
        Some(displaced)
    }

    /// Adds `new` to the links of `node` at `level`, pruning with the heuristic when full.
    fn connect(&self, node: u32, new: u32, level: usize) {
        let _guard = self.lock_links(node);
        let mut current = Vec::new();
        self.neighbours(node, level, &mut current);
        if current.contains(&new) {
            return;
        }
        let max = self.max_links(level);
        if current.len() < max {
            current.push(new);
            self.set_neighbours(node, level, &current);
            return;
        }
        current.push(new);
        let kept = self.select_among(node, &current, level);
        self.set_neighbours(node, level, &kept);
    }

    /// Greedy descent through the upper levels, from the entry at level `top` to level
    /// `down_to + 1`; returns the closest node found.
    fn descend<M: Fn(u32) -> Option<(f32, bool)>>(
        &self,
        measure: &M,
        entry: u32,
        top: usize,
        down_to: usize,
    ) -> Candidate {
        let mut best = Candidate::new(entry, measure(entry).map_or(f32::INFINITY, |(d, _)| d));
        let mut buf = Vec::new();
        for level in (down_to + 1..=top).rev() {
            best = self.greedy(measure, best, level, &mut buf);
        }
        best
    }

    /// The links an insert of `offset` (prepared vector `v`, top level `level`) gets on each of
    /// its levels, top first: a walk per level from the entry down, then the heuristic. With
    /// `rescore`, `measure` is approximate (8-bit codes) and the candidates a walk found are
    /// measured again exactly before the heuristic picks among them.
    #[allow(clippy::too_many_arguments)]
    fn choose_links<M: Fn(u32) -> Option<(f32, bool)>, P: Fn(u32)>(
        &self,
        offset: PointOffset,
        v: &[f32],
        level: usize,
        entry: u32,
        top: usize,
        measure: &M,
        prefetch: &P,
        rescore: bool,
    ) -> Vec<(usize, Vec<u32>)> {
        let mut entries = vec![self.descend(measure, entry, top, level).offset];
        let mut chosen = Vec::with_capacity(level.min(top) + 1);
        for l in (0..=level.min(top)).rev() {
            let mut found =
                self.search_level(measure, prefetch, &entries, self.config.ef_construct, l);
            found.retain(|c| c.offset != offset);
            if rescore {
                for c in found.iter().take(PREFETCH_AHEAD) {
                    self.arena.prefetch(c.offset);
                }
                let mut exact: Vec<Candidate> = Vec::with_capacity(found.len());
                for (k, c) in found.iter().enumerate() {
                    if let Some(ahead) = found.get(k + PREFETCH_AHEAD) {
                        self.arena.prefetch(ahead.offset);
                    }
                    // The codes do not know deletes: a node deleted during the walk is dropped
                    // here, as the exact walk would not have kept it.
                    if let Some((d, true)) = self.measure_exact(v, c.offset) {
                        exact.push(Candidate::new(c.offset, d));
                    }
                }
                exact.sort();
                found = exact;
            }
            chosen.push((l, self.select_neighbours(&found, self.max_links(l))));
            if !found.is_empty() {
                entries = found.iter().map(|c| c.offset).collect();
            }
        }
        chosen
    }

    fn insert_prepared(
        &self,
        offset: PointOffset,
        v: &[f32],
        codes: Option<&BuildCodes>,
    ) -> Result<()> {
        let level = self.level_for(offset);
        let mut payload = Vec::with_capacity(self.codec.payload_bytes(self.dim));
        self.codec.encode(v, &mut payload)?;
        let Some(mut writer) = self.arena.claim(offset)? else {
            return Err(IndexError::InvalidParameter {
                name: "offset",
                reason: format!("offset {offset} is already in use (offsets are written once)"),
            });
        };
        writer.write_payload(&payload);
        if self.codec.kind().is_quantized() {
            writer.write_secondary(bytemuck::cast_slice(v));
        }
        if level > 0 {
            let words = (0..level * (1 + self.config.m))
                .map(|_| AtomicU32::new(0))
                .collect();
            self.upper
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(offset, words);
        }
        writer.publish();
        self.end.fetch_max(offset + 1, Ordering::AcqRel);
        self.live.fetch_add(1, Ordering::AcqRel);

        // An insert that may raise the top level holds the entry lock throughout, so that two
        // such inserts cannot each link only the levels they saw and then both claim the top
        // (hnswlib does the same); every other insert runs in parallel.
        let mut entry_guard = Some(self.entry_lock.lock().unwrap_or_else(|e| e.into_inner()));
        let (entry, top) = match self.entry() {
            None => {
                self.entry
                    .store((level as u64) << 32 | offset as u64, Ordering::Release);
                return Ok(());
            }
            Some(e) => e,
        };
        if level <= top {
            entry_guard = None;
        }

        // The node's lists on every level are chosen and set before any other node links to
        // it. Linked level by level instead, the node became reachable through its backlinks
        // on an upper level while its lists below were still empty; a concurrent insert that
        // descended onto it stopped there, found only it at level 0, and linked to it alone:
        // islands of nodes far from their true neighbours, which no walk could find (the
        // unreachable points of concurrent builds). hnswlib avoids this by making readers wait
        // on the node's lock for the whole insert; ordering the writes keeps reads lock-free.
        let chosen = match codes.and_then(|c| Some((c, c.sq.query_int(v, self.metric).ok()?))) {
            Some((codes, query)) => {
                // Nodes of the batch have codes; any other (inserted before it) is measured
                // exactly. Every node a link leads to is published, so a code is always there
                // to read and the walk does not touch the node's record at all; the codes do
                // not know deletes, which the exact pass over the candidates drops.
                let measure = |n: u32| match codes.get(n) {
                    Some((code, correction)) => Some((query.distance(code, correction), true)),
                    None => self.measure_exact(v, n),
                };
                let prefetch = |n: u32| match codes.get(n) {
                    Some((code, _)) => {
                        quant::kernels::prefetch(code.as_ptr(), 1);
                        quant::kernels::prefetch(code.as_ptr().wrapping_add(code.len() - 1), 1);
                    }
                    None => self.arena.prefetch(n),
                };
                self.choose_links(offset, v, level, entry, top, &measure, &prefetch, true)
            }
            None => {
                let measure = |n: u32| self.measure_exact(v, n);
                // Inserts measure quantized storages by their full vectors, kept apart from
                // the codes: prefetch those too.
                let quantized = self.codec.kind().is_quantized();
                let prefetch = |n: u32| {
                    self.arena.prefetch(n);
                    if quantized {
                        self.arena.prefetch_secondary(n);
                    }
                };
                self.choose_links(offset, v, level, entry, top, &measure, &prefetch, false)
            }
        };
        for (l, selected) in &chosen {
            // Another insert may already have linked itself to this node (it can reach the
            // node through an upper level once its backlinks there exist; not before):
            // keep those links rather than overwrite them.
            let l = *l;
            let _guard = self.lock_links(offset);
            let mut existing = Vec::new();
            self.neighbours(offset, l, &mut existing);
            if existing.is_empty() {
                self.set_neighbours(offset, l, selected);
            } else {
                existing.extend(selected.iter().copied());
                existing.sort_unstable();
                existing.dedup();
                let kept = self.select_among(offset, &existing, l);
                self.set_neighbours(offset, l, &kept);
            }
        }
        for (l, selected) in &chosen {
            for &n in selected {
                self.connect(n, offset, *l);
            }
        }
        if level > top {
            self.entry
                .store((level as u64) << 32 | offset as u64, Ordering::Release);
        }
        drop(entry_guard);
        Ok(())
    }

    /// Exact search over every live node that passes `accept` (among `offsets`, when given;
    /// `listed_pass`: every listed offset is known to pass, as when they come from the bitset
    /// that is the whole filter).
    fn scan<A: Fn(u32) -> bool>(
        &self,
        query: &[f32],
        accept: &A,
        offsets: Option<&mut dyn Iterator<Item = u32>>,
        listed_pass: bool,
        limit: usize,
    ) -> Vec<Candidate> {
        let mut top = TopK::new(limit);
        match offsets {
            Some(it) => {
                // Listed offsets are scattered over the records: load a few ahead of the one
                // being measured, as the walk does, so that the misses overlap.
                let quantized = self.codec.kind().is_quantized();
                let listed: Vec<u32> = if listed_pass {
                    it.collect()
                } else {
                    it.filter(|&n| accept(n)).collect()
                };
                for (k, &n) in listed.iter().enumerate() {
                    if let Some(&ahead) = listed.get(k + SCAN_PREFETCH_AHEAD) {
                        self.arena.prefetch(ahead);
                        if quantized {
                            self.arena.prefetch_secondary(ahead);
                        }
                    }
                    if let Some((d, true)) = self.measure_exact(query, n) {
                        top.push(Candidate::new(n, d));
                    }
                }
            }
            None => (0..self.end.load(Ordering::Acquire)).for_each(|n| {
                if self.arena.state(n) == SlotState::Live && accept(n) {
                    top.push(Candidate::new(n, self.exact_distance(query, n)));
                }
            }),
        }
        top.into_sorted_vec()
    }

    /// Repairs the links of live nodes that point at deleted ones: each such list is rebuilt,
    /// with the link heuristic, from its live neighbours and the live nodes reachable through
    /// chains of deleted ones, so the graph stays navigable without the deleted nodes. Then
    /// moves the entry point off a deleted node and links every live node that became
    /// unreachable. Returns the number of lists rebuilt. Safe to run while searches and
    /// inserts go on.
    pub fn repair(&self) -> usize {
        let end = self.end.load(Ordering::Acquire);
        let rebuilt = AtomicUsize::new(0);
        (0..end)
            .into_par_iter()
            .for_each_init(Vec::new, |buf, node| {
                if self.arena.state(node) != SlotState::Live {
                    return;
                }
                let levels = self.node_levels(node);
                for level in 0..=levels {
                    self.neighbours(node, level, buf);
                    if buf.iter().all(|&n| self.arena.state(n) == SlotState::Live) {
                        continue;
                    }
                    // Candidates: live neighbours, and the live nodes reachable through chains of
                    // deleted ones (breadth-first, a bounded number of deleted nodes), so that
                    // whatever the deleted nodes connected stays connected even when most of a
                    // neighbourhood is gone.
                    let mut pool: Vec<u32> = Vec::new();
                    let mut seen: std::collections::HashSet<u32> =
                        std::collections::HashSet::from([node]);
                    let mut queue: std::collections::VecDeque<u32> = buf.iter().copied().collect();
                    let mut expanded = 0;
                    let mut next = Vec::new();
                    while let Some(n) = queue.pop_front() {
                        if !seen.insert(n) {
                            continue;
                        }
                        match self.arena.state(n) {
                            SlotState::Live => pool.push(n),
                            SlotState::Deleted if expanded < REPAIR_EXPANSION => {
                                expanded += 1;
                                self.neighbours(n, level, &mut next);
                                queue.extend(next.iter().copied());
                            }
                            _ => {}
                        }
                    }
                    let kept = self.select_among(node, &pool, level);
                    let _guard = self.lock_links(node);
                    self.set_neighbours(node, level, &kept);
                    rebuilt.fetch_add(1, Ordering::Relaxed);
                }
            });
        if let Some((entry, _)) = self.entry() {
            if self.arena.state(entry) != SlotState::Live {
                self.choose_live_entry();
            }
        }
        self.link_orphans(end);
        if self.link_unfindable(0, end) > 0 {
            self.link_orphans(end);
        }
        rebuilt.into_inner()
    }

    /// Makes every live node findable by a walk for its own vector with the default `ef`.
    ///
    /// The link heuristic keeps a candidate only if no kept neighbour is closer to it. A node
    /// alone in its neighbourhood (an outlier of real embeddings: its nearest neighbours are
    /// far and in different directions) keeps links to them, but a walk for it can settle on
    /// another node nearby that it never linked to, with nothing better in reach: the node is
    /// reachable, yet not found. This happens on one thread as on many (glove-50: 15 to 24 of
    /// 390,000 points). The repair searches for every node with its own vector; when the walk
    /// ends elsewhere, the closest node it found gets a link to the node (in place of its
    /// farthest link when its list is full), so the same walk now finds it. A greedy walk on
    /// level 0 is tried first and spares the full walk when it reaches the node (two thirds
    /// of them on glove). Later rounds search again for every node relinked or displaced in the
    /// round before, since the repairs of one round run in parallel and change each other's
    /// walks; they stop when a round finds every node it checks.
    pub(crate) fn link_unfindable(&self, from: u32, end: u32) -> usize {
        let mut relinked = 0;
        let mut check: Vec<u32> = (from..end).collect();
        let mut screen = true;
        for _round in 0..UNFINDABLE_ROUNDS {
            let touched = Mutex::new(Vec::new());
            relinked += check
                .par_iter()
                .map_init(
                    || (Vec::new(), Vec::new()),
                    |(mine, theirs), &node| {
                        self.relink_if_unfindable(node, screen, mine, theirs, &touched)
                    },
                )
                .filter(|&r| r)
                .count();
            check = touched.into_inner().unwrap_or_else(|e| e.into_inner());
            if check.is_empty() {
                break;
            }
            check.sort_unstable();
            check.dedup();
            screen = false;
        }
        relinked
    }

    /// One node of [`HnswIndex::link_unfindable`]: `screen` skips the full walk when the
    /// greedy one reaches the node. Returns whether a link was added; then the node,
    /// and a node that lost a link to make room, are pushed to `touched`.
    fn relink_if_unfindable(
        &self,
        node: u32,
        screen: bool,
        mine: &mut Vec<u32>,
        theirs: &mut Vec<u32>,
        touched: &Mutex<Vec<u32>>,
    ) -> bool {
        if self.arena.state(node) != SlotState::Live {
            return false;
        }
        let (Some(v), Some((entry, top))) = (self.full_vector_or_half(node), self.entry()) else {
            return false;
        };
        let measure = |n: u32| self.measure_exact(&v, n);
        let start = self.descend(&measure, entry, top, 0);
        if screen {
            // A greedy walk on level 0 that reaches the node is the first part of what the
            // full walk does, at a fraction of its cost: most nodes stop here.
            let reached = self.greedy(&measure, start, 0, mine);
            if reached.offset == node {
                return false;
            }
        }
        let found = self.search_level(
            &measure,
            &|n| self.arena.prefetch(n),
            &[start.offset],
            self.config.ef_search,
            0,
        );
        let Some(first) = found.first() else {
            return false;
        };
        // Found when first or tied with the first (an exact duplicate may come first).
        if found
            .iter()
            .take_while(|c| c.distance <= first.distance)
            .any(|c| c.offset == node)
        {
            return false;
        }
        let Some(displaced) = self.link_from(first.offset, node, theirs) else {
            return false;
        };
        let mut touched = touched.lock().unwrap_or_else(|e| e.into_inner());
        touched.push(node);
        touched.extend(displaced);
        true
    }

    /// A node's stored vector as `f32` (converted from `f16` where that is the storage).
    fn full_vector_or_half(&self, node: u32) -> Option<Vec<f32>> {
        match &self.codec {
            Codec::F16 => self
                .half_vector(node)
                .map(|v| v.iter().map(|h| h.to_f32()).collect()),
            _ => self.full_vector(node).map(<[f32]>::to_vec),
        }
    }

    /// Makes every live node reachable from the entry point on level 0.
    ///
    /// The link heuristic can leave a node, or a small group of nodes linking only to each
    /// other, with no path from the rest of the graph (more so for inner product, which is not
    /// a metric). A breadth-first pass from the entry finds them; each gets a link from the
    /// closest reachable live node (replacing that node's farthest link when its list is
    /// full), and the pass repeats, a few rounds at most, since a replaced link can itself cut
    /// a node off.
    pub(crate) fn link_orphans(&self, end: u32) {
        for _round in 0..4 {
            let Some((entry, _)) = self.entry() else {
                return;
            };
            let mut reached = vec![false; end as usize];
            let mut stack = vec![entry];
            let mut buf = Vec::new();
            let mut theirs = Vec::new();
            let mut mark = |start: u32, reached: &mut Vec<bool>, stack: &mut Vec<u32>| {
                stack.clear();
                stack.push(start);
                while let Some(n) = stack.pop() {
                    let Some(slot) = reached.get_mut(n as usize) else {
                        continue;
                    };
                    if *slot {
                        continue;
                    }
                    *slot = true;
                    self.neighbours(n, 0, &mut buf);
                    stack.extend(buf.iter().copied());
                }
            };
            mark(entry, &mut reached, &mut stack);
            let unreached: Vec<u32> = (0..end)
                .filter(|&n| !reached[n as usize] && self.arena.state(n) == SlotState::Live)
                .collect();
            if unreached.is_empty() {
                return;
            }
            for node in unreached {
                if reached[node as usize] {
                    continue;
                }
                let base = self.node_vector(node);
                if base.is_none() {
                    continue;
                }
                let measure = |n: u32| {
                    let live = self.arena.state(n) == SlotState::Live;
                    let d = self.pair_distance(base, self.node_vector(n));
                    d.is_finite()
                        .then_some((d, live && reached[n as usize] && n != node))
                };
                let found = self.search_level(
                    &measure,
                    &|n| self.arena.prefetch(n),
                    &[entry],
                    self.config.ef_construct,
                    0,
                );
                let Some(host) = found.first().map(|c| c.offset) else {
                    continue;
                };
                self.link_from(host, node, &mut theirs);
                mark(node, &mut reached, &mut stack);
            }
        }
    }

    fn node_levels(&self, node: u32) -> usize {
        let upper = self.upper.read().unwrap_or_else(|e| e.into_inner());
        upper
            .get(&node)
            .map_or(0, |w| w.len() / (1 + self.config.m))
    }

    /// Whether a node has level-0 links: every node but a lone first one has some once its
    /// insert wrote its lists, and none before. An insert still running is not a safe entry
    /// (a walk from it would stop at once); the repairs may still link to such a node, which
    /// costs a walk nothing (it measures the node and goes on), and its insert links it.
    fn is_linked(&self, node: u32) -> bool {
        self.arena
            .links(node)
            .first()
            .is_some_and(|count| count.load(Ordering::Acquire) > 0)
    }

    /// Makes the live node with the highest level the entry point (or empties the entry),
    /// among nodes whose inserts have written their links (a lone node otherwise).
    fn choose_live_entry(&self) {
        let _guard = self.entry_lock.lock().unwrap_or_else(|e| e.into_inner());
        let best_upper = {
            let upper = self.upper.read().unwrap_or_else(|e| e.into_inner());
            upper
                .iter()
                .filter(|(&n, _)| self.arena.state(n) == SlotState::Live && self.is_linked(n))
                .map(|(&n, w)| (w.len() / (1 + self.config.m), n))
                .max()
        };
        let end = self.end.load(Ordering::Acquire);
        let choice = best_upper
            .or_else(|| {
                (0..end)
                    .find(|&n| self.arena.state(n) == SlotState::Live && self.is_linked(n))
                    .map(|n| (0, n))
            })
            .or_else(|| {
                (0..end)
                    .find(|&n| self.arena.state(n) == SlotState::Live)
                    .map(|n| (0, n))
            });
        match choice {
            Some((level, n)) => self
                .entry
                .store((level as u64) << 32 | n as u64, Ordering::Release),
            None => self.entry.store(NO_ENTRY, Ordering::Release),
        }
    }

    /// How many live points `filter` lets through: its own count when it has one (a bitset),
    /// otherwise an estimate from a fixed pseudo-random sample of offsets, as Qdrant's planner
    /// samples a condition no payload index can count.
    fn estimate_allowed(&self, filter: &dyn PointFilter) -> usize {
        if let Some(count) = filter.cardinality_estimate() {
            return count;
        }
        let end = self.end.load(Ordering::Acquire);
        if end == 0 {
            return 0;
        }
        let (mut live, mut passed) = (0usize, 0usize);
        for i in 0..FILTER_SAMPLE as u64 {
            // A multiplicative hash spreads the sample over the whole range, so a filter that
            // follows the offsets periodically (every 10th point, say) is not over- or
            // under-counted the way a fixed stride would.
            let n =
                ((i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % end as u64) as u32;
            if self.arena.state(n) == SlotState::Live {
                live += 1;
                passed += filter.allows(n) as usize;
            }
        }
        if live == 0 {
            return 0;
        }
        (self.live.load(Ordering::Acquire) as f64 * passed as f64 / live as f64).round() as usize
    }

    /// Chooses how a filtered search runs (the planner): an exact scan of the allowed points
    /// when they are few (`full_scan_threshold`), the filter-first walk when a minority of the
    /// points pass, and the plain walk that keeps only allowed results when most do.
    fn plan(&self, filter: &dyn PointFilter) -> FilterPlan {
        let allowed = self.estimate_allowed(filter);
        if allowed < self.config.full_scan_threshold {
            return FilterPlan::Scan;
        }
        let live = self.live.load(Ordering::Acquire).max(1);
        if (allowed as f64) < FILTER_FIRST_BELOW * live as f64 {
            FilterPlan::FilterFirst
        } else {
            FilterPlan::PassThrough
        }
    }

    /// Searches with an already prepared query.
    fn search_prepared(
        &self,
        q: &[f32],
        params: &SearchParams,
        filter: Option<&dyn PointFilter>,
    ) -> Vec<Candidate> {
        let plan = match filter {
            _ if params.exact => FilterPlan::Scan,
            Some(f) => self.plan(f),
            None => FilterPlan::PassThrough,
        };
        // A filter that is a plain bitset is tested inline, one bit per node; any other
        // through its trait object.
        match filter.and_then(|f| f.as_bitset()) {
            Some(bits) => self.search_planned(q, params, filter, &|n| bits.contains(n), plan),
            None => {
                let allowed = |n: u32| filter.is_none_or(|f| f.allows(n));
                self.search_planned(q, params, filter, &allowed, plan)
            }
        }
    }

    /// Runs a search as `plan` says; `allowed` is `filter` as a closure.
    fn search_planned<A: Fn(u32) -> bool>(
        &self,
        q: &[f32],
        params: &SearchParams,
        filter: Option<&dyn PointFilter>,
        allowed: &A,
        plan: FilterPlan,
    ) -> Vec<Candidate> {
        let limit = params.limit;
        let Some((entry, top)) = self.entry() else {
            return Vec::new();
        };
        if plan == FilterPlan::Scan {
            let mut listed = filter.and_then(|f| f.allowed_offsets());
            let listed_pass = filter.is_some_and(|f| f.as_bitset().is_some());
            return self.scan(
                q,
                allowed,
                listed
                    .as_mut()
                    .map(|it| it as &mut dyn Iterator<Item = u32>),
                listed_pass,
                limit,
            );
        }
        let filter_first = (plan == FilterPlan::FilterFirst).then_some(allowed);
        let ef = params.hnsw_ef.unwrap_or(self.config.ef_search).max(limit);
        // A generic function, not a closure over `&dyn Fn`: each storage's `measure` is inlined
        // into the walk instead of being called indirectly per node.
        fn walk<M: Fn(u32) -> Option<(f32, bool)>, A: Fn(u32) -> bool>(
            index: &HnswIndex,
            measure: &M,
            entry: u32,
            top: usize,
            ef: usize,
            filter_first: Option<&A>,
        ) -> Vec<Candidate> {
            let start = index.descend(measure, entry, top, 0);
            match filter_first {
                Some(allowed) => {
                    index.search_level_filter_first(measure, allowed, start.offset, ef)
                }
                None => index.search_level(
                    measure,
                    &|n| index.arena.prefetch(n),
                    &[start.offset],
                    ef,
                    0,
                ),
            }
        }
        let dim = self.dim;
        match &self.codec {
            Codec::F32 => {
                let kernel = self.kernels;
                let metric = self.metric;
                let measure = |n: u32| {
                    let (p, live) = self.arena.payload_and_liveness(n)?;
                    let v: &[f32] = &bytemuck::cast_slice(p)[..dim];
                    Some((metric.distance(kernel, q, v), live && allowed(n)))
                };
                let mut found = walk(self, &measure, entry, top, ef, filter_first);
                found.truncate(limit);
                found
            }
            Codec::F16 => {
                let measure = |n: u32| {
                    let (p, live) = self.arena.payload_and_liveness(n)?;
                    let v: &[f16] = &bytemuck::cast_slice(p)[..dim];
                    Some((
                        self.metric.distance_f16(self.kernels, q, v),
                        live && allowed(n),
                    ))
                };
                let mut found = walk(self, &measure, entry, top, ef, filter_first);
                found.truncate(limit);
                found
            }
            Codec::Sq8(sq) => {
                let oversampled = self.oversampled(params);
                // Measures nodes by their codes with either scorer (generic, so each is inlined).
                fn sq8_walk<S: Fn(&[u8], f32) -> f32, A: Fn(u32) -> bool>(
                    index: &HnswIndex,
                    score: S,
                    allowed: &A,
                    entry: u32,
                    top: usize,
                    ef: usize,
                    filter_first: bool,
                ) -> Vec<Candidate> {
                    let measure = |n: u32| {
                        let (p, live) = index.arena.payload_and_liveness(n)?;
                        let (correction, codes) = sq8_record(p, index.dim);
                        Some((score(codes, correction), live && allowed(n)))
                    };
                    walk(
                        index,
                        &measure,
                        entry,
                        top,
                        ef,
                        filter_first.then_some(allowed),
                    )
                }
                let ef = ef.max(oversampled);
                let first = filter_first.is_some();
                let found = if self.metric == Metric::Manhattan && !sq.bounds().is_global() {
                    let scorer = sq.query(q, self.metric).expect("query checked");
                    sq8_walk(
                        self,
                        |c, k| scorer.distance(c, k),
                        allowed,
                        entry,
                        top,
                        ef,
                        first,
                    )
                } else {
                    let scorer = sq.query_int(q, self.metric).expect("query checked");
                    sq8_walk(
                        self,
                        |c, k| scorer.distance(c, k),
                        allowed,
                        entry,
                        top,
                        ef,
                        first,
                    )
                };
                self.rescore(q, found, params, oversampled)
            }
            Codec::Binary(bq) => {
                let oversampled = self.oversampled(params);
                let scorer = bq.query(q, self.metric).expect("query checked");
                let words = dim.div_ceil(64);
                let measure = |n: u32| {
                    let (p, live) = self.arena.payload_and_liveness(n)?;
                    Some((
                        scorer.distance(&bytemuck::cast_slice(p)[..words]),
                        live && allowed(n),
                    ))
                };
                let found = walk(
                    self,
                    &measure,
                    entry,
                    top,
                    ef.max(oversampled),
                    filter_first,
                );
                self.rescore(q, found, params, oversampled)
            }
        }
    }

    fn oversampled(&self, params: &SearchParams) -> usize {
        let factor = params.oversampling.unwrap_or(self.config.oversampling);
        ((params.limit as f64 * factor as f64).ceil() as usize).max(params.limit)
    }

    /// Re-ranks the first `keep` candidates of a quantized walk by full-precision distance.
    fn rescore(
        &self,
        q: &[f32],
        mut found: Vec<Candidate>,
        params: &SearchParams,
        keep: usize,
    ) -> Vec<Candidate> {
        if params.rescore == Some(false) {
            found.truncate(params.limit);
            return found;
        }
        found.truncate(keep);
        // The full vectors live apart from the codes: start every load before the first use.
        for c in &found {
            self.arena.prefetch_secondary(c.offset);
        }
        for c in found.iter_mut() {
            c.distance = self.exact_distance(q, c.offset);
        }
        found.sort();
        found.truncate(params.limit);
        found
    }
}

impl VectorIndex for HnswIndex {
    fn dim(&self) -> usize {
        self.dim
    }

    fn metric(&self) -> Metric {
        self.metric
    }

    fn len(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    fn contains(&self, offset: PointOffset) -> bool {
        self.arena.state(offset) == SlotState::Live
    }

    fn search(
        &self,
        query: &[f32],
        params: &SearchParams,
        filter: Option<&dyn PointFilter>,
    ) -> Result<Vec<ScoredOffset>> {
        params.validate()?;
        let q = prepared_vector(query, self.dim, self.metric)?;
        let mut found = self.search_prepared(&q, params, filter);
        if let Some(max) = params.max_distance {
            found.retain(|c| c.distance <= max);
        }
        Ok(found)
    }

    fn memory_usage(&self) -> MemoryUsage {
        let end = self.end.load(Ordering::Acquire) as usize;
        let (primary, secondary) = self.arena.ram_bytes(end);
        let payload = end * self.codec.payload_bytes(self.dim);
        let upper_words: usize = self
            .upper
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|w| w.len())
            .sum();
        MemoryUsage {
            points: self.len(),
            vector_bytes: payload + secondary,
            vector_bytes_on_disk: self.arena.disk_secondary_bytes(),
            index_bytes: primary - payload + upper_words * 4,
            other_bytes: std::mem::size_of_val(&*self.link_locks)
                + self.upper.read().map_or(0, |u| u.len() * 32),
        }
    }
}

impl VectorIndexWrite for HnswIndex {
    /// Inserts a point at a fresh offset. Offsets are written once: an offset that is live or
    /// was deleted is refused, because searches may be reading its record.
    fn insert(&self, offset: PointOffset, vector: &[f32]) -> Result<()> {
        let v = prepared_vector(vector, self.dim, self.metric)?;
        if offset == u32::MAX {
            return Err(IndexError::OffsetOutOfRange {
                offset,
                limit: u32::MAX as usize,
            });
        }
        self.insert_prepared(offset, &v, None)
    }

    fn delete(&self, offset: PointOffset) -> Result<bool> {
        let deleted = self.arena.delete(offset);
        if deleted {
            self.live.fetch_sub(1, Ordering::AcqRel);
            if self.entry().is_some_and(|(e, _)| e == offset) {
                self.choose_live_entry();
            }
        }
        Ok(deleted)
    }
}

/// Splits an 8-bit payload into its correction and codes.
#[inline]
fn sq8_record(p: &[u8], dim: usize) -> (f32, &[u8]) {
    (f32::from_le_bytes([p[0], p[1], p[2], p[3]]), &p[4..4 + dim])
}
