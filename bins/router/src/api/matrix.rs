//! The search matrix: `/points/search/matrix/pairs` and `/points/search/matrix/offsets`.
//!
//! A uniform random sample of the points passing the filter that have the vector, and for
//! each sampled point its `limit` nearest among the other sampled points, scored exactly
//! (`storage::matrix`). The sample is drawn anew each request, as in Qdrant.

use super::{blocking, collection, ok, ApiResult, Body, Params};
use crate::convert::{self, bad};
use crate::error::ApiError;
use crate::model::response::Id;
use crate::model::{ReadParams, SearchMatrixRequest};
use crate::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Instant;
use storage::matrix::{DistanceMatrix, MAX_MATRIX_LIMIT, MAX_MATRIX_SAMPLE};

/// Samples and scores the matrix a request asks for.
async fn matrix(
    state: &Arc<AppState>,
    name: &str,
    params: &ReadParams,
    body: SearchMatrixRequest,
) -> Result<DistanceMatrix, ApiError> {
    let keys = convert::shard_keys(&body.shard_key)?;
    let sample = body.sample.unwrap_or(10);
    let limit = body.limit.unwrap_or(3);
    if !(2..=MAX_MATRIX_SAMPLE as u64).contains(&sample) {
        return Err(bad(format!(
            "Validation error in JSON body: sample: must be from 2 to {MAX_MATRIX_SAMPLE}, got {sample}"
        )));
    }
    if !(1..=MAX_MATRIX_LIMIT as u64).contains(&limit) {
        return Err(bad(format!(
            "Validation error in JSON body: limit: must be from 1 to {MAX_MATRIX_LIMIT}, got {limit}"
        )));
    }
    let using = body.using.unwrap_or_default();
    let c = collection(state, name)?;
    let metric = c.with_config(|cfg| match cfg.vectors.get(&using) {
        Some(p) if p.is_multi() => Err(ApiError::bad_request(format!(
            "Wrong input: `{using}` is a multivector: the search matrix scores single vectors"
        ))),
        Some(p) => Ok(p.distance.metric()),
        None => Err(ApiError::bad_request(format!(
            "Wrong input: Not existing vector name error: {using}"
        ))),
    })?;
    let deadline = params.deadline(state.timeout);
    let shards = state
        .shards_for(&c, keys.as_ref(), body.filter.as_ref().map(|f| &*f.0))
        .await?;
    // A fresh random seed per request (the standard library's hasher keys are random).
    let seed = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let points = shard_router::sample(
        &shards,
        body.filter.map(|f| f.0),
        Some(&using),
        sample as usize,
        seed,
        deadline,
    )
    .await?;
    blocking(move || {
        storage::matrix::nearest_among(metric, points, limit as usize, deadline).ok_or_else(|| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "Timeout: the search matrix was not scored in time",
            )
        })
    })
    .await
}

#[derive(Serialize)]
struct Pair {
    a: Id,
    b: Id,
    score: f32,
}

#[derive(Serialize)]
struct PairsResponse {
    pairs: Vec<Pair>,
}

#[derive(Serialize)]
struct OffsetsResponse {
    offsets_row: Vec<usize>,
    offsets_col: Vec<usize>,
    scores: Vec<f32>,
    ids: Vec<Id>,
}

/// `POST /collections/{name}/points/search/matrix/pairs`: `(a, b, score)` for each sampled
/// point `a` and each of its neighbours `b`, rows in id order, neighbours best first.
pub async fn pairs(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<ReadParams>,
    Body(body): Body<SearchMatrixRequest>,
) -> ApiResult {
    let start = Instant::now();
    let m = matrix(&state, &name, &params, body).await?;
    let pairs = m
        .rows
        .iter()
        .enumerate()
        .flat_map(|(i, row)| {
            let ids = &m.ids;
            row.iter().map(move |&(j, score)| Pair {
                a: Id(ids[i]),
                b: Id(ids[j]),
                score,
            })
        })
        .collect();
    Ok(ok(start, &PairsResponse { pairs }))
}

/// `POST /collections/{name}/points/search/matrix/offsets`: the sampled ids in id order, and
/// the matrix as coordinates into them with a score each.
pub async fn offsets(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<ReadParams>,
    Body(body): Body<SearchMatrixRequest>,
) -> ApiResult {
    let start = Instant::now();
    let m = matrix(&state, &name, &params, body).await?;
    let mut out = OffsetsResponse {
        offsets_row: Vec::new(),
        offsets_col: Vec::new(),
        scores: Vec::new(),
        ids: m.ids.iter().map(|&id| Id(id)).collect(),
    };
    for (i, row) in m.rows.iter().enumerate() {
        for &(j, score) in row {
            out.offsets_row.push(i);
            out.offsets_col.push(j);
            out.scores.push(score);
        }
    }
    Ok(ok(start, &out))
}
