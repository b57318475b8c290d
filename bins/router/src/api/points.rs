//! Points: upsert, delete, payload writes, retrieve, scroll, count.

use super::{blocking, collection, ok, ApiResult, Body, Params};
use crate::convert::{self, bad};
use crate::error::ApiError;
use crate::model::response::{
    CountResult, Id, OrderValue, Record, ScrollResult, UpdateResult, UpdateStatus,
};
use crate::model::{self, CountRequest, PointRequest, ReadParams, ScrollRequest, WriteParams};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use index_core::PointId;
use shard_router::RetrieveRequest;
use std::sync::Arc;
use std::time::Instant;
use storage::{Update, VectorSelector};

/// A points write by its endpoint: with its REST body, all a replica needs to apply it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteKind {
    /// `PUT /points`.
    Upsert,
    /// `POST /points/delete`.
    Delete,
    /// `POST /points/payload`.
    SetPayload,
    /// `PUT /points/payload`.
    OverwritePayload,
    /// `POST /points/payload/delete`.
    DeletePayload,
    /// `POST /points/payload/clear`.
    ClearPayload,
    /// `PUT /points/vectors`.
    UpdateVectors,
    /// `POST /points/vectors/delete`.
    DeleteVectors,
    /// `POST /points/batch`.
    Batch,
}

impl WriteKind {
    /// The update a REST body of this endpoint asks for (a 400 naming the bad field).
    pub fn update(self, body: &[u8]) -> Result<convert::KeyedUpdate, ApiError> {
        use model::parse;
        match self {
            WriteKind::Upsert => convert::upsert(parse(body)?),
            WriteKind::Delete => convert::delete(parse(body)?),
            WriteKind::SetPayload => convert::set_payload(parse(body)?),
            WriteKind::OverwritePayload => convert::overwrite_payload(parse(body)?),
            WriteKind::DeletePayload => convert::delete_payload(parse(body)?),
            WriteKind::ClearPayload => convert::clear_payload(parse(body)?),
            WriteKind::UpdateVectors => convert::update_vectors(parse(body)?),
            WriteKind::DeleteVectors => convert::delete_vectors(parse(body)?),
            WriteKind::Batch => Ok((convert::batch(parse(body)?)?, None)),
        }
    }
}

/// Applies the write a REST body asks for (`kind`'s endpoint); its operation id. On a
/// replica it is proposed to the replica set, once checked here (a bad body is refused
/// before it reaches the log).
pub(crate) async fn write_body(
    state: &Arc<AppState>,
    name: &str,
    kind: WriteKind,
    body: &[u8],
    wait: bool,
) -> Result<u64, ApiError> {
    let (update, keys) = kind.update(body)?;
    if let Some(r) = state.replica() {
        if let Some(k) = keys {
            return Err(shard_router::remote::not_keyed(name, &k).into());
        }
        let command = crate::replica::Command::Points {
            collection: name.to_string(),
            kind,
            body: replication::Blob(body.to_vec()),
        };
        let answer = r.propose(&command, Instant::now() + state.timeout).await?;
        return Ok(answer.as_u64().unwrap_or(0));
    }
    write(state, name, update, keys.as_ref(), wait).await
}

/// Applies a write, then makes every cached answer of the collection unreachable before
/// acknowledging (also when storage applied it and then reported a missing point).
async fn apply_update(
    state: &Arc<AppState>,
    name: &str,
    kind: WriteKind,
    body: &[u8],
    params: &WriteParams,
) -> ApiResult {
    let start = Instant::now();
    let wait = model::Flag::or(params.wait, false);
    let seq = write_body(state, name, kind, body, wait).await?;
    Ok(ok(
        start,
        &UpdateResult {
            operation_id: seq,
            status: UpdateStatus::waited(wait),
        },
    ))
}

/// Applies an update on a blocking thread; the collection's cached answers are invalidated
/// whatever the outcome. Returns the operation id. `keys` are the shard keys it names (a
/// collection sharded by key, in cluster mode).
pub(crate) async fn write(
    state: &Arc<AppState>,
    name: &str,
    update: Update,
    keys: Option<&shard_router::remote::keys::KeySelection>,
    wait: bool,
) -> Result<u64, ApiError> {
    let c = collection(state, name)?;
    let st = state.clone();
    // The collection's own name: `name` may be an alias, and the cache keys real names.
    let name = c.name().to_string();
    if let Some(cluster) = state.cluster() {
        let deadline = Instant::now() + state.timeout;
        // Checked whole against the catalog's configuration first: the nodes apply their
        // parts independently, so a bad point must refuse the update before any is sent.
        let (c2, u2) = (c.clone(), update);
        let update = blocking(move || {
            c2.check_update(&u2)?;
            Ok(u2)
        })
        .await?;
        let field = c.with_config(shard_router::remote::keys::FieldPlacement::of);
        let r = cluster
            .write(&name, update, keys, field.as_ref(), wait, deadline)
            .await;
        state.cache.invalidate(&name);
        return Ok(r?);
    }
    // A collection of this process places by hash: a shard key names nothing here.
    if let Some(k) = keys {
        return Err(shard_router::remote::not_keyed(&name, k).into());
    }
    blocking(move || {
        let r = c.update(update, wait);
        st.cache.invalidate(&name);
        Ok(r?)
    })
    .await
}

pub async fn upsert(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<WriteParams>,
    body: Bytes,
) -> ApiResult {
    apply_update(&state, &name, WriteKind::Upsert, &body, &params).await
}

/// `PUT /points/vectors`.
pub async fn update_vectors(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<WriteParams>,
    body: Bytes,
) -> ApiResult {
    apply_update(&state, &name, WriteKind::UpdateVectors, &body, &params).await
}

/// `POST /points/vectors/delete`.
pub async fn delete_vectors(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<WriteParams>,
    body: Bytes,
) -> ApiResult {
    apply_update(&state, &name, WriteKind::DeleteVectors, &body, &params).await
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<WriteParams>,
    body: Bytes,
) -> ApiResult {
    apply_update(&state, &name, WriteKind::Delete, &body, &params).await
}

pub async fn set_payload(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<WriteParams>,
    body: Bytes,
) -> ApiResult {
    apply_update(&state, &name, WriteKind::SetPayload, &body, &params).await
}

pub async fn overwrite_payload(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<WriteParams>,
    body: Bytes,
) -> ApiResult {
    apply_update(&state, &name, WriteKind::OverwritePayload, &body, &params).await
}

pub async fn delete_payload(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<WriteParams>,
    body: Bytes,
) -> ApiResult {
    apply_update(&state, &name, WriteKind::DeletePayload, &body, &params).await
}

pub async fn clear_payload(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<WriteParams>,
    body: Bytes,
) -> ApiResult {
    apply_update(&state, &name, WriteKind::ClearPayload, &body, &params).await
}

/// `POST /points/batch`: the operations applied in order as one logged update; one
/// `UpdateResult` per operation, all with the same operation id.
pub async fn batch(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<WriteParams>,
    body: Bytes,
) -> ApiResult {
    let start = Instant::now();
    let n = batch_len(&body)?;
    let wait = model::Flag::or(params.wait, false);
    let seq = write_body(&state, &name, WriteKind::Batch, &body, wait).await?;
    let result = UpdateResult {
        operation_id: seq,
        status: UpdateStatus::waited(wait),
    };
    Ok(ok(start, &vec![result; n]))
}

/// The operations a batch body holds (each answers an `UpdateResult`).
pub(crate) fn batch_len(body: &[u8]) -> Result<usize, ApiError> {
    #[derive(serde::Deserialize)]
    struct Operations {
        operations: Vec<serde::de::IgnoredAny>,
    }
    Ok(model::parse::<Operations>(body).map_or(0, |o| o.operations.len()))
}

pub async fn retrieve(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<ReadParams>,
    Body(body): Body<PointRequest>,
) -> ApiResult {
    let start = Instant::now();
    let (named, records) =
        retrieve_records(&state, &name, body, params.deadline(state.timeout)).await?;
    let out: Vec<Record<'_>> = records.iter().map(|r| Record::of(named, r)).collect();
    Ok(ok(start, &out))
}

/// The records of the ids asked for (each once), and whether the collection answers with
/// named vectors.
pub(crate) async fn retrieve_records(
    state: &Arc<AppState>,
    name: &str,
    body: PointRequest,
    deadline: Instant,
) -> Result<(bool, Vec<storage::Record>), ApiError> {
    let c = collection(state, name)?;
    let keys = convert::shard_keys(&body.shard_key)?;
    let ids = convert::point_ids(body.ids, "ids")?;
    let req = Arc::new(RetrieveRequest {
        with_payload: convert::payload_selector(body.with_payload, true),
        with_vector: convert::vector_selector(body.with_vector),
    });
    let named = c.with_config(|cfg| cfg.is_named_output());
    let shards = state.shards_for(&c, keys.as_ref(), None).await?;
    Ok((
        named,
        shard_router::retrieve(&shards, &ids, req, deadline).await?,
    ))
}

pub async fn get_point(
    State(state): State<Arc<AppState>>,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult {
    let start = Instant::now();
    let c = collection(&state, &name)?;
    let id = match id.parse::<u64>() {
        Ok(n) => PointId::Num(n),
        Err(_) => payload::point_id_from_str(&id)
            .ok_or_else(|| bad(format!("Format error in path: `{id}` is not a point id")))?,
    };
    let named = c.with_config(|cfg| cfg.is_named_output());
    let req = Arc::new(RetrieveRequest {
        with_payload: payload::PayloadSelector::All,
        with_vector: VectorSelector::All,
    });
    let shards = state.shard_handles(&c).await?;
    let record =
        shard_router::retrieve(&shards, &[id], req, Instant::now() + state.timeout).await?;
    match record.first() {
        Some(r) => Ok(ok(start, &Record::of(named, r))),
        None => Err(ApiError::not_found(format!("No point with id {id} found"))),
    }
}

pub async fn scroll(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<ReadParams>,
    Body(body): Body<ScrollRequest>,
) -> ApiResult {
    let start = Instant::now();
    let page = scroll_page(&state, &name, body, params.deadline(state.timeout)).await?;
    Ok(ok(
        start,
        &ScrollResult {
            points: page
                .points
                .iter()
                .map(|(r, v)| Record {
                    order_value: *v,
                    ..Record::of(page.named, r)
                })
                .collect(),
            next_page_offset: page.next.map(Id),
        },
    ))
}

/// A page of a scroll.
pub(crate) struct ScrollPage {
    /// Whether the collection answers with named vectors.
    pub named: bool,
    /// The records, with the value an `order_by` scroll ordered each by.
    pub points: Vec<(storage::Record, Option<OrderValue>)>,
    /// Where the next page starts (none with `order_by`: it starts from the last value).
    pub next: Option<PointId>,
}

/// One page of a scroll, by id or (with `order_by`) by a payload value.
pub(crate) async fn scroll_page(
    state: &Arc<AppState>,
    name: &str,
    mut body: ScrollRequest,
    deadline: Instant,
) -> Result<ScrollPage, ApiError> {
    let c = collection(state, name)?;
    let keys = convert::shard_keys(&body.shard_key)?;
    let shards = state
        .shards_for(&c, keys.as_ref(), body.filter.as_ref().map(|f| &*f.0))
        .await?;
    if let Some(order) = body.order_by.take() {
        return scroll_ordered(&c, &shards, order, body, deadline).await;
    }
    let req = Arc::new(shard_router::ScrollRequest {
        from: body.offset.map(|id| id.0),
        limit: convert::limit(body.limit, "limit", 10)?,
        filter: body.filter.map(|f| f.0),
        with_payload: convert::payload_selector(body.with_payload, true),
        with_vector: convert::vector_selector(body.with_vector),
    });
    let named = c.with_config(|cfg| cfg.is_named_output());
    let page = shard_router::scroll(&shards, req, deadline).await?;
    Ok(ScrollPage {
        named,
        points: page.points.into_iter().map(|r| (r, None)).collect(),
        next: page.next,
    })
}

/// `OrderByInterface` to storage's order.
pub(super) fn order_by(order: model::OrderByInput) -> Result<storage::OrderBy, ApiError> {
    let (key, direction, start_from) = match order {
        model::OrderByInput::Key(key) => (key, None, None),
        model::OrderByInput::Full(o) => (o.key, o.direction, o.start_from),
    };
    let key_path = payload::KeyPath::parse(&key)
        .map_err(|e| bad(format!("Wrong input: order_by.key `{key}`: {e}")))?;
    let start_from = match start_from {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(storage::OrderValue::of(&v).ok_or_else(|| {
            bad(format!(
                "Wrong input: order_by.start_from {v} is neither a number nor a datetime"
            ))
        })?),
    };
    Ok(storage::OrderBy {
        key: key_path,
        descending: direction == Some(model::Direction::Desc),
        start_from,
    })
}

/// A scroll with `order_by`: points in the order of a payload value, as Qdrant does (a
/// point once per distinct value, `order_value` on each, no next page offset: the next page
/// starts from the last value).
async fn scroll_ordered(
    c: &Arc<storage::Collection>,
    shards: &[Arc<dyn shard_router::Shard>],
    order: model::OrderByInput,
    body: ScrollRequest,
    deadline: Instant,
) -> Result<ScrollPage, ApiError> {
    if body.offset.is_some() {
        return Err(bad(
            "Wrong input: offset cannot be used with order_by; use order_by.start_from",
        ));
    }
    let req = Arc::new(shard_router::OrderedScrollRequest {
        order: order_by(order)?,
        limit: convert::limit(body.limit, "limit", 10)?,
        filter: body.filter.map(|f| f.0),
        with_payload: convert::payload_selector(body.with_payload, true),
        with_vector: convert::vector_selector(body.with_vector),
    });
    let named = c.with_config(|cfg| cfg.is_named_output());
    let page = shard_router::scroll_ordered(shards, req, deadline).await?;
    Ok(ScrollPage {
        named,
        points: page
            .into_iter()
            .map(|(r, v)| (r, Some(OrderValue::from(v))))
            .collect(),
        next: None,
    })
}

pub async fn count(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<ReadParams>,
    Body(body): Body<CountRequest>,
) -> ApiResult {
    let start = Instant::now();
    let count = count_points(&state, &name, body, params.deadline(state.timeout)).await?;
    Ok(ok(start, &CountResult { count }))
}

/// How many points match the request's filter (always exact).
pub(crate) async fn count_points(
    state: &Arc<AppState>,
    name: &str,
    body: CountRequest,
    deadline: Instant,
) -> Result<usize, ApiError> {
    let c = collection(state, name)?;
    let keys = convert::shard_keys(&body.shard_key)?;
    let filter = body.filter.map(|f| f.0);
    let shards = state
        .shards_for(&c, keys.as_ref(), filter.as_deref())
        .await?;
    Ok(shard_router::count(&shards, filter, deadline).await?)
}

/// `POST /collections/{name}/facet`: how many points matching the filter have each value of
/// a payload key (strings, integers, booleans; arrays expanded; a point counts once per
/// value), most frequent first, ties by value. Exact, with or without a payload index.
pub async fn facet(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<ReadParams>,
    Body(body): Body<model::FacetRequest>,
) -> ApiResult {
    let start = Instant::now();
    let keys = convert::shard_keys(&body.shard_key)?;
    let limit = convert::limit(body.limit, "limit", 10)?;
    let key = payload::KeyPath::parse(&body.key)
        .map_err(|e| bad(format!("Wrong input: key `{}`: {e}", body.key)))?;
    let c = collection(&state, &name)?;
    let shards = state
        .shards_for(&c, keys.as_ref(), body.filter.as_ref().map(|f| &*f.0))
        .await?;
    let counts = shard_router::facet(
        &shards,
        Arc::new(key),
        body.filter.map(|f| f.0),
        params.deadline(state.timeout),
    )
    .await?;
    // A UUID is one value however it is spelt: counted under its hyphenated form.
    let mut merged: std::collections::HashMap<String, (serde_json::Value, usize)> =
        std::collections::HashMap::new();
    for (value, n) in counts {
        let value = match &value {
            serde_json::Value::String(s) => match payload::point_id_from_str(s) {
                Some(id) => serde_json::Value::String(id.to_string()),
                None => value,
            },
            _ => value,
        };
        merged
            .entry(value.to_string())
            .or_insert_with(|| (value, 0))
            .1 += n;
    }
    let mut hits: Vec<(serde_json::Value, usize)> = merged.into_values().collect();
    hits.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| facet_order(&a.0, &b.0)));
    hits.truncate(limit);
    let hits: Vec<FacetValueHit> = hits
        .into_iter()
        .map(|(value, count)| FacetValueHit { value, count })
        .collect();
    Ok(ok(start, &FacetResponse { hits }))
}

/// Values ascending: booleans, then integers, then strings.
fn facet_order(a: &serde_json::Value, b: &serde_json::Value) -> std::cmp::Ordering {
    use serde_json::Value;
    let rank = |v: &Value| match v {
        Value::Bool(_) => 0,
        Value::Number(_) => 1,
        _ => 2,
    };
    rank(a).cmp(&rank(b)).then_with(|| match (a, b) {
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => x.as_u64().cmp(&y.as_u64()),
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => std::cmp::Ordering::Equal,
    })
}

#[derive(serde::Serialize)]
struct FacetValueHit {
    value: serde_json::Value,
    count: usize,
}

#[derive(serde::Serialize)]
struct FacetResponse {
    hits: Vec<FacetValueHit>,
}
