//! The graph: its types, construction, the link and vector primitives, and the index traits.
//! Inserting (`build`), walking (`walk`), searching (`search`) and repair (`repair`) are
//! split by concern below.

mod build;
mod repair;
mod search;
mod walk;

use crate::arena::{Arena, SlotState};
use crate::config::{HnswConfig, StorageKind};
use crate::visited::with_visited;
use half::f16;
use index_core::{
    prepared_vector, IndexError, MemoryUsage, PointFilter, PointOffset, Result, ScoredOffset,
    SearchParams, TopK, VectorIndex, VectorIndexWrite,
};
use quant::{
    kernels, BinaryQuantizer, BinaryQuantizerConfig, Kernels, Metric, ProductQuantizer,
    ProductQuantizerConfig, RabitqConfig, RabitqQuantizer, ScalarQuantizer, ScalarQuantizerConfig,
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
/// The beam of the findability check's middle step, between the greedy walk and the full
/// walk with the default `ef` (see [`HnswIndex::link_unfindable`]).
const SCREEN_EF: usize = 16;
/// `entry` when the graph is empty.
const NO_ENTRY: u64 = u64::MAX;
/// Offsets a filter that cannot count itself is tried on to estimate how many points pass.
const FILTER_SAMPLE: usize = 256;
/// Below this share of points passing a filter, the walk moves only through allowed nodes,
/// reaching past disallowed neighbours to theirs (two hops), instead of walking every node
/// and keeping the allowed ones: the plain walk's stopping rule waits for `ef` allowed
/// results, so with few of them it crawls through most of the graph. With many, the plain
/// walk is the faster of the two at equal recall: it keeps the whole graph's links to steer
/// by, and at the same `ef` reaches a higher recall (at 25%, `ef` 64 gave 0.969 against the
/// filter-first walk's 0.904 on glove-50). Measured at recall@10 0.95 on glove-50 and a
/// clustered 384-d set (QPS, path against path in one run): at 15% the filter-first walk
/// was faster on the 384-d set (1.3 and 1.5 times) and even on glove (1.13 and 0.94); the
/// plain walk was faster at 25% (1.04 to 1.5 times, four runs), 35% (1.4 and 1.6) and 50%
/// (1.7 on both); at 20% each won on one set.
const FILTER_FIRST_BELOW: f64 = 0.2;
/// Allowed nodes an expansion of the filter-first walk must measure, by the planner's
/// estimate ([`HnswIndex::filter_first_expansion`]), for the planner to walk at all: with
/// `m0` 32, about 0.75% of the points passing.
const MIN_MEASURED_PER_EXPANSION: f64 = 3.0;
/// The planner's cost model ([`HnswIndex::scan_is_cheaper`]), in bytes of memory traffic
/// (one byte read in sequence costs 1): what a scanned point costs beside its vector's bytes
/// (its state, the distance, the heap).
const SCAN_POINT_OVERHEAD: f64 = 64.0;
/// Testing a predicate filter on one point during a scan: the record's state line, read in
/// sequence, and the call.
const PREDICATE_SCAN_COST: f64 = 100.0;
/// A record read at random: the miss before its first byte arrives (about 60 ns, where a
/// core streams about 10 bytes a nanosecond).
const RANDOM_READ_COST: f64 = 600.0;
/// A byte of a record read at random: its lines come one after another, a little slower
/// than a stream.
const RANDOM_BYTE_COST: f64 = 1.2;
/// Looking through a disallowed node: a miss for its link list, and a test of each link.
const LOOK_THROUGH_COST: f64 = 1_000.0;

/// A base layer built elsewhere, for [`HnswIndex::from_graph`].
#[derive(Debug, Clone, Copy)]
pub struct BaseLayer<'a> {
    /// Out-links per node (at most the base layer's `2·m`).
    pub degree: usize,
    /// `n · degree` links, node after node; `u32::MAX` pads a shorter list.
    pub links: &'a [u32],
    /// Where walks start (the entry point, on level 0 or, with `hierarchy`, until an upper
    /// level exists).
    pub entry: PointOffset,
    /// Build the levels above the given one (cuVS's `hierarchy = cpu`).
    pub hierarchy: bool,
}

/// How a filtered search runs: what the planner chooses ([`HnswIndex::filter_plan`]), or
/// what [`HnswIndex::search_with_plan`] is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterPlan {
    /// Every allowed point measured: by its full vector, or, in a quantized storage where
    /// that costs less, by its code, the best then re-ranked as a walk's candidates are.
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
    Pq(ProductQuantizer),
    /// Records hold the code, then its three factors (`f32`): see [`rabitq_record`].
    Rabitq(RabitqQuantizer),
}

/// Splits a RaBitQ record's payload into its code and its three factors.
#[inline]
pub(crate) fn rabitq_record(payload: &[u8], code_bytes: usize) -> (&[u8], &[f32]) {
    let (code, rest) = payload.split_at(code_bytes);
    // The code is a multiple of 8 bytes (the padded dimension is at least 64) and records
    // start 8-aligned, so the factors are 4-aligned.
    (code, &bytemuck::cast_slice(&rest[..12])[..3])
}

impl Codec {
    pub(crate) fn kind(&self) -> StorageKind {
        match self {
            Codec::F32 => StorageKind::F32,
            Codec::F16 => StorageKind::F16,
            Codec::Sq8(_) => StorageKind::Sq8,
            Codec::Binary(_) => StorageKind::Binary,
            Codec::Pq(_) => StorageKind::Pq,
            Codec::Rabitq(_) => StorageKind::Rabitq,
        }
    }

    pub(crate) fn payload_bytes(&self, dim: usize) -> usize {
        match self {
            Codec::F32 => dim * 4,
            Codec::F16 => dim * 2,
            Codec::Sq8(_) => 4 + dim,
            Codec::Binary(_) => dim.div_ceil(64) * 8,
            Codec::Pq(pq) => pq.m(),
            Codec::Rabitq(rq) => rq.code_bytes() + 12,
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
            Codec::Pq(pq) => {
                out.resize(pq.m(), 0);
                pq.encode_into(v, out)?;
            }
            Codec::Rabitq(rq) => {
                out.resize(rq.code_bytes(), 0);
                let factors = rq.encode_into(v, out)?;
                out.extend(factors.iter().flat_map(|f| f.to_le_bytes()));
            }
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
    /// Candidates re-ranked with full vectors by bound-driven rescoring, over the index's
    /// life ([`HnswIndex::reranked`]).
    reranked: AtomicU64,
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

    /// An empty index whose quantizer (for [`StorageKind::Sq8`], [`StorageKind::Binary`],
    /// [`StorageKind::Pq`] and [`StorageKind::Rabitq`]) is trained on `sample`, a flat buffer of vectors as users send
    /// them ([`StorageKind::min_training_vectors`] of them at least).
    pub fn with_training(
        dim: usize,
        metric: Metric,
        config: HnswConfig,
        sample: &[f32],
    ) -> Result<HnswIndex> {
        // Before training, so a bad field is named as the index's, not the quantizer's.
        config.validate()?;
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
            StorageKind::Pq => Codec::Pq(ProductQuantizer::train(
                &prepared,
                dim,
                &ProductQuantizerConfig::new(config.pq_subspaces_for(dim)),
            )?),
            StorageKind::Rabitq => Codec::Rabitq(RabitqQuantizer::train(
                &prepared,
                dim,
                &RabitqConfig {
                    bits: config.rabitq_bits,
                    ..RabitqConfig::default()
                },
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
        if matches!(codec, Codec::Rabitq(_)) && metric == Metric::Manhattan {
            return Err(IndexError::InvalidParameter {
                name: "storage",
                reason: "RaBitQ estimates inner products: Manhattan distance has none".into(),
            });
        }
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
            reranked: AtomicU64::new(0),
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

    /// An index whose base layer is a given graph: `data` (a flat buffer of `n` vectors as
    /// users send them, offsets `0 .. n`) and `layer` ([`BaseLayer`]). This is how a graph built elsewhere
    /// (`gpu-cagra`'s, on a CPU or a GPU) is served, as cuVS exports CAGRA to hnswlib:
    /// without `layer.hierarchy`, every node on level 0 and walks starting at `layer.entry`; with it,
    /// the levels above are built over the given layer (cuVS's `hierarchy = cpu`), whose
    /// links stay as given, so that walks descend to the query's region first (one entry
    /// point on a single layer does not leave its region when the data is in far-apart
    /// clusters). Later inserts build every level as usual; without `hierarchy`, the first
    /// of them that gets a level above 0 becomes the entry point, as in any HNSW.
    ///
    /// Errors: a ragged buffer, `degree` above the base layer's `2·m` links, a link or the
    /// entry past the vectors, a self-loop.
    pub fn from_graph(
        dim: usize,
        metric: Metric,
        config: HnswConfig,
        data: &[f32],
        layer: BaseLayer<'_>,
    ) -> Result<HnswIndex> {
        let BaseLayer {
            degree,
            links,
            entry,
            hierarchy,
        } = layer;
        if dim == 0 || !data.len().is_multiple_of(dim) {
            return Err(IndexError::InvalidParameter {
                name: "data",
                reason: format!(
                    "{} values are not whole vectors of dimension {dim}",
                    data.len()
                ),
            });
        }
        let n = data.len() / dim;
        if degree == 0 || degree > config.m0() || links.len() != n * degree {
            return Err(IndexError::InvalidParameter {
                name: "links",
                reason: format!(
                    "{} links are not {n} lists of degree {degree} (at most 2·m = {})",
                    links.len(),
                    config.m0()
                ),
            });
        }
        if n >= u32::MAX as usize || (n > 0 && entry as usize >= n) {
            return Err(IndexError::OffsetOutOfRange {
                offset: entry,
                limit: n,
            });
        }
        for (node, row) in links.chunks_exact(degree).enumerate() {
            if let Some((_, &bad)) = row.iter().enumerate().find(|&(i, &b)| {
                b != u32::MAX && (b as usize >= n || b as usize == node || row[..i].contains(&b))
            }) {
                return Err(IndexError::InvalidParameter {
                    name: "links",
                    reason: format!(
                        "node {node} links to {bad}: past the vectors, itself or twice"
                    ),
                });
            }
        }
        let index = if config.storage.is_quantized() {
            HnswIndex::with_training(dim, metric, config, data)?
        } else {
            HnswIndex::new(dim, metric, config)?
        };
        data.par_chunks_exact(dim)
            .zip(links.par_chunks_exact(degree))
            .enumerate()
            .try_for_each(|(i, (v, row))| {
                let offset = i as u32;
                let v = prepared_vector(v, dim, metric)?;
                let mut payload = Vec::with_capacity(index.codec.payload_bytes(dim));
                index.codec.encode(&v, &mut payload)?;
                let Some(mut writer) = index.arena.claim(offset)? else {
                    unreachable!("a new index has every offset free");
                };
                writer.write_payload(&payload);
                if index.codec.kind().is_quantized() {
                    writer.write_secondary(bytemuck::cast_slice(&v));
                }
                writer.publish();
                let row: Vec<u32> = row.iter().copied().filter(|&b| b != u32::MAX).collect();
                index.set_neighbours(offset, 0, &row);
                Ok::<(), IndexError>(())
            })?;
        index.end.store(n as u32, Ordering::Release);
        index.live.store(n, Ordering::Release);
        if n > 0 {
            index.entry.store(entry as u64, Ordering::Release);
        }
        // The imported graph is served as it is: the findability repair would add links.
        index.checked_findable.store(n as u32, Ordering::Release);
        if hierarchy {
            index.build_upper_levels();
        }
        Ok(index)
    }

    /// The base layer's links of every offset below the end (empty for one never inserted or
    /// deleted): what `gpu-cagra`'s `CagraIndex::from_graph` takes.
    pub fn base_layer(&self) -> Vec<Vec<u32>> {
        let end = self.end.load(Ordering::Acquire);
        (0..end)
            .into_par_iter()
            .map(|o| {
                let mut links = Vec::new();
                if self.arena.state(o) == SlotState::Live {
                    self.neighbours(o, 0, &mut links);
                }
                links
            })
            .collect()
    }

    /// Inserts the vectors of `data` at offsets `first, first + 1, ...`, in parallel. A batch
    /// of at least 1,000 vectors is walked through 8-bit codes of its own
    /// vectors (see `BuildCodes`), the links still chosen by exact distances; call
    /// [`HnswIndex::link_unreachable`] after it.
    pub fn insert_all(&self, first: PointOffset, data: &[f32]) -> Result<()> {
        let n = data.len() / self.dim;
        // Codes only speed up the walks that choose links; without a graph there are none.
        let codes = if n >= BATCH_CODES_MIN && self.config.has_graph() {
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
        if !self.config.has_graph() {
            return;
        }
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

    /// Unmaps the full vectors served from the index file (after a load with
    /// [`LoadOptions::vectors_on_disk`](crate::LoadOptions)); the kernel keeps their pages
    /// cached while it has the memory, and searches map back in the ones they re-rank. A
    /// load does this itself once it has checked the file. Returns the bytes released (0
    /// when the vectors are in RAM). With the file's pages also dropped from the page cache
    /// (`posix_fadvise(POSIX_FADV_DONTNEED)` on it, as `examples/hnsw --cold` does), the
    /// next searches read from the disk: a cold cache.
    pub fn release_vectors_on_disk(&self) -> usize {
        self.arena.release_frozen_secondary()
    }

    /// Tells the kernel how the full vectors left on disk will be read: `true` before a pass
    /// that reads them all in offset order (a copy of every vector, [`HnswIndex::vector`]
    /// after [`HnswIndex::vector`]), so that it reads far ahead; `false` after it, back to
    /// the random access of searches, which read a few vectors each. A save does this itself.
    /// Nothing happens when the vectors are in RAM.
    pub fn vectors_read_in_order(&self, in_order: bool) {
        self.arena.advise_frozen_secondary(in_order);
    }

    /// Candidates re-ranked with full vectors by bound-driven rescoring ([`StorageKind::Rabitq`]
    /// searches that fix no oversampling) since the index was created or loaded: divided by the
    /// searches run, what a query reads from the full vectors.
    pub fn reranked(&self) -> u64 {
        self.reranked.load(Ordering::Relaxed)
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
        if !self.config.has_graph() {
            return 0;
        }
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
            Codec::Sq8(_) | Codec::Binary(_) | Codec::Pq(_) | Codec::Rabitq(_) => self
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

    /// Hints the CPU to load what [`HnswIndex::measure_exact`] and [`HnswIndex::node_vector`]
    /// read for `node`: the record's state and vector, or, for a quantized storage, the line of
    /// its state word and its full vector, which lives apart from the codes (of a long vector,
    /// the first 8 cache lines: `quant::kernels::prefetch` loads no more).
    #[inline]
    pub(super) fn prefetch_exact(&self, node: u32) {
        if self.codec.kind().is_quantized() {
            self.arena.prefetch_state(node);
            self.arena.prefetch_secondary(node);
        } else {
            self.arena.prefetch(node);
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
            Codec::Sq8(_) | Codec::Binary(_) | Codec::Pq(_) | Codec::Rabitq(_) => {
                let full = self.arena.secondary(node)?;
                self.metric
                    .distance(self.kernels, query, &bytemuck::cast_slice(full)[..self.dim])
            }
        };
        Some((d, live))
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
        self.search_with_plan(query, params, filter, None)
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
