//! Reads of a shard: payload schema, filters, counts, retrieval, scroll and search.

use super::*;

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
                    let mut ids: Vec<PointId> = cands.into_iter().collect();
                    ids.sort();
                    Box::new(ids.into_iter().filter(move |id| {
                        st.points.get(id).is_some_and(|e| {
                            f.matches(&View {
                                id: *id,
                                entry: e,
                                columns: &self.columns,
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
                                    columns: &self.columns,
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
            self.settings
                .vectors
                .iter()
                .enumerate()
                .filter(|(_, v)| with_vector.wants(&v.name))
                .filter_map(|(c, v)| e.seg.vector(c, e.row).map(|x| (v.name.clone(), x)))
                .collect()
        });
        Record {
            id,
            payload: with_payload.apply(&e.payload),
            vectors,
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
        let col = self.column(name)?;
        let st = self.state.read();
        Ok(st.points.get(&id).and_then(|e| e.seg.vector(col, e.row)))
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
        let start = from.map_or(Bound::Unbounded, Bound::Included);
        let mut it = st
            .points
            .range((start, Bound::Unbounded))
            .filter(|(id, e)| {
                filter.is_none_or(|f| {
                    f.matches(&View {
                        id: **id,
                        entry: e,
                        columns: &self.columns,
                    })
                })
            });
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
    /// else, a filter still to be evaluated over the payloads among it, belongs on a worker
    /// pool.
    pub fn is_quick(&self, req: &SearchRequest) -> bool {
        if req.params.exact || req.params.limit > 1_000 || req.params.hnsw_ef.unwrap_or(0) > 1_000 {
            return false;
        }
        let st = self.state.read();
        if let Some(filter) = &req.filter {
            if st.filters.lock().get(filter).is_none() {
                return false;
            }
        }
        st.segments
            .iter()
            .all(|s| s.is_indexed() || s.row_count() == 0)
    }

    /// The closest points to the query, closest first, at most `params.limit`.
    pub fn search(&self, req: &SearchRequest) -> Result<Vec<ScoredPoint>> {
        req.params.validate()?;
        let col = self.column(&req.vector_name)?;
        let v = &self.settings.vectors[col];
        let metric = v.distance.metric();
        let query = prepared_vector(&req.vector, v.dim, metric)?;
        let st = self.state.read();
        // The filter as row bitsets when it is (or should now be) materialised; otherwise it
        // is tested point by point as the walk meets them.
        let passing = req
            .filter
            .as_ref()
            .and_then(|f| self.materialised_filter(&st, f));
        let filter = req.filter.as_deref().filter(|_| passing.is_none());
        let predicate = filter.map(|f| {
            let st = &st;
            move |id: PointId| {
                st.points.get(&id).is_some_and(|e| {
                    f.matches(&View {
                        id,
                        entry: e,
                        columns: &self.columns,
                    })
                })
            }
        });
        let mut lists = Vec::with_capacity(st.segments.len());
        for seg in &st.segments {
            let allowed = match &passing {
                Some(rows) => match rows.segment(seg.id) {
                    Some(allowed) => Some(allowed),
                    None => continue,
                },
                None => None,
            };
            lists.push(seg.search(col, &query, &req.params, predicate.as_ref(), allowed)?);
        }
        let merged = merge_top_k(&lists, req.params.limit, |h| h.1, |h| h.0);
        Ok(merged
            .into_iter()
            .filter_map(|(id, distance)| {
                st.points.get(&id).map(|e| ScoredPoint {
                    record: self.record(id, e, &req.with_payload, &req.with_vector),
                    distance,
                    score: metric.score(distance),
                })
            })
            .collect())
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
        let narrow = candidates.is_some() || self.sampled_share(st, filter) < NARROW_BELOW;
        if !st.filters.lock().should_materialise(filter, narrow) {
            return None;
        }
        // Computed without the cache's lock: searches with other filters go on meanwhile.
        // The state's read lock keeps writers out, so the result is current when cached.
        let mut rows = FilterRows::default();
        let mut test = |id: PointId, e: &PointEntry| {
            let view = View {
                id,
                entry: e,
                columns: &self.columns,
            };
            if filter.matches(&view) {
                rows.set(e.seg.id, e.row, true);
            }
        };
        match candidates {
            Some(ids) => ids.into_iter().for_each(|id| {
                if let Some(e) = st.points.get(&id) {
                    test(id, e);
                }
            }),
            None => st.points.iter().for_each(|(id, e)| test(*id, e)),
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
                    columns: &self.columns,
                }) as usize;
            }
        }
        if tried == 0 {
            return 0.0;
        }
        passed as f64 / tried as f64
    }
}
