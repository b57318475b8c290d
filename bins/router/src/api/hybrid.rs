//! Hybrid queries: a tree of sub-queries (`prefetch`) whose answers the query above them
//! fuses (`rrf`, `dbsf`), re-scores with a vector, orders by a payload value or samples; and
//! the diversity re-ranking (`mmr`) of a nearest query, and random samples.
//!
//! The semantics are Qdrant's, as its Python client computes them in local mode (the oracle
//! of the end-to-end tests):
//! - A stage's filter is every filter above it merged with its own: filters are pushed down
//!   to the leaves, so a sub-query's limit counts points that pass them. They merge as
//!   Qdrant's server merges them, clause by clause ([`Filter::merged`]: two `should` lists
//!   become one list of alternatives). Points a query names as examples (by id) are left out
//!   of its own answer and of every sub-query below it.
//! - A leaf runs as a query of its own (nearest, recommend, discover, context, `order_by`,
//!   `sample`, or no query: points in id order).
//! - A stage over sub-queries either fuses their ranked lists, re-scores their points by a
//!   formula (`api::formula`), or scores its own query
//!   exactly over the union of their points (the candidates), or orders or samples that
//!   union. A query is needed to merge sub-queries; fusion needs sub-queries.
//! - Each sub-query's answer is merged over the shards before the stage above uses it, so
//!   fusion sees the collection's ranks, never one shard's.
//!
//! Requests carry limits on the tree: at most [`MAX_STAGES`] queries in all and
//! [`MAX_DEPTH`] levels, each limit at most [`index_core::MAX_LIMIT`], and the MMR work
//! (candidates times points picked) at most [`MAX_MMR_PAIRS`], and the floats it reads and
//! multiplies bounded by the vectors' dimension ([`MAX_MMR_FLOATS`], [`MAX_MMR_WORK`]).

use super::blocking;
use super::formula::{Formula, PointInput};
use super::query::{asked_of, plan_search, PlannedSearch, SearchParts};
use crate::convert::{self, bad};
use crate::error::ApiError;
use crate::model::response::ScoredPoint;
use crate::model::{self, Prefetch, Prefetches, QueryInterface, QueryRequest};
use crate::AppState;
use futures::future::BoxFuture;
use index_core::PointId;
use payload::{Filter, PayloadSelector};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;
use storage::{Collection, Record, VectorSelector};

/// The most queries in one request's tree (the root and every prefetch).
pub const MAX_STAGES: usize = 64;
/// The deepest nesting of prefetches.
pub const MAX_DEPTH: usize = 8;
/// The most candidate pairs MMR may compare: candidates times the points it picks.
pub const MAX_MMR_PAIRS: usize = 1 << 22;
/// The most vector floats MMR fetches: candidates times dimension (128 MiB).
pub const MAX_MMR_FLOATS: usize = 1 << 25;
/// The most multiply-adds MMR spends: candidate pairs times dimension (a second or two).
pub const MAX_MMR_WORK: usize = 1 << 32;
/// The most candidates MMR re-ranks (Qdrant's bound).
pub const MAX_MMR_CANDIDATES: u64 = 16_384;
/// Reciprocal rank fusion's constant when none is given (Qdrant's).
const DEFAULT_RRF_K: u64 = 2;

/// Whether a query request needs this module: sub-queries, fusion, diversity or sampling.
pub fn is_hybrid(req: &QueryRequest) -> bool {
    req.prefetch.as_ref().is_some_and(|p| !p.0.is_empty())
        || matches!(
            req.query,
            Some(
                QueryInterface::Fusion(_)
                    | QueryInterface::Rrf(_)
                    | QueryInterface::Formula { .. }
                    | QueryInterface::Sample(_)
                    | QueryInterface::Nearest { mmr: Some(_), .. }
            )
        )
}

/// One query of the tree: the request itself or a prefetch.
struct Stage {
    prefetch: Vec<Stage>,
    query: Option<QueryInterface>,
    using: Option<String>,
    filter: Option<Arc<Filter>>,
    params: Option<model::SearchParams>,
    score_threshold: Option<f64>,
    limit: usize,
    offset: usize,
    lookup_from: Option<model::LookupLocation>,
    with_payload: PayloadSelector,
    with_vector: VectorSelector,
    /// The formula of a formula query, read when the tree is checked.
    formula: Option<Arc<Formula>>,
}

impl Stage {
    /// The root stage of a query request, its tree checked.
    fn root(req: QueryRequest) -> Result<Stage, ApiError> {
        // `shard_key` chose the shards the run searches (`Run::shards`).
        let mut count = 1;
        let prefetch = Stage::children(req.prefetch, 1, &mut count)?;
        let stage = Stage {
            prefetch,
            query: req.query,
            using: req.using,
            filter: req.filter.map(|f| f.0),
            params: req.params,
            score_threshold: req.score_threshold,
            limit: convert::limit(req.limit, "limit", 10)?,
            offset: convert::offset(req.offset, "query")?,
            lookup_from: req.lookup_from,
            with_payload: convert::payload_selector(req.with_payload, false),
            with_vector: convert::vector_selector(req.with_vector),
            formula: None,
        };
        let mut stage = stage;
        stage.check("query")?;
        Ok(stage)
    }

    fn children(
        prefetch: Option<Prefetches>,
        depth: usize,
        count: &mut usize,
    ) -> Result<Vec<Stage>, ApiError> {
        let list = prefetch.map(|p| p.0).unwrap_or_default();
        if !list.is_empty() && depth > MAX_DEPTH {
            return Err(bad(format!(
                "Validation error in JSON body: prefetches nest at most {MAX_DEPTH} levels deep"
            )));
        }
        *count += list.len();
        if *count > MAX_STAGES {
            return Err(bad(format!(
                "Validation error in JSON body: at most {MAX_STAGES} queries in one request, \
                 prefetches included"
            )));
        }
        list.into_iter()
            .map(|p| Stage::prefetch(p, depth, count))
            .collect()
    }

    fn prefetch(p: Prefetch, depth: usize, count: &mut usize) -> Result<Stage, ApiError> {
        let stage = Stage {
            prefetch: Stage::children(p.prefetch, depth + 1, count)?,
            query: p.query,
            using: p.using,
            filter: p.filter.map(|f| f.0),
            params: p.params,
            score_threshold: p.score_threshold,
            limit: convert::limit(p.limit, "prefetch.limit", 10)?,
            offset: 0,
            lookup_from: p.lookup_from,
            with_payload: PayloadSelector::Nothing,
            with_vector: VectorSelector::Nothing,
            formula: None,
        };
        let mut stage = stage;
        stage.check("prefetch")?;
        Ok(stage)
    }

    /// Refuses what cannot be run, as Qdrant does, before any of the tree runs.
    fn check(&mut self, at: &str) -> Result<(), ApiError> {
        if let Some(QueryInterface::Formula { formula, defaults }) = &self.query {
            if self.prefetch.is_empty() {
                return Err(bad(format!(
                    "Bad request: {at}: a formula re-scores prefetches, and there are none"
                )));
            }
            self.formula = Some(Arc::new(Formula::parse(formula, defaults.as_ref())?));
        }
        let merging = !self.prefetch.is_empty();
        if self.query.is_none() && self.score_threshold.is_some() {
            return Err(bad(format!(
                "Bad request: {at}: a query is needed to use the score_threshold"
            )));
        }
        match &self.query {
            None if merging => {
                return Err(bad(format!(
                    "Bad request: {at}: a query is needed to merge the prefetches"
                )))
            }
            Some(QueryInterface::Fusion(_) | QueryInterface::Rrf(_)) => {
                if !merging {
                    return Err(bad(format!(
                        "Bad request: {at}: fusion needs prefetches to fuse"
                    )));
                }
                if self.using.is_some() {
                    return Err(bad(format!(
                        "Bad request: {at}: a fusion query takes no `using`"
                    )));
                }
            }
            Some(QueryInterface::OrderBy(_)) if self.score_threshold.is_some() => {
                return Err(bad(format!(
                    "Bad request: {at}: an order_by query takes no score_threshold"
                )))
            }
            _ => {}
        }
        if let Some(QueryInterface::Rrf(rrf)) = &self.query {
            if rrf.k == Some(0) {
                return Err(bad(format!(
                    "Validation error in JSON body: {at}.query.rrf.k must be at least 1"
                )));
            }
            if let Some(w) = &rrf.weights {
                if w.len() != self.prefetch.len() {
                    return Err(bad(format!(
                        "Bad request: {at}: rrf has {} weights for {} prefetches",
                        w.len(),
                        self.prefetch.len()
                    )));
                }
                // A weight of 0 or less adds nothing (as Qdrant scores it).
                if w.iter().any(|w| !w.is_finite()) {
                    return Err(bad(format!(
                        "Validation error in JSON body: {at}.query.rrf.weights must be finite"
                    )));
                }
            }
        }
        if let Some(QueryInterface::Nearest { mmr: Some(m), .. }) = &self.query {
            if m.diversity.is_some_and(|d| !(0.0..=1.0).contains(&d)) {
                return Err(bad(format!(
                    "Validation error in JSON body: {at}.query.mmr.diversity must be between \
                     0 and 1"
                )));
            }
            let candidates = m.candidates_limit.unwrap_or(self.limit as u64);
            if candidates > MAX_MMR_CANDIDATES {
                return Err(bad(format!(
                    "Validation error in JSON body: {at}.query.mmr.candidates_limit must be at \
                     most {MAX_MMR_CANDIDATES}"
                )));
            }
            let picked = (self.limit + self.offset).min(candidates as usize);
            if (candidates as usize).saturating_mul(picked) > MAX_MMR_PAIRS {
                return Err(bad(format!(
                    "Validation error in JSON body: {at}: mmr compares candidates_limit x limit \
                     pairs, at most {MAX_MMR_PAIRS}"
                )));
            }
        }
        Ok(())
    }
}

/// A point a stage found, with the score it ranks by.
struct Found {
    record: Record,
    score: f32,
    order_value: Option<storage::OrderValue>,
}

impl Found {
    fn bare(id: PointId, score: f32) -> Found {
        Found {
            record: Record {
                id,
                payload: None,
                vectors: None,
                sparse: Vec::new(),
                multi: Vec::new(),
            },
            score,
            order_value: None,
        }
    }
}

/// What every stage of one request shares.
struct Run {
    state: Arc<AppState>,
    collection: Arc<Collection>,
    shards: crate::RequestShards,
    /// The shard keys the request names (examples by id are looked up under them).
    keys: Option<shard_router::remote::keys::KeySelection>,
    deadline: Instant,
}

/// Runs a hybrid query request: the JSON array of its scored points, and whether that
/// answer may be cached (it depends on this collection alone and draws nothing at random).
pub async fn run(
    state: &Arc<AppState>,
    c: &Arc<Collection>,
    req: QueryRequest,
    deadline: Instant,
) -> Result<(Vec<u8>, bool), ApiError> {
    let keys = convert::shard_keys(&req.shard_key)?;
    let root = Stage::root(req)?;
    let shards = state
        .shards_for(c, keys.as_ref(), root.filter.as_deref())
        .await?;
    let cacheable = is_cacheable(&root);
    let run = Run {
        state: state.clone(),
        collection: c.clone(),
        shards,
        keys: keys.clone(),
        deadline,
    };
    let found = stage(&run, &root, None).await?;
    let named = c.with_config(|cfg| cfg.is_named_output());
    let points: Vec<ScoredPoint<'_>> = found
        .iter()
        .map(|f| ScoredPoint {
            order_value: f.order_value.map(Into::into),
            ..ScoredPoint::scored(named, &f.record, f.score)
        })
        .collect();
    Ok((
        serde_json::to_vec(&points).expect("scored points serialise"),
        cacheable,
    ))
}

/// The largest `limit` a query may ask for: below [`index_core::MAX_LIMIT`] only when its
/// top level re-ranks by MMR, whose candidates (by default as many as the limit) times the
/// points picked are bounded by [`MAX_MMR_PAIRS`].
pub fn max_limit(req: &QueryRequest) -> usize {
    let max = index_core::MAX_LIMIT;
    match &req.query {
        Some(QueryInterface::Nearest { mmr: Some(m), .. }) => match m.candidates_limit {
            None => (MAX_MMR_PAIRS as f64).sqrt() as usize,
            Some(0) => max,
            Some(n) => {
                let n = n as usize;
                if n.saturating_mul(n) <= MAX_MMR_PAIRS {
                    max
                } else {
                    (MAX_MMR_PAIRS / n).max(1)
                }
            }
        },
        _ => max,
    }
}

/// A hybrid query's points, best first, as records with their scores (what a grouped query
/// groups).
pub async fn points(
    state: &Arc<AppState>,
    c: &Arc<Collection>,
    req: QueryRequest,
    deadline: Instant,
) -> Result<Vec<(Record, f32)>, ApiError> {
    let keys = convert::shard_keys(&req.shard_key)?;
    let root = Stage::root(req)?;
    let shards = state
        .shards_for(c, keys.as_ref(), root.filter.as_deref())
        .await?;
    let run = Run {
        state: state.clone(),
        collection: c.clone(),
        shards,
        keys: keys.clone(),
        deadline,
    };
    Ok(stage(&run, &root, None)
        .await?
        .into_iter()
        .map(|f| (f.record, f.score))
        .collect())
}

/// Whether no stage samples at random or looks examples up in another collection.
fn is_cacheable(s: &Stage) -> bool {
    !matches!(s.query, Some(QueryInterface::Sample(_)))
        && s.lookup_from.is_none()
        && s.prefetch.iter().all(is_cacheable)
}

/// The filter from above merged with a stage's own as Qdrant merges them
/// ([`Filter::merged`]), or the one given (the same `Arc`, so a materialised filter is found
/// again).
fn both(above: Option<Arc<Filter>>, own: Option<Arc<Filter>>) -> Option<Arc<Filter>> {
    match (above, own) {
        (None, x) | (x, None) => x,
        (Some(a), Some(b)) => Some(Arc::new(a.merged(&b))),
    }
}

/// One stage's answer, best first: at most `limit` points after `offset` skipped.
fn stage<'a>(
    run: &'a Run,
    s: &'a Stage,
    above: Option<Arc<Filter>>,
) -> BoxFuture<'a, Result<Vec<Found>, ApiError>> {
    Box::pin(async move {
        let filter = both(above, s.filter.clone());
        // A vector query is planned first: the ids it names as examples are left out of
        // the sub-queries' answers too.
        let plan = match &s.query {
            Some(
                q @ (QueryInterface::Nearest { .. }
                | QueryInterface::Recommend(_)
                | QueryInterface::Discover(_)
                | QueryInterface::Context(_)),
            ) => Some(plan_vector(run, s, q.clone(), filter.clone())?),
            _ => None,
        };
        let candidates = if s.prefetch.is_empty() {
            None
        } else {
            let below = match &plan {
                Some(p) if !p.exclude.is_empty() => both(
                    filter.clone(),
                    Some(Arc::new(Filter::has_none_of(p.exclude.iter().copied()))),
                ),
                _ => filter.clone(),
            };
            let sources = futures::future::try_join_all(
                s.prefetch.iter().map(|p| stage(run, p, below.clone())),
            )
            .await?;
            match &s.query {
                Some(QueryInterface::Fusion(kind)) => {
                    let fused = match kind {
                        model::Fusion::Rrf => rrf(&sources, DEFAULT_RRF_K, None),
                        model::Fusion::Dbsf => dbsf(&sources),
                    };
                    return fused_answer(run, s, fused).await;
                }
                Some(QueryInterface::Rrf(p)) => {
                    let fused = rrf(&sources, p.k.unwrap_or(DEFAULT_RRF_K), p.weights.as_deref());
                    return fused_answer(run, s, fused).await;
                }
                Some(QueryInterface::Formula { .. }) => {
                    let formula = s.formula.as_ref().expect("read when the tree was checked");
                    let scored = rescored(run, formula, &sources).await?;
                    return fused_answer(run, s, scored).await;
                }
                _ => {}
            }
            let ids = union(&sources);
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            Some(ids)
        };
        if let Some(plan) = plan {
            let mmr = match &s.query {
                Some(QueryInterface::Nearest { mmr: Some(m), .. }) => Some(m.clone()),
                _ => None,
            };
            return match mmr {
                None => searched(run, plan, candidates).await,
                Some(m) => diversified(run, s, plan, candidates, &m).await,
            };
        }
        // What is left ranks points without a vector: restricted to the candidates, if any.
        let filter = match &candidates {
            Some(ids) => both(filter, Some(Arc::new(Filter::has_id(ids.iter().copied())))),
            None => filter,
        };
        match &s.query {
            None => in_id_order(run, s, filter).await,
            Some(QueryInterface::OrderBy(order)) => {
                let order = super::points::order_by(order.clone())?;
                ordered(run, s, order, filter).await
            }
            Some(QueryInterface::Sample(model::Sample::Random)) => sampled(run, s, filter).await,
            Some(QueryInterface::Other(kind)) => Err(ApiError::not_implemented(format!(
                "query `{kind}` is not supported by this server"
            ))),
            Some(_) => unreachable!("vector queries and fusion are answered above"),
        }
    })
}

/// Plans a stage's vector query over `filter` (the stage's own and every one above).
fn plan_vector(
    run: &Run,
    s: &Stage,
    query: QueryInterface,
    filter: Option<Arc<Filter>>,
) -> Result<PlannedSearch, ApiError> {
    let query = match query {
        // Diversity is this module's step after the search; the search itself is nearest.
        QueryInterface::Nearest { nearest, .. } => QueryInterface::Nearest { nearest, mmr: None },
        q => q,
    };
    let (limit, offset) = match &s.query {
        // MMR picks from its candidates from the top: the search skips nothing.
        Some(QueryInterface::Nearest { mmr: Some(m), .. }) => {
            (m.candidates_limit.map_or(s.limit, |n| n as usize).max(1), 0)
        }
        _ => (s.limit, s.offset),
    };
    plan_search(
        &run.state,
        &run.collection,
        SearchParts {
            using: s.using.clone().unwrap_or_default(),
            asked: asked_of(query)?,
            lookup_from: s.lookup_from.clone(),
            limit,
            offset,
            filter: filter.map(model::FilterInput),
            params: s.params.clone(),
            score_threshold: s.score_threshold,
            with_payload: None,
            with_vector: None,
            keys: run.keys.clone(),
        },
    )
    .map(|mut plan| {
        plan.request.with_payload = s.with_payload.clone();
        plan.request.with_vector = s.with_vector.clone();
        plan
    })
}

/// Runs a planned search, over `candidates` only when given (each scored exactly); the
/// points named as examples left out, the offset skipped.
async fn search_hits(
    run: &Run,
    mut plan: PlannedSearch,
    candidates: Option<Vec<PointId>>,
) -> Result<Vec<storage::ScoredPoint>, ApiError> {
    plan.request.candidates = candidates.map(Into::into);
    let limit = plan
        .request
        .params
        .limit
        .saturating_sub(plan.offset + plan.exclude.len());
    let hits = shard_router::search(
        &run.shards,
        Arc::new(plan.request),
        plan.metric,
        run.deadline,
    )
    .await?;
    Ok(hits
        .into_iter()
        .filter(|h| !plan.exclude.contains(&h.record.id))
        .skip(plan.offset)
        .take(limit)
        .collect())
}

async fn searched(
    run: &Run,
    plan: PlannedSearch,
    candidates: Option<Vec<PointId>>,
) -> Result<Vec<Found>, ApiError> {
    Ok(search_hits(run, plan, candidates)
        .await?
        .into_iter()
        .map(|h| Found {
            record: h.record,
            score: h.score,
            order_value: None,
        })
        .collect())
}

/// A nearest search re-ranked by maximal marginal relevance: each next point is the one
/// with the best `λ·sim(query, p) − (1 − λ)·max sim(p, picked)`, λ = 1 − diversity, as
/// Qdrant does (similarities are the metric's, higher closer; the points keep their search
/// scores; ties go to the candidate visited last, as Qdrant's `max_by_key` picks them).
async fn diversified(
    run: &Run,
    s: &Stage,
    plan: PlannedSearch,
    candidates: Option<Vec<PointId>>,
    mmr: &model::Mmr,
) -> Result<Vec<Found>, ApiError> {
    if mmr.candidates_limit == Some(0) {
        return Ok(Vec::new());
    }
    let metric = plan.metric;
    let using = plan.request.vector_name.clone();
    let pick = s.limit + s.offset;
    let lambda = 1.0 - mmr.diversity.unwrap_or(0.5) as f32;
    let deadline = run.deadline;
    let order_and_hits = match &plan.request.query {
        storage::Query::Sparse(q) => {
            // Sparse vectors: similarities are dot products, 0 without a shared index (as
            // Qdrant's MMR scores them); the relevance is to the query as searched.
            let q = q.clone();
            let hits = search_hits(run, plan, candidates).await?;
            let vectors = stored_of(run, &hits, &using, |r| {
                r.sparse.into_iter().next().map(|(_, v)| v)
            })
            .await?;
            let order = blocking(move || {
                let (idx, vecs): (Vec<usize>, Vec<storage::SparseVector>) = vectors
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, v)| v.map(|v| (i, v)))
                    .unzip();
                // Each pick merges every pending vector with the one picked.
                let entries: usize = vecs.iter().map(|v| v.indices.len()).sum();
                if entries.saturating_mul(pick.min(vecs.len())) > MAX_MMR_WORK {
                    return Err(bad(format!(
                        "Validation error in JSON body: mmr over {entries} sparse entries \
                         picking {pick}: at most {MAX_MMR_WORK} entry comparisons"
                    )));
                }
                let relevance = vecs.iter().map(|v| q.dot(v).unwrap_or(0.0)).collect();
                let sim = |a: usize, b: usize| vecs[a].dot(&vecs[b]).unwrap_or(0.0);
                let picked = mmr_order(relevance, sim, pick, lambda, deadline)?;
                Ok(picked.into_iter().map(|p| idx[p]).collect::<Vec<usize>>())
            })
            .await?;
            (order, hits)
        }
        storage::Query::Multi(q) => {
            // Multivectors: similarities are MaxSim sums, a pending candidate's matrix as the
            // query against a picked one's (as Qdrant's MMR scores them).
            let dim = q.dim();
            let q = q.clone();
            let hits = search_hits(run, plan, candidates).await?;
            let vectors = stored_of(run, &hits, &using, |r| {
                r.multi.into_iter().next().map(|(_, v)| v)
            })
            .await?;
            let order = blocking(move || {
                let (idx, vecs): (Vec<usize>, Vec<storage::MultiVector>) = vectors
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, v)| v.map(|v| (i, v)))
                    .unzip();
                let rows: usize = vecs.iter().map(|v| v.row_count()).sum();
                let widest = vecs.iter().map(|v| v.row_count()).max().unwrap_or(0);
                // Each pick scores every pending matrix against the one picked: at most all
                // the rows against the widest matrix's.
                let work = pick
                    .min(vecs.len())
                    .saturating_mul(rows)
                    .saturating_mul(widest)
                    .saturating_mul(dim);
                if rows.saturating_mul(dim) > MAX_MMR_FLOATS || work > MAX_MMR_WORK {
                    return Err(bad(format!(
                        "Validation error in JSON body: mmr over {} multivectors of {rows} rows \
                         in all picking {pick}: at most {MAX_MMR_FLOATS} candidate floats and \
                         {MAX_MMR_WORK} multiply-adds",
                        vecs.len()
                    )));
                }
                let query = q
                    .prepared(dim, metric)
                    .map(|q| storage::multi::MaxSimQuery::new(q, metric))
                    .map_err(|e| bad(format!("Wrong input: {e}")))?;
                let as_queries: Vec<storage::multi::MaxSimQuery> = vecs
                    .iter()
                    .map(|v| storage::multi::MaxSimQuery::new(v.clone(), metric))
                    .collect();
                let relevance = vecs.iter().map(|v| query.similarity(v)).collect();
                let sim = |a: usize, b: usize| as_queries[a].similarity(&vecs[b]);
                let picked = mmr_order(relevance, sim, pick, lambda, deadline)?;
                Ok(picked.into_iter().map(|p| idx[p]).collect::<Vec<usize>>())
            })
            .await?;
            (order, hits)
        }
        _ => {
            let Some(query) = plan.request.query.nearest() else {
                return Err(bad("Bad request: mmr re-ranks a nearest query"));
            };
            let mut query = query.to_vec();
            metric.prepare(&mut query);
            let dim = query.len();
            let candidates_limit = plan.request.params.limit;
            let pairs = candidates_limit.saturating_mul(pick.min(candidates_limit));
            if candidates_limit.saturating_mul(dim) > MAX_MMR_FLOATS
                || pairs.saturating_mul(dim) > MAX_MMR_WORK
            {
                return Err(bad(format!(
                    "Validation error in JSON body: mmr over {candidates_limit} candidates of \
                     {dim} dimensions picking {pick}: at most {MAX_MMR_FLOATS} candidate floats \
                     and {MAX_MMR_WORK} multiply-adds"
                )));
            }
            let hits = search_hits(run, plan, candidates).await?;
            let ids: Vec<PointId> = hits.iter().map(|h| h.record.id).collect();
            let vectors = vectors_of(run, &ids, &using).await?;
            let order = blocking(move || {
                let kernels = quant::kernels();
                // Candidates whose vector is gone (deleted since the search) drop out.
                let (idx, vecs): (Vec<usize>, Vec<Vec<f32>>) = vectors
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, v)| v.map(|v| (i, v)))
                    .unzip();
                let relevance = vecs
                    .iter()
                    .map(|v| -metric.distance(kernels, &query, v))
                    .collect();
                let sim = |a: usize, b: usize| -metric.distance(kernels, &vecs[a], &vecs[b]);
                let picked = mmr_order(relevance, sim, pick, lambda, deadline)?;
                Ok(picked.into_iter().map(|p| idx[p]).collect::<Vec<usize>>())
            })
            .await?;
            (order, hits)
        }
    };
    let (order, hits) = order_and_hits;
    let mut hits: Vec<Option<storage::ScoredPoint>> = hits.into_iter().map(Some).collect();
    Ok(order
        .into_iter()
        .skip(s.offset)
        .filter_map(|i| hits[i].take())
        .map(|h| Found {
            record: h.record,
            score: h.score,
            order_value: None,
        })
        .collect())
}

/// Maximal marginal relevance over `relevance.len()` candidates: the order in which `pick`
/// of them are chosen, each the best `λ·relevance − (1 − λ)·max sim(·, picked)` (the first
/// by relevance alone), ties to the one visited last, the pending list kept as Qdrant's
/// `swap_remove` leaves it.
fn mmr_order(
    relevance: Vec<f32>,
    sim: impl Fn(usize, usize) -> f32,
    pick: usize,
    lambda: f32,
    deadline: Instant,
) -> Result<Vec<usize>, ApiError> {
    let n = relevance.len();
    let mut pending: Vec<usize> = (0..n).collect();
    // The highest similarity of each candidate to any point picked so far.
    let mut closest = vec![f32::NEG_INFINITY; n];
    let mut picked: Vec<usize> = Vec::new();
    while picked.len() < pick && !pending.is_empty() {
        if Instant::now() > deadline {
            return Err(ApiError::new(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                "Timeout: mmr did not re-rank its candidates in time",
            ));
        }
        let value = |p: usize| {
            if picked.is_empty() {
                relevance[p]
            } else {
                lambda * relevance[p] - (1.0 - lambda) * closest[p]
            }
        };
        let mut best = 0;
        for at in 1..pending.len() {
            if value(pending[at]) >= value(pending[best]) {
                best = at;
            }
        }
        let chosen = pending.swap_remove(best);
        picked.push(chosen);
        for &p in &pending {
            closest[p] = closest[p].max(sim(p, chosen));
        }
    }
    Ok(picked)
}

/// Vector `name` of each hit as stored (a sparse vector or a matrix, which `take` picks out
/// of the point's record), in the hits' order; `None` for a point deleted since.
async fn stored_of<V>(
    run: &Run,
    hits: &[storage::ScoredPoint],
    name: &str,
    take: impl Fn(Record) -> Option<V>,
) -> Result<Vec<Option<V>>, ApiError> {
    let ids: Vec<PointId> = hits.iter().map(|h| h.record.id).collect();
    let req = Arc::new(shard_router::RetrieveRequest {
        with_payload: PayloadSelector::Nothing,
        with_vector: VectorSelector::Only(vec![name.to_string()]),
    });
    let mut by_id: HashMap<PointId, V> =
        shard_router::retrieve(&run.shards, &ids, req, run.deadline)
            .await?
            .into_iter()
            .filter_map(|r| {
                let id = r.id;
                take(r).map(|v| (id, v))
            })
            .collect();
    Ok(ids.iter().map(|id| by_id.remove(id)).collect())
}

/// The stored vectors `name` of `ids`, each asked of the shard that holds it, in order.
async fn vectors_of(
    run: &Run,
    ids: &[PointId],
    name: &str,
) -> Result<Vec<Option<Vec<f32>>>, ApiError> {
    Ok(shard_router::vectors(&run.shards, ids, name, run.deadline).await?)
}

/// Points in id order, each scored 1 (a stage without a query).
async fn in_id_order(
    run: &Run,
    s: &Stage,
    filter: Option<Arc<Filter>>,
) -> Result<Vec<Found>, ApiError> {
    let scroll = Arc::new(shard_router::ScrollRequest {
        from: None,
        limit: s.limit + s.offset,
        filter,
        with_payload: s.with_payload.clone(),
        with_vector: s.with_vector.clone(),
    });
    let page = shard_router::scroll(&run.shards, scroll, run.deadline).await?;
    Ok(page
        .points
        .into_iter()
        .skip(s.offset)
        .map(|record| Found {
            record,
            score: 1.0,
            order_value: None,
        })
        .collect())
}

/// Points in the order of a payload value, each scored 1 with its `order_value`.
async fn ordered(
    run: &Run,
    s: &Stage,
    order: storage::OrderBy,
    filter: Option<Arc<Filter>>,
) -> Result<Vec<Found>, ApiError> {
    let scroll = Arc::new(shard_router::OrderedScrollRequest {
        order,
        limit: (s.limit + s.offset).min(index_core::MAX_LIMIT),
        filter,
        with_payload: s.with_payload.clone(),
        with_vector: s.with_vector.clone(),
    });
    let page = shard_router::scroll_ordered(&run.shards, scroll, run.deadline).await?;
    Ok(page
        .into_iter()
        .skip(s.offset)
        .map(|(record, value)| Found {
            record,
            score: 1.0,
            order_value: Some(value),
        })
        .collect())
}

/// Up to `limit` points drawn uniformly at random from those passing `filter`, each scored
/// 1 (Qdrant applies no offset to a sample).
async fn sampled(
    run: &Run,
    s: &Stage,
    filter: Option<Arc<Filter>>,
) -> Result<Vec<Found>, ApiError> {
    use std::hash::{BuildHasher, Hasher};
    // A fresh seed per request (the standard library's hasher keys are random).
    let seed = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let drawn =
        shard_router::sample(&run.shards, filter, None, s.limit, seed, run.deadline).await?;
    let ids: Vec<PointId> = drawn.into_iter().map(|(id, _)| id).collect();
    with_records(
        run,
        s,
        ids.into_iter().map(|id| Found::bare(id, 1.0)).collect(),
    )
    .await
}

/// Fills in the payload and vectors a stage returns (none but the root's asks for any);
/// points deleted meanwhile drop out.
async fn with_records(run: &Run, s: &Stage, found: Vec<Found>) -> Result<Vec<Found>, ApiError> {
    if matches!(s.with_payload, PayloadSelector::Nothing)
        && matches!(s.with_vector, VectorSelector::Nothing)
    {
        return Ok(found);
    }
    let ids: Vec<PointId> = found.iter().map(|f| f.record.id).collect();
    let req = Arc::new(shard_router::RetrieveRequest {
        with_payload: s.with_payload.clone(),
        with_vector: s.with_vector.clone(),
    });
    let records = shard_router::retrieve(&run.shards, &ids, req, run.deadline).await?;
    let mut by_id: std::collections::HashMap<PointId, Record> =
        records.into_iter().map(|r| (r.id, r)).collect();
    Ok(found
        .into_iter()
        .filter_map(|f| {
            by_id
                .remove(&f.record.id)
                .map(|record| Found { record, ..f })
        })
        .collect())
}

/// The points of the sub-queries' answers, each once, in the order first met.
fn union(sources: &[Vec<Found>]) -> Vec<PointId> {
    let mut seen = HashSet::new();
    sources
        .iter()
        .flatten()
        .map(|f| f.record.id)
        .filter(|id| seen.insert(*id))
        .collect()
}

/// The prefetched points (each once, in the order first met) scored by `formula`, highest
/// first (ties in that order). Payloads are read when the formula reads any, and each
/// condition is asked of the shards once for all the points.
async fn rescored(
    run: &Run,
    formula: &Arc<Formula>,
    sources: &[Vec<Found>],
) -> Result<Vec<Found>, ApiError> {
    let ids = union(sources);
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let scores: Vec<HashMap<PointId, f32>> = sources
        .iter()
        .map(|l| l.iter().map(|f| (f.record.id, f.score)).collect())
        .collect();
    let payloads: HashMap<PointId, payload::Payload> = if formula.reads_payload {
        let req = Arc::new(shard_router::RetrieveRequest {
            with_payload: PayloadSelector::All,
            with_vector: VectorSelector::Nothing,
        });
        shard_router::retrieve(&run.shards, &ids, req, run.deadline)
            .await?
            .into_iter()
            .map(|r| (r.id, r.payload.unwrap_or_default()))
            .collect()
    } else {
        HashMap::new()
    };
    let mut passing = Vec::with_capacity(formula.conditions.len());
    for condition in &formula.conditions {
        let scroll = Arc::new(shard_router::ScrollRequest {
            from: None,
            limit: ids.len(),
            filter: Some(Arc::new(
                condition.merged(&Filter::has_id(ids.iter().copied())),
            )),
            with_payload: PayloadSelector::Nothing,
            with_vector: VectorSelector::Nothing,
        });
        let page = shard_router::scroll(&run.shards, scroll, run.deadline).await?;
        passing.push(
            page.points
                .into_iter()
                .map(|r| r.id)
                .collect::<HashSet<PointId>>(),
        );
    }
    // Up to 1,024 nodes for each of up to millions of points: off the reactor.
    let formula = formula.clone();
    let deadline = run.deadline;
    let (order, values) = blocking(move || {
        let empty = payload::Payload::new();
        let mut order = Vec::with_capacity(ids.len());
        let mut values = HashMap::with_capacity(ids.len());
        for (n, id) in ids.into_iter().enumerate() {
            if n % 1024 == 0 && Instant::now() > deadline {
                return Err(ApiError::new(
                    axum::http::StatusCode::REQUEST_TIMEOUT,
                    "Timeout: the formula did not score its points in time",
                ));
            }
            // A point deleted since its prefetch found it drops out.
            let payload = match payloads.get(&id) {
                Some(p) => p,
                None if formula.reads_payload => continue,
                None => &empty,
            };
            let score = formula.score(&PointInput {
                id,
                payload,
                scores: &scores,
                passing: &passing,
            })?;
            order.push(id);
            values.insert(id, score as f64);
        }
        Ok((order, values))
    })
    .await?;
    Ok(rank(order, values))
}

/// A fused list cut to the stage's limit and score threshold, its offset skipped.
async fn fused_answer(run: &Run, s: &Stage, mut fused: Vec<Found>) -> Result<Vec<Found>, ApiError> {
    fused.truncate(s.limit + s.offset);
    if let Some(t) = s.score_threshold {
        fused.retain(|f| f.score as f64 >= t);
    }
    let fused: Vec<Found> = fused.into_iter().skip(s.offset).collect();
    with_records(run, s, fused).await
}

/// Sorts by score, highest first, ties in the order the points were first met.
fn rank(order: Vec<PointId>, scores: std::collections::HashMap<PointId, f64>) -> Vec<Found> {
    let mut all: Vec<(PointId, f64)> = order.into_iter().map(|id| (id, scores[&id])).collect();
    // Adding 0 makes −0 +0: the two tie, as they do in Qdrant's (and Python's) ordering.
    all.sort_by(|a, b| (b.1 + 0.0).total_cmp(&(a.1 + 0.0)));
    all.into_iter()
        .map(|(id, score)| Found::bare(id, score as f32))
        .collect()
}

/// Reciprocal rank fusion: a point scores `Σ 1 / ((rank + 1) / w + k − 1)` over the lists it
/// is in (rank from 0, `w` the list's weight: `1 / (rank + k)` when unweighted; a weight of 0
/// adds nothing).
fn rrf(sources: &[Vec<Found>], k: u64, weights: Option<&[f64]>) -> Vec<Found> {
    let mut scores = std::collections::HashMap::new();
    let mut order = Vec::new();
    for (i, list) in sources.iter().enumerate() {
        let w = weights.map_or(1.0, |w| w[i]);
        for (rank, f) in list.iter().enumerate() {
            let add = if w <= 0.0 {
                0.0
            } else {
                1.0 / ((rank as f64 + 1.0) / w + k as f64 - 1.0)
            };
            *scores.entry(f.record.id).or_insert_with(|| {
                order.push(f.record.id);
                0.0
            }) += add;
        }
    }
    rank(order, scores)
}

/// Distribution-based score fusion: each list's scores mapped by `(s − (μ − 3σ)) / 6σ`
/// (σ the sample standard deviation; a list of one point, or of equal scores, gives 0.5),
/// then summed per point.
fn dbsf(sources: &[Vec<Found>]) -> Vec<Found> {
    let mut scores = std::collections::HashMap::new();
    let mut order = Vec::new();
    for list in sources.iter().filter(|l| !l.is_empty()) {
        let n = list.len() as f64;
        let mean = list.iter().map(|f| f.score as f64).sum::<f64>() / n;
        let variance = if list.len() == 1 {
            0.0
        } else {
            list.iter()
                .map(|f| (f.score as f64 - mean).powi(2))
                .sum::<f64>()
                / (n - 1.0)
        };
        let sd = variance.sqrt();
        for f in list {
            let normalised = if variance == 0.0 {
                0.5
            } else {
                (f.score as f64 - (mean - 3.0 * sd)) / (6.0 * sd)
            };
            *scores.entry(f.record.id).or_insert_with(|| {
                order.push(f.record.id);
                0.0
            }) += normalised;
        }
    }
    rank(order, scores)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(points: &[(u64, f32)]) -> Vec<Found> {
        points
            .iter()
            .map(|&(id, score)| Found::bare(PointId::Num(id), score))
            .collect()
    }

    fn pairs(found: &[Found]) -> Vec<(u64, f32)> {
        found
            .iter()
            .map(|f| match f.record.id {
                PointId::Num(n) => (n, f.score),
                PointId::Uuid(_) => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn rrf_sums_reciprocal_ranks_and_keeps_first_met_order_on_ties() {
        let a = list(&[(1, 0.9), (2, 0.8), (3, 0.1)]);
        let b = list(&[(3, 5.0), (4, 4.0)]);
        // k = 2: ranks 0, 1, 2 score 1/2, 1/3, 1/4.
        let got = pairs(&rrf(&[a, b], 2, None));
        let want = [(3, 0.25 + 0.5), (1, 0.5), (2, 1.0 / 3.0), (4, 1.0 / 3.0)];
        assert_eq!(got.len(), want.len());
        for ((gi, gs), (wi, ws)) in got.iter().zip(want) {
            assert_eq!(*gi, wi);
            assert!((gs - ws as f32).abs() < 1e-6, "{got:?}");
        }
        // Weighted: the second list counts double, the first not at all.
        let a = list(&[(1, 0.9)]);
        let b = list(&[(2, 0.5), (1, 0.4)]);
        let got = pairs(&rrf(&[a, b], 60, Some(&[0.0, 2.0])));
        assert_eq!(got[0].0, 2);
        assert!((got[0].1 - 1.0 / (0.5 + 59.0)).abs() < 1e-7);
        assert!((got[1].1 - 1.0 / (1.0 + 59.0)).abs() < 1e-7);
    }

    #[test]
    fn zero_and_negative_zero_tie_in_first_met_order() {
        let order = vec![PointId::Num(1), PointId::Num(2), PointId::Num(3)];
        let scores = [(1, -0.0), (2, 0.0), (3, 0.5)]
            .into_iter()
            .map(|(i, s)| (PointId::Num(i), s))
            .collect();
        let got: Vec<PointId> = rank(order, scores).iter().map(|f| f.record.id).collect();
        assert_eq!(got, [3, 1, 2].map(PointId::Num));
    }

    #[test]
    fn dbsf_normalises_each_list_by_three_sample_deviations() {
        let a = list(&[(1, 3.0), (2, 1.0)]);
        let b = list(&[(2, 7.0)]);
        let c = list(&[(5, 4.0), (6, 4.0)]);
        let got = pairs(&dbsf(&[a, b, c, Vec::new()]));
        // a: mean 2, sample sd sqrt(2): 3 maps to (1 + 3 sqrt 2) / (6 sqrt 2).
        let sd = 2f64.sqrt();
        let hi = ((1.0 + 3.0 * sd) / (6.0 * sd)) as f32;
        let lo = ((-1.0 + 3.0 * sd) / (6.0 * sd)) as f32;
        assert_eq!(got[0].0, 2, "{got:?}");
        assert!((got[0].1 - (lo + 0.5)).abs() < 1e-6);
        assert_eq!(got[1].0, 1);
        assert!((got[1].1 - hi).abs() < 1e-6);
        assert_eq!(&got[2..], &[(5, 0.5), (6, 0.5)]);
    }
}
