//! The index: vectors, the fixed-degree graph, the build, and the search.

use crate::config::{BuildAlgo, CagraConfig, CagraSearchParams, CagraStorage};
use crate::knn::{self, SplitMix};
use crate::optimize;
use crate::visited::VisitedHash;
use index_core::{
    check_vector, prepared_vector, AllowedSet, IndexError, MemoryUsage, PointFilter, PointOffset,
    Result, ScoredOffset, SearchParams, TopK, VectorIndex,
};
use quant::{kernels, Kernels, Metric, ScalarCodes, ScalarQuantizer, ScalarQuantizerConfig};
use rayon::prelude::*;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Offsets a filter that cannot count itself is tried on to estimate how many points pass.
const FILTER_SAMPLE: usize = 256;
/// How many nodes ahead of the one being measured the walk prefetches.
const PREFETCH_AHEAD: usize = 4;

/// What the walk measures: full vectors, or 8-bit codes with full vectors kept to rescore.
#[derive(Debug, Clone)]
pub(crate) enum Vectors {
    F32(Vec<f32>),
    Sq8 {
        sq: ScalarQuantizer,
        codes: ScalarCodes,
        full: Vec<f32>,
    },
}

impl Vectors {
    pub(crate) fn full(&self) -> &[f32] {
        match self {
            Vectors::F32(v) => v,
            Vectors::Sq8 { full, .. } => full,
        }
    }
}

/// A CAGRA graph index over the vectors it was built from, addressed by offsets `0 .. n`.
///
/// Built once ([`CagraIndex::build`]), searched from any number of threads; points can be
/// deleted (they stay in the graph as waypoints and never come back as results) but not
/// inserted: CAGRA's graph is optimised as a whole, and a new point needs a rebuild (in
/// `storage`, the optimizer's).
pub struct CagraIndex {
    pub(crate) dim: usize,
    pub(crate) metric: Metric,
    pub(crate) config: CagraConfig,
    pub(crate) n: usize,
    pub(crate) degree: usize,
    /// `n · degree` out-links, row by row.
    pub(crate) graph: Vec<u32>,
    pub(crate) vectors: Vectors,
    /// The node closest to the mean of the vectors: the single entry point an exported
    /// single-layer HNSW graph starts from.
    pub(crate) center: u32,
    /// Nodes nearest the centroids of a k-means of the data: every walk measures them first.
    pub(crate) entries: Vec<u32>,
    /// Deleted offsets, one bit each.
    pub(crate) deleted: Vec<AtomicU64>,
    pub(crate) live: AtomicUsize,
    pub(crate) kernels: &'static Kernels,
}

impl std::fmt::Debug for CagraIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CagraIndex")
            .field("dim", &self.dim)
            .field("metric", &self.metric)
            .field("n", &self.n)
            .field("graph_degree", &self.degree)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn invalid(name: &'static str, reason: String) -> IndexError {
    IndexError::InvalidParameter { name, reason }
}

/// Checks `data` holds whole, finite vectors of `dim`, more of them than `degree`; returns
/// their count.
fn check_data(data: &[f32], dim: usize, degree: usize) -> Result<usize> {
    if dim == 0 || dim > quant::MAX_DIMENSION {
        return Err(invalid(
            "dim",
            format!("{dim} is not between 1 and {}", quant::MAX_DIMENSION),
        ));
    }
    if !data.len().is_multiple_of(dim) {
        return Err(invalid(
            "data",
            format!(
                "{} values are not whole vectors of dimension {dim}",
                data.len()
            ),
        ));
    }
    let n = data.len() / dim;
    if n <= degree {
        return Err(invalid(
            "data",
            format!(
                "{n} vectors are too few for a graph of degree {degree}: CAGRA needs more \
                 points than links per node"
            ),
        ));
    }
    // Offsets are `u32`; NN-descent keeps a flag in the top bit of an id while it builds.
    if n > 1 << 31 {
        return Err(invalid(
            "data",
            format!("{n} vectors are more than a graph addresses (2^31)"),
        ));
    }
    for (i, v) in data.chunks_exact(dim).enumerate() {
        check_vector(v, dim).map_err(|e| invalid("data", format!("vector {i}: {e}")))?;
    }
    Ok(n)
}

impl CagraIndex {
    /// Builds an index over `data` (a flat buffer of `n` vectors as users send them, which get
    /// offsets `0 .. n`) on the current rayon pool: the initial k-NN graph of
    /// `intermediate_graph_degree`, pruned and given reverse edges down to `graph_degree`.
    ///
    /// Errors: invalid parameters, a ragged or non-finite buffer, `n ≤ graph_degree`.
    pub fn build(dim: usize, metric: Metric, config: CagraConfig, data: &[f32]) -> Result<Self> {
        config.validate()?;
        let n = check_data(data, dim, config.intermediate_graph_degree)?;
        let prepared = prepare_all(data, dim, metric);
        let k = config.intermediate_graph_degree;
        let exact = match config.build_algo {
            BuildAlgo::BruteForce => true,
            BuildAlgo::NnDescent => false,
            BuildAlgo::Auto => n <= config.brute_force_max,
        };
        let knn = if exact {
            knn::brute_force(&prepared, dim, metric, k)
        } else {
            knn::nn_descent(&prepared, dim, metric, k, &config)
        };
        Self::from_knn(dim, metric, config, prepared, &knn, k)
    }

    /// An index over `data` whose graph is made from given neighbour lists (`lists[i]` for
    /// offset `i`, any length, any order; HNSW's base layer, say): each list is measured, its
    /// self-links and duplicates dropped, topped up from its neighbours' lists to
    /// `intermediate_graph_degree`, then optimised as a built k-NN graph is. The reverse of
    /// exporting the graph to `index-hnsw`.
    pub fn from_graph(
        dim: usize,
        metric: Metric,
        config: CagraConfig,
        data: &[f32],
        lists: &[Vec<u32>],
    ) -> Result<Self> {
        config.validate()?;
        let n = check_data(data, dim, config.intermediate_graph_degree)?;
        if lists.len() != n {
            return Err(invalid(
                "lists",
                format!("{} neighbour lists for {n} vectors", lists.len()),
            ));
        }
        if let Some((i, bad)) = lists
            .iter()
            .enumerate()
            .find_map(|(i, l)| l.iter().find(|&&b| b as usize >= n).map(|b| (i, *b)))
        {
            return Err(invalid(
                "lists",
                format!("list {i} links to {bad}, past the {n} vectors"),
            ));
        }
        let prepared = prepare_all(data, dim, metric);
        let k = config.intermediate_graph_degree;
        let kern = kernels();
        let vector = |i: usize| &prepared[i * dim..(i + 1) * dim];
        let mut knn = vec![0u32; n * k];
        knn.par_chunks_mut(k).enumerate().for_each(|(a, row)| {
            let mut ids: Vec<u32> = lists[a].clone();
            // Two hops when one is short of `k` (and, for an island, random nodes).
            if ids.len() < k + 1 {
                let hop: Vec<u32> = ids
                    .iter()
                    .flat_map(|&b| lists[b as usize].iter().copied())
                    .collect();
                ids.extend(hop);
            }
            ids.sort_unstable();
            ids.dedup();
            ids.retain(|&b| b as usize != a);
            let mut rng = SplitMix(a as u64 ^ config.seed);
            while ids.len() < k {
                let b = rng.below(n) as u32;
                if b as usize != a && !ids.contains(&b) {
                    ids.push(b);
                }
            }
            let mut scored: Vec<(f32, u32)> = ids
                .iter()
                .map(|&b| (metric.distance(kern, vector(a), vector(b as usize)), b))
                .collect();
            scored.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
            for (slot, (_, b)) in row.iter_mut().zip(scored) {
                *slot = b;
            }
        });
        Self::from_knn(dim, metric, config, prepared, &knn, k)
    }

    /// Optimises a k-NN graph (rows sorted closest first) and stores the vectors.
    fn from_knn(
        dim: usize,
        metric: Metric,
        config: CagraConfig,
        prepared: Vec<f32>,
        knn: &[u32],
        k: usize,
    ) -> Result<Self> {
        let degree = config.graph_degree;
        let pruned = optimize::prune(knn, k, degree);
        let graph = optimize::add_reverse_edges(&pruned, degree);
        let center = center_of(&prepared, dim, metric);
        let entries = entry_nodes(&prepared, dim, metric, config.entry_points, config.seed)?;
        let vectors = match config.storage {
            CagraStorage::F32 => Vectors::F32(prepared),
            CagraStorage::Sq8 => {
                let sq = ScalarQuantizer::train(
                    &prepared,
                    dim,
                    &ScalarQuantizerConfig {
                        quantile: config.quantile,
                        // Manhattan's integer path needs one pair of bounds for all.
                        per_dimension: metric != Metric::Manhattan,
                        ..ScalarQuantizerConfig::default()
                    },
                )?;
                let codes = sq.encode_all(&prepared)?;
                Vectors::Sq8 {
                    sq,
                    codes,
                    full: prepared,
                }
            }
        };
        let mut index = Self::assemble(dim, metric, config, graph, vectors, center, entries);
        index.connect_all();
        Ok(index)
    }

    /// An index of checked parts (`graph` of `config.graph_degree` links a node, as many
    /// nodes as `vectors` holds), every node live: what a build and a load end with.
    pub(crate) fn assemble(
        dim: usize,
        metric: Metric,
        config: CagraConfig,
        graph: Vec<u32>,
        vectors: Vectors,
        center: u32,
        entries: Vec<u32>,
    ) -> CagraIndex {
        let n = vectors.full().len() / dim;
        CagraIndex {
            dim,
            metric,
            degree: config.graph_degree,
            config,
            n,
            graph,
            vectors,
            center,
            entries,
            deleted: (0..n.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            live: AtomicUsize::new(n),
            kernels: kernels(),
        }
    }

    /// The nodes a walk along the links from `start` reaches.
    fn reachable_from(&self, start: u32, reached: &mut [bool]) {
        let mut queue = vec![start];
        reached[start as usize] = true;
        while let Some(node) = queue.pop() {
            for &next in self.neighbours(node) {
                if !reached[next as usize] {
                    reached[next as usize] = true;
                    queue.push(next);
                }
            }
        }
    }

    /// Makes every node reachable from the center (or, failing that, from an entry point). A
    /// k-NN graph of data in well separated
    /// clusters has no link between them, and pruning and reverse edges stay inside them:
    /// a walk (or an export with one entry point) could never leave the cluster it starts
    /// in. For each node no walk reaches, a walk from the center for its vector finds the
    /// closest reachable node, which gives up its link to the node most linked to (so that
    /// nothing loses its last way in) for a link to it. Repeated while a round changed links.
    fn connect_all(&mut self) {
        let n = self.n;
        let degree = self.degree;
        let params = CagraSearchParams {
            itopk_size: 32,
            ..CagraSearchParams::default()
        };
        let mut reached = vec![false; n];
        for _round in 0..8 {
            reached.fill(false);
            self.reachable_from(self.center, &mut reached);
            if reached.iter().all(|&r| r) {
                return;
            }
            // Links from reachable nodes only: a target that keeps one of those stays
            // reachable after giving up another.
            let mut indegree = vec![0u32; n];
            for (node, links) in self.graph.chunks_exact(degree).enumerate() {
                if reached[node] {
                    links.iter().for_each(|&b| indegree[b as usize] += 1);
                }
            }
            for u in 0..n as u32 {
                if reached[u as usize] {
                    continue;
                }
                let v = self.stored_vector(u).expect("u < n").to_vec();
                let hits = self.walk(&params, 0, 8, false, &|_| true, Some(&[self.center]), |o| {
                    self.exact_distance(&v, o)
                });
                let Some(host) = hits.iter().map(|h| h.offset).find(|&h| h != u) else {
                    continue;
                };
                let row = host as usize * degree..(host as usize + 1) * degree;
                let slot = self.graph[row.clone()]
                    .iter()
                    .enumerate()
                    .max_by_key(|(i, &t)| (indegree[t as usize], *i))
                    .map(|(i, _)| i)
                    .expect("a row holds `degree` links");
                let old = std::mem::replace(&mut self.graph[row.start + slot], u);
                indegree[old as usize] -= 1;
                indegree[u as usize] += 1;
                self.reachable_from(u, &mut reached);
            }
        }
        // Past the rounds (never seen in the tests), what the center still does not reach
        // becomes an entry point of every walk, so that nothing is out of a search's reach.
        reached.fill(false);
        self.reachable_from(self.center, &mut reached);
        for entry in self.entries.clone() {
            if !reached[entry as usize] {
                self.reachable_from(entry, &mut reached);
            }
        }
        for u in 0..n as u32 {
            if !reached[u as usize] {
                self.entries.push(u);
                self.reachable_from(u, &mut reached);
            }
        }
    }

    /// The configuration.
    pub fn config(&self) -> &CagraConfig {
        &self.config
    }

    /// Number of nodes (live or deleted): offsets run `0 .. size()`.
    pub fn size(&self) -> usize {
        self.n
    }

    /// Out-links per node.
    pub fn graph_degree(&self) -> usize {
        self.degree
    }

    /// The graph, `size() · graph_degree()` offsets, node after node: what a GPU index or
    /// `index-hnsw` (as a single-layer graph) takes.
    pub fn graph(&self) -> &[u32] {
        &self.graph
    }

    /// The out-links of `node`.
    pub fn neighbours(&self, node: PointOffset) -> &[u32] {
        let n = node as usize;
        &self.graph[n * self.degree..(n + 1) * self.degree]
    }

    /// The stored vectors as prepared for the metric (normalised for cosine), row after row.
    pub fn vectors(&self) -> &[f32] {
        self.vectors.full()
    }

    /// The node closest to the mean of the vectors: the entry point a single-layer export
    /// starts its walks from.
    pub fn center(&self) -> PointOffset {
        self.center
    }

    /// Marks `offset` deleted; returns whether it was live. The node stays in the graph as
    /// a waypoint.
    pub fn delete(&self, offset: PointOffset) -> Result<bool> {
        if offset as usize >= self.n {
            return Err(IndexError::OffsetOutOfRange {
                offset,
                limit: self.n,
            });
        }
        let bit = 1u64 << (offset % 64);
        let was = self.deleted[offset as usize / 64].fetch_or(bit, Ordering::AcqRel);
        let live = was & bit == 0;
        if live {
            self.live.fetch_sub(1, Ordering::AcqRel);
        }
        Ok(live)
    }

    #[inline]
    fn is_deleted(&self, offset: u32) -> bool {
        self.deleted[offset as usize / 64].load(Ordering::Relaxed) >> (offset % 64) & 1 == 1
    }

    fn any_deleted(&self) -> bool {
        self.live.load(Ordering::Relaxed) != self.n
    }

    /// The stored (prepared) vector at `offset`.
    pub fn stored_vector(&self, offset: PointOffset) -> Option<&[f32]> {
        let o = offset as usize;
        (o < self.n).then(|| &self.vectors.full()[o * self.dim..(o + 1) * self.dim])
    }

    #[inline]
    fn exact_distance(&self, q: &[f32], offset: u32) -> f32 {
        let o = offset as usize;
        self.metric.distance(
            self.kernels,
            q,
            &self.vectors.full()[o * self.dim..(o + 1) * self.dim],
        )
    }

    /// The `limit` closest live points to `query` passing `filter`, by CAGRA's walk with
    /// `params` (or an exact scan when the filter lets few points through; see
    /// [`CagraIndex::plan`]). `rescore` and `oversampling` apply to SQ8 storage.
    pub fn search_with(
        &self,
        query: &[f32],
        limit: usize,
        params: &CagraSearchParams,
        filter: Option<&dyn PointFilter>,
        rescore: Option<bool>,
        oversampling: Option<f32>,
    ) -> Result<Vec<ScoredOffset>> {
        params.validate()?;
        if limit == 0 || limit > index_core::MAX_LIMIT {
            return Err(invalid(
                "limit",
                format!("{limit} is not between 1 and {}", index_core::MAX_LIMIT),
            ));
        }
        if let Some(o) = oversampling {
            if !(o.is_finite() && (1.0..=1_000.0).contains(&o)) {
                return Err(invalid(
                    "oversampling",
                    format!("{o} is not a number between 1 and 1000"),
                ));
            }
        }
        let q = prepared_vector(query, self.dim, self.metric)?;
        // The share of nodes a result may come from: deleted nodes stay in the graph, so a
        // walk over many of them needs a wider buffer as a filter does.
        let live_share = self.len() as f64 / self.n as f64;
        let allowed_share = match filter {
            None => live_share,
            Some(f) => {
                let passing = self.estimate_passing(f);
                if self.plan(passing) == Plan::Scan {
                    return Ok(self.scan(&q, limit, f));
                }
                passing as f64 / self.n as f64 * live_share
            }
        };
        let rescore = rescore.unwrap_or(true) && matches!(self.vectors, Vectors::Sq8 { .. });
        let oversampling = oversampling.unwrap_or(self.config.oversampling);
        // Results wanted from the walk: with rescoring, `limit · oversampling` of them; never
        // more than there are nodes.
        let wanted = if rescore {
            ((limit as f32 * oversampling).ceil() as usize).max(limit)
        } else {
            limit
        }
        .min(self.n);
        // A filtered walk keeps its buffer as wide in allowed points as an unfiltered one
        // (`itopk_size / share`), so that it does not stop with a handful of them.
        let mut walk = *params;
        walk.itopk_size = walk.itopk_size.max(wanted);
        if allowed_share < 1.0 {
            walk.itopk_size = ((walk.itopk_size as f64 / allowed_share.max(1e-3)).ceil() as usize)
                .min(crate::config::MAX_ITOPK.max(walk.itopk_size));
        }
        let seed = query_seed(&q) ^ walk.rand_xor_mask;
        let keep = |o: u32| !self.is_deleted(o) && filter.is_none_or(|f| f.allows(o));
        let filtered = filter.is_some() || self.any_deleted();
        let found = match &self.vectors {
            Vectors::F32(_) => self.walk(&walk, seed, wanted, filtered, &keep, None, |o| {
                self.exact_distance(&q, o)
            }),
            Vectors::Sq8 { sq, codes, .. } => {
                let scorer = SqScorer::new(sq, &q, self.metric)?;
                self.walk(&walk, seed, wanted, filtered, &keep, None, |o| {
                    scorer.distance(codes.code(o as usize), codes.correction(o as usize))
                })
            }
        };
        let mut out: Vec<ScoredOffset> = if rescore {
            let mut exact: Vec<ScoredOffset> = found
                .iter()
                .map(|c| ScoredOffset::new(c.offset, self.exact_distance(&q, c.offset)))
                .collect();
            exact.sort();
            exact
        } else {
            found
        };
        out.truncate(limit);
        Ok(out)
    }

    /// How a filtered search runs. An exact scan of the passing points costs one distance
    /// each; a walk whose buffer is widened by `n / passing` costs about
    /// `itopk_size · graph_degree · n / passing`. The scan is chosen where it is cheaper (or
    /// below `full_scan_threshold`): with `passing² ≤ itopk · degree · n` (for 390,000 points,
    /// `itopk` 64 and degree 32, up to 28,000 passing points).
    pub fn plan(&self, passing: usize) -> Plan {
        let walk_cost = self.config.itopk_size as f64 * self.degree as f64 * self.n as f64;
        if passing <= self.config.full_scan_threshold || (passing as f64).powi(2) <= walk_cost {
            Plan::Scan
        } else {
            Plan::Walk
        }
    }

    /// How many points pass `filter`: a bitset's own count, or the share of a sample.
    fn estimate_passing(&self, filter: &dyn PointFilter) -> usize {
        if let Some(c) = filter.cardinality_estimate() {
            return c.min(self.n);
        }
        let step = (self.n / FILTER_SAMPLE).max(1);
        let sampled = (0..self.n).step_by(step).count();
        let passing = (0..self.n)
            .step_by(step)
            .filter(|&o| filter.allows(o as u32))
            .count();
        passing * self.n / sampled.max(1)
    }

    /// Exact distances to every live point passing `filter`.
    fn scan(&self, q: &[f32], limit: usize, filter: &dyn PointFilter) -> Vec<ScoredOffset> {
        let mut top = TopK::new(limit);
        let mut consider = |o: u32| {
            if (o as usize) < self.n && !self.is_deleted(o) {
                top.push(ScoredOffset::new(o, self.exact_distance(q, o)));
            }
        };
        match (filter.as_bitset(), filter.allowed_offsets()) {
            (Some(bits), _) => bits.iter().for_each(&mut consider),
            (None, Some(offsets)) => offsets
                .filter(|&o| filter.allows(o))
                .for_each(&mut consider),
            (None, None) => (0..self.n as u32)
                .filter(|&o| filter.allows(o))
                .for_each(&mut consider),
        }
        top.into_sorted_vec()
    }

    /// CAGRA's search: a sorted buffer of `itopk_size` candidates, filled from random entry
    /// points; each iteration expands the `search_width` best candidates not yet expanded
    /// (measuring their unvisited out-links) and merges what it measured into the buffer;
    /// the walk ends when every buffered candidate has been expanded (after `min_iterations`)
    /// or at the iteration cap. Returns the best `wanted` points that `keep` allows.
    #[allow(clippy::too_many_arguments)]
    fn walk(
        &self,
        params: &CagraSearchParams,
        seed: u64,
        wanted: usize,
        filtered: bool,
        keep: &impl Fn(u32) -> bool,
        starts: Option<&[u32]>,
        measure: impl Fn(u32) -> f32,
    ) -> Vec<ScoredOffset> {
        let itopk = params.itopk_size;
        let width = params.search_width;
        let degree = self.degree;
        let cap = params.iteration_cap();
        // Sized for the usual walk (and at most 64 K ids up front); the set grows past that.
        let expected_visits = (self.entries.len()
            + params.num_random_samplings * width * degree
            + cap
                .min(itopk.saturating_mul(2))
                .saturating_mul(width * degree))
        .min(self.n)
        .min(1 << 16);
        WALK_STATE.with(|state| {
            let mut state = state.borrow_mut();
            let WalkState {
                visited,
                buffer,
                batch,
                parents,
            } = &mut *state;
            visited.reset(expected_visits);
            buffer.clear();
            batch.clear();
            // Allowed results, kept apart from the buffer when a filter (or a delete) may
            // reject buffered nodes: the buffer navigates, this collects.
            let mut results = filtered.then(|| TopK::new(wanted));

            // The entry points, then random nodes (cuVS's random sampling): for a walk from
            // given nodes, those alone.
            let mut rng = SplitMix(seed);
            let random = params.num_random_samplings * width * degree;
            let fixed = starts.unwrap_or(&self.entries);
            let random = if starts.is_some() { 0 } else { random };
            for o in fixed
                .iter()
                .copied()
                .chain((0..random).map(|_| rng.below(self.n) as u32))
            {
                if visited.insert(o) {
                    batch.push(Entry::new(measure(o), o));
                }
            }
            merge(buffer, batch, itopk, &mut results, keep);

            // Every entry before `cursor` has been expanded.
            let mut cursor = 0;
            let mut iteration = 0;
            loop {
                parents.clear();
                while cursor < buffer.len() && parents.len() < width {
                    let e = &mut buffer[cursor];
                    if !e.expanded {
                        e.expanded = true;
                        parents.push(e.id);
                    }
                    cursor += 1;
                }
                if parents.is_empty() && iteration >= params.min_iterations {
                    break;
                }
                for &p in parents.iter() {
                    let links = self.neighbours(p);
                    for (i, &o) in links.iter().enumerate() {
                        if let Some(&ahead) = links.get(i + PREFETCH_AHEAD) {
                            self.prefetch(ahead);
                        }
                        if visited.insert(o) {
                            batch.push(Entry::new(measure(o), o));
                        }
                    }
                }
                cursor = cursor.min(merge(buffer, batch, itopk, &mut results, keep));
                iteration += 1;
                if iteration >= cap {
                    break;
                }
            }
            match results {
                Some(top) => top.into_sorted_vec(),
                None => buffer
                    .iter()
                    .take(wanted)
                    .map(|e| ScoredOffset::new(e.id, e.distance))
                    .collect(),
            }
        })
    }

    #[inline]
    fn prefetch(&self, o: u32) {
        let o = o as usize;
        match &self.vectors {
            Vectors::F32(v) => {
                let row = &v[o * self.dim..(o + 1) * self.dim];
                quant::kernels::prefetch(row.as_ptr().cast(), self.dim * 4);
            }
            Vectors::Sq8 { codes, .. } => {
                let code = codes.code(o);
                quant::kernels::prefetch(code.as_ptr(), code.len());
            }
        }
    }
}

/// The way a filtered search runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Exact distances to every passing point.
    Scan,
    /// The walk, its buffer widened by the inverse of the passing share, keeping passing
    /// points as results.
    Walk,
}

/// A buffered candidate.
#[derive(Debug, Clone, Copy)]
struct Entry {
    distance: f32,
    id: u32,
    expanded: bool,
}

impl Entry {
    fn new(distance: f32, id: u32) -> Entry {
        Entry {
            distance,
            id,
            expanded: false,
        }
    }

    #[inline]
    fn key(&self) -> (f32, u32) {
        (self.distance, self.id)
    }
}

fn entry_order(a: &Entry, b: &Entry) -> std::cmp::Ordering {
    a.distance.total_cmp(&b.distance).then(a.id.cmp(&b.id))
}

/// Merges the measured `batch` into the sorted `buffer`, keeping its best `itopk`; offers
/// every allowed measured node to `results` when there is one. Empties `batch`. Returns the
/// position of the first entry it placed (`usize::MAX` when none stayed), so that the search
/// for unexpanded parents resumes there rather than at the head of the buffer.
fn merge(
    buffer: &mut Vec<Entry>,
    batch: &mut Vec<Entry>,
    itopk: usize,
    results: &mut Option<TopK>,
    keep: &impl Fn(u32) -> bool,
) -> usize {
    if batch.is_empty() {
        return usize::MAX;
    }
    if let Some(top) = results {
        for e in batch.iter() {
            if keep(e.id) {
                top.push(ScoredOffset::new(e.id, e.distance));
            }
        }
    }
    batch.sort_unstable_by(entry_order);
    let worst = (buffer.len() >= itopk).then(|| buffer[itopk - 1].key());
    // Most of a batch is farther than the buffer's worst: drop those first.
    if let Some(w) = worst {
        let keep_len = batch.partition_point(|e| e.key() < w);
        batch.truncate(keep_len);
    }
    if batch.is_empty() {
        return usize::MAX;
    }
    // Merge from the back into the buffer grown in place.
    let old_len = buffer.len();
    let total = old_len + batch.len();
    buffer.resize(total, Entry::new(0.0, 0));
    let (mut i, mut j, mut w) = (old_len, batch.len(), total);
    while j > 0 {
        if i > 0 && entry_order(&buffer[i - 1], &batch[j - 1]).is_gt() {
            buffer[w - 1] = buffer[i - 1];
            i -= 1;
        } else {
            buffer[w - 1] = batch[j - 1];
            j -= 1;
        }
        w -= 1;
    }
    buffer.truncate(itopk);
    batch.clear();
    if w < itopk {
        w
    } else {
        usize::MAX
    }
}

/// Buffers a walk reuses from one search to the next on the same thread.
#[derive(Default)]
struct WalkState {
    visited: VisitedHash,
    buffer: Vec<Entry>,
    batch: Vec<Entry>,
    parents: Vec<u32>,
}

thread_local! {
    static WALK_STATE: std::cell::RefCell<WalkState> = std::cell::RefCell::new(WalkState::default());
}

/// The walk's 8-bit scorer: the integer path, or the float one for Manhattan (whose integer
/// path needs global bounds, which a per-dimension quantizer does not have).
enum SqScorer<'a> {
    Int(quant::ScalarQueryInt),
    Float(quant::ScalarQuery<'a>),
}

impl<'a> SqScorer<'a> {
    fn new(sq: &'a ScalarQuantizer, q: &[f32], metric: Metric) -> Result<SqScorer<'a>> {
        Ok(match sq.query_int(q, metric) {
            Ok(int) => SqScorer::Int(int),
            Err(_) => SqScorer::Float(sq.query(q, metric)?),
        })
    }

    #[inline]
    fn distance(&self, code: &[u8], correction: f32) -> f32 {
        match self {
            SqScorer::Int(s) => s.distance(code, correction),
            SqScorer::Float(s) => s.distance(code, correction),
        }
    }
}

/// A seed for a query's random entry points: the same query gets the same walk.
fn query_seed(q: &[f32]) -> u64 {
    q.iter().fold(0xCBF2_9CE4_8422_2325u64, |h, x| {
        (h ^ x.to_bits() as u64).wrapping_mul(0x0100_0000_01B3)
    })
}

/// `data` prepared for the metric (normalised for cosine).
fn prepare_all(data: &[f32], dim: usize, metric: Metric) -> Vec<f32> {
    let mut prepared = data.to_vec();
    prepared
        .par_chunks_exact_mut(dim)
        .for_each(|v| metric.prepare(v));
    prepared
}

/// The points nearest the centroids of a k-means of `data` into `count` clusters (at most a
/// quarter of the points), each found among a sample of 64 points per centroid.
fn entry_nodes(
    data: &[f32],
    dim: usize,
    metric: Metric,
    count: usize,
    seed: u64,
) -> Result<Vec<u32>> {
    let n = data.len() / dim;
    let k = count.min(n / 4);
    if k == 0 {
        return Ok(Vec::new());
    }
    let config = quant::KMeansConfig {
        max_iterations: 10,
        max_points_per_centroid: 32,
        spherical: metric != Metric::Euclidean && metric != Metric::Manhattan,
        seed,
        ..quant::KMeansConfig::new(k)
    };
    let km = quant::KMeans::train(data, dim, &config)?;
    let step = (n / (64 * k)).max(1);
    let nearest: Vec<(usize, f32, u32)> = (0..n)
        .into_par_iter()
        .step_by(step)
        .map(|i| {
            let (c, d) = km
                .nearest(&data[i * dim..(i + 1) * dim])
                .expect("same dimension");
            (c, d, i as u32)
        })
        .collect();
    let mut best = vec![(f32::INFINITY, u32::MAX); k];
    for (c, d, i) in nearest {
        if d < best[c].0 {
            best[c] = (d, i);
        }
    }
    let mut entries: Vec<u32> = best
        .into_iter()
        .filter(|b| b.1 != u32::MAX)
        .map(|b| b.1)
        .collect();
    entries.sort_unstable();
    entries.dedup();
    Ok(entries)
}

/// The point closest to the mean of `data`.
fn center_of(data: &[f32], dim: usize, metric: Metric) -> u32 {
    let n = data.len() / dim;
    let mut mean = vec![0f64; dim];
    for v in data.chunks_exact(dim) {
        mean.iter_mut().zip(v).for_each(|(m, &x)| *m += x as f64);
    }
    let mut mean: Vec<f32> = mean.iter().map(|m| (m / n as f64) as f32).collect();
    metric.prepare(&mut mean);
    let kern = kernels();
    (0..n)
        .into_par_iter()
        .map(|i| {
            let d = metric.distance(kern, &mean, &data[i * dim..(i + 1) * dim]);
            (d, i as u32)
        })
        .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
        .map_or(0, |(_, i)| i)
}

impl VectorIndex for CagraIndex {
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
        (offset as usize) < self.n && !self.is_deleted(offset)
    }

    /// CAGRA's walk with the index's defaults; `hnsw_ef`, the candidate list's size in
    /// Qdrant's parameters, sets `itopk_size`. `exact` scans.
    fn search(
        &self,
        query: &[f32],
        params: &SearchParams,
        filter: Option<&dyn PointFilter>,
    ) -> Result<Vec<ScoredOffset>> {
        params.validate()?;
        let mut hits = if params.exact {
            let q = prepared_vector(query, self.dim, self.metric)?;
            let all = |_: PointOffset| true;
            self.scan(&q, params.limit, filter.unwrap_or(&all))
        } else {
            let walk = CagraSearchParams {
                itopk_size: params
                    .hnsw_ef
                    .unwrap_or(self.config.itopk_size)
                    .clamp(1, crate::config::MAX_ITOPK),
                search_width: self.config.search_width,
                ..CagraSearchParams::default()
            };
            self.search_with(
                query,
                params.limit,
                &walk,
                filter,
                params.rescore,
                params.oversampling,
            )?
        };
        if let Some(max) = params.max_distance {
            hits.retain(|h| h.distance <= max);
        }
        Ok(hits)
    }

    /// Queries in parallel on the rayon pool.
    fn search_batch(
        &self,
        queries: &[&[f32]],
        params: &SearchParams,
        filter: Option<&dyn PointFilter>,
    ) -> Result<Vec<Vec<ScoredOffset>>> {
        queries
            .par_iter()
            .map(|q| self.search(q, params, filter))
            .collect()
    }

    fn memory_usage(&self) -> MemoryUsage {
        let vector_bytes = match &self.vectors {
            Vectors::F32(v) => v.capacity() * 4,
            Vectors::Sq8 { codes, full, .. } => codes.memory_bytes() + full.capacity() * 4,
        };
        MemoryUsage {
            points: self.len(),
            vector_bytes,
            vector_bytes_on_disk: 0,
            index_bytes: self.graph.capacity() * 4,
            other_bytes: self.deleted.len() * 8,
        }
    }
}

/// A deleted set as a filter, for callers that combine it with their own.
impl CagraIndex {
    /// The deleted offsets.
    pub fn deleted(&self) -> AllowedSet {
        (0..self.n as u32).filter(|&o| self.is_deleted(o)).collect()
    }
}
