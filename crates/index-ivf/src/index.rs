//! The index: training, adding, deleting and searching.

use crate::coarse::Coarse;
use crate::config::{IvfConfig, ListEncoding};
use crate::fastscan::{Pq4, Pq4Table};
use crate::lists::{Codec, InvertedList};
use crate::mapped::FullVectors;
use index_core::{
    check_vector, prepared_vector, AllowedSet, IndexError, MemoryUsage, PointFilter, PointOffset,
    Result, ScoredOffset, SearchParams, TopK, VectorIndex, VectorIndexWrite,
};
use quant::kernels::{PANEL_WIDTH, PQ4_BLOCK, PQ_KSUB};
use quant::{
    kernels, KMeans, KMeansConfig, Kernels, Metric, ProductQuantizer, ProductQuantizerConfig,
    RabitqConfig, RabitqQuantizer, ScalarQuantizer, ScalarQuantizerConfig,
};
use rayon::prelude::*;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// How far past the highest offset held a new offset may go. Offsets are dense (storage hands
/// them out in order), and the full-vector store is indexed by offset: a stray offset of four
/// billion must be refused, not allocated.
pub const MAX_OFFSET_GAP: usize = 1 << 20;

/// What training produced: the coarse quantizer and the list encoding.
#[derive(Debug, Clone)]
pub(crate) struct Model {
    pub(crate) coarse: Coarse,
    pub(crate) codec: Codec,
}

/// Everything a write changes, behind one lock.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) lists: Vec<InvertedList>,
    /// Offsets that searches may return.
    pub(crate) live: AllowedSet,
    /// Offsets that have an entry in a list (live, or deleted and not yet compacted away).
    pub(crate) present: AllowedSet,
    /// One past the highest offset ever held.
    pub(crate) end: usize,
    /// Full-precision vectors by offset, for re-ranking lossy codes.
    pub(crate) full: FullVectors,
}

/// An inverted-file index over vectors addressed by [`PointOffset`].
///
/// Train it ([`IvfIndex::train`], or [`IvfIndex::build`] which also adds), then add, delete and
/// search from any number of threads: writes take a short exclusive lock on the lists, searches
/// share it.
pub struct IvfIndex {
    pub(crate) dim: usize,
    pub(crate) metric: Metric,
    pub(crate) config: IvfConfig,
    pub(crate) model: Option<Model>,
    pub(crate) state: RwLock<State>,
    kernels: &'static Kernels,
    /// Exact distances computed to re-rank lossy codes, over every search (see
    /// [`IvfIndex::reranked`]).
    reranked: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for IvfIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IvfIndex")
            .field("dim", &self.dim)
            .field("metric", &self.metric)
            .field("config", &self.config)
            .field("nlist", &self.nlist())
            .field("live", &self.len())
            .finish_non_exhaustive()
    }
}

/// Buffers one search reuses.
#[derive(Default)]
struct Scratch {
    coarse: Vec<f32>,
    probes: Vec<(f32, u32)>,
    residual: Vec<f32>,
    floats: Vec<f32>,
    table: Pq4Table,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

impl IvfIndex {
    /// An untrained index. Adding or searching before [`IvfIndex::train`] fails with
    /// [`IndexError::NotTrained`].
    pub fn new(dim: usize, metric: Metric, config: IvfConfig) -> Result<IvfIndex> {
        if dim == 0 || dim > quant::MAX_DIMENSION {
            return Err(IndexError::InvalidParameter {
                name: "dim",
                reason: format!("{dim} is not between 1 and {}", quant::MAX_DIMENSION),
            });
        }
        config.validate(dim)?;
        config.check_metric(metric)?;
        Ok(IvfIndex {
            dim,
            metric,
            config,
            model: None,
            state: RwLock::new(State {
                lists: Vec::new(),
                live: AllowedSet::default(),
                present: AllowedSet::default(),
                end: 0,
                full: FullVectors::None,
            }),
            kernels: kernels(),
            reranked: Default::default(),
        })
    }

    /// Trains on `data` (a flat buffer of vectors as users send them), then adds them at
    /// offsets `0 .. n`, on the threads of the current rayon pool.
    pub fn build(dim: usize, metric: Metric, config: IvfConfig, data: &[f32]) -> Result<IvfIndex> {
        let mut index = IvfIndex::new(dim, metric, config)?;
        index.train(data)?;
        index.add(0, data)?;
        index.shrink_to_fit();
        Ok(index)
    }

    /// Trains the coarse quantizer and the list encoding on `sample` (vectors as users send
    /// them; the k-means runs on at most `nlist · max_points_per_list` of them, drawn
    /// uniformly, and the code quantizers on at most `max_codec_training_points` residuals).
    ///
    /// Errors: a ragged or non-finite sample, fewer vectors than `nlist` (or than a product
    /// quantizer's 256 centroids), or an index that already holds points.
    pub fn train(&mut self, sample: &[f32]) -> Result<()> {
        if !sample.len().is_multiple_of(self.dim) || sample.is_empty() {
            return Err(IndexError::InvalidParameter {
                name: "sample",
                reason: format!(
                    "{} values are not a non-empty set of vectors of dimension {}",
                    sample.len(),
                    self.dim
                ),
            });
        }
        if self.read().end > 0 {
            return Err(IndexError::InvalidParameter {
                name: "sample",
                reason: "the index already holds points; train a new index instead".into(),
            });
        }
        let n = sample.len() / self.dim;
        let nlist = self.config.nlist_for(n);
        if nlist > n {
            return Err(IndexError::InvalidParameter {
                name: "nlist",
                reason: format!("{nlist} lists cannot be trained from {n} vectors"),
            });
        }
        let prepared = self.prepare_all(sample)?;
        let kmeans = KMeansConfig {
            max_iterations: self.config.kmeans_iterations,
            max_points_per_centroid: self.config.max_points_per_list,
            spherical: matches!(self.metric, Metric::InnerProduct | Metric::Cosine),
            seed: self.config.seed,
            ..KMeansConfig::new(nlist)
        };
        let centroids = KMeans::train(&prepared, self.dim, &kmeans)?;
        let coarse = Coarse::new(centroids.centroids().to_vec(), self.dim, self.metric);
        let codec = self.train_codec(&coarse, &prepared)?;
        self.model = Some(Model { coarse, codec });
        let mut state = self.write();
        state.lists = vec![InvertedList::default(); nlist];
        state.full = if self.config.keeps_full_vectors() {
            FullVectors::Ram(Vec::new())
        } else {
            FullVectors::None
        };
        Ok(())
    }

    /// Trains the quantizer of a lossy encoding on the residuals of (a stride sample of)
    /// the prepared training vectors.
    fn train_codec(&self, coarse: &Coarse, prepared: &[f32]) -> Result<Codec> {
        let dim = self.dim;
        let n = prepared.len() / dim;
        let take = n.min(self.config.max_codec_training_points);
        // An even stride over the sample: deterministic, and as spread as a random draw for
        // data in no particular order.
        let mut rows = Vec::with_capacity(take * dim);
        for i in 0..take {
            let r = i * n / take;
            rows.extend_from_slice(&prepared[r * dim..(r + 1) * dim]);
        }
        let residuals = || {
            let lists = coarse.assign(&rows);
            let mut out = rows.clone();
            for (v, &l) in out.chunks_exact_mut(dim).zip(&lists) {
                v.iter_mut()
                    .zip(coarse.centroid(l as usize))
                    .for_each(|(x, c)| *x -= c);
            }
            out
        };
        let seed = self.config.seed;
        Ok(match self.config.encoding {
            ListEncoding::Flat => Codec::flat(self.metric),
            ListEncoding::Sq8 => {
                // The full range: on real embeddings clipping the tails costs more recall
                // than the finer step gains (see index-hnsw's `quantile`).
                let config = ScalarQuantizerConfig {
                    quantile: 1.0,
                    per_dimension: true,
                    sample_size: take,
                    seed,
                };
                Codec::Sq8 {
                    sq: ScalarQuantizer::train(&residuals(), dim, &config)?,
                    norms: self.metric == Metric::Euclidean,
                }
            }
            ListEncoding::Pq { m } => {
                let config = ProductQuantizerConfig {
                    kmeans_iterations: self.config.pq_iterations,
                    max_training_points: take.max(256),
                    seed,
                    ..ProductQuantizerConfig::new(m)
                };
                Codec::Pq(ProductQuantizer::train(&residuals(), dim, &config)?)
            }
            ListEncoding::PqFastScan { m } => Codec::Pq4(Pq4::train(
                &residuals(),
                dim,
                m,
                self.config.pq_iterations,
                seed,
            )?),
            // Nothing to learn beyond the coarse centroids: residuals are coded around zero
            // after a random rotation.
            ListEncoding::Rabitq { bits } => Codec::Rabitq(RabitqQuantizer::with_centroid(
                vec![0.0; dim],
                &RabitqConfig { bits, seed },
            )?),
        })
    }

    fn prepare_all(&self, data: &[f32]) -> Result<Vec<f32>> {
        if let Some(pos) = data.iter().position(|x| !x.is_finite()) {
            return Err(IndexError::NonFinite {
                component: pos % self.dim,
            });
        }
        let mut out = data.to_vec();
        if self.metric == Metric::Cosine {
            out.par_chunks_exact_mut(self.dim)
                .for_each(|v| self.metric.prepare(v));
        }
        Ok(out)
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, State> {
        // Writers leave `State` consistent at every step that can panic (allocation aside),
        // so a poisoned lock is still usable.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn model(&self) -> Result<&Model> {
        self.model.as_ref().ok_or(IndexError::NotTrained)
    }

    /// Whether [`IvfIndex::train`] has run.
    pub fn is_trained(&self) -> bool {
        self.model.is_some()
    }

    /// Tells the kernel how the full vectors left on disk will be read: `true` before a pass
    /// that reads them all in offset order ([`IvfIndex::stored_vector`] after
    /// [`IvfIndex::stored_vector`]), `false` after it, back to the random access of re-ranks.
    /// A save does this itself; nothing happens when the vectors are in RAM.
    pub fn vectors_read_in_order(&self, in_order: bool) {
        self.read().full.advise(in_order, self.dim);
    }

    /// The stored full-precision vector of a live point (as prepared at insert: normalised
    /// for cosine), when the index keeps vectors ([`IvfConfig::keeps_full_vectors`]).
    pub fn stored_vector(&self, offset: PointOffset) -> Option<Vec<f32>> {
        let state = self.read();
        if !state.live.contains(offset) {
            return None;
        }
        state.full.get(offset, self.dim).map(<[f32]>::to_vec)
    }

    /// Number of lists (0 before training).
    pub fn nlist(&self) -> usize {
        self.model.as_ref().map_or(0, |m| m.coarse.nlist())
    }

    /// The configuration.
    pub fn config(&self) -> &IvfConfig {
        &self.config
    }

    /// Entries per list (deleted entries included until [`IvfIndex::compact`]).
    pub fn list_sizes(&self) -> Vec<usize> {
        self.read().lists.iter().map(InvertedList::len).collect()
    }

    /// Adds the vectors of `data` (flat, as users send them) at offsets `first, first + 1,
    /// ...`: assignment and encoding run in parallel on the current rayon pool, then the
    /// entries are appended under the write lock. All or nothing: on an error nothing is added.
    pub fn add(&self, first: PointOffset, data: &[f32]) -> Result<()> {
        let model = self.model()?;
        if !data.len().is_multiple_of(self.dim) {
            return Err(IndexError::DimensionMismatch {
                expected: self.dim,
                found: data.len() % self.dim,
            });
        }
        let n = data.len() / self.dim;
        if first as u64 + n as u64 >= u32::MAX as u64 {
            return Err(IndexError::OffsetOutOfRange {
                offset: first,
                limit: u32::MAX as usize,
            });
        }
        let prepared = self.prepare_all(data)?;
        let (dim, codec) = (self.dim, &model.codec);
        let lists = model.coarse.assign(&prepared);
        let (code_len, float_len) = (codec.code_len(dim), codec.float_len(dim));
        const CHUNK: usize = 256;
        // Encoded in chunks on the pool (a chunk's own buffers, since flat lists have no
        // code bytes and 8-bit codes no per-entry floats to split by), then concatenated.
        let parts: Vec<(Vec<u8>, Vec<f32>)> = (0..n.div_ceil(CHUNK))
            .into_par_iter()
            .map(|chunk| {
                let rows = chunk * CHUNK..((chunk + 1) * CHUNK).min(n);
                let mut codes = vec![0u8; rows.len() * code_len];
                let mut floats = vec![0f32; rows.len() * float_len];
                let mut residual = vec![0f32; dim];
                for (j, i) in rows.enumerate() {
                    let v = &prepared[i * dim..(i + 1) * dim];
                    let input = if codec.is_residual() {
                        let c = model.coarse.centroid(lists[i] as usize);
                        residual
                            .iter_mut()
                            .zip(v.iter().zip(c))
                            .for_each(|(r, (x, c))| *r = x - c);
                        &residual[..]
                    } else {
                        v
                    };
                    codec.encode(
                        input,
                        &mut codes[j * code_len..(j + 1) * code_len],
                        &mut floats[j * float_len..(j + 1) * float_len],
                    );
                }
                (codes, floats)
            })
            .collect();
        let mut state = self.write();
        let end = state.end;
        if first as usize > end + MAX_OFFSET_GAP {
            return Err(IndexError::OffsetOutOfRange {
                offset: first,
                limit: end + MAX_OFFSET_GAP + 1,
            });
        }
        if let Some(i) = (0..n).find(|&i| state.present.contains(first + i as u32)) {
            return Err(IndexError::InvalidParameter {
                name: "offset",
                reason: format!(
                    "offset {} is already in use (offsets are written once)",
                    first as usize + i
                ),
            });
        }
        let state = &mut *state;
        // Reserve what each list will hold, so a bulk load does not leave lists grown by
        // doubling (up to twice the memory they need).
        let mut counts = vec![0usize; state.lists.len()];
        lists.iter().for_each(|&l| counts[l as usize] += 1);
        for (list, &extra) in state.lists.iter_mut().zip(&counts) {
            if extra > 0 {
                let total = list.len() + extra;
                list.ids.reserve(extra);
                list.codes
                    .reserve(codec.codes_for(total, dim) - list.codes.len());
                list.floats
                    .reserve(codec.floats_for(total, dim) - list.floats.len());
            }
        }
        for (chunk, (codes, floats)) in parts.iter().enumerate() {
            for j in 0..(n - chunk * CHUNK).min(CHUNK) {
                let i = chunk * CHUNK + j;
                let offset = first + i as u32;
                state.lists[lists[i] as usize].push(
                    codec,
                    offset,
                    &codes[j * code_len..(j + 1) * code_len],
                    &floats[j * float_len..(j + 1) * float_len],
                );
                state.live.insert(offset);
                state.present.insert(offset);
            }
        }
        state.end = state.end.max(first as usize + n);
        state.full.store(first as usize, &prepared, dim);
        Ok(())
    }

    /// Releases the spare capacity the lists grew with (a bulk load leaves up to half of each
    /// list unused), so that memory reports and bytes per vector are what the data needs.
    pub fn shrink_to_fit(&self) {
        let mut state = self.write();
        state.lists.par_iter_mut().for_each(|list| {
            list.ids.shrink_to_fit();
            list.codes.shrink_to_fit();
            list.floats.shrink_to_fit();
        });
        if let FullVectors::Ram(v) = &mut state.full {
            v.shrink_to_fit();
        }
    }

    /// Removes the entries of deleted points from the lists (deletes only mark them, so that
    /// they cost nothing up front); returns how many went. Their offsets may then be used
    /// again.
    pub fn compact(&self) -> usize {
        let Some(model) = self.model.as_ref() else {
            return 0;
        };
        let removed = {
            let mut guard = self.write();
            let state = &mut *guard;
            let live = &state.live;
            let removed: usize = state
                .lists
                .par_iter_mut()
                .map(|list| list.retain(&model.codec, self.dim, |id| live.contains(id)))
                .sum();
            state.present = state.live.clone();
            removed
        };
        self.shrink_to_fit();
        removed
    }

    /// Exact distances computed to re-rank lossy codes since the index was made or loaded,
    /// over every search: divided by the searches made, what a query re-ranked.
    pub fn reranked(&self) -> u64 {
        self.reranked.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Searches with a prepared query.
    fn search_prepared(
        &self,
        model: &Model,
        state: &State,
        q: &[f32],
        params: &SearchParams,
        filter: Option<&dyn PointFilter>,
    ) -> Vec<ScoredOffset> {
        let limit = params.limit;
        let has_full = state.full.is_some();
        // Kept vectors re-rank lossy codes only: flat lists already give exact distances.
        let refine = has_full && self.config.encoding.is_lossy() && params.rescore != Some(false);
        let oversampling = params.oversampling.unwrap_or(self.config.oversampling);
        // RaBitQ's estimates come with an error bound: re-rank exactly, as the lists are
        // scanned, only the entries whose bound reaches below the k-th exact distance so far,
        // unless the search asks for a fixed oversampling.
        let bound_driven =
            refine && matches!(model.codec, Codec::Rabitq(_)) && params.oversampling.is_none();
        let gathered = if bound_driven {
            limit
        } else if refine {
            ((limit as f64 * oversampling as f64).ceil() as usize).max(limit)
        } else {
            limit
        };
        let accept = |o: u32| state.live.contains(o) && filter.is_none_or(|f| f.allows(o));
        let small_filter = filter
            .and_then(|f| f.cardinality_estimate())
            .is_some_and(|c| c < self.config.full_scan_threshold);
        if (params.exact || small_filter) && has_full {
            return self.scan_full(state, q, limit, filter, small_filter);
        }
        let nlist = model.coarse.nlist();
        let nprobe = if params.exact || small_filter {
            nlist
        } else {
            params.ivf_nprobe.unwrap_or(self.config.nprobe).min(nlist)
        };
        let mut top = TopK::new(gathered);
        let reranked = SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let s = &mut *scratch;
            model
                .coarse
                .probe(self.kernels, q, nprobe, &mut s.coarse, &mut s.probes);
            self.scan_lists(model, state, q, s, &accept, bound_driven, &mut top)
        });
        let mut found = top.into_sorted_vec();
        let reranked = if refine && !bound_driven && model.codec.is_residual() {
            found.len()
        } else {
            reranked
        };
        if reranked > 0 {
            self.reranked
                .fetch_add(reranked as u64, std::sync::atomic::Ordering::Relaxed);
        }
        if refine && !bound_driven && model.codec.is_residual() {
            for c in &found {
                state.full.prefetch(c.offset, self.dim);
            }
            for c in found.iter_mut() {
                if let Some(v) = state.full.get(c.offset, self.dim) {
                    c.distance = self.metric.distance(self.kernels, q, v);
                }
            }
            found.sort();
        }
        found.truncate(limit);
        found
    }

    /// Exact search over the full-precision vectors of the live points that pass `filter`
    /// (listing the filter's own offsets when it is small).
    fn scan_full(
        &self,
        state: &State,
        q: &[f32],
        limit: usize,
        filter: Option<&dyn PointFilter>,
        small_filter: bool,
    ) -> Vec<ScoredOffset> {
        let mut top = TopK::new(limit);
        let mut offer = |o: u32| {
            if let Some(v) = state.full.get(o, self.dim) {
                top.push(ScoredOffset::new(
                    o,
                    self.metric.distance(self.kernels, q, v),
                ));
            }
        };
        let listed = filter
            .filter(|_| small_filter)
            .and_then(|f| f.allowed_offsets());
        match listed {
            // Listed offsets may be a superset of the passing ones (`allowed_offsets`).
            Some(offsets) => offsets
                .filter(|&o| state.live.contains(o) && filter.is_none_or(|f| f.allows(o)))
                .for_each(&mut offer),
            None => state
                .live
                .iter()
                .filter(|&o| filter.is_none_or(|f| f.allows(o)))
                .for_each(&mut offer),
        }
        top.into_sorted_vec()
    }

    /// Scans the probed lists into `top` with the encoding's distance (RaBitQ with
    /// `bound_driven`: exact distances of the entries whose bound reaches below `top`'s
    /// threshold).
    #[allow(clippy::too_many_arguments)]
    fn scan_lists<A: Fn(u32) -> bool>(
        &self,
        model: &Model,
        state: &State,
        q: &[f32],
        s: &mut Scratch,
        accept: &A,
        bound_driven: bool,
        top: &mut TopK,
    ) -> usize {
        let mut reranked = 0;
        let (dim, metric, kern) = (self.dim, self.metric, self.kernels);
        // Inner product and cosine split over `x = c + r` as `−q·c − q·r`: the coarse search
        // already gave `−q·c`, and one query table serves every list. Euclidean and Manhattan
        // measure the query's residual `q − c` against the codes, a table per list.
        let dot_like = matches!(metric, Metric::InnerProduct | Metric::Cosine);
        let code_metric = if dot_like {
            Metric::InnerProduct
        } else {
            metric
        };
        let Scratch {
            probes,
            residual,
            floats,
            table,
            ..
        } = s;
        let centroid = |list: u32| model.coarse.centroid(list as usize);
        match &model.codec {
            Codec::FlatPanels => {
                let mut dots = [0f32; PANEL_WIDTH];
                for &(_, l) in probes.iter() {
                    let list = &state.lists[l as usize];
                    let paneled = list.len() / PANEL_WIDTH * PANEL_WIDTH;
                    let (panels, tail) = list.floats.split_at(paneled * dim);
                    for (panel, ids) in panels
                        .chunks_exact(PANEL_WIDTH * dim)
                        .zip(list.ids.chunks_exact(PANEL_WIDTH))
                    {
                        kern.dot_panel16(q, panel, &mut dots);
                        for (&dot, &o) in dots.iter().zip(ids) {
                            let d = -dot;
                            if d <= top.threshold() && accept(o) {
                                top.push(ScoredOffset::new(o, d));
                            }
                        }
                    }
                    for (v, &o) in tail.chunks_exact(dim).zip(&list.ids[paneled..]) {
                        let d = -kern.dot_f32(q, v);
                        if d <= top.threshold() && accept(o) {
                            top.push(ScoredOffset::new(o, d));
                        }
                    }
                }
            }
            Codec::Flat => {
                for &(_, l) in probes.iter() {
                    let list = &state.lists[l as usize];
                    for (v, &o) in list.floats.chunks_exact(dim).zip(&list.ids) {
                        let d = metric.distance(kern, q, v);
                        if d <= top.threshold() && accept(o) {
                            top.push(ScoredOffset::new(o, d));
                        }
                    }
                }
            }
            Codec::Sq8 { sq, norms } => {
                let shared = dot_like.then(|| sq.query_int(q, code_metric).expect("checked"));
                for &(coarse, l) in probes.iter() {
                    let list = &state.lists[l as usize];
                    let scan = |score: &dyn Fn(&[u8], f32) -> f32, bias: f32, top: &mut TopK| {
                        for (i, (code, &o)) in
                            list.codes.chunks_exact(dim).zip(&list.ids).enumerate()
                        {
                            let norm = if *norms { list.floats[i] } else { 0.0 };
                            let d = bias + score(code, norm);
                            if d <= top.threshold() && accept(o) {
                                top.push(ScoredOffset::new(o, d));
                            }
                        }
                    };
                    match &shared {
                        Some(scorer) => scan(&|c, n| scorer.distance(c, n), coarse, top),
                        None if metric == Metric::Manhattan => {
                            let scorer = sq
                                .query(residual_into(residual, q, centroid(l)), metric)
                                .expect("checked");
                            scan(&|c, n| scorer.distance(c, n), 0.0, top)
                        }
                        None => {
                            let scorer = sq
                                .query_int(residual_into(residual, q, centroid(l)), metric)
                                .expect("checked");
                            scan(&|c, n| scorer.distance(c, n), 0.0, top)
                        }
                    }
                }
            }
            Codec::Pq(pq) => {
                let m = pq.m();
                let shared = dot_like.then(|| pq.table(q, code_metric).expect("checked"));
                for &(coarse, l) in probes.iter() {
                    let list = &state.lists[l as usize];
                    let own;
                    let (t, bias) = match &shared {
                        Some(t) => (t, coarse),
                        None => {
                            own = pq
                                .table(residual_into(residual, q, centroid(l)), metric)
                                .expect("checked");
                            (&own, 0.0)
                        }
                    };
                    let table = t.as_slice().as_chunks::<PQ_KSUB>().0;
                    for (code, &o) in list.codes.chunks_exact(m).zip(&list.ids) {
                        let d = bias + adc(table, code);
                        if d <= top.threshold() && accept(o) {
                            top.push(ScoredOffset::new(o, d));
                        }
                    }
                }
            }
            Codec::Pq4(pq) => {
                if dot_like {
                    pq.table(q, code_metric, floats, table);
                }
                let block_bytes = pq.block_bytes();
                let mut sums = [0u16; PQ4_BLOCK];
                for &(coarse, l) in probes.iter() {
                    let list = &state.lists[l as usize];
                    let bias = if dot_like {
                        coarse + table.bias
                    } else {
                        pq.table(
                            residual_into(residual, q, centroid(l)),
                            metric,
                            floats,
                            table,
                        );
                        table.bias
                    };
                    let scale = table.scale;
                    for (b, block) in list.codes.chunks_exact(block_bytes).enumerate() {
                        // The top-k threshold in this list's integer units: a sum passes when
                        // `bias + sum / scale <= threshold`.
                        let threshold = top.threshold();
                        let limit = if threshold == f32::INFINITY {
                            u16::MAX
                        } else {
                            let units = (threshold - bias) * scale;
                            if units < 0.0 {
                                // Sums are never negative: nothing left in this list can pass.
                                break;
                            }
                            // `floor(units) + 1` (truncation is the floor here), saturated.
                            (units as u32 + 1).min(u16::MAX as u32) as u16
                        };
                        let mut mask = kern.pq4_block(&table.bytes, block, limit, &mut sums);
                        let valid = list.ids.len() - b * PQ4_BLOCK;
                        if valid < PQ4_BLOCK {
                            mask &= (1u32 << valid) - 1;
                        }
                        while mask != 0 {
                            let v = mask.trailing_zeros() as usize;
                            mask &= mask - 1;
                            let o = list.ids[b * PQ4_BLOCK + v];
                            if accept(o) {
                                top.push(ScoredOffset::new(o, bias + sums[v] as f32 / scale));
                            }
                        }
                    }
                }
            }
            Codec::Rabitq(rq) => {
                let code_len = rq.code_bytes();
                // Inner product splits as for 8-bit codes: one bound query for every list,
                // the coarse search's `−q·c` as the bias; Euclidean binds `q − c` per list.
                let shared = dot_like.then(|| rq.query(q, code_metric).expect("checked"));
                let mut candidates: Vec<(f32, u32)> = Vec::new();
                for &(coarse, l) in probes.iter() {
                    let list = &state.lists[l as usize];
                    let own;
                    let (bound, bias) = match &shared {
                        Some(b) => (b, coarse),
                        None => {
                            own = rq
                                .query(residual_into(residual, q, centroid(l)), metric)
                                .expect("checked");
                            (&own, 0.0)
                        }
                    };
                    let entries = list
                        .codes
                        .chunks_exact(code_len)
                        .zip(list.floats.chunks_exact(3))
                        .zip(&list.ids);
                    if !bound_driven {
                        for ((code, factors), &o) in entries {
                            let d = bias + bound.estimate_code(code, factors).distance;
                            if d <= top.threshold() && accept(o) {
                                top.push(ScoredOffset::new(o, d));
                            }
                        }
                        continue;
                    }
                    // The list's candidates (lower bound under the threshold as the list
                    // starts), then exact distances in order of lower bound, while it stays
                    // under the tightening threshold: the nearest are measured first, so
                    // fewer follow.
                    candidates.clear();
                    let threshold = top.threshold();
                    for ((code, factors), &o) in entries {
                        let est = bound.estimate_code(code, factors);
                        let lower = bias + est.distance - est.bound;
                        if lower <= threshold && accept(o) {
                            candidates.push((lower, o));
                        }
                    }
                    candidates.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
                    // Vectors are fetched a few candidates ahead of their measurement.
                    const AHEAD: usize = 8;
                    for &(_, o) in candidates.iter().take(AHEAD) {
                        state.full.prefetch(o, dim);
                    }
                    for (i, &(lower, o)) in candidates.iter().enumerate() {
                        if lower > top.threshold() {
                            break;
                        }
                        if let Some(&(_, next)) = candidates.get(i + AHEAD) {
                            state.full.prefetch(next, dim);
                        }
                        if let Some(v) = state.full.get(o, dim) {
                            reranked += 1;
                            top.push(ScoredOffset::new(o, metric.distance(kern, q, v)));
                        }
                    }
                }
            }
        }
        reranked
    }
}

impl VectorIndex for IvfIndex {
    fn dim(&self) -> usize {
        self.dim
    }

    fn metric(&self) -> Metric {
        self.metric
    }

    fn len(&self) -> usize {
        self.read().live.len()
    }

    fn contains(&self, offset: PointOffset) -> bool {
        self.read().live.contains(offset)
    }

    /// Probes `ivf_nprobe` lists (the index's `nprobe` when `None`), gathers
    /// `limit · oversampling` candidates by their codes and re-ranks them with the full
    /// vectors (when the index keeps them and `rescore` is not `false`).
    ///
    /// `exact`, or a filter whose estimate is below `full_scan_threshold`, scans the full
    /// vectors when the index keeps them, else probes every list.
    fn search(
        &self,
        query: &[f32],
        params: &SearchParams,
        filter: Option<&dyn PointFilter>,
    ) -> Result<Vec<ScoredOffset>> {
        params.validate()?;
        let model = self.model()?;
        let q = prepared_vector(query, self.dim, self.metric)?;
        let state = self.read();
        let mut found = self.search_prepared(model, &state, &q, params, filter);
        if let Some(max) = params.max_distance {
            found.retain(|c| c.distance <= max);
        }
        Ok(found)
    }

    fn memory_usage(&self) -> MemoryUsage {
        let state = self.read();
        let (mut codes, mut ids) = (0, 0);
        for list in &state.lists {
            codes += list.codes.capacity() + list.floats.capacity() * 4;
            ids += list.ids.capacity() * 4;
        }
        let (full_ram, full_disk) = state.full.bytes();
        MemoryUsage {
            points: state.live.len(),
            vector_bytes: codes + full_ram,
            vector_bytes_on_disk: full_disk,
            index_bytes: ids
                + self.model.as_ref().map_or(0, |m| m.coarse.memory_bytes())
                + state.lists.capacity() * std::mem::size_of::<InvertedList>(),
            other_bytes: state.end.div_ceil(8) * 2,
        }
    }
}

impl VectorIndexWrite for IvfIndex {
    /// Adds one point (see [`IvfIndex::add`]). Offsets are written once: an offset still in a
    /// list, live or deleted, is refused until [`IvfIndex::compact`] removes it.
    fn insert(&self, offset: PointOffset, vector: &[f32]) -> Result<()> {
        self.model()?;
        check_vector(vector, self.dim)?;
        self.add(offset, vector)
    }

    fn delete(&self, offset: PointOffset) -> Result<bool> {
        Ok(self.write().live.remove(offset))
    }
}

/// `q − c` into `buf`.
fn residual_into<'a>(buf: &'a mut Vec<f32>, q: &[f32], c: &[f32]) -> &'a [f32] {
    buf.clear();
    buf.extend(q.iter().zip(c).map(|(x, c)| x - c));
    buf
}

/// `Σₘ table[m·256 + code[m]]`, the distance of 8-bit product codes from their lookup table.
///
/// Four independent sums: each lookup is a dependent load-then-add, and splitting the chain
/// lets four proceed at once. For the 10 to 100 sub-spaces of IVF codes this beats the
/// gather kernel of `quant` (`Kernels::pq_adc`), whose gathers are latency-bound.
#[inline]
fn adc(table: &[[f32; PQ_KSUB]], code: &[u8]) -> f32 {
    let mut acc = [0f32; 4];
    // Fixed-size chunks: every index below is provably in bounds (a byte indexes 256 rows).
    let (codes, code_rest) = code.as_chunks::<4>();
    let (rows, row_rest) = table.as_chunks::<4>();
    for (c, r) in codes.iter().zip(rows) {
        for k in 0..4 {
            acc[k] += r[k][c[k] as usize];
        }
    }
    for (k, (&c, r)) in code_rest.iter().zip(row_rest).enumerate() {
        acc[k] += r[c as usize];
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3])
}
