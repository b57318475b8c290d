//! Multivector searches of a shard: MaxSim over the matrices the point entries hold.
//!
//! A query by matrix over an indexed multivector (dot or cosine, graph not turned off with
//! `m: 0`) takes its candidates in indexed segments from the graph of the points' encodings
//! ([`crate::multi::Fde`]): `limit × 8` of them, at least 100 and at least `hnsw_ef`; they
//! and every point of the segments not yet indexed are scored exactly by MaxSim. Otherwise
//! (an exact search, example queries, a multivector not indexed, listed candidates when the
//! query re-scores what sub-queries found) every point that holds the multivector and passes
//! the filter is scored exactly, which is the answer the graph approximates. Points are split
//! over the worker pool when there are many.

use super::*;
use crate::multi::{score_of, MaxSimQuery};
use crate::query::Examples;
use rayon::prelude::*;

/// Points scored per task of the worker pool: a few milliseconds of MaxSim each.
const POINTS_PER_TASK: usize = 256;
/// Candidates the encodings' graph gives per point asked for, to be scored by MaxSim.
const ENCODING_OVERSAMPLING: usize = 8;
/// The fewest candidates the encodings' graph gives.
const MIN_ENCODING_CANDIDATES: usize = 100;

impl LocalShard {
    /// The stored multivector `name` of a point (`None`: no such point, or it has none).
    pub fn multi_vector_of(&self, id: PointId, name: &str) -> Result<Option<MultiVector>> {
        let st = self.state.read();
        if !st.multi.contains_key(name) {
            return Err(StorageError::UnknownVector {
                name: name.to_string(),
            });
        }
        Ok(st
            .points
            .get(&id)
            .and_then(|e| e.multi_vector(name).map(StoredMatrix::to_multi)))
    }

    /// A query by matrix or by example matrices, over the multivector the request names.
    /// Hits carry Qdrant's score and, as their distance, the negated similarity sum (the
    /// negated score of an example query): smaller is closer under every metric.
    pub(super) fn search_multi(&self, st: &State, req: &SearchRequest) -> Result<Vec<ScoredPoint>> {
        let name = &req.vector_name;
        let column = st
            .multi
            .get(name)
            .ok_or_else(|| StorageError::UnknownVector { name: name.clone() })?;
        let prepare = |m: &MultiVector| -> Result<MaxSimQuery> {
            let m = m
                .clone()
                .prepared(column.dim, column.metric)
                .map_err(|e| StorageError::InvalidInput(format!("multivector `{name}`: {e}")))?;
            Ok(MaxSimQuery::new(m, column.metric))
        };
        enum Scorer {
            Nearest(MaxSimQuery),
            Examples(Examples<MaxSimQuery>),
        }
        let scorer = match &req.query {
            Query::Multi(q) => Scorer::Nearest(prepare(q)?),
            Query::MultiExamples(ex) => {
                match ex {
                    Examples::Recommend {
                        positive, negative, ..
                    } if positive.is_empty() && negative.is_empty() => {
                        return Err(StorageError::InvalidInput(
                            "a recommendation needs at least one positive or negative example"
                                .into(),
                        ))
                    }
                    Examples::Context { context } if context.is_empty() => {
                        return Err(StorageError::InvalidInput(
                            "a context query needs at least one pair".into(),
                        ))
                    }
                    _ => {}
                }
                Scorer::Examples(ex.try_map(prepare)?)
            }
            _ => unreachable!("a multivector query"),
        };
        // Higher is better: the similarity sum, or the example query's score.
        let value = |m: &StoredMatrix| match &scorer {
            Scorer::Nearest(q) => q.similarity_stored(m),
            Scorer::Examples(ex) => ex.score_by(|q| q.similarity_stored(m)),
        };
        let min_value = req.params.max_distance.map(|d| -d);
        // Listed candidates are tested against the filter here; otherwise the ids come from
        // `matching`, which applies it (through a payload index where one helps).
        let test_filter = req.candidates.is_some();
        let keep = |id: PointId| -> Option<(PointId, f32)> {
            let e = st.points.get(&id)?;
            let m = e.multi_vector(name)?;
            let passes = !test_filter
                || req.filter.as_ref().is_none_or(|f| {
                    f.matches(&View {
                        id,
                        entry: e,
                        columns: &st.columns,
                    })
                });
            if !passes {
                return None;
            }
            let v = value(m);
            min_value.is_none_or(|min| v >= min).then_some((id, v))
        };
        let ids: Vec<PointId> = match (&req.candidates, &scorer, &column.encodings) {
            (Some(ids), _, _) => {
                let mut seen = HashSet::with_capacity(ids.len());
                ids.iter().copied().filter(|id| seen.insert(*id)).collect()
            }
            // Through the index: the points of indexed segments come from the graph of their
            // encodings, the others are all scored.
            (None, Scorer::Nearest(q), Some((hidden, fde)))
                if !req.params.exact && st.segments.iter().any(|s| s.is_indexed()) =>
            {
                let col = Self::any_column(st, hidden)?;
                let encoded = fde.encode_query(q.matrix());
                let want = req
                    .params
                    .limit
                    .saturating_mul(ENCODING_OVERSAMPLING)
                    .max(req.params.hnsw_ef.unwrap_or(0))
                    .clamp(MIN_ENCODING_CANDIDATES, index_core::MAX_LIMIT);
                let params = SearchParams {
                    limit: want,
                    hnsw_ef: Some(want),
                    max_distance: None,
                    ..req.params.clone()
                };
                let filter = req.filter.as_ref();
                let mut ids: Vec<PointId> = self
                    .nearest(st, col, &encoded, &params, filter, |s| s.is_indexed())?
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect();
                // The live rows of the segments not yet indexed (the appendable one, and any
                // waiting for the optimizer), each tested against the filter: found through
                // the segments, not by a pass over every point of the shard.
                for seg in st.segments.iter().filter(|s| !s.is_indexed()) {
                    let rows = seg.rows.read();
                    for (r, id) in rows.ids.iter().enumerate() {
                        if !rows.live.get(r as u32) {
                            continue;
                        }
                        let passes = req.filter.as_ref().is_none_or(|f| {
                            st.points.get(id).is_some_and(|e| {
                                f.matches(&View {
                                    id: *id,
                                    entry: e,
                                    columns: &st.columns,
                                })
                            })
                        });
                        if passes {
                            ids.push(*id);
                        }
                    }
                }
                ids
            }
            (None, _, _) => self.matching(st, req.filter.as_deref()).collect(),
        };
        let limit = req.params.limit;
        let mut hits: Vec<(PointId, f32)> = if ids.len() > POINTS_PER_TASK {
            ids.par_chunks(POINTS_PER_TASK)
                .map(|chunk| {
                    let mut hits: Vec<(PointId, f32)> =
                        chunk.iter().filter_map(|&id| keep(id)).collect();
                    crate::sparse::best_first(&mut hits, limit);
                    hits
                })
                .flatten()
                .collect()
        } else {
            ids.iter().filter_map(|&id| keep(id)).collect()
        };
        crate::sparse::best_first(&mut hits, limit);
        let examples = matches!(scorer, Scorer::Examples(_));
        Ok(hits
            .into_iter()
            .filter_map(|(id, v)| {
                st.points.get(&id).map(|e| ScoredPoint {
                    record: self.record(id, e, &req.with_payload, &req.with_vector),
                    distance: -v,
                    score: if examples {
                        v
                    } else {
                        score_of(column.metric, v)
                    },
                })
            })
            .collect())
    }
}
