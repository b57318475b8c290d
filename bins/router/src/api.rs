//! The REST routes: Qdrant's paths, bodies, envelopes and errors.

use crate::convert::{self, bad, Fields};
use crate::error::ApiError;
use crate::AppState;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use index_core::PointId;
use serde_json::{json, Value};
use shard_router::{LocalShardHandle, Shard};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use storage::{Collection, CollectionConfig, PointSelector, SearchRequest, Update, VectorSelector};

type Params = Query<HashMap<String, String>>;
type ApiResult = Result<Response, ApiError>;

pub fn routes(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/healthz", get(healthz))
        .route("/livez", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/collections", get(list_collections))
        .route(
            "/collections/{name}",
            put(create_collection)
                .get(get_collection)
                .delete(delete_collection)
                .patch(update_collection),
        )
        .route("/collections/{name}/exists", get(collection_exists))
        .route("/collections/{name}/points", put(upsert).post(retrieve))
        .route("/collections/{name}/points/{id}", get(get_point))
        .route("/collections/{name}/points/delete", post(delete_points))
        .route(
            "/collections/{name}/points/payload",
            post(set_payload).put(overwrite_payload),
        )
        .route(
            "/collections/{name}/points/payload/delete",
            post(delete_payload),
        )
        .route(
            "/collections/{name}/points/payload/clear",
            post(clear_payload),
        )
        .route("/collections/{name}/points/scroll", post(scroll))
        .route("/collections/{name}/points/count", post(count))
        .route("/collections/{name}/points/query", post(query))
        .route("/collections/{name}/points/query/batch", post(query_batch))
        .route("/collections/{name}/points/search", post(search))
        .route(
            "/collections/{name}/points/search/batch",
            post(search_batch),
        )
        .route("/collections/{name}/index", put(create_index))
        .route("/collections/{name}/index/{field}", delete(delete_index))
        .route(
            "/collections/{name}/snapshots",
            post(create_snapshot).get(list_snapshots),
        )
        .route(
            "/collections/{name}/snapshots/recover",
            put(recover_snapshot),
        )
        .route(
            "/collections/{name}/snapshots/{snapshot}",
            get(download_snapshot).delete(delete_snapshot),
        )
        .fallback(not_served)
        .with_state(state)
}

fn ok(start: Instant, result: Value) -> Response {
    let mut body = Vec::with_capacity(128);
    serde_json::to_writer(&mut body, &result).expect("a Value serialises");
    ok_raw(start, &[&body])
}

/// The success envelope around a result already serialised (in parts, concatenated): search
/// answers are written once as bytes and never go through `Value` again.
fn ok_raw(start: Instant, result: &[&[u8]]) -> Response {
    let len: usize = result.iter().map(|p| p.len()).sum();
    let mut body = Vec::with_capacity(len + 64);
    body.extend_from_slice(b"{\"result\":");
    for part in result {
        body.extend_from_slice(part);
    }
    body.extend_from_slice(b",\"status\":\"ok\",\"time\":");
    body.extend_from_slice(ryu_f64(start.elapsed().as_secs_f64()).as_bytes());
    body.push(b'}');
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn ryu_f64(x: f64) -> String {
    serde_json::Number::from_f64(x).map_or_else(|| "0.0".to_string(), |n| n.to_string())
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).map_err(|e| bad(format!("Format error in JSON body: {e}")))
}

fn object_body(body: &Bytes) -> Result<Value, ApiError> {
    match parse_body(body)? {
        Value::Null => Ok(json!({})),
        v => Ok(v),
    }
}

fn collection(state: &AppState, name: &str) -> Result<Arc<Collection>, ApiError> {
    Ok(state.storage.get(name)?)
}

fn wait_param(q: &HashMap<String, String>, default: bool) -> Result<bool, ApiError> {
    match q.get("wait").map(String::as_str) {
        None => Ok(default),
        Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(other) => Err(bad(format!(
            "Format error in query string: wait={other} is not a boolean"
        ))),
    }
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

async fn root() -> Response {
    Json(json!({"title": "qdrant - vector search engine", "version": "1.20.0", "commit": crate::COMMIT})).into_response()
}

async fn healthz() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "healthz check passed",
    )
        .into_response()
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.ready.load(std::sync::atomic::Ordering::Acquire) {
        (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "all shards are ready",
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "some shards are not ready",
        )
            .into_response()
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let snapshot = state.metrics_snapshot();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&snapshot),
    )
        .into_response()
}

async fn not_served(uri: axum::http::Uri, method: axum::http::Method) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "Not found: {method} {} is not served by this server",
            uri.path()
        ),
    )
    .into_response()
}

async fn list_collections(State(state): State<Arc<AppState>>) -> ApiResult {
    let start = Instant::now();
    let names: Vec<Value> = state
        .storage
        .list()
        .into_iter()
        .map(|n| json!({"name": n}))
        .collect();
    Ok(ok(start, json!({"collections": names})))
}

async fn collection_exists(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ApiResult {
    let start = Instant::now();
    Ok(ok(start, json!({"exists": state.storage.exists(&name)})))
}

async fn create_collection(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    _q: Params,
    body: Bytes,
) -> ApiResult {
    let start = Instant::now();
    let config = CollectionConfig::from_json(&parse_body(&body)?)?;
    let st = state.clone();
    blocking(move || {
        st.storage.create(&name, config)?;
        st.cache.invalidate(&name);
        Ok(())
    })
    .await?;
    Ok(ok(start, json!(true)))
}

async fn update_collection(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    _q: Params,
    body: Bytes,
) -> ApiResult {
    let start = Instant::now();
    let c = collection(&state, &name)?;
    let body = object_body(&body)?;
    let f = Fields::new(
        &body,
        "update collection",
        &[
            "optimizers_config",
            "params",
            "hnsw_config",
            "quantization_config",
            "vectors",
            "sparse_vectors",
            "strict_mode_config",
            "metadata",
        ],
    )?;
    f.unsupported("vectors")?;
    f.unsupported("sparse_vectors")?;
    f.unsupported("quantization_config")?;
    let optimizers: Option<storage::OptimizersConfigDiff> = f
        .get("optimizers_config")
        .map(|v| serde_json::from_value(v.clone()))
        .transpose()
        .map_err(|e| bad(format!("Format error in JSON body: optimizers_config: {e}")))?;
    let hnsw: Option<storage::HnswConfigDiff> = f
        .get("hnsw_config")
        .map(|v| serde_json::from_value(v.clone()))
        .transpose()
        .map_err(|e| bad(format!("Format error in JSON body: hnsw_config: {e}")))?;
    let params = f.get("params").cloned();
    let strict = f.get("strict_mode_config").cloned();
    let metadata = f.get("metadata").cloned();
    blocking(move || {
        c.update_config(|cfg| {
            if let Some(o) = optimizers {
                let base = cfg.optimizers_config.clone().unwrap_or_default();
                cfg.optimizers_config = Some(merge_json(&base, &o)?);
            }
            if let Some(h) = hnsw {
                cfg.hnsw_config = Some(h.over(&cfg.hnsw_config.clone().unwrap_or_default()));
            }
            if let Some(p) = params {
                let pf = Fields::new(
                    &p,
                    "params",
                    &[
                        "replication_factor",
                        "write_consistency_factor",
                        "on_disk_payload",
                        "read_fan_out_factor",
                    ],
                )
                .map_err(|e| storage::StorageError::InvalidInput(e.message))?;
                if let Some(r) = pf.get("replication_factor").and_then(Value::as_u64) {
                    cfg.replication_factor = Some(r as u32);
                }
                if let Some(w) = pf.get("write_consistency_factor").and_then(Value::as_u64) {
                    cfg.write_consistency_factor = Some(w as u32);
                }
                if let Some(d) = pf.get("on_disk_payload").and_then(Value::as_bool) {
                    cfg.on_disk_payload = Some(d);
                }
            }
            if let Some(s) = strict {
                cfg.strict_mode_config = Some(s);
            }
            if let Some(m) = metadata {
                cfg.metadata = Some(m);
            }
            Ok(())
        })?;
        Ok(())
    })
    .await?;
    Ok(ok(start, json!(true)))
}

/// Fields set in `diff` over `base` (both serialise to objects without unset fields).
fn merge_json<T: serde::Serialize + serde::de::DeserializeOwned>(
    base: &T,
    diff: &T,
) -> storage::Result<T> {
    let mut b = serde_json::to_value(base).expect("json");
    if let (Some(bm), Value::Object(dm)) =
        (b.as_object_mut(), serde_json::to_value(diff).expect("json"))
    {
        for (k, v) in dm {
            bm.insert(k, v);
        }
    }
    serde_json::from_value(b).map_err(|e| storage::StorageError::InvalidInput(e.to_string()))
}

async fn get_collection(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> ApiResult {
    let start = Instant::now();
    let c = collection(&state, &name)?;
    let info = blocking(move || {
        let stats = c.stats();
        let config = c.config();
        let status = if stats.optimizer_error.is_some() {
            "red"
        } else if stats.optimizing {
            "yellow"
        } else {
            "green"
        };
        Ok(json!({
            "status": status,
            "optimizer_status": stats.optimizer_error.map_or(json!("ok"), |e| json!({"error": e})),
            "indexed_vectors_count": stats.indexed_points * config.vectors.params().len(),
            "points_count": stats.points,
            "segments_count": stats.segments,
            "config": convert::collection_config_json(&config),
            "payload_schema": c.payload_schema(),
        }))
    })
    .await?;
    Ok(ok(start, info))
}

async fn delete_collection(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    _q: Params,
) -> ApiResult {
    let start = Instant::now();
    let st = state.clone();
    let existed = blocking(move || {
        let existed = st.storage.delete(&name)?;
        st.cache.invalidate(&name);
        st.metrics.forget_collection(&name);
        Ok(existed)
    })
    .await?;
    Ok(ok(start, json!(existed)))
}

/// Applies an update, then makes every cached answer of the collection unreachable before
/// acknowledging.
async fn apply_update(state: &Arc<AppState>, name: &str, update: Update, wait: bool) -> ApiResult {
    let start = Instant::now();
    let c = collection(state, name)?;
    let st = state.clone();
    let name = name.to_string();
    let seq = blocking(move || {
        let missing = missing_point(&c, &update);
        let r = c.update(update, wait);
        st.cache.invalidate(&name);
        let seq = r?;
        match missing {
            Some(id) => Err(ApiError::not_found(format!("No point with id {id} found"))),
            None => Ok(seq),
        }
    })
    .await?;
    Ok(ok(
        start,
        json!({"operation_id": seq, "status": if wait { "completed" } else { "acknowledged" }}),
    ))
}

/// The first id a payload write names that is not stored. Qdrant applies such a write to the
/// points that exist, then answers 404 `No point with id … found` (storage alone would skip
/// the id and report success); the Python client's in-memory mode does the same. Deletes by
/// id stay lenient, as in Qdrant.
fn missing_point(c: &Collection, update: &Update) -> Option<PointId> {
    let ids = match update {
        Update::SetPayload {
            selector: PointSelector::Ids(ids),
            ..
        }
        | Update::OverwritePayload {
            selector: PointSelector::Ids(ids),
            ..
        }
        | Update::DeletePayload {
            selector: PointSelector::Ids(ids),
            ..
        }
        | Update::ClearPayload(PointSelector::Ids(ids)) => ids,
        _ => return None,
    };
    let found: std::collections::HashSet<PointId> = c
        .retrieve(
            ids,
            &payload::PayloadSelector::Nothing,
            &VectorSelector::Nothing,
        )
        .into_iter()
        .map(|r| r.id)
        .collect();
    ids.iter().find(|id| !found.contains(id)).copied()
}

async fn upsert(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Params,
    body: Bytes,
) -> ApiResult {
    let wait = wait_param(&q, false)?;
    let points = convert::upsert_points(&parse_body(&body)?)?;
    apply_update(&state, &name, Update::Upsert(points), wait).await
}

async fn delete_points(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Params,
    body: Bytes,
) -> ApiResult {
    let wait = wait_param(&q, false)?;
    let body = object_body(&body)?;
    let f = Fields::new(&body, "delete", &["points", "filter", "shard_key"])?;
    apply_update(&state, &name, Update::Delete(convert::selector(&f)?), wait).await
}

async fn set_payload(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Params,
    body: Bytes,
) -> ApiResult {
    let wait = wait_param(&q, false)?;
    let body = object_body(&body)?;
    let f = Fields::new(
        &body,
        "set payload",
        &["payload", "points", "filter", "key", "shard_key"],
    )?;
    let payload = convert::payload_object(f.get("payload"), "payload")?;
    let key = f.str("key")?.map(str::to_string);
    let selector = convert::selector(&f)?;
    apply_update(
        &state,
        &name,
        Update::SetPayload {
            payload,
            selector,
            key,
        },
        wait,
    )
    .await
}

async fn overwrite_payload(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Params,
    body: Bytes,
) -> ApiResult {
    let wait = wait_param(&q, false)?;
    let body = object_body(&body)?;
    let f = Fields::new(
        &body,
        "overwrite payload",
        &["payload", "points", "filter", "key", "shard_key"],
    )?;
    f.unsupported("key")?;
    let payload = convert::payload_object(f.get("payload"), "payload")?;
    let selector = convert::selector(&f)?;
    apply_update(
        &state,
        &name,
        Update::OverwritePayload { payload, selector },
        wait,
    )
    .await
}

async fn delete_payload(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Params,
    body: Bytes,
) -> ApiResult {
    let wait = wait_param(&q, false)?;
    let body = object_body(&body)?;
    let f = Fields::new(
        &body,
        "delete payload",
        &["keys", "points", "filter", "shard_key"],
    )?;
    let keys = f
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("Format error in JSON body: keys must be a list of strings"))?
        .iter()
        .map(|k| {
            k.as_str()
                .map(str::to_string)
                .ok_or_else(|| bad("Format error in JSON body: keys must be strings"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let selector = convert::selector(&f)?;
    apply_update(
        &state,
        &name,
        Update::DeletePayload { keys, selector },
        wait,
    )
    .await
}

async fn clear_payload(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Params,
    body: Bytes,
) -> ApiResult {
    let wait = wait_param(&q, false)?;
    let body = object_body(&body)?;
    let f = Fields::new(&body, "clear payload", &["points", "filter", "shard_key"])?;
    apply_update(
        &state,
        &name,
        Update::ClearPayload(convert::selector(&f)?),
        wait,
    )
    .await
}

async fn retrieve(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    _q: Params,
    body: Bytes,
) -> ApiResult {
    let start = Instant::now();
    let c = collection(&state, &name)?;
    let body = object_body(&body)?;
    let f = Fields::new(
        &body,
        "retrieve",
        &["ids", "with_payload", "with_vector", "shard_key"],
    )?;
    f.unsupported("shard_key")?;
    let ids = convert::point_ids(
        f.get("ids")
            .ok_or_else(|| bad("Format error in JSON body: ids is required"))?,
        "ids",
    )?;
    let wp = convert::payload_selector(f.get("with_payload"), true)?;
    let wv = convert::vector_selector(f.get("with_vector"))?;
    let named = c.config().vectors.is_named();
    let records = blocking(move || Ok(c.retrieve(&ids, &wp, &wv))).await?;
    Ok(ok(
        start,
        Value::Array(
            records
                .iter()
                .map(|r| convert::record_json(named, r))
                .collect(),
        ),
    ))
}

async fn get_point(
    State(state): State<Arc<AppState>>,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult {
    let start = Instant::now();
    let c = collection(&state, &name)?;
    let id = match id.parse::<u64>() {
        Ok(n) => PointId::Num(n),
        Err(_) => PointId::parse_uuid(&id)
            .ok_or_else(|| bad(format!("Format error in path: `{id}` is not a point id")))?,
    };
    let named = c.config().vectors.is_named();
    let record = blocking(move || {
        Ok(c.retrieve(&[id], &payload::PayloadSelector::All, &VectorSelector::All))
    })
    .await?;
    match record.first() {
        Some(r) => Ok(ok(start, convert::record_json(named, r))),
        None => Err(ApiError::not_found(format!("No point with id {id} found"))),
    }
}

async fn scroll(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    _q: Params,
    body: Bytes,
) -> ApiResult {
    let start = Instant::now();
    let c = collection(&state, &name)?;
    let body = object_body(&body)?;
    let f = Fields::new(
        &body,
        "scroll",
        &[
            "offset",
            "limit",
            "filter",
            "with_payload",
            "with_vector",
            "order_by",
            "shard_key",
        ],
    )?;
    f.unsupported("order_by")?;
    f.unsupported("shard_key")?;
    let from = f.get("offset").map(convert::point_id).transpose()?;
    let limit = convert::limit(&f, "limit", 10)?;
    let filter = convert::filter(f.get("filter"))?;
    let wp = convert::payload_selector(f.get("with_payload"), true)?;
    let wv = convert::vector_selector(f.get("with_vector"))?;
    let named = c.config().vectors.is_named();
    let page = blocking(move || Ok(c.scroll(from, limit, filter.as_deref(), &wp, &wv))).await?;
    Ok(ok(
        start,
        json!({
            "points": page.points.iter().map(|r| convert::record_json(named, r)).collect::<Vec<_>>(),
            "next_page_offset": page.next.map_or(Value::Null, payload::point_id_to_json),
        }),
    ))
}

async fn count(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    _q: Params,
    body: Bytes,
) -> ApiResult {
    let start = Instant::now();
    let c = collection(&state, &name)?;
    let body = object_body(&body)?;
    let f = Fields::new(&body, "count", &["filter", "exact", "shard_key"])?;
    f.unsupported("shard_key")?;
    f.bool("exact", true)?;
    let filter = convert::filter(f.get("filter"))?;
    let shards = state.shard_handles(&c);
    let n = shard_router::count(&shards, filter, Instant::now() + state.timeout).await?;
    Ok(ok(start, json!({"count": n})))
}

async fn create_index(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Params,
    body: Bytes,
) -> ApiResult {
    let start = Instant::now();
    let wait = wait_param(&q, false)?;
    let c = collection(&state, &name)?;
    let body = object_body(&body)?;
    let f = Fields::new(
        &body,
        "create index",
        &["field_name", "field_schema", "field_type"],
    )?;
    let field = f
        .str("field_name")?
        .ok_or_else(|| bad("Format error in JSON body: field_name is required"))?
        .to_string();
    let schema = f
        .get("field_schema")
        .or(f.get("field_type"))
        .cloned()
        .ok_or_else(|| bad("Format error in JSON body: field_schema is required"))?;
    let st = state.clone();
    blocking(move || {
        c.create_payload_index(&field, schema)?;
        st.cache.invalidate(c.name());
        Ok(())
    })
    .await?;
    Ok(ok(
        start,
        json!({"operation_id": 0, "status": if wait { "completed" } else { "acknowledged" }}),
    ))
}

async fn delete_index(
    State(state): State<Arc<AppState>>,
    Path((name, field)): Path<(String, String)>,
    Query(q): Params,
) -> ApiResult {
    let start = Instant::now();
    let wait = wait_param(&q, false)?;
    let c = collection(&state, &name)?;
    blocking(move || Ok(c.delete_payload_index(&field)?)).await?;
    Ok(ok(
        start,
        json!({"operation_id": 0, "status": if wait { "completed" } else { "acknowledged" }}),
    ))
}

/// The fields of Qdrant's `QueryRequest`.
const QUERY_FIELDS: &[&str] = &[
    "query",
    "using",
    "filter",
    "params",
    "score_threshold",
    "limit",
    "offset",
    "with_payload",
    "with_vector",
    "prefetch",
    "lookup_from",
    "shard_key",
];

/// One parsed search: the request for the shards, plus what the response needs.
struct PlannedSearch {
    request: SearchRequest,
    offset: usize,
    metric: quant::Metric,
    /// The point queried by id, left out of its own results.
    exclude: Option<PointId>,
}

/// The variants of Qdrant's `Query` (openapi `components/schemas/Query`).
const QUERY_KINDS: &[&str] = &[
    "nearest",
    "recommend",
    "discover",
    "context",
    "order_by",
    "fusion",
    "rrf",
    "formula",
    "sample",
    "relevance_feedback",
];

fn plan_query(c: &Collection, body: &Value) -> Result<Option<PlannedSearch>, ApiError> {
    let f = Fields::new(body, "query", QUERY_FIELDS)?;
    f.unsupported("prefetch")?;
    f.unsupported("lookup_from")?;
    f.unsupported("shard_key")?;
    let using = f.str("using")?.unwrap_or("").to_string();
    let limit = convert::limit(&f, "limit", 10)?;
    let offset = f.usize("offset", 0, index_core::MAX_LIMIT)?;
    let Some(query) = f.get("query") else {
        return Ok(None);
    };
    let input = match query {
        Value::Object(m) if m.contains_key("nearest") => {
            let qf = Fields::new(query, "query", &["nearest", "mmr"])?;
            qf.unsupported("mmr")?;
            qf.get("nearest").cloned().unwrap_or(Value::Null)
        }
        // A raw sparse vector is a `VectorInput`: plan_search answers it.
        Value::Object(m) if m.contains_key("indices") => query.clone(),
        Value::Object(m) => {
            let kind = m.keys().next().cloned().unwrap_or_default();
            // Qdrant's other query kinds are valid requests we do not serve (501); anything
            // else, such as a `{"text": [..]}` map, is not a query at all (400).
            if QUERY_KINDS.contains(&kind.as_str()) {
                return Err(ApiError::not_implemented(format!(
                    "query `{kind}` is not supported (nearest only)"
                )));
            }
            return Err(bad(format!(
                "Format error in JSON body: query must be a vector, a point id or one of {}, got `{kind}`",
                QUERY_KINDS.join(", ")
            )));
        }
        other => other.clone(),
    };
    plan_search(c, &f, using, &input, limit, offset, true)
}

fn plan_search(
    c: &Collection,
    f: &Fields<'_>,
    using: String,
    input: &Value,
    limit: usize,
    offset: usize,
    payload_default_off: bool,
) -> Result<Option<PlannedSearch>, ApiError> {
    let (size, distance) = c
        .with_config(|cfg| cfg.vectors.get(&using).map(|p| (p.size, p.distance)))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "Wrong input: Not existing vector name error: {using}"
            ))
        })?;
    let metric = distance.metric();
    let (vector, exclude) = match input {
        Value::Array(a) if a.first().is_some_and(Value::is_array) => {
            return Err(ApiError::not_implemented(
                "multivector queries are not supported",
            ));
        }
        Value::Array(_) => (convert::dense_vector(input, "query")?, None),
        Value::Number(_) | Value::String(_) => {
            let id = convert::point_id(input)?;
            let v = c
                .vector_of(id, &using)?
                .ok_or_else(|| ApiError::not_found(format!("No point with id {id} found")))?;
            (v, Some(id))
        }
        Value::Object(m) if m.contains_key("indices") => {
            return Err(ApiError::not_implemented(
                "sparse vector queries are not supported",
            ))
        }
        other => {
            return Err(bad(format!(
                "Format error in JSON body: query must be a vector or a point id, got {other}"
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
    let mut params = convert::search_params(f.get("params"), total)?;
    if let Some(t) = f.f64("score_threshold")? {
        params.max_distance = Some(metric.distance_from_score(t as f32));
    }
    let request = SearchRequest {
        vector_name: using,
        vector,
        filter: convert::filter(f.get("filter"))?,
        params,
        with_payload: convert::payload_selector(f.get("with_payload"), !payload_default_off)?,
        with_vector: convert::vector_selector(f.get("with_vector"))?,
    };
    Ok(Some(PlannedSearch {
        request,
        offset,
        metric,
        exclude,
    }))
}

/// A search answer: the JSON array of scored points, serialised once (and cached as bytes).
type Answer = Arc<Vec<u8>>;

/// Runs a planned search through the cache and the shard fan-out.
async fn run_search(
    state: &Arc<AppState>,
    c: &Arc<Collection>,
    key: Option<Vec<u8>>,
    plan: PlannedSearch,
) -> Result<Answer, ApiError> {
    let name = c.name();
    let epoch = state.cache.epoch(name);
    if let Some(hit) = key.as_ref().and_then(|k| state.cache.get(name, k)) {
        return Ok(hit);
    }
    let started = Instant::now();
    let shards = state.shard_handles(c);
    let limit = plan.request.params.limit - plan.offset - usize::from(plan.exclude.is_some());
    let hits = shard_router::search(
        &shards,
        Arc::new(plan.request),
        plan.metric,
        Instant::now() + state.timeout,
    )
    .await?;
    state
        .metrics
        .observe_search(name, started.elapsed().as_secs_f64());
    let named = c.with_config(|cfg| cfg.vectors.is_named());
    let mut out = Vec::with_capacity(64 + limit * 96);
    out.push(b'[');
    for (i, h) in hits
        .iter()
        .filter(|h| Some(h.record.id) != plan.exclude)
        .skip(plan.offset)
        .take(limit)
        .enumerate()
    {
        if i > 0 {
            out.push(b',');
        }
        convert::write_scored(&mut out, named, h);
    }
    out.push(b']');
    let answer = Arc::new(out);
    if let Some(key) = key {
        let weight = answer.len().min(u32::MAX as usize) as u32;
        state.cache.insert(name, epoch, key, answer.clone(), weight);
    }
    Ok(answer)
}

/// The cache key of a request, or `None` when the cache is off (no key is built then).
fn cached_key(state: &AppState, kind: &str, name: &str, body: &Value) -> Option<Vec<u8>> {
    state
        .cache
        .is_enabled()
        .then(|| cache_key(kind, name, body))
}

fn cache_key(kind: &str, name: &str, body: &Value) -> Vec<u8> {
    let mut k = cache::KeyBuilder::new();
    k.push_str(kind).push_str(name).push_json(body);
    k.finish()
}

/// A query without a vector: points in id order, as Qdrant does.
async fn query_without_vector(c: &Arc<Collection>, body: &Value) -> Result<Value, ApiError> {
    let f = Fields::new(body, "query", QUERY_FIELDS)?;
    let limit = convert::limit(&f, "limit", 10)?;
    let offset = f.usize("offset", 0, index_core::MAX_LIMIT)?;
    let filter = convert::filter(f.get("filter"))?;
    let wp = convert::payload_selector(f.get("with_payload"), false)?;
    let wv = convert::vector_selector(f.get("with_vector"))?;
    let c2 = c.clone();
    let named = c.config().vectors.is_named();
    let page =
        blocking(move || Ok(c2.scroll(None, limit + offset, filter.as_deref(), &wp, &wv))).await?;
    Ok(Value::Array(
        page.points
            .iter()
            .skip(offset)
            .map(|r| {
                let mut v = convert::record_json(named, r);
                v["version"] = json!(0);
                v["score"] = json!(1.0);
                v
            })
            .collect(),
    ))
}

async fn one_query(
    state: &Arc<AppState>,
    c: &Arc<Collection>,
    body: &Value,
) -> Result<Answer, ApiError> {
    // Planning reads the config and, for a query by id, one stored vector: cheap enough to
    // stay on the reactor.
    match plan_query(c, body)? {
        None => {
            let points = query_without_vector(c, body).await?;
            Ok(Arc::new(
                serde_json::to_vec(&points).expect("a Value serialises"),
            ))
        }
        Some(plan) => {
            let key = cached_key(state, "query", c.name(), body);
            run_search(state, c, key, plan).await
        }
    }
}

async fn query(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    _q: Params,
    body: Bytes,
) -> ApiResult {
    let start = Instant::now();
    let c = collection(&state, &name)?;
    let body = object_body(&body)?;
    let points = one_query(&state, &c, &body).await?;
    Ok(ok_raw(start, &[b"{\"points\":", &points, b"}"]))
}

fn batch_list<'a>(body: &'a Value, context: &'static str) -> Result<&'a Vec<Value>, ApiError> {
    let f = Fields::new(body, context, &["searches"])?;
    let list = f
        .get("searches")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("Format error in JSON body: searches must be a list"))?;
    if list.len() > convert::MAX_BATCH_SEARCHES {
        return Err(bad(format!(
            "Validation error in JSON body: at most {} searches per batch",
            convert::MAX_BATCH_SEARCHES
        )));
    }
    Ok(list)
}

async fn query_batch(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    _q: Params,
    body: Bytes,
) -> ApiResult {
    let start = Instant::now();
    let c = collection(&state, &name)?;
    let body = object_body(&body)?;
    let list = batch_list(&body, "query batch")?;
    let answers =
        futures::future::try_join_all(list.iter().map(|q| one_query(&state, &c, q))).await?;
    let mut parts: Vec<&[u8]> = Vec::with_capacity(answers.len() * 3 + 2);
    parts.push(b"[");
    for (i, a) in answers.iter().enumerate() {
        parts.push(if i == 0 {
            b"{\"points\":"
        } else {
            b",{\"points\":"
        });
        parts.push(a);
        parts.push(b"}");
    }
    parts.push(b"]");
    Ok(ok_raw(start, &parts))
}

fn plan_legacy(c: &Collection, body: &Value) -> Result<PlannedSearch, ApiError> {
    let f = Fields::new(
        body,
        "search",
        &[
            "vector",
            "filter",
            "params",
            "limit",
            "offset",
            "with_payload",
            "with_vector",
            "score_threshold",
            "shard_key",
        ],
    )?;
    f.unsupported("shard_key")?;
    if f.get("limit").is_none() {
        return Err(bad("Format error in JSON body: missing field `limit`"));
    }
    let limit = convert::limit(&f, "limit", 10)?;
    let offset = f.usize("offset", 0, index_core::MAX_LIMIT)?;
    let (using, input) = match f.get("vector") {
        Some(v @ Value::Array(_)) => (String::new(), v.clone()),
        Some(Value::Object(m)) => (
            m.get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            m.get("vector").cloned().unwrap_or(Value::Null),
        ),
        _ => {
            return Err(bad(
                "Format error in JSON body: vector must be a list or {name, vector}",
            ))
        }
    };
    if !input.is_array() {
        return Err(ApiError::not_implemented(
            "sparse vector search is not supported",
        ));
    }
    Ok(plan_search(c, &f, using, &input, limit, offset, true)?.expect("vector given"))
}

async fn one_legacy(
    state: &Arc<AppState>,
    c: &Arc<Collection>,
    body: &Value,
) -> Result<Answer, ApiError> {
    let plan = plan_legacy(c, body)?;
    let key = cached_key(state, "search", c.name(), body);
    run_search(state, c, key, plan).await
}

async fn search(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    _q: Params,
    body: Bytes,
) -> ApiResult {
    let start = Instant::now();
    let c = collection(&state, &name)?;
    let body = object_body(&body)?;
    Ok(ok_raw(start, &[&one_legacy(&state, &c, &body).await?]))
}

async fn search_batch(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    _q: Params,
    body: Bytes,
) -> ApiResult {
    let start = Instant::now();
    let c = collection(&state, &name)?;
    let body = object_body(&body)?;
    let list = batch_list(&body, "search batch")?;
    let answers =
        futures::future::try_join_all(list.iter().map(|q| one_legacy(&state, &c, q))).await?;
    let mut parts: Vec<&[u8]> = Vec::with_capacity(answers.len() * 2 + 2);
    parts.push(b"[");
    for (i, a) in answers.iter().enumerate() {
        if i > 0 {
            parts.push(b",");
        }
        parts.push(a);
    }
    parts.push(b"]");
    Ok(ok_raw(start, &parts))
}

async fn create_snapshot(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Params,
) -> ApiResult {
    let start = Instant::now();
    let wait = wait_param(&q, true)?;
    state.storage.get(&name)?;
    let st = state.clone();
    let task = tokio::task::spawn_blocking(move || st.storage.create_snapshot(&name));
    if !wait {
        tokio::spawn(async move {
            if let Ok(Err(e)) = task.await {
                tracing::error!(error = %e, "snapshot failed");
            }
        });
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({"status": "accepted", "time": start.elapsed().as_secs_f64()})),
        )
            .into_response());
    }
    let desc = task
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(ok(start, serde_json::to_value(desc).expect("json")))
}

async fn list_snapshots(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> ApiResult {
    let start = Instant::now();
    let list = state.storage.list_snapshots(&name)?;
    Ok(ok(start, serde_json::to_value(list).expect("json")))
}

async fn delete_snapshot(
    State(state): State<Arc<AppState>>,
    Path((name, snapshot)): Path<(String, String)>,
    _q: Params,
) -> ApiResult {
    let start = Instant::now();
    state.storage.delete_snapshot(&name, &snapshot)?;
    Ok(ok(start, json!(true)))
}

async fn download_snapshot(
    State(state): State<Arc<AppState>>,
    Path((name, snapshot)): Path<(String, String)>,
) -> ApiResult {
    let path = state.storage.snapshot_path(&name, &snapshot)?;
    let file = tokio::fs::File::open(&path).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Service internal error: {e}"),
        )
    })?;
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let stream = tokio_util_stream(file);
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{snapshot}\""),
        )
        .body(stream)
        .expect("valid response"))
}

/// Streams a file in 1 MiB chunks.
fn tokio_util_stream(file: tokio::fs::File) -> Body {
    use tokio::io::AsyncReadExt;
    let stream = futures::stream::unfold(file, |mut f| async move {
        let mut buf = vec![0u8; 1 << 20];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    Body::from_stream(stream)
}

async fn recover_snapshot(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Params,
    body: Bytes,
) -> ApiResult {
    let start = Instant::now();
    let wait = wait_param(&q, true)?;
    let body = object_body(&body)?;
    let f = Fields::new(
        &body,
        "recover",
        &["location", "priority", "checksum", "api_key"],
    )?;
    let location = f
        .str("location")?
        .ok_or_else(|| bad("Format error in JSON body: location is required"))?;
    let path = if let Some(p) = location.strip_prefix("file://") {
        std::path::PathBuf::from(p)
    } else if location.starts_with("http://") || location.starts_with("https://") {
        // Our own download URL: resolve it locally instead of fetching over the network.
        let marker = "/snapshots/";
        let tail = location.rsplit_once(marker).map(|(_, t)| t).unwrap_or("");
        let source = location
            .split("/collections/")
            .nth(1)
            .and_then(|s| s.split('/').next())
            .unwrap_or("");
        if tail.is_empty() || source.is_empty() {
            return Err(ApiError::not_implemented(
                "recovering from a remote URL is not supported; use file://",
            ));
        }
        state.storage.snapshot_path(source, tail)?
    } else {
        std::path::PathBuf::from(location)
    };
    // Only files under the snapshots directory may be read, so the endpoint cannot be used
    // to read arbitrary files of the server.
    let root = state
        .storage
        .snapshots_dir()
        .canonicalize()
        .map_err(|e| bad(e.to_string()))?;
    let real = path.canonicalize().map_err(|_| {
        ApiError::not_found(format!("Snapshot file {} does not exist", path.display()))
    })?;
    if !real.starts_with(&root) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden: snapshots can only be recovered from the server's snapshots directory",
        ));
    }
    let checksum = f.str("checksum")?.map(str::to_string);
    let st = state.clone();
    let task = tokio::task::spawn_blocking(move || {
        let r = st.storage.recover(&name, &real, checksum.as_deref());
        st.cache.invalidate(&name);
        r
    });
    if !wait {
        tokio::spawn(async move {
            if let Ok(Err(e)) = task.await {
                tracing::error!(error = %e, "snapshot recovery failed");
            }
        });
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({"status": "accepted", "time": start.elapsed().as_secs_f64()})),
        )
            .into_response());
    }
    task.await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(ok(start, json!(true)))
}

/// The shards of a collection as [`Shard`]s.
pub fn shard_handles(pool: &shard_router::SearchPool, c: &Collection) -> Vec<Arc<dyn Shard>> {
    c.shards()
        .iter()
        .map(|s| Arc::new(LocalShardHandle::new(s.clone(), pool.clone())) as Arc<dyn Shard>)
        .collect()
}
