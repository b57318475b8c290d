//! Grouped searches: `/points/query/groups` and the legacy `/points/search/groups` and
//! `/points/recommend/groups`.
//!
//! Hits are grouped by the values of a payload key, as Qdrant does: each string or integer
//! value of the key (arrays expanded) names a group, and a point with a value of another type
//! joins none; groups come in the order of their best hit and hold their best `group_size`
//! hits. The search behind them runs with a growing limit (4x a round) until the first
//! `limit` groups are full or no more points match, so a group's hits are its best ones
//! however far down the ranking they lie, at most [`index_core::MAX_LIMIT`] hits deep.

use super::query::{plan_search, Asked, PlannedSearch, SearchParts};
use super::{collection, ok_raw, ApiResult, Params};
use crate::convert::{self, bad};
use crate::error::ApiError;
use crate::model::response::{Record, ScoredPoint};
use crate::model::{self, ReadParams, WithLookupInput};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use payload::{KeyPath, PayloadSelector};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use storage::Collection;

/// What a grouped search asks for beside the search.
struct Grouping {
    key: KeyPath,
    group_size: usize,
    limit: usize,
    lookup: Option<WithLookupInput>,
}

impl Grouping {
    fn new(
        group_by: &str,
        group_size: Option<u64>,
        limit: Option<u64>,
        lookup: Option<WithLookupInput>,
    ) -> Result<Grouping, ApiError> {
        let key = KeyPath::parse(group_by)
            .map_err(|e| bad(format!("Wrong input: group_by `{group_by}`: {e}")))?;
        let group_size = convert::limit(group_size, "group_size", 3)?;
        let limit = convert::limit(limit, "limit", 10)?;
        if group_size.saturating_mul(limit) > index_core::MAX_LIMIT {
            return Err(bad(format!(
                "Validation error in JSON body: limit × group_size must be at most {}",
                index_core::MAX_LIMIT
            )));
        }
        Ok(Grouping {
            key,
            group_size,
            limit,
            lookup,
        })
    }
}

/// The groups a point joins: its distinct string and integer values of the key, or none
/// when it has no value or a value of another type (as Qdrant's server drops such a point).
fn group_values(payload: Option<&payload::Payload>, key: &KeyPath) -> Vec<Value> {
    let Some(payload) = payload else {
        return Vec::new();
    };
    let mut out: Vec<Value> = Vec::new();
    for v in payload::values_at(payload, key) {
        let groupable = match v {
            Value::String(_) => true,
            Value::Number(n) => n.is_i64() || n.is_u64(),
            _ => false,
        };
        if !groupable {
            return Vec::new();
        }
        if !out.contains(v) {
            out.push(v.clone());
        }
    }
    out
}

/// Groups in the order of their best hit, each with the indexes of its best hits.
fn group(hits: &[storage::ScoredPoint], g: &Grouping) -> Vec<(Value, Vec<usize>)> {
    let mut groups: Vec<(Value, Vec<usize>)> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    for (i, h) in hits.iter().enumerate() {
        for value in group_values(h.record.payload.as_ref(), &g.key) {
            let k = *at.entry(value.to_string()).or_insert_with(|| {
                groups.push((value.clone(), Vec::new()));
                groups.len() - 1
            });
            if groups[k].1.len() < g.group_size {
                groups[k].1.push(i);
            }
        }
    }
    groups
}

#[derive(Serialize)]
struct PointGroup<'a> {
    id: &'a Value,
    hits: Vec<ScoredPoint<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lookup: Option<Record<'a>>,
}

#[derive(Serialize)]
struct GroupsResult<'a> {
    groups: Vec<PointGroup<'a>>,
}

/// Runs a planned search grouped; the answer is `GroupsResult` as JSON.
async fn run_groups(
    state: &Arc<AppState>,
    c: &Arc<Collection>,
    mut plan: PlannedSearch,
    g: Grouping,
    deadline: Instant,
) -> Result<Vec<u8>, ApiError> {
    let max = index_core::MAX_LIMIT;
    // Every payload is read for its key; each hit then gets what was asked for.
    let asked = std::mem::replace(&mut plan.request.with_payload, PayloadSelector::All);
    let shards = state
        .shards_for(c, plan.keys.as_ref(), plan.request.filter.as_deref())
        .await?;
    let start = g.limit * g.group_size * 2 + plan.exclude.len();
    let (hits, groups) = rounds(&g, start, max, |fetch| {
        plan.request.params.limit = fetch;
        let request = Arc::new(plan.request.clone());
        let (shards, exclude, metric) = (shards.clone(), plan.exclude.clone(), plan.metric);
        async move {
            let hits = shard_router::search(&shards, request, metric, deadline).await?;
            let exhausted = hits.len() < fetch;
            let hits = hits
                .into_iter()
                .filter(|h| !exclude.contains(&h.record.id))
                .collect();
            Ok((hits, exhausted))
        }
    })
    .await?;
    answer(state, c, hits, groups, g, asked).await
}

/// A grouped query with prefetches, fusion, a formula, diversity or sampling: the hybrid
/// query (`api::hybrid`) run for a growing number of points until the first `limit` groups
/// are full or no more points come, as the plain grouped search does.
async fn run_hybrid_groups(
    state: &Arc<AppState>,
    c: &Arc<Collection>,
    mut query: model::QueryRequest,
    g: Grouping,
    deadline: Instant,
) -> Result<Vec<u8>, ApiError> {
    // An MMR query bounds how many points one round may ask for: reaching that bound is the
    // end, as reaching the most a search returns is.
    let max = super::hybrid::max_limit(&query);
    let asked = convert::payload_selector(query.with_payload.take(), false);
    query.with_payload = Some(model::WithPayload(PayloadSelector::All));
    let (hits, groups) = rounds(&g, g.limit * g.group_size * 2, max, |fetch| {
        let mut round = query.clone();
        round.limit = Some(fetch as u64);
        async move {
            let found = super::hybrid::points(state, c, round, deadline).await?;
            let exhausted = found.len() < fetch;
            let hits = found
                .into_iter()
                .map(|(record, score)| storage::ScoredPoint {
                    record,
                    distance: -score,
                    score,
                })
                .collect();
            Ok((hits, exhausted))
        }
    })
    .await?;
    answer(state, c, hits, groups, g, asked).await
}

/// Asks `search` for `start` points (at least 32, at most `max`), then four times as many
/// each round, until the first `limit` groups are full or no more points come (`search`
/// says so, or `max` was reached); the hits, best first, and the groups cut to `limit`.
async fn rounds<F, Fut>(
    g: &Grouping,
    start: usize,
    max: usize,
    mut search: F,
) -> Result<(Vec<storage::ScoredPoint>, Vec<(Value, Vec<usize>)>), ApiError>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<storage::ScoredPoint>, bool), ApiError>>,
{
    let mut fetch = start.max(32).min(max);
    loop {
        let (hits, exhausted) = search(fetch).await?;
        let mut groups = group(&hits, g);
        let full = groups.len() >= g.limit
            && groups[..g.limit]
                .iter()
                .all(|(_, members)| members.len() >= g.group_size);
        if full || exhausted || fetch >= max {
            groups.truncate(g.limit);
            return Ok((hits, groups));
        }
        fetch = fetch.saturating_mul(4).min(max);
    }
}

/// The `GroupsResult` JSON of grouped hits: each hit with the payload asked for, each group
/// with its lookup.
async fn answer(
    state: &Arc<AppState>,
    c: &Arc<Collection>,
    mut hits: Vec<storage::ScoredPoint>,
    groups: Vec<(Value, Vec<usize>)>,
    g: Grouping,
    asked: PayloadSelector,
) -> Result<Vec<u8>, ApiError> {
    for h in &mut hits {
        h.record.payload = h.record.payload.as_ref().and_then(|p| asked.apply(p));
    }
    let lookups = match g.lookup {
        None => None,
        Some(lookup) => {
            let (name, with_payload, with_vectors) = match lookup {
                WithLookupInput::Collection(name) => (name, None, None),
                WithLookupInput::Full(l) => (l.collection, l.with_payload, l.with_vectors),
            };
            let from = collection(state, &name)?;
            let ids: Vec<index_core::PointId> = groups
                .iter()
                .filter_map(|(v, _)| payload::point_id_from_json(v).ok())
                .collect();
            let with_payload = convert::payload_selector(with_payload, true);
            let with_vector = convert::vector_selector(with_vectors);
            let named = from.with_config(|cfg| cfg.is_named_output());
            // Through the shards, so that in cluster mode the nodes are asked.
            let shards = state.shard_handles(&from).await?;
            let req = Arc::new(shard_router::RetrieveRequest {
                with_payload,
                with_vector,
            });
            let deadline = std::time::Instant::now() + state.timeout;
            let records = shard_router::retrieve(&shards, &ids, req, deadline).await?;
            Some((named, records))
        }
    };
    let named = c.with_config(|cfg| cfg.is_named_output());
    let result = GroupsResult {
        groups: groups
            .iter()
            .map(|(id, members)| PointGroup {
                id,
                hits: members
                    .iter()
                    .map(|&i| ScoredPoint::of(named, &hits[i]))
                    .collect(),
                lookup: lookups.as_ref().and_then(|(named, records)| {
                    records
                        .iter()
                        .find(|r| payload::point_id_from_json(id).is_ok_and(|p| p == r.id))
                        .map(|r| Record::of(*named, r))
                }),
            })
            .collect(),
    };
    Ok(serde_json::to_vec(&result).expect("groups serialise"))
}

pub async fn query_groups(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<ReadParams>,
    body: Bytes,
) -> ApiResult {
    let start = Instant::now();
    let req: model::QueryGroupsRequest = model::parse(&body)?;
    let keys = convert::shard_keys(&req.shard_key)?;
    let c = collection(&state, &name)?;
    let g = Grouping::new(&req.group_by, req.group_size, req.limit, req.with_lookup)?;
    let query = model::QueryRequest {
        query: req.query.clone(),
        using: req.using.clone(),
        filter: req.filter.clone(),
        params: req.params.clone(),
        score_threshold: req.score_threshold,
        limit: None,
        offset: None,
        with_payload: req.with_payload.clone(),
        with_vector: req.with_vector.clone(),
        prefetch: req.prefetch.clone(),
        lookup_from: req.lookup_from.clone(),
        shard_key: req.shard_key.clone(),
    };
    if super::hybrid::is_hybrid(&query) {
        let deadline = params.deadline(state.timeout);
        let answer = run_hybrid_groups(&state, &c, query, g, deadline).await?;
        return Ok(ok_raw(start, &[&answer]));
    }
    let asked = match req.query {
        None => {
            return Err(ApiError::not_implemented(
                "groups without a `query` are not supported by this server",
            ))
        }
        Some(q) => super::query::asked_of(q)?,
    };
    let plan = plan_search(
        &state,
        &c,
        SearchParts {
            using: req.using.unwrap_or_default(),
            asked,
            lookup_from: req.lookup_from,
            limit: g.limit,
            offset: 0,
            filter: req.filter,
            params: req.params,
            score_threshold: req.score_threshold,
            with_payload: req.with_payload,
            with_vector: req.with_vector,
            keys,
        },
    )?;
    let deadline = params.deadline(state.timeout);
    let answer = run_groups(&state, &c, plan, g, deadline).await?;
    Ok(ok_raw(start, &[&answer]))
}

pub async fn search_groups(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<ReadParams>,
    body: Bytes,
) -> ApiResult {
    let start = Instant::now();
    let req: model::SearchGroupsRequest = model::parse(&body)?;
    let keys = convert::shard_keys(&req.shard_key)?;
    let c = collection(&state, &name)?;
    let g = Grouping::new(
        &req.group_by,
        Some(req.group_size),
        Some(req.limit),
        req.with_lookup,
    )?;
    let plan = plan_search(
        &state,
        &c,
        SearchParts {
            using: req.vector.name,
            asked: Asked::Nearest(req.vector.vector),
            lookup_from: None,
            limit: g.limit,
            offset: 0,
            filter: req.filter,
            params: req.params,
            score_threshold: req.score_threshold,
            with_payload: req.with_payload,
            with_vector: req.with_vector,
            keys,
        },
    )?;
    let deadline = params.deadline(state.timeout);
    let answer = run_groups(&state, &c, plan, g, deadline).await?;
    Ok(ok_raw(start, &[&answer]))
}

pub async fn recommend_groups(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<ReadParams>,
    body: Bytes,
) -> ApiResult {
    let start = Instant::now();
    let req: model::RecommendGroupsRequest = model::parse(&body)?;
    let keys = convert::shard_keys(&req.shard_key)?;
    let c = collection(&state, &name)?;
    let g = Grouping::new(
        &req.group_by,
        Some(req.group_size),
        Some(req.limit),
        req.with_lookup,
    )?;
    let plan = plan_search(
        &state,
        &c,
        SearchParts {
            using: req.using.unwrap_or_default(),
            asked: Asked::recommend(model::RecommendInput {
                positive: req.positive,
                negative: req.negative,
                strategy: req.strategy,
            }),
            lookup_from: req.lookup_from,
            limit: g.limit,
            offset: 0,
            filter: req.filter,
            params: req.params,
            score_threshold: req.score_threshold,
            with_payload: req.with_payload,
            with_vector: req.with_vector,
            keys,
        },
    )?;
    let deadline = params.deadline(state.timeout);
    let answer = run_groups(&state, &c, plan, g, deadline).await?;
    Ok(ok_raw(start, &[&answer]))
}
