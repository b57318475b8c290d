//! Searches: the universal query, the legacy search, and their batches.
//!
//! A search is planned (typed body to `storage::SearchRequest`, the query vector checked
//! against the collection), then run through the result cache and the shard fan-out. The
//! answer is serialised once, as the JSON array of scored points, and cached as those
//! bytes; the cache key is the request's own bytes (two spellings of one request miss each
//! other, never share a wrong answer).

use super::{collection, ok_raw, ApiResult, Params};
use crate::convert::{self, bad};
use crate::error::ApiError;
use crate::model::response::ScoredPoint;
use crate::model::{
    self, QueryInterface, QueryRequest, ReadParams, RequestBatch, SearchRequest, VectorInput,
};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use index_core::PointId;
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::Instant;
use storage::Collection;

/// One planned search: the request for the shards, plus what the response needs.
struct PlannedSearch {
    request: storage::SearchRequest,
    offset: usize,
    metric: quant::Metric,
    /// The point queried by id, left out of its own results.
    exclude: Option<PointId>,
}

/// What a query asks for.
enum Plan {
    /// Nearest neighbours.
    Search(PlannedSearch),
    /// No `query`: points in id order, each scored 1, as Qdrant does.
    Scroll(QueryRequest),
}

/// The fields a search shares between the query and the legacy search.
struct SearchParts {
    using: String,
    input: VectorInput,
    limit: usize,
    offset: usize,
    filter: Option<model::FilterInput>,
    params: Option<model::SearchParams>,
    score_threshold: Option<f64>,
    with_payload: Option<model::WithPayload>,
    with_vector: Option<model::WithVector>,
}

fn plan_query(c: &Collection, req: QueryRequest) -> Result<Plan, ApiError> {
    convert::refuse_if_set(&req.prefetch, "prefetch", "query")?;
    convert::refuse_if_set(&req.lookup_from, "lookup_from", "query")?;
    convert::refuse_if_set(&req.shard_key, "shard_key", "query")?;
    let limit = convert::limit(req.limit, "limit", 10)?;
    let offset = convert::offset(req.offset, "query")?;
    let Some(query) = req.query else {
        return Ok(Plan::Scroll(req));
    };
    let input = match query {
        QueryInterface::Nearest { mmr: true, .. } => {
            return Err(ApiError::not_implemented(
                "`mmr` in query is not supported by this server",
            ))
        }
        QueryInterface::Nearest { nearest, .. } => nearest,
        QueryInterface::Other(kind) => {
            return Err(ApiError::not_implemented(format!(
                "query `{kind}` is not supported (nearest only)"
            )))
        }
    };
    plan_search(
        c,
        SearchParts {
            using: req.using.unwrap_or_default(),
            input,
            limit,
            offset,
            filter: req.filter,
            params: req.params,
            score_threshold: req.score_threshold,
            with_payload: req.with_payload,
            with_vector: req.with_vector,
        },
    )
    .map(Plan::Search)
}

fn plan_legacy(c: &Collection, req: SearchRequest) -> Result<PlannedSearch, ApiError> {
    convert::refuse_if_set(&req.shard_key, "shard_key", "search")?;
    let limit = convert::limit(Some(req.limit), "limit", 10)?;
    let offset = convert::offset(req.offset, "search")?;
    if matches!(req.vector.vector, VectorInput::Sparse(_)) {
        return Err(ApiError::not_implemented(
            "sparse vector search is not supported",
        ));
    }
    plan_search(
        c,
        SearchParts {
            using: req.vector.name,
            input: req.vector.vector,
            limit,
            offset,
            filter: req.filter,
            params: req.params,
            score_threshold: req.score_threshold,
            with_payload: req.with_payload,
            with_vector: req.with_vector,
        },
    )
}

fn plan_search(c: &Collection, parts: SearchParts) -> Result<PlannedSearch, ApiError> {
    let SearchParts {
        using,
        input,
        limit,
        offset,
        ..
    } = parts;
    let (size, distance) = c
        .with_config(|cfg| cfg.vectors.get(&using).map(|p| (p.size, p.distance)))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "Wrong input: Not existing vector name error: {using}"
            ))
        })?;
    let metric = distance.metric();
    let (vector, exclude) = match input {
        VectorInput::Dense(v) => (v, None),
        VectorInput::Id(id) => {
            // Planning reads one stored vector: cheap enough to stay on the reactor.
            let v = c
                .vector_of(id, &using)?
                .ok_or_else(|| ApiError::not_found(format!("No point with id {id} found")))?;
            (v, Some(id))
        }
        VectorInput::Multi(_) => {
            return Err(ApiError::not_implemented(
                "multivector queries are not supported",
            ))
        }
        VectorInput::Sparse(_) => {
            return Err(ApiError::not_implemented(
                "sparse vector queries are not supported",
            ))
        }
        VectorInput::Inference(kind) => {
            return Err(ApiError::not_implemented(format!(
                "{kind} inference is not supported; send a vector"
            )))
        }
    };
    if vector.len() != size {
        return Err(bad(format!(
            "Wrong input: Vector dimension error: expected dim: {}, got {}",
            size,
            vector.len()
        )));
    }
    let total = (limit + offset + usize::from(exclude.is_some())).min(index_core::MAX_LIMIT);
    let mut params = convert::search_params(parts.params, total)?;
    if let Some(t) = parts.score_threshold {
        params.max_distance = Some(metric.distance_from_score(t as f32));
    }
    let request = storage::SearchRequest {
        vector_name: using,
        vector,
        filter: parts.filter.map(|f| f.0),
        params,
        with_payload: convert::payload_selector(parts.with_payload, false),
        with_vector: convert::vector_selector(parts.with_vector),
    };
    Ok(PlannedSearch {
        request,
        offset,
        metric,
        exclude,
    })
}

/// A search answer: the JSON array of scored points, serialised once (and cached as bytes).
type Answer = Arc<Vec<u8>>;

/// Runs a planned search through the cache and the shard fan-out.
async fn run_search(
    state: &Arc<AppState>,
    c: &Arc<Collection>,
    key: Option<Vec<u8>>,
    plan: PlannedSearch,
    deadline: Instant,
) -> Result<Answer, ApiError> {
    let name = c.name();
    let epoch = state.cache.epoch(name);
    if let Some(hit) = key.as_ref().and_then(|k| state.cache.get(name, k)) {
        return Ok(hit);
    }
    let started = Instant::now();
    let shards = state.shard_handles(c);
    // `limit + offset` was capped at the most a search returns: what is left after the
    // offset may be nothing.
    let limit = plan
        .request
        .params
        .limit
        .saturating_sub(plan.offset + usize::from(plan.exclude.is_some()));
    let hits = shard_router::search(&shards, Arc::new(plan.request), plan.metric, deadline).await?;
    state
        .metrics
        .observe_search(name, started.elapsed().as_secs_f64());
    let named = c.with_config(|cfg| cfg.vectors.is_named());
    let points: Vec<ScoredPoint<'_>> = hits
        .iter()
        .filter(|h| Some(h.record.id) != plan.exclude)
        .skip(plan.offset)
        .take(limit)
        .map(|h| ScoredPoint::of(named, h))
        .collect();
    let mut out = Vec::with_capacity(64 + points.len() * 96);
    serde_json::to_writer(&mut out, &points).expect("scored points serialise");
    let answer = Arc::new(out);
    if let Some(key) = key {
        let weight = answer.len().min(u32::MAX as usize) as u32;
        state.cache.insert(name, epoch, key, answer.clone(), weight);
    }
    Ok(answer)
}

/// The cache key of a request's bytes, or `None` when the cache is off (no key is built).
fn cached_key(state: &AppState, kind: &str, name: &str, body: &[u8]) -> Option<Vec<u8>> {
    state.cache.is_enabled().then(|| {
        let mut k = cache::KeyBuilder::new();
        k.push_str(kind)
            .push_str(name)
            .push_str(&String::from_utf8_lossy(body));
        k.finish()
    })
}

/// A query without a vector: points in id order, as Qdrant does.
async fn query_without_vector(
    state: &Arc<AppState>,
    c: &Arc<Collection>,
    req: QueryRequest,
    deadline: Instant,
) -> Result<Answer, ApiError> {
    let limit = convert::limit(req.limit, "limit", 10)?;
    let offset = convert::offset(req.offset, "query")?;
    let scroll = Arc::new(shard_router::ScrollRequest {
        from: None,
        limit: limit + offset,
        filter: req.filter.map(|f| f.0),
        with_payload: convert::payload_selector(req.with_payload, false),
        with_vector: convert::vector_selector(req.with_vector),
    });
    let named = c.with_config(|cfg| cfg.vectors.is_named());
    let shards = state.shard_handles(c);
    let page = shard_router::scroll(&shards, scroll, deadline).await?;
    let points: Vec<ScoredPoint<'_>> = page
        .points
        .iter()
        .skip(offset)
        .map(|r| ScoredPoint::scored(named, r, 1.0))
        .collect();
    Ok(Arc::new(
        serde_json::to_vec(&points).expect("scored points serialise"),
    ))
}

/// One query, its body given as bytes (the cache key).
async fn one_query(
    state: &Arc<AppState>,
    c: &Arc<Collection>,
    body: &[u8],
    req: QueryRequest,
    deadline: Instant,
) -> Result<Answer, ApiError> {
    match plan_query(c, req)? {
        Plan::Scroll(req) => query_without_vector(state, c, req, deadline).await,
        Plan::Search(plan) => {
            let key = cached_key(state, "query", c.name(), body);
            run_search(state, c, key, plan, deadline).await
        }
    }
}

async fn one_legacy(
    state: &Arc<AppState>,
    c: &Arc<Collection>,
    body: &[u8],
    req: SearchRequest,
    deadline: Instant,
) -> Result<Answer, ApiError> {
    let plan = plan_legacy(c, req)?;
    let key = cached_key(state, "search", c.name(), body);
    run_search(state, c, key, plan, deadline).await
}

pub async fn query(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<ReadParams>,
    body: Bytes,
) -> ApiResult {
    let start = Instant::now();
    let req: QueryRequest = model::parse(&body)?;
    let c = collection(&state, &name)?;
    let deadline = params.deadline(state.timeout);
    let points = one_query(&state, &c, &body, req, deadline).await?;
    Ok(ok_raw(start, &[b"{\"points\":", &points, b"}"]))
}

pub async fn search(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<ReadParams>,
    body: Bytes,
) -> ApiResult {
    let start = Instant::now();
    let req: SearchRequest = model::parse(&body)?;
    let c = collection(&state, &name)?;
    let deadline = params.deadline(state.timeout);
    Ok(ok_raw(
        start,
        &[&one_legacy(&state, &c, &body, req, deadline).await?],
    ))
}

/// The searches of a batch, each kept as its own bytes (its cache key) and read into `T`.
fn batch_items<T: serde::de::DeserializeOwned>(
    body: &[u8],
) -> Result<Vec<(&RawValue, T)>, ApiError> {
    let batch: RequestBatch<&RawValue> = model::parse(body)?;
    convert::check_batch(batch.searches.len())?;
    batch
        .searches
        .into_iter()
        .enumerate()
        .map(|(i, raw)| {
            let req = model::parse_at(raw.get().as_bytes(), &format!("searches[{i}]"))?;
            Ok((raw, req))
        })
        .collect()
}

/// A search request of a batch: the universal query or the legacy search.
trait BatchItem: serde::de::DeserializeOwned + Send + 'static {
    /// Runs it; `body` is its own bytes (the cache key).
    fn run<'a>(
        self,
        state: &'a Arc<AppState>,
        c: &'a Arc<Collection>,
        body: &'a [u8],
        deadline: Instant,
    ) -> futures::future::BoxFuture<'a, Result<Answer, ApiError>>;
}

impl BatchItem for QueryRequest {
    fn run<'a>(
        self,
        state: &'a Arc<AppState>,
        c: &'a Arc<Collection>,
        body: &'a [u8],
        deadline: Instant,
    ) -> futures::future::BoxFuture<'a, Result<Answer, ApiError>> {
        Box::pin(one_query(state, c, body, self, deadline))
    }
}

impl BatchItem for SearchRequest {
    fn run<'a>(
        self,
        state: &'a Arc<AppState>,
        c: &'a Arc<Collection>,
        body: &'a [u8],
        deadline: Instant,
    ) -> futures::future::BoxFuture<'a, Result<Answer, ApiError>> {
        Box::pin(one_legacy(state, c, body, self, deadline))
    }
}

/// Runs every search of a batch at once; the answers in order, each between `open` and
/// `close`.
async fn run_batch<T: BatchItem>(
    state: Arc<AppState>,
    name: &str,
    params: ReadParams,
    body: &[u8],
    open: &[u8],
    close: &[u8],
) -> ApiResult {
    let start = Instant::now();
    let items = batch_items::<T>(body)?;
    let c = collection(&state, name)?;
    let deadline = params.deadline(state.timeout);
    let answers = futures::future::try_join_all(
        items
            .into_iter()
            .map(|(raw, req)| req.run(&state, &c, raw.get().as_bytes(), deadline)),
    )
    .await?;
    Ok(batch_answer(start, &answers, open, close))
}

pub async fn query_batch(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<ReadParams>,
    body: Bytes,
) -> ApiResult {
    run_batch::<QueryRequest>(state, &name, params, &body, b"{\"points\":", b"}").await
}

pub async fn search_batch(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<ReadParams>,
    body: Bytes,
) -> ApiResult {
    run_batch::<SearchRequest>(state, &name, params, &body, b"", b"").await
}

/// The envelope around a batch's answers, as a JSON list of each answer between `open` and
/// `close`.
fn batch_answer(start: Instant, answers: &[Answer], open: &[u8], close: &[u8]) -> Response {
    let mut parts: Vec<&[u8]> = Vec::with_capacity(answers.len() * 4 + 2);
    parts.push(b"[");
    for (i, a) in answers.iter().enumerate() {
        if i > 0 {
            parts.push(b",");
        }
        parts.extend([open, a.as_slice(), close]);
    }
    parts.push(b"]");
    ok_raw(start, &parts)
}
