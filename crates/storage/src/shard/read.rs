//! Reads of a shard: payload schema, filters, counts, retrieval, scroll and search.

use super::*;
use crate::order::{OrderBy, OrderValue};
use crate::query::PreparedExamples;

impl LocalShard {
    /// Qdrant's `payload_schema` for this shard.
    pub fn payload_schema(&self) -> Value {
        self.state.read().indexes.schema()
    }

    /// The ids of the points matching `filter` (all points when `None`).
    pub fn matching_ids(&self, filter: Option<&Filter>) -> Vec<PointId> {
        let st = self.state.read();
        self.matching(&st, filter).collect()
    }

    pub(super) fn matching<'a>(
        &'a self,
        st: &'a State,
        filter: Option<&'a Filter>,
    ) -> Box<dyn Iterator<Item = PointId> + 'a> {
        match filter {
            None => Box::new(st.points.keys().copied()),
            Some(f) => {
                if let Some(cands) = f.indexed_candidates(&st.indexes) {
                    // Keyword matches on keyword indexes: the candidates are the answer (see
                    // `materialised_filter`), so a count, an ordered scroll, a facet or a
                    // write selected by such a filter reads no payload.
                    let exact = f.indexed_candidates_exact(&st.indexes);
                    // In id order: the caller's order, and the points map's (a B-tree).
                    let mut ids: Vec<PointId> = cands.into_iter().collect();
                    ids.sort_unstable();
                    Box::new(ids.into_iter().filter(move |id| {
                        st.points.get(id).is_some_and(|e| {
                            exact
                                || f.matches(&View {
                                    id: *id,
                                    entry: e,
                                    columns: &st.columns,
                                })
                        })
                    }))
                } else {
                    Box::new(
                        st.points
                            .iter()
                            .filter(move |(id, e)| {
                                f.matches(&View {
                                    id: **id,
                                    entry: e,
                                    columns: &st.columns,
                                })
                            })
                            .map(|(id, _)| *id),
                    )
                }
            }
        }
    }

    /// Number of points matching `filter`.
    pub fn count(&self, filter: Option<&Filter>) -> usize {
        let st = self.state.read();
        match filter {
            None => st.points.len(),
            Some(_) => self.matching(&st, filter).count(),
        }
    }

    /// How many of the points matching `filter` have each value of `key` (arrays expanded;
    /// strings, integers and booleans only; a point counts once per distinct value).
    pub fn facet_counts(&self, key: &KeyPath, filter: Option<&Filter>) -> Vec<(Value, usize)> {
        let st = self.state.read();
        let mut counts: HashMap<String, (Value, usize)> = HashMap::new();
        for id in self.matching(&st, filter) {
            let Some(e) = st.points.get(&id) else {
                continue;
            };
            let mut seen: Vec<&Value> = Vec::new();
            for v in payload::values_at(&e.payload, key) {
                let countable = match v {
                    Value::String(_) | Value::Bool(_) => true,
                    Value::Number(n) => n.is_i64() || n.is_u64(),
                    _ => false,
                };
                if countable && !seen.contains(&v) {
                    seen.push(v);
                    counts
                        .entry(v.to_string())
                        .or_insert_with(|| (v.clone(), 0))
                        .1 += 1;
                }
            }
        }
        counts.into_values().collect()
    }

    /// Up to `limit` points matching `filter`, ordered by the values of `key` (numbers, and
    /// datetimes as microseconds since the epoch; a point appears once per distinct value,
    /// as Qdrant's order_by does), ascending or descending from `start_from` (inclusive).
    pub fn scroll_ordered(
        &self,
        order: &OrderBy,
        limit: usize,
        filter: Option<&Filter>,
        with_payload: &PayloadSelector,
        with_vector: &VectorSelector,
    ) -> Vec<(Record, OrderValue)> {
        let st = self.state.read();
        let mut keyed: Vec<(OrderValue, PointId)> = Vec::new();
        for id in self.matching(&st, filter) {
            let Some(e) = st.points.get(&id) else {
                continue;
            };
            let mut seen: Vec<OrderValue> = Vec::new();
            for v in payload::values_at(&e.payload, &order.key) {
                let Some(value) = OrderValue::of(v) else {
                    continue;
                };
                if order.admits(value) && !seen.contains(&value) {
                    seen.push(value);
                    keyed.push((value, id));
                }
            }
        }
        let cmp = |a: &(OrderValue, PointId), b: &(OrderValue, PointId)| {
            order.compare(a.0, b.0).then(a.1.cmp(&b.1))
        };
        if keyed.len() > limit {
            keyed.select_nth_unstable_by(limit, cmp);
            keyed.truncate(limit);
        }
        keyed.sort_by(cmp);
        keyed
            .into_iter()
            .filter_map(|(value, id)| {
                st.points
                    .get(&id)
                    .map(|e| (self.record(id, e, with_payload, with_vector), value))
            })
            .collect()
    }

    /// Whether point `id` passes `filter` (every point passes none); `None` when it does not
    /// exist.
    pub fn point_matches(&self, id: PointId, filter: Option<&Filter>) -> Option<bool> {
        let st = self.state.read();
        let e = st.points.get(&id)?;
        Some(filter.is_none_or(|f| {
            f.matches(&View {
                id,
                entry: e,
                columns: &st.columns,
            })
        }))
    }

    /// A uniform sample (drawn by `seed`) of up to `n` of the points matching `filter` that
    /// have vector `name`, with that vector as stored; and how many such points there are.
    /// With no `name`, of every point matching, each drawn with an empty vector.
    pub fn sample(
        &self,
        filter: Option<&Filter>,
        name: Option<&str>,
        n: usize,
        seed: u64,
    ) -> Result<crate::matrix::ShardSample> {
        let st = self.state.read();
        let col = name.map(|name| Self::column(&st, name)).transpose()?;
        let mut ids: Vec<PointId> = self
            .matching(&st, filter)
            .filter(|id| {
                col.is_none_or(|col| {
                    st.points
                        .get(id)
                        .is_some_and(|e| e.seg.has_vector(col, e.row))
                })
            })
            .collect();
        let matched = ids.len();
        // The first `n` steps of a Fisher-Yates shuffle.
        let mut state = seed;
        let n = n.min(matched);
        for i in 0..n {
            let j = i + crate::matrix::random_below(&mut state, matched - i);
            ids.swap(i, j);
        }
        ids.truncate(n);
        let points = ids
            .into_iter()
            .filter_map(|id| {
                let e = st.points.get(&id)?;
                match col {
                    Some(col) => Some((id, e.seg.vector(col, e.row)?)),
                    None => Some((id, Vec::new())),
                }
            })
            .collect();
        Ok(crate::matrix::ShardSample { matched, points })
    }

    /// Which of `ids` exist.
    pub fn existing(&self, ids: &[PointId]) -> Vec<PointId> {
        let st = self.state.read();
        ids.iter()
            .copied()
            .filter(|id| st.points.contains_key(id))
            .collect()
    }

    pub(super) fn record(
        &self,
        id: PointId,
        e: &PointEntry,
        with_payload: &PayloadSelector,
        with_vector: &VectorSelector,
    ) -> Record {
        let vectors = (*with_vector != VectorSelector::Nothing).then(|| {
            self.settings()
                .vectors
                .iter()
                .enumerate()
                .filter(|(_, v)| {
                    with_vector.wants(&v.name) && !crate::config::is_hidden_column(&v.name)
                })
                .filter_map(|(c, v)| e.seg.vector(c, e.row).map(|x| (v.name.clone(), x)))
                .collect()
        });
        let sparse = e
            .sparse()
            .iter()
            .filter(|(name, _)| with_vector.wants(name))
            .cloned()
            .collect();
        let multi = e
            .multi()
            .iter()
            .filter(|(name, _)| with_vector.wants(name))
            .map(|(name, m)| (name.clone(), m.to_multi()))
            .collect();
        Record {
            id,
            payload: with_payload.apply(&e.payload),
            vectors,
            sparse,
            multi,
        }
    }

    /// The points with these ids that exist, in the order asked.
    pub fn retrieve(
        &self,
        ids: &[PointId],
        with_payload: &PayloadSelector,
        with_vector: &VectorSelector,
    ) -> Vec<Record> {
        let st = self.state.read();
        ids.iter()
            .filter_map(|id| {
                st.points
                    .get(id)
                    .map(|e| self.record(*id, e, with_payload, with_vector))
            })
            .collect()
    }

    /// The stored vector `name` of point `id`, if any.
    pub fn vector_of(&self, id: PointId, name: &str) -> Result<Option<Vec<f32>>> {
        let st = self.state.read();
        let col = Self::column(&st, name)?;
        Ok(st.points.get(&id).and_then(|e| e.seg.vector(col, e.row)))
    }

    /// The stored sparse vector `name` of a point (`None`: no such point, or it has none).
    pub fn sparse_vector_of(&self, id: PointId, name: &str) -> Result<Option<SparseVector>> {
        let st = self.state.read();
        if !st.sparse.contains_key(name) {
            return Err(StorageError::UnknownVector {
                name: name.to_string(),
            });
        }
        Ok(st
            .points
            .get(&id)
            .and_then(|e| e.sparse_vector(name).cloned()))
    }

    /// Up to `limit` points from `from` on (inclusive), in id order, that match `filter`.
    pub fn scroll(
        &self,
        from: Option<PointId>,
        limit: usize,
        filter: Option<&Filter>,
        with_payload: &PayloadSelector,
        with_vector: &VectorSelector,
    ) -> ScrollPage {
        let st = self.state.read();
        let passes = |id: PointId, e: &PointEntry| {
            filter.is_none_or(|f| {
                f.matches(&View {
                    id,
                    entry: e,
                    columns: &st.columns,
                })
            })
        };
        // A filter whose candidates (ids, or a payload index) are few is scrolled through
        // them, sorted, instead of through every point from `from` on.
        if let Some(mut ids) = filter
            .and_then(|f| f.indexed_candidates(&st.indexes))
            .filter(|c| c.len().saturating_mul(8) <= st.points.len())
            .map(|c| c.into_iter().collect::<Vec<PointId>>())
        {
            ids.retain(|id| from.is_none_or(|f| *id >= f));
            ids.sort_unstable();
            let mut it = ids.into_iter().filter_map(|id| {
                let e = st.points.get(&id)?;
                passes(id, e).then_some((id, e))
            });
            let points: Vec<Record> = it
                .by_ref()
                .take(limit)
                .map(|(id, e)| self.record(id, e, with_payload, with_vector))
                .collect();
            let next = it.next().map(|(id, _)| id);
            return ScrollPage { points, next };
        }
        let start = from.map_or(Bound::Unbounded, Bound::Included);
        let mut it = st
            .points
            .range((start, Bound::Unbounded))
            .filter(|(id, e)| passes(**id, e));
        let points: Vec<Record> = it
            .by_ref()
            .take(limit)
            .map(|(id, e)| self.record(*id, e, with_payload, with_vector))
            .collect();
        let next = it.next().map(|(id, _)| *id);
        ScrollPage { points, next }
    }

    /// Whether a search is quick and bounded enough to run on an async reactor thread: a
    /// graph walk with a moderate `ef` and limit, unfiltered or with a filter already
    /// materialised (which the index then plans like an unfiltered walk, or scans a few rows
    /// of), over a shard with no unindexed rows: a scan of plain rows costs in proportion
    /// to the rows and their dimension, unbounded, so it never runs on the reactor. Anything
    /// else, a filter still to be evaluated over the payloads among it, or a query scored
    /// against examples (a walk per example, then exact scores), belongs on a worker pool.
    pub fn is_quick(&self, req: &SearchRequest) -> bool {
        /// A re-scoring of up to this many candidates costs about as much as a walk.
        const QUICK_CANDIDATES: usize = 1_024;
        if let Some(ids) = &req.candidates {
            // A filter is tested on each candidate's payload, at a cost no bound is known of.
            return ids.len() <= QUICK_CANDIDATES
                && req.query.nearest().is_some()
                && req.filter.is_none();
        }
        if req.params.exact
            || req.params.limit > 1_000
            || req.params.hnsw_ef.unwrap_or(0) > 1_000
            || req.query.nearest().is_none()
        {
            return false;
        }
        let st = self.state.read();
        if let Some(filter) = &req.filter {
            if st.filters.lock().get(filter).is_none() {
                return false;
            }
        }
        // A vector without a graph (`m` 0) is scanned whole, at a cost that grows with it; so
        // is a segment built without one until the optimizer rebuilds it after a change of `m`.
        let Ok(col) = Self::column(&st, &req.vector_name) else {
            return false;
        };
        let v = &self.settings().vectors[col];
        if !(v.hnsw.has_graph() || v.ivf.is_some() || v.cagra.is_some()) {
            return false;
        }
        st.segments
            .iter()
            .all(|s| (s.is_indexed() && s.walks(col)) || s.row_count() == 0)
    }

    /// The best points for the query, best first, at most `params.limit`: the nearest
    /// neighbours of a vector, or the best scores against examples.
    pub fn search(&self, req: &SearchRequest) -> Result<Vec<ScoredPoint>> {
        req.params.validate()?;
        // The layout is read under the state's lock (see `State::columns`).
        let st = self.state.read();
        match &req.query {
            Query::Sparse(_) | Query::SparseExamples(_) => return self.search_sparse(&st, req),
            Query::Multi(_) | Query::MultiExamples(_) => return self.search_multi(&st, req),
            Query::Nearest(_) | Query::Examples(_) => {}
        }
        let col = Self::column(&st, &req.vector_name)?;
        let settings = self.settings();
        let v = &settings.vectors[col];
        let metric = v.distance.metric();
        let filter = req.filter.as_ref();
        // A vector without a graph (`m` 0) is answered exactly in every segment: the staging
        // lists of segments waiting for the optimizer are approximate, and so are graphs
        // built before a change of `m` to 0 until the optimizer rebuilds them.
        let exact_params;
        let params = if v.hnsw.has_graph() || v.ivf.is_some() || v.cagra.is_some() {
            &req.params
        } else {
            exact_params = SearchParams {
                exact: true,
                ..req.params.clone()
            };
            &exact_params
        };
        // An example query's hits carry their negated score as the distance.
        let (hits, examples) = match (&req.query, &req.candidates) {
            (Query::Nearest(q), Some(ids)) => {
                let query = prepared_vector(q, v.dim, metric)?;
                let kernels = quant::kernels();
                let measure = |v: &[f32]| metric.distance(kernels, &query, v);
                (
                    self.candidates(&st, col, ids, params, filter, measure),
                    false,
                )
            }
            (Query::Examples(q), Some(ids)) => {
                let q = q.prepare(v.dim, metric)?;
                let kernels = quant::kernels();
                let measure = |v: &[f32]| -q.score(kernels, v);
                (
                    self.candidates(&st, col, ids, params, filter, measure),
                    true,
                )
            }
            (Query::Nearest(q), None) => {
                let query = prepared_vector(q, v.dim, metric)?;
                let hits = self.nearest(&st, col, &query, params, filter, |_| true)?;
                (hits, false)
            }
            (Query::Examples(q), None) => {
                let q = q.prepare(v.dim, metric)?;
                (self.best_scoring(&st, col, &q, params, filter)?, true)
            }
            (
                Query::Sparse(_)
                | Query::SparseExamples(_)
                | Query::Multi(_)
                | Query::MultiExamples(_),
                _,
            ) => unreachable!("answered above"),
        };
        let score = |d: f32| if examples { -d } else { metric.score(d) };
        Ok(hits
            .into_iter()
            .filter_map(|(id, distance)| {
                st.points.get(&id).map(|e| ScoredPoint {
                    record: self.record(id, e, &req.with_payload, &req.with_vector),
                    distance,
                    score: score(distance),
                })
            })
            .collect())
    }

    /// A sparse query: through the vector's inverted index, or over the candidates. Hits
    /// carry the dot product as their score and its negation as their distance.
    fn search_sparse(&self, st: &State, req: &SearchRequest) -> Result<Vec<ScoredPoint>> {
        let name = &req.vector_name;
        let index = st
            .sparse
            .get(name)
            .ok_or_else(|| StorageError::UnknownVector { name: name.clone() })?;
        let passes = |id: PointId, e: &PointEntry| {
            req.filter.as_ref().is_none_or(|f| {
                f.matches(&View {
                    id,
                    entry: e,
                    columns: &st.columns,
                })
            })
        };
        let min_score = req.params.max_distance.map(|d| -d);
        if let Query::SparseExamples(examples) = &req.query {
            let score = |v: &SparseVector| examples.score_by(|e| e.dot(v).unwrap_or(0.0));
            let keep = |id: PointId, e: &PointEntry| -> Option<(PointId, f32)> {
                let s = score(e.sparse_vector(name)?);
                (min_score.is_none_or(|m| s >= m) && passes(id, e)).then_some((id, s))
            };
            let limit = req.params.limit;
            let mut hits: Vec<(PointId, f32)> = match &req.candidates {
                Some(ids) => {
                    let mut seen = HashSet::with_capacity(ids.len());
                    ids.iter()
                        .filter(|id| seen.insert(**id))
                        .filter_map(|&id| keep(id, st.points.get(&id)?))
                        .collect()
                }
                None => {
                    // Only points sharing an index with some example score apart; every other
                    // point holding the vector scores what no overlap scores, and they come
                    // by id, so at most `limit` of them are looked at beyond the sharers.
                    let sharers = index.holders(
                        examples
                            .examples()
                            .into_iter()
                            .flat_map(|e| e.indices.iter().copied()),
                    );
                    let mut hits: Vec<(PointId, f32)> = sharers
                        .iter()
                        .filter_map(|&id| keep(id, st.points.get(&id)?))
                        .collect();
                    let apart = examples.score_by(|_| 0.0);
                    if min_score.is_none_or(|m| apart >= m) {
                        let mut others = 0;
                        for (id, e) in st.points.iter() {
                            if others >= limit {
                                break;
                            }
                            if sharers.contains(id) || e.sparse_vector(name).is_none() {
                                continue;
                            }
                            if passes(*id, e) {
                                hits.push((*id, apart));
                                others += 1;
                            }
                        }
                    }
                    hits
                }
            };
            crate::sparse::best_first(&mut hits, limit);
            return Ok(self.sparse_hits(st, hits, req));
        }
        let Query::Sparse(q) = &req.query else {
            unreachable!("a sparse query")
        };
        let hits: Vec<(PointId, f32)> = match &req.candidates {
            Some(ids) => {
                let mut seen = HashSet::with_capacity(ids.len());
                let mut hits: Vec<(PointId, f32)> = ids
                    .iter()
                    .filter(|id| seen.insert(**id))
                    .filter_map(|&id| {
                        let e = st.points.get(&id)?;
                        let score = q.dot(e.sparse_vector(name)?)?;
                        (min_score.is_none_or(|m| score >= m) && passes(id, e))
                            .then_some((id, score))
                    })
                    .collect();
                crate::sparse::best_first(&mut hits, req.params.limit);
                hits
            }
            None => match &req.filter {
                // Every live slot of the index is a point: nothing to look up.
                None => index.search(q, req.params.limit, min_score, None),
                Some(_) => {
                    let test = |id: PointId| st.points.get(&id).is_some_and(|e| passes(id, e));
                    index.search(q, req.params.limit, min_score, Some(&test))
                }
            },
        };
        Ok(self.sparse_hits(st, hits, req))
    }

    /// Scored points of a sparse search: the negated score as the distance.
    fn sparse_hits(
        &self,
        st: &State,
        hits: Vec<(PointId, f32)>,
        req: &SearchRequest,
    ) -> Vec<ScoredPoint> {
        hits.into_iter()
            .filter_map(|(id, score)| {
                st.points.get(&id).map(|e| ScoredPoint {
                    record: self.record(id, e, &req.with_payload, &req.with_vector),
                    distance: -score,
                    score,
                })
            })
            .collect()
    }

    /// How many points hold sparse vector `name`, and how many of them hold each of
    /// `indices` (the statistics of its IDF weights).
    pub fn sparse_stats(&self, name: &str, indices: &[u32]) -> Result<(usize, Vec<usize>)> {
        let st = self.state.read();
        let index = st
            .sparse
            .get(name)
            .ok_or_else(|| StorageError::UnknownVector {
                name: name.to_string(),
            })?;
        Ok((index.len(), indices.iter().map(|&i| index.df(i)).collect()))
    }

    /// The `params.limit` best of the candidates `ids` that this shard holds, pass `filter`
    /// and have the vector, each measured exactly by `measure` (a distance: smaller is
    /// closer), within `params.max_distance`; as (id, distance), closest first.
    fn candidates(
        &self,
        st: &State,
        col: usize,
        ids: &[PointId],
        params: &SearchParams,
        filter: Option<&Arc<Filter>>,
        measure: impl Fn(&[f32]) -> f32,
    ) -> Vec<(PointId, f32)> {
        let mut seen = HashSet::with_capacity(ids.len());
        let mut hits: Vec<(PointId, f32)> = Vec::new();
        for &id in ids {
            let Some(e) = st.points.get(&id) else {
                continue;
            };
            if !seen.insert(id) {
                continue;
            }
            let passes = filter.is_none_or(|f| {
                f.matches(&View {
                    id,
                    entry: e,
                    columns: &st.columns,
                })
            });
            if !passes {
                continue;
            }
            if let Some(v) = e.seg.vector(col, e.row) {
                let distance = measure(&v);
                if params.max_distance.is_none_or(|m| distance <= m) {
                    hits.push((id, distance));
                }
            }
        }
        cut_to_best(&mut hits, params.limit);
        hits
    }

    /// The `params.limit` nearest points to a prepared query vector, as (id, distance), over
    /// the segments `searched` picks.
    pub(super) fn nearest(
        &self,
        st: &State,
        col: usize,
        query: &[f32],
        params: &SearchParams,
        filter: Option<&Arc<Filter>>,
        searched: impl Fn(&Segment) -> bool,
    ) -> Result<Vec<(PointId, f32)>> {
        // The filter as row bitsets when it is (or should now be) materialised; otherwise it
        // is tested point by point as the walk meets them.
        let passing = filter.and_then(|f| self.materialised_filter(st, f));
        let filter = filter.map(|f| &**f).filter(|_| passing.is_none());
        let predicate = filter.map(|f| {
            move |id: PointId| {
                st.points.get(&id).is_some_and(|e| {
                    f.matches(&View {
                        id,
                        entry: e,
                        columns: &st.columns,
                    })
                })
            }
        });
        let mut lists = Vec::with_capacity(st.segments.len());
        for seg in st.segments.iter().filter(|s| searched(s)) {
            let allowed = match &passing {
                Some(rows) => match rows.segment(seg.id) {
                    Some(allowed) => Some(allowed),
                    None => continue,
                },
                None => None,
            };
            lists.push(seg.search(col, query, params, predicate.as_ref(), allowed)?);
        }
        Ok(merge_top_k(&lists, params.limit, |h| h.1, |h| h.0))
    }

    /// The `params.limit` best-scoring points against examples, as (id, negated score).
    ///
    /// Plain segments are scanned (every row that passes the filter is scored, as a nearest
    /// search scans them). In indexed segments, candidates are the nearest neighbours of each
    /// anchor (`PreparedExamples::anchors`), as many per anchor as the walk's `ef` and at
    /// least four times the limit, each scored exactly; a search asked to be exact, a query
    /// with no anchor, or a shard with no more points than the candidates would number
    /// scores every point that passes the filter instead.
    fn best_scoring(
        &self,
        st: &State,
        col: usize,
        q: &PreparedExamples,
        params: &SearchParams,
        filter: Option<&Arc<Filter>>,
    ) -> Result<Vec<(PointId, f32)>> {
        /// The fewest candidates gathered around each anchor.
        const MIN_CANDIDATES_PER_ANCHOR: usize = 64;
        /// The best candidates of the first round walked from again.
        const REFINE_FROM: usize = 4;
        let kernels = quant::kernels();
        let per_anchor = params
            .hnsw_ef
            .unwrap_or(0)
            .max(params.limit.saturating_mul(4))
            .clamp(MIN_CANDIDATES_PER_ANCHOR, index_core::MAX_LIMIT);
        let anchors = q.anchors();
        let scan_all = params.exact
            || anchors.is_empty()
            || st.points.len() <= per_anchor.saturating_mul(anchors.len());
        let passes = |id: PointId, e: &PointEntry| {
            filter.is_none_or(|f| {
                f.matches(&View {
                    id,
                    entry: e,
                    columns: &st.columns,
                })
            })
        };
        let mut scored: Vec<(PointId, f32)> = Vec::new();
        let keep = |id: PointId, e: &PointEntry, scored: &mut Vec<(PointId, f32)>| {
            if let Some(v) = e.seg.vector(col, e.row) {
                let distance = -q.score(kernels, &v);
                if params.max_distance.is_none_or(|m| distance <= m) {
                    scored.push((id, distance));
                    if scored.len() >= params.limit.saturating_mul(2).max(1024) {
                        cut_to_best(scored, params.limit);
                    }
                }
            }
        };
        // Every live row of the segments scanned (all of them, or the plain ones).
        for seg in st.segments.iter().filter(|s| scan_all || !s.is_indexed()) {
            let ids: Vec<PointId> = {
                let rows = seg.rows.read();
                (0..rows.ids.len())
                    .filter(|&r| rows.live.get(r as u32))
                    .map(|r| rows.ids[r])
                    .collect()
            };
            for id in ids {
                if let Some(e) = st.points.get(&id) {
                    if passes(id, e) {
                        keep(id, e, &mut scored);
                    }
                }
            }
        }
        if !scan_all {
            let walk = SearchParams {
                limit: per_anchor,
                hnsw_ef: Some(per_anchor),
                max_distance: None,
                ..params.clone()
            };
            let mut seen = HashSet::new();
            let mut gather = |anchors: &[Vec<f32>], scored: &mut Vec<(PointId, f32)>| {
                for anchor in anchors {
                    let near = self.nearest(st, col, anchor, &walk, filter, Segment::is_indexed)?;
                    for (id, _) in near {
                        if seen.insert(id) {
                            if let Some(e) = st.points.get(&id) {
                                keep(id, e, scored);
                            }
                        }
                    }
                }
                Ok::<_, StorageError>(())
            };
            gather(&anchors, &mut scored)?;
            // The best points may lie where no example is (a discovery's zone far from its
            // target): walk again from the best candidates found, as a walk that follows the
            // score would go on from them.
            cut_to_best(&mut scored, params.limit);
            let next: Vec<Vec<f32>> = scored
                .iter()
                .take(REFINE_FROM)
                .filter_map(|(id, _)| st.points.get(id).and_then(|e| e.seg.vector(col, e.row)))
                .collect();
            gather(&next, &mut scored)?;
        }
        cut_to_best(&mut scored, params.limit);
        Ok(scored)
    }

    /// The rows `filter` lets through, per segment, from the cache; or computed now when a
    /// payload index narrows the filter, a sample says that fewer than half of the points
    /// pass, or the filter was seen before (`filter_cache` explains why). `None`: test the
    /// filter point by point.
    pub(super) fn materialised_filter(
        &self,
        st: &State,
        filter: &Arc<Filter>,
    ) -> Option<Arc<FilterRows>> {
        /// Below this share of points passing, a filter is materialised the first time.
        const NARROW_BELOW: f64 = 0.5;
        if let Some(rows) = st.filters.lock().get(filter) {
            return Some(rows);
        }
        let candidates = filter.indexed_candidates(&st.indexes);
        // Keyword matches on keyword indexes: the candidates are the answer, and testing each
        // one's payload again (most of what is left of the cost) would change nothing.
        let exact = candidates.is_some() && filter.indexed_candidates_exact(&st.indexes);
        let narrow = candidates.is_some() || self.sampled_share(st, filter) < NARROW_BELOW;
        if !st.filters.lock().should_materialise(filter, narrow) {
            return None;
        }
        // Computed without the cache's lock: searches with other filters go on meanwhile.
        // The state's read lock keeps writers out, so the result is current when cached.
        let mut rows = FilterRows::default();
        let passes = |id: PointId, e: &PointEntry| {
            filter.matches(&View {
                id,
                entry: e,
                columns: &st.columns,
            })
        };
        match candidates {
            Some(ids) => {
                // In id order: the points map is a B-tree, and lookups in the hash set's order
                // miss the cache on every level of it (a keyword index's 195,000 candidates
                // of 390,000 points took 380 ms that way, most of it waiting on tree nodes).
                let mut ids: Vec<PointId> = ids.into_iter().collect();
                ids.sort_unstable();
                for id in ids {
                    if let Some(e) = st.points.get(&id) {
                        if exact || passes(id, e) {
                            rows.set(e.seg.id, e.row, true);
                        }
                    }
                }
            }
            None => {
                for (id, e) in &st.points {
                    if passes(*id, e) {
                        rows.set(e.seg.id, e.row, true);
                    }
                }
            }
        }
        let rows = Arc::new(rows);
        st.filters.lock().insert(filter.clone(), rows.clone());
        Some(rows)
    }

    /// The share of the shard's points that pass `filter`, from a fixed pseudo-random sample
    /// of rows (Qdrant's planner samples the same way when no payload index can count a
    /// condition).
    pub(super) fn sampled_share(&self, st: &State, filter: &Filter) -> f64 {
        const SAMPLE: u64 = 128;
        let sizes: Vec<usize> = st.segments.iter().map(|s| s.row_count()).collect();
        let total: usize = sizes.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let (mut tried, mut passed) = (0usize, 0usize);
        for i in 0..SAMPLE {
            let mut at = ((i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize % total;
            let Some(k) = sizes.iter().position(|&n| {
                let here = at < n;
                if !here {
                    at -= n;
                }
                here
            }) else {
                continue;
            };
            let seg = &st.segments[k];
            let id = {
                let rows = seg.rows.read();
                if !rows.live.get(at as u32) {
                    continue;
                }
                rows.ids[at]
            };
            if let Some(e) = st.points.get(&id) {
                tried += 1;
                passed += filter.matches(&View {
                    id,
                    entry: e,
                    columns: &st.columns,
                }) as usize;
            }
        }
        if tried == 0 {
            return 0.0;
        }
        passed as f64 / tried as f64
    }
}

/// Sorts (id, distance) pairs closest first, ties by id, and keeps the first `limit`.
fn cut_to_best(hits: &mut Vec<(PointId, f32)>, limit: usize) {
    let order = |a: &(PointId, f32), b: &(PointId, f32)| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0));
    if hits.len() > limit {
        hits.select_nth_unstable_by(limit, order);
        hits.truncate(limit);
    }
    hits.sort_by(order);
}
