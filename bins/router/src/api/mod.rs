//! The REST routes: Qdrant's paths, by resource. A handler extracts (path, typed query
//! string, typed body), converts to an internal request (`crate::convert`), calls storage or
//! the shard router, and answers in Qdrant's envelope.
//!
//! - `service`: `/`, health, readiness, metrics, the fallback;
//! - `dashboard`: the page at `/dashboard` and its files;
//! - `collections`: create, read, update, delete, list, exists, payload indexes, aliases;
//! - `points`: upsert, delete, payload writes, retrieve, scroll, count;
//! - `query`: query, search, recommend, discover and their batches, through the result
//!   cache;
//! - `hybrid`: queries with prefetches (fusion, re-scoring), MMR and random samples;
//! - `groups`: the grouped query, search and recommendation;
//! - `matrix`: the search matrix (pairs and offsets);
//! - `snapshots`: create, list, download, delete, recover.

pub(crate) mod collections;
mod dashboard;
mod formula;
pub(crate) mod groups;
mod hybrid;
pub(crate) mod matrix;
pub(super) mod points;
pub(crate) mod query;
mod service;
pub(crate) mod snapshots;

pub use snapshots::snapshot_client;

use crate::error::ApiError;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;
use storage::Collection;

pub fn routes(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(service::root))
        .route("/healthz", get(service::healthz))
        .route("/livez", get(service::healthz))
        .route("/readyz", get(service::readyz))
        .route("/metrics", get(service::metrics))
        .route("/dashboard", get(dashboard::index))
        .route("/dashboard/", get(dashboard::index))
        .route("/dashboard/{file}", get(dashboard::file))
        .merge(crate::replica::admin_routes())
        .route("/collections", get(collections::list))
        .route("/aliases", get(collections::aliases))
        .route("/collections/aliases", post(collections::change_aliases))
        .route(
            "/collections/{name}/aliases",
            get(collections::collection_aliases),
        )
        .route(
            "/collections/{name}",
            put(collections::create)
                .get(collections::info)
                .delete(collections::remove)
                .patch(collections::update),
        )
        .route("/collections/{name}/exists", get(collections::exists))
        .route(
            "/collections/{name}/vectors/{vector}",
            put(collections::create_vector).delete(collections::delete_vector),
        )
        .route(
            "/collections/{name}/vectors/",
            put(collections::create_unnamed_vector).delete(collections::delete_unnamed_vector),
        )
        .route(
            "/collections/{name}/shards",
            put(collections::create_shard_key).get(collections::list_shard_keys),
        )
        .route(
            "/collections/{name}/shards/delete",
            post(collections::delete_shard_key),
        )
        .route(
            "/collections/{name}/cluster",
            get(collections::cluster_info).post(collections::update_cluster),
        )
        .route("/collections/{name}/index", put(collections::create_index))
        .route(
            "/collections/{name}/index/{field}",
            delete(collections::delete_index),
        )
        .route(
            "/collections/{name}/points",
            put(points::upsert).post(points::retrieve),
        )
        .route("/collections/{name}/points/{id}", get(points::get_point))
        .route("/collections/{name}/points/delete", post(points::delete))
        .route("/collections/{name}/points/batch", post(points::batch))
        .route(
            "/collections/{name}/points/vectors",
            put(points::update_vectors),
        )
        .route(
            "/collections/{name}/points/vectors/delete",
            post(points::delete_vectors),
        )
        .route(
            "/collections/{name}/points/payload",
            post(points::set_payload).put(points::overwrite_payload),
        )
        .route(
            "/collections/{name}/points/payload/delete",
            post(points::delete_payload),
        )
        .route(
            "/collections/{name}/points/payload/clear",
            post(points::clear_payload),
        )
        .route("/collections/{name}/points/scroll", post(points::scroll))
        .route("/collections/{name}/points/count", post(points::count))
        .route("/collections/{name}/facet", post(points::facet))
        .route(
            "/collections/{name}/points/search/matrix/pairs",
            post(matrix::pairs),
        )
        .route(
            "/collections/{name}/points/search/matrix/offsets",
            post(matrix::offsets),
        )
        .route("/collections/{name}/points/query", post(query::query))
        .route(
            "/collections/{name}/points/query/batch",
            post(query::query_batch),
        )
        .route("/collections/{name}/points/search", post(query::search))
        .route(
            "/collections/{name}/points/search/batch",
            post(query::search_batch),
        )
        .route(
            "/collections/{name}/points/query/groups",
            post(groups::query_groups),
        )
        .route(
            "/collections/{name}/points/search/groups",
            post(groups::search_groups),
        )
        .route(
            "/collections/{name}/points/recommend/groups",
            post(groups::recommend_groups),
        )
        .route(
            "/collections/{name}/points/recommend",
            post(query::recommend),
        )
        .route(
            "/collections/{name}/points/recommend/batch",
            post(query::recommend_batch),
        )
        .route("/collections/{name}/points/discover", post(query::discover))
        .route(
            "/collections/{name}/points/discover/batch",
            post(query::discover_batch),
        )
        .route(
            "/collections/{name}/snapshots",
            post(snapshots::create).get(snapshots::list),
        )
        .route(
            "/collections/{name}/snapshots/recover",
            put(snapshots::recover),
        )
        .route(
            "/collections/{name}/snapshots/upload",
            post(snapshots::upload),
        )
        .route(
            "/snapshots",
            get(snapshots::list_full).post(snapshots::create_full),
        )
        .route(
            "/snapshots/{snapshot}",
            get(snapshots::download_full).delete(snapshots::remove_full),
        )
        .route(
            "/collections/{name}/snapshots/{snapshot}",
            get(snapshots::download).delete(snapshots::remove),
        )
        .fallback(service::not_served)
        .with_state(state)
}

pub(crate) type ApiResult = Result<Response, ApiError>;

/// A request body read into its model type (`crate::model::parse`: Qdrant's error shape,
/// naming the bad field's JSON path). The body was already bounded and buffered by the
/// size-limit layer.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("Format error in JSON body: {e}")))?;
        crate::model::parse(&bytes).map(Body)
    }
}

/// The query string read into its model type (unknown parameters are ignored).
pub struct Params<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        if parts.uri.query().is_none_or(str::is_empty) {
            return Ok(Params(T::default()));
        }
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Params(q.0))
            .map_err(|e| {
                ApiError::bad_request(format!("Format error in query string: {}", e.body_text()))
            })
    }
}

/// The success envelope, for the modules outside `api`.
pub(crate) fn ok_json<T: Serialize + ?Sized>(start: Instant, result: &T) -> Response {
    ok(start, result)
}

/// The success envelope `{"result": ..., "status": "ok", "time": seconds}`.
fn ok<T: Serialize + ?Sized>(start: Instant, result: &T) -> Response {
    let mut body = Vec::with_capacity(256);
    body.extend_from_slice(b"{\"result\":");
    serde_json::to_writer(&mut body, result).expect("response types serialise");
    finish_envelope(start, body)
}

/// The success envelope around a result already serialised (in parts, concatenated): search
/// answers are written once as bytes (and cached so) and never serialised again.
fn ok_raw(start: Instant, result: &[&[u8]]) -> Response {
    let len: usize = result.iter().map(|p| p.len()).sum();
    let mut body = Vec::with_capacity(len + 64);
    body.extend_from_slice(b"{\"result\":");
    for part in result {
        body.extend_from_slice(part);
    }
    finish_envelope(start, body)
}

fn finish_envelope(start: Instant, mut body: Vec<u8>) -> Response {
    // A read that left out shards which could not answer (cluster mode, partial answers on)
    // says so in the body too, beside the header.
    let missing = shard_router::partial::missing();
    if !missing.is_empty() {
        body.extend_from_slice(b",\"partial\":{\"missing_shards\":");
        serde_json::to_writer(&mut body, &missing).expect("numbers");
        body.push(b'}');
    }
    body.extend_from_slice(b",\"status\":\"ok\",\"time\":");
    serde_json::to_writer(&mut body, &start.elapsed().as_secs_f64()).expect("a float");
    body.push(b'}');
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `{"status": "accepted", "time": ...}` with 202, for an operation not waited for.
fn accepted(start: Instant) -> Response {
    (
        StatusCode::ACCEPTED,
        axum::Json(crate::model::response::Accepted {
            status: "accepted",
            time: start.elapsed().as_secs_f64(),
        }),
    )
        .into_response()
}

fn collection(state: &AppState, name: &str) -> Result<Arc<Collection>, ApiError> {
    Ok(state.storage.get(name)?)
}

/// Runs blocking storage work off the reactor.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Service internal error: {e}"),
        )
    })?
}
