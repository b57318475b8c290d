//! Searching: the filter plan (scan, filter-first walk, plain walk), the scan of allowed
//! points (of their full vectors, or of their codes with a re-rank), and rescoring of
//! quantized candidates.

use super::*;

/// How a search gathers the candidates it ranks (and a quantized storage re-ranks).
#[derive(Clone, Copy)]
enum Gather<'a> {
    /// The plain walk through every node.
    Walk,
    /// The filter-first walk through allowed nodes.
    FilterFirst,
    /// A scan of every allowed point's code: the listed offsets (known to pass), or every
    /// live node that passes when `None`.
    Codes(Option<&'a [u32]>),
}

impl HnswIndex {
    /// Exact search over every live node that passes `accept`, or over `listed` (offsets
    /// known to pass) when given.
    pub(super) fn scan<A: Fn(u32) -> bool>(
        &self,
        query: &[f32],
        accept: &A,
        listed: Option<&[u32]>,
        limit: usize,
    ) -> Vec<Candidate> {
        let mut top = TopK::new(limit);
        match listed {
            Some(listed) => {
                // Listed offsets are scattered over the records: load a few ahead of the one
                // being measured, as the walk does, so that the misses overlap.
                for (k, &n) in listed.iter().enumerate() {
                    if let Some(&ahead) = listed.get(k + SCAN_PREFETCH_AHEAD) {
                        self.prefetch_exact(ahead);
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

    /// The `pool` nearest live points by their codes (`measure`, as a quantized walk
    /// measures), among `listed` (offsets known to pass) or, when `None`, every node that
    /// passes `accept`: what a scan of a quantized storage re-ranks, in place of a walk's
    /// candidates.
    fn scan_codes<M: Fn(u32) -> Option<(f32, bool)>, A: Fn(u32) -> bool>(
        &self,
        measure: &M,
        accept: &A,
        listed: Option<&[u32]>,
        pool: usize,
    ) -> Vec<Candidate> {
        let mut top = TopK::new(pool);
        match listed {
            Some(listed) => {
                for (k, &n) in listed.iter().enumerate() {
                    if let Some(&ahead) = listed.get(k + SCAN_PREFETCH_AHEAD) {
                        self.arena.prefetch(ahead);
                    }
                    if let Some((d, true)) = measure(n) {
                        top.push(Candidate::new(n, d));
                    }
                }
            }
            None => (0..self.end.load(Ordering::Acquire)).for_each(|n| {
                if self.arena.state(n) == SlotState::Live && accept(n) {
                    if let Some((d, true)) = measure(n) {
                        top.push(Candidate::new(n, d));
                    }
                }
            }),
        }
        top.into_sorted_vec()
    }

    /// What binding a query to the storage's codes costs, in the cost model's bytes (a
    /// nanosecond is 10 of them): `sq8`'s integer query and the binary query's signs about
    /// 6 ns a dimension, RaBitQ's rotation and its query's bit planes about 28 (1 bit) or 14
    /// (more bits), a product quantizer's table (256 distances a sub-space) about 880 ns a
    /// dimension (measured with a sub-space of 4 dimensions); an `f32` or `f16` walk
    /// measures the query as given. Measured at 64 to 1024 dimensions on the machine of the
    /// other constants. A walk over codes pays it as well as a scan of
    /// codes; a scan of full vectors does not.
    pub(super) fn code_query_cost(&self) -> f64 {
        let per_dimension = match &self.codec {
            Codec::F32 | Codec::F16 => 0.0,
            Codec::Sq8(_) | Codec::Binary(_) => 60.0,
            Codec::Rabitq(rq) if rq.bits() == 1 => 280.0,
            Codec::Rabitq(_) => 140.0,
            Codec::Pq(_) => 8_800.0,
        };
        per_dimension * self.dim as f64
    }

    /// What estimating one distance from a code costs beyond reading it, in the cost model's
    /// bytes: only a 1-bit RaBitQ code's is more than its bytes (four AND-popcounts of the
    /// code against the query's bit planes and the factors' arithmetic: a scan of them
    /// measured 73 ns a point at 1024 dimensions where reading 140 bytes and the record's
    /// overhead stands for 20), about half a byte a dimension.
    pub(super) fn code_estimate_cost(&self) -> f64 {
        match &self.codec {
            Codec::Rabitq(rq) if rq.bits() == 1 => 0.5 * self.dim as f64,
            _ => 0.0,
        }
    }

    /// What a planned scan of `allowed` points costs in the cost model's bytes
    /// ([`HnswIndex::scan_is_cheaper`]), and whether it reads their codes.
    ///
    /// A scan reads each point's full vector; in a quantized storage it may instead read
    /// each point's code (a quarter of the bytes in `sq8`, a thirtieth in 1-bit RaBitQ) and
    /// then, as a walk does, the full vectors of the `reranked` best at random, after binding
    /// the query to the codes ([`HnswIndex::code_query_cost`]). Reading codes costs less once
    /// the points' saved bytes outweigh those two (from about 190 points at 50 dimensions in
    /// `sq8`, and 130 at 1024 in 1-bit RaBitQ, re-ranking 30); below, the exact scan costs
    /// about as little and its answer is exact.
    ///
    /// `reranked` is `None` where a scan reads full vectors only: a storage of full vectors,
    /// or a search that asks for no re-rank ([`HnswIndex::reranked_estimate`]).
    pub(super) fn scan_cost(&self, allowed: usize, reranked: Option<usize>) -> (f64, bool) {
        let full_bytes = match self.codec {
            Codec::F16 => 2 * self.dim,
            _ => 4 * self.dim,
        } as f64;
        let exact = allowed as f64 * (full_bytes + SCAN_POINT_OVERHEAD);
        let Some(reranked) = reranked else {
            return (exact, false);
        };
        let code_bytes = self.codec.payload_bytes(self.dim) as f64;
        let codes = self.code_query_cost()
            + allowed as f64 * (code_bytes + self.code_estimate_cost() + SCAN_POINT_OVERHEAD)
            + reranked as f64 * (RANDOM_READ_COST + RANDOM_BYTE_COST * full_bytes);
        if codes < exact {
            (codes, true)
        } else {
            (exact, false)
        }
    }

    /// How many live points `filter` lets through, and a low bound on it: its own count when
    /// it has one (a bitset; both are that count), otherwise an estimate from a fixed
    /// pseudo-random sample of offsets, as Qdrant's planner samples a condition no payload
    /// index can count.
    ///
    /// A sample of [`FILTER_SAMPLE`] offsets counts a narrow filter coarsely (at 1% of the
    /// points passing, about 3 of them). Overrating the share would send the walk out with
    /// too small an `ef` (or at all), where it loses recall, so the walk's side of the plan
    /// takes the low bound: two standard deviations below the count that passed (Poisson,
    /// `k − 2·√k`).
    pub(super) fn estimate_allowed(&self, filter: &dyn PointFilter) -> (usize, usize) {
        if let Some(count) = filter.cardinality_estimate() {
            return (count, count);
        }
        let end = self.end.load(Ordering::Acquire);
        if end == 0 {
            return (0, 0);
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
            return (0, 0);
        }
        let scale = self.live.load(Ordering::Acquire) as f64 / live as f64;
        let passed = passed as f64;
        let low = (passed - 2.0 * passed.sqrt()).max(0.0);
        (
            (scale * passed).round() as usize,
            (scale * low).round() as usize,
        )
    }

    /// Chooses how a filtered search runs (the planner), and the `ef` its walk takes: a
    /// scan of the allowed points when they are few (below `full_scan_threshold`), so
    /// sparse among the points that the walk cannot keep its recall, or when the cost model
    /// says scanning them is cheaper than the filter-first walk
    /// ([`HnswIndex::scan_is_cheaper`]); the filter-first walk when fewer than a fifth of the
    /// points pass ([`FILTER_FIRST_BELOW`]), at the `ef` that keeps its recall
    /// ([`HnswIndex::filter_first_ef`]); the plain walk that keeps only allowed results from
    /// a fifth on. A search over codes re-ranks about `reranked` candidates by their full
    /// vectors, down either path (`None`: none, and a scan reads full vectors;
    /// [`HnswIndex::reranked_estimate`]).
    ///
    /// Also returns the estimate of the allowed points, which a scan's choice between codes
    /// and full vectors takes ([`HnswIndex::scan_cost`]).
    pub(super) fn plan(
        &self,
        filter: &dyn PointFilter,
        ef: usize,
        reranked: Option<usize>,
    ) -> (FilterPlan, usize, usize) {
        let (allowed, allowed_low) = self.estimate_allowed(filter);
        if allowed < self.config.full_scan_threshold {
            return (FilterPlan::Scan, ef, allowed);
        }
        let live = self.live.load(Ordering::Acquire).max(1);
        if (allowed as f64) >= FILTER_FIRST_BELOW * live as f64 {
            return (FilterPlan::PassThrough, ef, allowed);
        }
        // Too few allowed nodes an expansion and the walk's beam dries up before it finds
        // the nearest: at 0.5% of the points passing (`M` about 2), `ef` 1,024 gave recall@10
        // 0.79 and 0.80 on glove-50 and a clustered 384-d set. Only the scan holds recall.
        let (_, measured) = self.filter_first_expansion(allowed as f64 / live as f64);
        if measured < MIN_MEASURED_PER_EXPANSION {
            return (FilterPlan::Scan, ef, allowed);
        }
        // The rise takes the low bound (a sampled predicate may pass fewer than it seems);
        // the cap the estimate.
        let walk_ef = self.filter_first_ef(allowed_low, allowed, live, ef);
        // A filter that cannot list its offsets is scanned by testing every point. A bitset
        // lists them: asking it would box an iterator on every planned search.
        let tests_every_point = filter.as_bitset().is_none() && filter.allowed_offsets().is_none();
        if self.scan_is_cheaper(allowed, live, walk_ef, reranked, tests_every_point) {
            (FilterPlan::Scan, ef, allowed)
        } else {
            (FilterPlan::FilterFirst, walk_ef, allowed)
        }
    }

    /// What one expansion of the filter-first walk takes when `share` of the points pass:
    /// the disallowed neighbours it looks through, and the allowed nodes it measures.
    ///
    /// Both follow from the share and the base layer's `m0` links. The forms were fitted to
    /// the walk's own counts on glove-50 and a clustered 384-d set (within 15% of them from
    /// 0.3% to 20% of the points passing, `ef` 16 to 256, where the counts of the two sets
    /// agree within 10%):
    /// - looked through: `L = min(¾·m0, 1.5/s)` (the walk stops looking once it has `m0`
    ///   allowed nodes; some neighbours are already visited);
    /// - measured: `M = min(m0, s·m0·(L + 1)/2)` (the expanded node's links and those looked
    ///   through, allowed at rate `s`, about half of them not yet visited).
    fn filter_first_expansion(&self, share: f64) -> (f64, f64) {
        let m0 = self.config.m0() as f64;
        let share = share.max(1e-9);
        let looked = (0.75 * m0).min(1.5 / share);
        let measured = (share * m0 * (looked + 1.0) / 2.0).clamp(1e-3, m0);
        (looked, measured)
    }

    /// The `ef` the filter-first walk runs with when `allowed` of `live` points pass (no
    /// more than `cap`) and the search asks for `ef`.
    ///
    /// When an expansion measures fewer than `m0/2` allowed nodes (`M`, from
    /// [`HnswIndex::filter_first_expansion`]), the walk reaches fewer of them than the
    /// unfiltered walk does at the same `ef`, and its recall falls faster than `M` does.
    /// Measured without this rise (200 queries; `ef` for recall@10 0.95, against 110 and 190
    /// at 5% of the points passing, where `M` is about `m0/2`): at 2% (`M` ≈ 8) glove-50 took
    /// 2.4 times the `ef` and a clustered 384-d set 2.4 times, at 1% (`M` ≈ 4) 7.7 and 5.3
    /// times. So the walk's `ef` is raised by `(m0 / (2·M))^1.5` (2.8 times at 2%, 8 at 1%,
    /// with `m0` 32), taking `M` as no less than [`MIN_MEASURED_PER_EXPANSION`]; no higher
    /// than `cap` (a beam that wide holds every allowed point it meets) and never below the
    /// asked `ef`.
    pub(super) fn filter_first_ef(
        &self,
        allowed: usize,
        cap: usize,
        live: usize,
        ef: usize,
    ) -> usize {
        let (_, measured) = self.filter_first_expansion(allowed as f64 / live.max(1) as f64);
        let measured = measured.max(MIN_MEASURED_PER_EXPANSION);
        let factor = (self.config.m0() as f64 / (2.0 * measured))
            .max(1.0)
            .powf(1.5);
        ((ef as f64 * factor).ceil() as usize).min(cap).max(ef)
    }

    /// Whether a scan of `allowed` of `live` points costs less than the filter-first
    /// walk at `walk_ef` (the planner's cost model).
    ///
    /// Both costs are counted in bytes of memory traffic, since both paths are bound by it:
    /// - **the scan** reads each allowed point's full vector in offset order, prefetched
    ///   ahead, so it pays about the bytes themselves ([`SCAN_POINT_OVERHEAD`] on top), or in
    ///   a quantized storage its code and then the full vectors of the `reranked` best,
    ///   whichever costs less ([`HnswIndex::scan_cost`]); a filter that cannot list its
    ///   offsets (`tests_every_point`, a predicate) is tested on every live point first
    ///   ([`PREDICATE_SCAN_COST`] each);
    /// - **the walk** expands about `walk_ef` nodes (counted: `ef` plus a few). Each expansion
    ///   reads the records of the allowed nodes it measures (a random access:
    ///   [`RANDOM_READ_COST`] and the bytes, at [`RANDOM_BYTE_COST`]) and the link lists of
    ///   the disallowed neighbours it looks through ([`LOOK_THROUGH_COST`] each), as many as
    ///   [`HnswIndex::filter_first_expansion`] says.
    ///
    /// A quantized walk also binds the query to the codes ([`HnswIndex::code_query_cost`])
    /// and re-reads the full vectors of the `reranked` candidates it re-ranks. The walk runs
    /// at the `ef` raised for its recall ([`HnswIndex::filter_first_ef`]), so both paths are
    /// compared at about the recall the caller asked for (a scan's is exact, or that of the
    /// re-rank of the nearest codes). Not priced: full vectors left on disk after a
    /// load (`LoadOptions`), which the scan reads through a file map.
    pub(super) fn scan_is_cheaper(
        &self,
        allowed: usize,
        live: usize,
        walk_ef: usize,
        reranked: Option<usize>,
        tests_every_point: bool,
    ) -> bool {
        let (looked, measured) = self.filter_first_expansion(allowed as f64 / live.max(1) as f64);
        let walk_bytes = self.codec.payload_bytes(self.dim) as f64;
        let full_bytes = match self.codec {
            Codec::F16 => 2 * self.dim,
            _ => 4 * self.dim,
        } as f64;
        let walk = self.code_query_cost()
            + walk_ef as f64
                * (measured
                    * (RANDOM_READ_COST
                        + RANDOM_BYTE_COST * walk_bytes
                        + self.code_estimate_cost())
                    + looked * LOOK_THROUGH_COST)
            + reranked.unwrap_or(0) as f64 * (RANDOM_READ_COST + RANDOM_BYTE_COST * full_bytes);
        let (mut scan, _) = self.scan_cost(allowed, reranked);
        if tests_every_point {
            scan += live as f64 * PREDICATE_SCAN_COST;
        }
        scan < walk
    }

    /// The path a search with `params` and `filter` takes, and its `ef`: `forced` when given
    /// (see [`HnswIndex::search_with_plan`]), otherwise what the planner chooses, or the scan
    /// when the search asks to be exact or the index has no graph. Also the planner's
    /// estimate of the allowed points, where it made one.
    fn planned(
        &self,
        params: &SearchParams,
        filter: Option<&dyn PointFilter>,
        forced: Option<FilterPlan>,
    ) -> (FilterPlan, usize, Option<usize>) {
        let ef = params
            .hnsw_ef
            .unwrap_or(self.config.ef_search)
            .max(params.limit);
        // A quantized walk that gathers the candidates it re-ranks (every code but RaBitQ's
        // bound-driven re-rank) walks with at least that many: the rise applies to that.
        let gathered = match self.codec {
            Codec::F32 | Codec::F16 => 0,
            Codec::Rabitq(_) if params.oversampling.is_none() && params.rescore != Some(false) => 0,
            _ => self.oversampled(params),
        };
        match (forced, filter) {
            _ if !self.config.has_graph() || params.exact => (FilterPlan::Scan, ef, None),
            (Some(FilterPlan::FilterFirst), Some(f)) => {
                let live = self.live.load(Ordering::Acquire);
                let (allowed, allowed_low) = self.estimate_allowed(f);
                let walk_ef = self.filter_first_ef(allowed_low, allowed, live, ef.max(gathered));
                (FilterPlan::FilterFirst, walk_ef, Some(allowed))
            }
            (Some(FilterPlan::FilterFirst), None) => (FilterPlan::PassThrough, ef, None),
            (Some(plan), _) => (plan, ef, None),
            (None, Some(f)) => {
                match self.plan(f, ef.max(gathered), self.reranked_estimate(params)) {
                    // The other paths take the asked `ef`; the walk applies its own floor.
                    (FilterPlan::FilterFirst, walk_ef, allowed) => {
                        (FilterPlan::FilterFirst, walk_ef, Some(allowed))
                    }
                    (plan, _, allowed) => (plan, ef, Some(allowed)),
                }
            }
            (None, None) => (FilterPlan::PassThrough, ef, None),
        }
    }

    /// The path the planner takes for a search with `params` and `filter`.
    pub fn filter_plan(
        &self,
        params: &SearchParams,
        filter: Option<&dyn PointFilter>,
    ) -> FilterPlan {
        self.planned(params, filter, None).0
    }

    /// A search down the path `plan` names, whatever the planner would choose (`None`: as it
    /// chooses, which is what [`VectorIndex::search`] does): for benchmarks and tests that
    /// measure one path at a share where the planner takes the other. A filter-first walk
    /// runs at the raised `ef` the planner would give it.
    ///
    /// [`FilterPlan::FilterFirst`] without a filter walks as [`FilterPlan::PassThrough`];
    /// an index without a graph, or a search that asks to be exact, always scans.
    pub fn search_with_plan(
        &self,
        query: &[f32],
        params: &SearchParams,
        filter: Option<&dyn PointFilter>,
        plan: Option<FilterPlan>,
    ) -> Result<Vec<ScoredOffset>> {
        params.validate()?;
        let q = prepared_vector(query, self.dim, self.metric)?;
        let (plan, ef, allowed_estimate) = self.planned(params, filter, plan);
        // A filter that is a plain bitset is tested inline, one bit per node; any other
        // through its trait object.
        let mut found = match filter.and_then(|f| f.as_bitset()) {
            Some(bits) => self.search_planned(
                &q,
                params,
                filter,
                &|n| bits.contains(n),
                (plan, ef, allowed_estimate),
            ),
            None => {
                let allowed = |n: u32| filter.is_none_or(|f| f.allows(n));
                self.search_planned(&q, params, filter, &allowed, (plan, ef, allowed_estimate))
            }
        };
        if let Some(max) = params.max_distance {
            found.retain(|c| c.distance <= max);
        }
        Ok(found)
    }

    /// Runs a search as `plan` says, a walk with `ef`; `allowed` is `filter` as a closure, and
    /// `allowed_estimate` the planner's count of the points it passes, where it made one.
    ///
    /// A planned scan of a quantized storage reads the allowed points' codes and re-ranks
    /// the best of them as a walk's candidates are, where that costs less than reading every
    /// full vector ([`HnswIndex::scan_cost`]): `ef` and the re-rank's parameters then bound
    /// its recall as they bound a walk's, and it gathers the nearest codes of all, where a
    /// walk gathers those it reaches. An index without a graph, and a search that asks to be
    /// exact, read the full vectors: their answer is the exact one; so does a search that
    /// asks for no re-rank ([`HnswIndex::reranked_estimate`]).
    pub(super) fn search_planned<A: Fn(u32) -> bool>(
        &self,
        q: &[f32],
        params: &SearchParams,
        filter: Option<&dyn PointFilter>,
        allowed: &A,
        (plan, ef, allowed_estimate): (FilterPlan, usize, Option<usize>),
    ) -> Vec<Candidate> {
        let Some((entry, top)) = self.entry() else {
            return Vec::new();
        };
        let listed: Option<Vec<u32>>;
        let gather = match plan {
            FilterPlan::PassThrough => Gather::Walk,
            FilterPlan::FilterFirst => Gather::FilterFirst,
            FilterPlan::Scan => {
                let exact_listing = filter.is_some_and(|f| f.as_bitset().is_some());
                listed = filter.and_then(|f| f.allowed_offsets()).map(|it| {
                    if exact_listing {
                        it.collect()
                    } else {
                        it.filter(|&n| allowed(n)).collect()
                    }
                });
                // Listed offsets are counted as they are; a predicate takes the planner's
                // estimate (or makes one, on a path it was told to take).
                let count = match (&listed, filter) {
                    (Some(listed), _) => listed.len(),
                    (None, Some(f)) => {
                        allowed_estimate.unwrap_or_else(|| self.estimate_allowed(f).0)
                    }
                    (None, None) => self.live.load(Ordering::Acquire),
                };
                let codes = !params.exact
                    && self.config.has_graph()
                    && self.scan_cost(count, self.reranked_estimate(params)).1;
                if !codes {
                    return self.scan(q, allowed, listed.as_deref(), params.limit);
                }
                Gather::Codes(listed.as_deref())
            }
        };
        self.gather_and_rank(q, params, allowed, gather, entry, top, ef)
    }

    /// Gathers candidates as `gather` says (a walk from `entry` on level `top` with `ef`, or
    /// a scan of every allowed point's code), measuring nodes by the storage's payloads, and
    /// re-ranks a quantized storage's by their full vectors.
    #[allow(clippy::too_many_arguments)]
    fn gather_and_rank<A: Fn(u32) -> bool>(
        &self,
        q: &[f32],
        params: &SearchParams,
        allowed: &A,
        gather: Gather<'_>,
        entry: u32,
        top: usize,
        ef: usize,
    ) -> Vec<Candidate> {
        let limit = params.limit;
        // A generic function, not a closure over `&dyn Fn`: each storage's `measure` is inlined
        // into the walk instead of being called indirectly per node.
        fn walk<M: Fn(u32) -> Option<(f32, bool)>, A: Fn(u32) -> bool>(
            index: &HnswIndex,
            measure: &M,
            allowed: &A,
            entry: u32,
            top: usize,
            ef: usize,
            gather: Gather<'_>,
        ) -> Vec<Candidate> {
            if let Gather::Codes(listed) = gather {
                return index.scan_codes(measure, allowed, listed, ef);
            }
            let start = index.descend(measure, entry, top, 0);
            match gather {
                Gather::FilterFirst => {
                    index.search_level_filter_first(measure, allowed, start.offset, ef)
                }
                _ => index.search_level(
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
                let mut found = walk(self, &measure, allowed, entry, top, ef, gather);
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
                let mut found = walk(self, &measure, allowed, entry, top, ef, gather);
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
                    gather: Gather<'_>,
                ) -> Vec<Candidate> {
                    let measure = |n: u32| {
                        let (p, live) = index.arena.payload_and_liveness(n)?;
                        let (correction, codes) = sq8_record(p, index.dim);
                        Some((score(codes, correction), live && allowed(n)))
                    };
                    walk(index, &measure, allowed, entry, top, ef, gather)
                }
                let ef = ef.max(oversampled);
                let found = if self.metric == Metric::Manhattan && !sq.bounds().is_global() {
                    let scorer = sq.query(q, self.metric).expect("query checked");
                    sq8_walk(
                        self,
                        |c, k| scorer.distance(c, k),
                        allowed,
                        entry,
                        top,
                        ef,
                        gather,
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
                        gather,
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
                    allowed,
                    entry,
                    top,
                    ef.max(oversampled),
                    gather,
                );
                self.rescore(q, found, params, oversampled)
            }
            Codec::Pq(pq) => {
                let oversampled = self.oversampled(params);
                let table = pq.table(q, self.metric).expect("query checked");
                let m = pq.m();
                let measure = |n: u32| {
                    let (p, live) = self.arena.payload_and_liveness(n)?;
                    Some((table.distance(&p[..m]), live && allowed(n)))
                };
                let found = walk(
                    self,
                    &measure,
                    allowed,
                    entry,
                    top,
                    ef.max(oversampled),
                    gather,
                );
                self.rescore(q, found, params, oversampled)
            }
            Codec::Rabitq(rq) => {
                // Cosine vectors are unit vectors (or zero), for which `−⟨o, q⟩ = (‖o − q‖² −
                // 1 − ‖q‖²)/2`: the Euclidean estimate's error scales with `‖o − c‖ · ‖q − c‖`
                // where the inner product's scales with `‖o − c‖ · ‖q‖`, and embeddings that
                // share a mean direction sit closer to their centroid than to the origin. (A
                // stored zero vector is estimated as if of norm 1, ½ off, until re-ranked.)
                let cosine = self.metric == Metric::Cosine;
                let q_sq: f32 = q.iter().map(|x| x * x).sum();
                let scorer = rq
                    .query(
                        q,
                        if cosine {
                            Metric::Euclidean
                        } else {
                            self.metric
                        },
                    )
                    .expect("query checked");
                let code_bytes = rq.code_bytes();
                let estimate = |n: u32| {
                    let (p, live) = self.arena.payload_and_liveness(n)?;
                    let (code, factors) = rabitq_record(p, code_bytes);
                    let e = scorer.estimate_code(code, factors);
                    let e = if cosine {
                        quant::Estimate {
                            distance: (e.distance - 1.0 - q_sq) * 0.5,
                            bound: e.bound * 0.5,
                        }
                    } else {
                        e
                    };
                    Some((e, live))
                };
                let measure = |n: u32| {
                    let (e, live) = estimate(n)?;
                    Some((e.distance, live && allowed(n)))
                };
                // The bound drives re-ranking unless the search fixes an oversampling (or
                // asks for none): then the walk gathers `limit · oversampling` as for the
                // other codes.
                if params.oversampling.is_some() || params.rescore == Some(false) {
                    let oversampled = self.oversampled(params);
                    let found = walk(
                        self,
                        &measure,
                        allowed,
                        entry,
                        top,
                        ef.max(oversampled),
                        gather,
                    );
                    return self.rescore(q, found, params, oversampled);
                }
                let found = walk(self, &measure, allowed, entry, top, ef, gather);
                self.rescore_bounded(q, &found, limit, |n| estimate(n).map(|(e, _)| e.lower()))
            }
        }
    }

    /// Re-ranks a walk's candidates by full-precision distance in order of the lower end of
    /// their estimate's interval, stopping at the first whose lower end is past the
    /// `limit`-th exact distance so far: the candidates that cannot (but for the few pairs
    /// outside their bound) enter the top `limit` are never read from the full vectors.
    pub(super) fn rescore_bounded(
        &self,
        q: &[f32],
        found: &[Candidate],
        limit: usize,
        lower: impl Fn(u32) -> Option<f32>,
    ) -> Vec<Candidate> {
        // Full vectors are fetched this many candidates ahead of their measurement.
        const AHEAD: usize = 8;
        if limit == 0 {
            return Vec::new();
        }
        let mut order: Vec<(f32, u32)> = found
            .iter()
            .filter_map(|c| Some((lower(c.offset)?, c.offset)))
            .collect();
        order.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        for &(_, n) in order.iter().take(AHEAD) {
            self.arena.prefetch_secondary(n);
        }
        let mut top = TopK::new(limit);
        let mut reranked = 0u64;
        for (i, &(bound, n)) in order.iter().enumerate() {
            if bound > top.threshold() {
                break;
            }
            if let Some(&(_, next)) = order.get(i + AHEAD) {
                self.arena.prefetch_secondary(next);
            }
            reranked += 1;
            top.push(Candidate::new(n, self.exact_distance(q, n)));
        }
        self.reranked.fetch_add(reranked, Ordering::Relaxed);
        top.into_sorted_vec()
    }

    /// The full vectors a search over codes re-reads for a search with `params`, walk or
    /// scan: what a walk gathers for its re-rank ([`HnswIndex::oversampled`]), which for
    /// RaBitQ's bound-driven re-rank stands for about the count it reads (31 a query at
    /// `limit` 10 on a 1024-dimensional set, unfiltered). `None` for a storage of full
    /// vectors, and for a search that asks for no re-rank: its scan reads the full vectors
    /// and answers exactly, as it did before scans read codes (Qdrant's plain search would
    /// answer with the codes' scores; the end-to-end suite's floors on the recall of such
    /// searches were set on exact scans).
    fn reranked_estimate(&self, params: &SearchParams) -> Option<usize> {
        (self.codec.kind().is_quantized() && params.rescore != Some(false))
            .then(|| self.oversampled(params))
    }

    pub(super) fn oversampled(&self, params: &SearchParams) -> usize {
        let factor = params.oversampling.unwrap_or(self.config.oversampling);
        ((params.limit as f64 * factor as f64).ceil() as usize).max(params.limit)
    }

    /// Re-ranks the first `keep` candidates of a quantized walk by full-precision distance.
    pub(super) fn rescore(
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
