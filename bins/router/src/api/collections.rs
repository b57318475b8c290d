//! Collections: create, read, update, delete, list, exists; payload indexes.

use super::{blocking, collection, ok, ApiResult, Body, Params};
use crate::convert;
use crate::error::ApiError;
use crate::model::response::{
    AliasDescription, CollectionDescription, CollectionExistence, CollectionInfo, CollectionStatus,
    CollectionsAliasesResponse, CollectionsResponse, OptimizersStatus, UpdateResult, UpdateStatus,
};
use crate::model::{self, CreateFieldIndex, ManageParams, UpdateCollection, WriteParams};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use std::sync::Arc;
use std::time::Instant;

pub async fn list(State(state): State<Arc<AppState>>) -> ApiResult {
    let start = Instant::now();
    let collections = state
        .storage
        .list()
        .into_iter()
        .map(|name| CollectionDescription { name })
        .collect();
    Ok(ok(start, &CollectionsResponse { collections }))
}

pub async fn exists(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> ApiResult {
    let start = Instant::now();
    // A collection or an alias of one, as Qdrant answers.
    let exists = state.storage.get(&name).is_ok();
    Ok(ok(start, &CollectionExistence { exists }))
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    _params: Params<ManageParams>,
    body: Bytes,
) -> ApiResult {
    let start = Instant::now();
    create_collection(&state, name, &body).await?;
    Ok(ok(start, &true))
}

/// Creates a collection from a REST create body.
pub(crate) async fn create_collection(
    state: &Arc<AppState>,
    name: String,
    body: &[u8],
) -> Result<(), ApiError> {
    let config = parse_create(body, state.cluster().is_some())?;
    if let Some(r) = state.replica() {
        let command = crate::replica::Command::CreateCollection {
            name,
            body: replication::Blob(body.to_vec()),
        };
        r.propose(&command, Instant::now() + state.timeout).await?;
        return Ok(());
    }
    let st = state.clone();
    let (n, cfg) = (name.clone(), config.clone());
    blocking(move || {
        st.storage.create(&n, cfg)?;
        st.cache.invalidate(&n);
        Ok(())
    })
    .await?;
    if let Some(cluster) = state.cluster().cloned() {
        // The catalog entry first (it claims the name, and refuses one taken); then the
        // nodes, and the entry goes again when they refuse. On a task of its own, so that a
        // request given up on (its time limit, a client gone) cannot stop it half way.
        let deadline = Instant::now() + state.timeout;
        let st = state.clone();
        return to_completion(async move {
            if let Err(e) = cluster.create_collection(&name, &config, deadline).await {
                blocking(move || Ok(st.storage.delete(&name)?)).await?;
                return Err(ApiError::from(e));
            }
            Ok(())
        })
        .await;
    }
    Ok(())
}

/// The configuration a REST create body asks for, checked (`in_cluster`: shard keys are
/// served).
pub(crate) fn parse_create(
    body: &[u8],
    in_cluster: bool,
) -> Result<storage::CollectionConfig, ApiError> {
    // The create body is storage's own config type: it is stored and echoed as sent.
    let config: storage::CollectionConfig = model::parse(body)?;
    config.validate()?;
    // As Qdrant: copies and acknowledgements are counted from one (a Qdrant cluster behind
    // a cluster router would refuse 0 itself, after the router had made its own record).
    for (field, value) in [
        ("replication_factor", config.replication_factor),
        ("write_consistency_factor", config.write_consistency_factor),
    ] {
        if value == Some(0) {
            return Err(ApiError::bad_request(format!(
                "Validation error in JSON body: {field}: value 0 invalid, must be 1 or larger"
            )));
        }
    }
    if config.sharding_method.as_deref() == Some("custom") && !in_cluster {
        return Err(ApiError::not_implemented(
            "Not implemented: sharding_method `custom` (shard keys) is served in cluster mode \
             (--cluster-nodes): a router holding its shards in process places points by hash",
        ));
    }
    Ok(config)
}

/// Runs a change of the nodes on a task of its own, so that a request given up on (its time
/// limit, a client gone) cannot stop it half way; its answer, or a 500 if the task died.
async fn to_completion<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::spawn(work).await.map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("Service internal error: {e}"),
        )
    })?
}

pub async fn update(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    _params: Params<ManageParams>,
    raw: Bytes,
) -> ApiResult {
    let start = Instant::now();
    let body: UpdateCollection = model::parse(&raw)?;
    state.local_only("updating a collection's parameters is")?;
    let c = collection(&state, &name)?;
    convert::refuse_if_set(&body.sparse_vectors, "sparse_vectors", "update collection")?;
    if let Some(r) = state.replica() {
        let command = crate::replica::Command::UpdateCollection {
            name,
            body: replication::Blob(raw.to_vec()),
        };
        r.propose(&command, Instant::now() + state.timeout).await?;
        return Ok(ok(start, &true));
    }
    blocking(move || apply_collection_update(&c, body)).await?;
    Ok(ok(start, &true))
}

/// Changes a collection's parameters as a `PATCH /collections/{name}` body asks.
pub(crate) fn apply_collection_update(
    c: &storage::Collection,
    body: UpdateCollection,
) -> Result<(), ApiError> {
    convert::refuse_if_set(&body.sparse_vectors, "sparse_vectors", "update collection")?;
    {
        c.update_config(|cfg| {
            if let Some(q) = body.quantization_config {
                cfg.quantization_config = q.into_config();
            }
            for (name, diff) in body.vectors.into_iter().flatten() {
                let params = cfg.vectors.get_mut(&name).ok_or_else(|| {
                    storage::StorageError::InvalidConfig(format!(
                        "vectors.{name}: Not existing vector name error: {name}"
                    ))
                })?;
                if let Some(h) = diff.hnsw_config {
                    let unset = serde_json::to_value(&h).is_ok_and(|v| v == serde_json::json!({}));
                    params.hnsw_config =
                        (!unset).then(|| h.over(&params.hnsw_config.clone().unwrap_or_default()));
                }
                if let Some(q) = diff.quantization_config {
                    params.quantization_config = q.into_config();
                }
                if let Some(on_disk) = diff.on_disk {
                    params.on_disk = Some(on_disk);
                }
            }
            if let Some(o) = body.optimizers_config {
                let base = cfg.optimizers_config.clone().unwrap_or_default();
                cfg.optimizers_config = Some(o.over(&base));
            }
            if let Some(h) = body.hnsw_config {
                cfg.hnsw_config = Some(h.over(&cfg.hnsw_config.clone().unwrap_or_default()));
            }
            if let Some(p) = body.params {
                if let Some(r) = p.replication_factor {
                    cfg.replication_factor = Some(r);
                }
                if let Some(w) = p.write_consistency_factor {
                    cfg.write_consistency_factor = Some(w);
                }
                if let Some(d) = p.on_disk_payload {
                    cfg.on_disk_payload = Some(d);
                }
            }
            if let Some(s) = body.strict_mode_config {
                cfg.strict_mode_config = Some(s);
            }
            // Merged into what is there, as Qdrant does; a key set to null goes.
            match body.metadata {
                None | Some(serde_json::Value::Null) => {}
                Some(serde_json::Value::Object(changes)) => {
                    let mut merged = match cfg.metadata.take() {
                        Some(serde_json::Value::Object(m)) => m,
                        _ => serde_json::Map::new(),
                    };
                    for (k, v) in changes {
                        if v.is_null() {
                            merged.remove(&k);
                        } else {
                            merged.insert(k, v);
                        }
                    }
                    cfg.metadata =
                        (!merged.is_empty()).then_some(serde_json::Value::Object(merged));
                }
                Some(_) => {
                    return Err(storage::StorageError::InvalidConfig(
                        "metadata: expected an object".into(),
                    ))
                }
            }
            Ok(())
        })?;
        Ok(())
    }
}

pub async fn info(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> ApiResult {
    let start = Instant::now();
    let info = collection_info(&state, &name).await?;
    Ok(ok(start, &info))
}

/// A collection's status, counts, configuration and payload schema.
pub(crate) async fn collection_info(
    state: &Arc<AppState>,
    name: &str,
) -> Result<CollectionInfo, ApiError> {
    let c = collection(state, name)?;
    // In cluster mode the points are on the nodes: their state and counts, added up.
    let remote = match state.cluster() {
        Some(cluster) => {
            let deadline = Instant::now() + state.timeout;
            Some(cluster.collection_state(c.name(), deadline).await?)
        }
        None => None,
    };
    blocking(move || {
        let stats = c.stats();
        let config = c.config();
        let (optimizer_error, optimizing, points, indexed, segments) = match remote {
            Some(r) => (
                r.optimizer_error
                    .or((r.status == 2).then(|| "a node reports red".into())),
                r.status == 1,
                r.points as usize,
                r.indexed_vectors as usize,
                r.segments as usize,
            ),
            None => (
                stats.optimizer_error,
                stats.optimizing,
                stats.points,
                stats.indexed_points * config.vectors.params().len(),
                stats.segments,
            ),
        };
        let status = if optimizer_error.is_some() {
            CollectionStatus::Red
        } else if optimizing {
            CollectionStatus::Yellow
        } else {
            CollectionStatus::Green
        };
        Ok(CollectionInfo {
            status,
            optimizer_status: optimizer_error.map_or(OptimizersStatus::Ok, OptimizersStatus::Error),
            indexed_vectors_count: indexed,
            points_count: points,
            segments_count: segments,
            config: convert::collection_config(&config),
            payload_schema: c.payload_schema(),
        })
    })
    .await
}

pub async fn remove(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    _params: Params<ManageParams>,
) -> ApiResult {
    let start = Instant::now();
    let existed = delete_collection(&state, name).await?;
    Ok(ok(start, &existed))
}

/// Deletes a collection (and forgets its cached answers, shard handles and metrics);
/// whether it existed.
pub(crate) async fn delete_collection(
    state: &Arc<AppState>,
    name: String,
) -> Result<bool, ApiError> {
    if let Some(r) = state.replica() {
        let command = crate::replica::Command::DeleteCollection { name };
        let existed = r.propose(&command, Instant::now() + state.timeout).await?;
        return Ok(existed.as_bool().unwrap_or(false));
    }
    // The nodes first: a collection the catalog no longer lists but a node still holds
    // could not be deleted through the router again. On a task of its own, as a create.
    let on_nodes = match state.cluster().cloned() {
        Some(cluster) => {
            // A collection the catalog holds sharded by key is deleted as one (every
            // `name@...` on the nodes), even when its keys were never found.
            let custom = state
                .storage
                .get(&name)
                .ok()
                .filter(|c| c.name() == name)
                .map(|c| c.config())
                .filter(|cfg| cfg.sharding_method.as_deref() == Some("custom"));
            if let Some(cfg) = custom {
                cluster.add_keyed(&name, cfg.shard_region_field.is_some());
            }
            let deadline = Instant::now() + state.timeout;
            let n = name.clone();
            to_completion(async move { Ok(cluster.delete_collection(&n, deadline).await?) }).await?
        }
        None => false,
    };
    let st = state.clone();
    blocking(move || {
        let existed = st.storage.delete(&name)?;
        st.cache.invalidate(&name);
        st.shards.forget(&name);
        st.metrics.forget_collection(&name);
        Ok(existed || on_nodes)
    })
    .await
}

pub async fn create_index(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Params(params): Params<WriteParams>,
    Body(body): Body<CreateFieldIndex>,
) -> ApiResult {
    let start = Instant::now();
    let wait = model::Flag::or(params.wait, false);
    create_payload_index(&state, &name, body).await?;
    Ok(index_changed(start, wait))
}

/// Creates (or replaces) a payload index.
pub(crate) async fn create_payload_index(
    state: &Arc<AppState>,
    name: &str,
    body: CreateFieldIndex,
) -> Result<(), ApiError> {
    let schema = body
        .field_schema
        .or(body.field_type)
        .ok_or_else(|| convert::bad("Format error in JSON body: field_schema is required"))?;
    let field = body.field_name;
    if let Some(r) = state.replica() {
        payload::FieldSchema::from_json(&schema)
            .map_err(|e| convert::bad(format!("Wrong input: field_schema: {e}")))?;
        // The name as given: an alias is resolved where the command is applied, in the
        // log's order.
        let command = crate::replica::Command::CreateIndex {
            collection: name.to_string(),
            field,
            schema,
        };
        r.propose(&command, Instant::now() + state.timeout).await?;
        return Ok(());
    }
    let c = collection(state, name)?;
    if let Some(cluster) = state.cluster() {
        let deadline = Instant::now() + state.timeout;
        let kind = payload::FieldSchema::from_json(&schema)
            .map_err(|e| convert::bad(format!("Wrong input: field_schema: {e}")))?;
        if schema
            .as_object()
            .is_some_and(|o| o.keys().any(|k| k != "type"))
        {
            return Err(ApiError::not_implemented(
                "Not implemented: payload index parameters (beyond `type`) are not yet carried \
                 to the nodes of a cluster",
            ));
        }
        let field_type = field_type_pb(kind);
        cluster
            .create_field_index(c.name(), &field, field_type, deadline)
            .await?;
    }
    let st = state.clone();
    blocking(move || {
        c.create_payload_index(&field, schema)?;
        st.cache.invalidate(c.name());
        Ok(())
    })
    .await
}

pub async fn delete_index(
    State(state): State<Arc<AppState>>,
    Path((name, field)): Path<(String, String)>,
    Params(params): Params<WriteParams>,
) -> ApiResult {
    let start = Instant::now();
    let wait = model::Flag::or(params.wait, false);
    delete_payload_index(&state, &name, field).await?;
    Ok(index_changed(start, wait))
}

/// Drops a payload index.
pub(crate) async fn delete_payload_index(
    state: &Arc<AppState>,
    name: &str,
    field: String,
) -> Result<(), ApiError> {
    if let Some(r) = state.replica() {
        let command = crate::replica::Command::DeleteIndex {
            collection: name.to_string(),
            field,
        };
        r.propose(&command, Instant::now() + state.timeout).await?;
        return Ok(());
    }
    let c = collection(state, name)?;
    if let Some(cluster) = state.cluster() {
        let deadline = Instant::now() + state.timeout;
        cluster
            .delete_field_index(c.name(), &field, deadline)
            .await?;
    }
    let st = state.clone();
    blocking(move || {
        c.delete_payload_index(&field)?;
        st.cache.invalidate(c.name());
        Ok(())
    })
    .await
}

/// `PUT /collections/{name}/shards`: a new shard key, its shards created on its nodes.
pub async fn create_shard_key(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    _params: Params<ManageParams>,
    Body(body): Body<model::CreateShardingKey>,
) -> ApiResult {
    let start = Instant::now();
    add_shard_key(&state, &name, body).await?;
    Ok(ok(start, &true))
}

/// The cluster and the collection sharded by key that `name` names.
fn keyed_collection(
    state: &AppState,
    name: &str,
) -> Result<(Arc<shard_router::remote::Cluster>, Arc<storage::Collection>), ApiError> {
    let c = collection(state, name)?;
    match state.cluster() {
        Some(cluster) if cluster.is_keyed(c.name()) => Ok((cluster.clone(), c)),
        _ => Err(convert::bad(format!(
            "Bad request: collection `{}` is not sharded by key (sharding_method: custom)",
            c.name()
        ))),
    }
}

/// Creates a shard key from a REST body.
pub(crate) async fn add_shard_key(
    state: &Arc<AppState>,
    name: &str,
    body: model::CreateShardingKey,
) -> Result<(), ApiError> {
    use shard_router::remote::keys;
    let (cluster, c) = keyed_collection(state, name)?;
    let key = keys::ShardKey::from_json(&body.shard_key)
        .map_err(|e| convert::bad(format!("Validation error in JSON body: shard_key: {e}")))?;
    if body.replication_factor.is_some_and(|r| r != 1) {
        return Err(ApiError::not_implemented(
            "Not implemented: a shard key's own replication_factor (a key's nodes keep as many \
             copies as they are: a replica set, or a Qdrant cluster with the collection's \
             replication_factor)",
        ));
    }
    if body
        .initial_state
        .as_deref()
        .is_some_and(|s| !s.eq_ignore_ascii_case("active"))
    {
        return Err(ApiError::not_implemented(
            "Not implemented: initial_state other than Active",
        ));
    }
    let region = body
        .region
        .as_ref()
        .map(shard_router::remote::regions::Region::from_json)
        .transpose()
        .map_err(|e| convert::bad(format!("Validation error in JSON body: {e}")))?;
    let config = c.config();
    let shards = body.shards_number.or(config.shard_number).unwrap_or(1) as usize;
    let group = keys::place_key(
        &key,
        shards,
        body.placement.as_deref(),
        cluster.nodes().len(),
    )
    .map_err(|e| convert::bad(format!("Bad request: {e}")))?;
    // New keys get the payload indexes the collection has.
    let indexes = indexes_pb(&c);
    let deadline = Instant::now() + state.timeout;
    // A region must not take over locations points already lie at: they stay under the keys
    // they were placed by, and an upsert of one of them again would write a second copy
    // under the new key.
    if let (Some(r), Some(field)) = (&region, config.shard_region_field.as_deref()) {
        if let Some((id, at)) = first_point_in(state, c.name(), r, field, deadline).await? {
            return Err(convert::bad(format!(
                "Bad request: region: point {id} of collection `{}` already lies in it (lat \
                 {}, lon {}) under another shard key; points do not move between keys: \
                 create regions before writing points there, or delete the points in it first",
                c.name(),
                at.lat,
                at.lon
            )));
        }
    }
    let n = c.name().to_string();
    let st = state.clone();
    to_completion(async move {
        let r = cluster
            .create_shard_key(
                &n,
                &config,
                shard_router::remote::NewKey { key, group, region },
                &indexes,
                deadline,
            )
            .await;
        st.cache.invalidate(&n);
        Ok(r?)
    })
    .await
}

/// The first point of collection `name` whose location in `field` `region` holds, looked for
/// a page at a time among the points the region's covering filter passes (its bounds).
async fn first_point_in(
    state: &Arc<AppState>,
    name: &str,
    region: &shard_router::remote::regions::Region,
    field: &str,
    deadline: Instant,
) -> Result<Option<(serde_json::Value, payload::GeoPoint)>, ApiError> {
    let mut body = serde_json::json!({"filter": region.covering_filter(field), "limit": 1000,
                                      "with_payload": [field], "with_vector": false});
    loop {
        let req: model::ScrollRequest = model::parse(body.to_string().as_bytes())?;
        let page = super::points::scroll_page(state, name, req, deadline).await?;
        for (record, _) in &page.points {
            let location = record
                .payload
                .as_ref()
                .and_then(|p| p.get(field))
                .and_then(|v| shard_router::remote::regions::location_of(v).ok().flatten());
            if let Some(at) = location.filter(|at| region.contains(*at)) {
                return Ok(Some((payload::point_id_to_json(record.id), at)));
            }
        }
        match page.next {
            Some(next) => body["offset"] = payload::point_id_to_json(next),
            None => return Ok(None),
        }
    }
}

/// `POST /collections/{name}/shards/delete`: a shard key and its points deleted.
pub async fn delete_shard_key(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    _params: Params<ManageParams>,
    Body(body): Body<model::DropShardingKey>,
) -> ApiResult {
    let start = Instant::now();
    drop_shard_key(&state, &name, &body.shard_key).await?;
    Ok(ok(start, &true))
}

/// Deletes a shard key given as JSON.
pub(crate) async fn drop_shard_key(
    state: &Arc<AppState>,
    name: &str,
    key: &serde_json::Value,
) -> Result<(), ApiError> {
    let (cluster, c) = keyed_collection(state, name)?;
    let key = shard_router::remote::keys::ShardKey::from_json(key)
        .map_err(|e| convert::bad(format!("Validation error in JSON body: shard_key: {e}")))?;
    let deadline = Instant::now() + state.timeout;
    let n = c.name().to_string();
    let st = state.clone();
    to_completion(async move {
        let r = cluster.delete_shard_key(&n, &key, deadline).await;
        st.cache.invalidate(&n);
        Ok(r?)
    })
    .await
}

/// `GET /collections/{name}/shards`: the collection's shard keys (`null` for a collection
/// sharded by hash).
pub async fn list_shard_keys(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ApiResult {
    let start = Instant::now();
    let keys = shard_keys_of(&state, &name)?;
    let real_name = collection(&state, &name)?.name().to_string();
    let regions = state
        .cluster()
        .map(|cluster| cluster.regions(&real_name))
        .unwrap_or_default();
    // A key's region (an extension) beside its key, as it was created.
    let shard_keys = keys.map(|k| {
        k.iter()
            .map(|k| match regions.get(k) {
                Some(r) => serde_json::json!({ "key": k.to_json(), "region": r.to_json() }),
                None => serde_json::json!({ "key": k.to_json() }),
            })
            .collect::<Vec<_>>()
    });
    Ok(ok(start, &serde_json::json!({ "shard_keys": shard_keys })))
}

/// The shard keys of a collection; `None` when it is sharded by hash.
pub(crate) fn shard_keys_of(
    state: &AppState,
    name: &str,
) -> Result<Option<Vec<shard_router::remote::keys::ShardKey>>, ApiError> {
    let c = collection(state, name)?;
    Ok(state
        .cluster()
        .and_then(|cluster| cluster.key_layout(c.name()))
        .map(|layout| layout.into_keys().collect()))
}

/// `GET /collections/{name}/cluster`: where the collection's shards are.
pub async fn cluster_info(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ApiResult {
    let start = Instant::now();
    let info = cluster_info_of(&state, &name).await?;
    Ok(ok(start, &info))
}

/// A collection's shards as `CollectionClusterInfo` describes them. Node positions (from 0,
/// in `--cluster-nodes` order) are the peer ids; the coordinator itself, holding no shard,
/// is the peer past the last node. A resharding under way is listed, with its progress in
/// `resharding_progress` (an extension).
pub(crate) async fn cluster_info_of(
    state: &Arc<AppState>,
    name: &str,
) -> Result<serde_json::Value, ApiError> {
    use serde_json::json;
    let c = collection(state, name)?;
    let Some(cluster) = state.cluster() else {
        let local: Vec<_> = c
            .shards()
            .iter()
            .enumerate()
            .map(|(k, s)| json!({"shard_id": k, "points_count": s.len(), "state": "Active"}))
            .collect();
        return Ok(json!({
            "peer_id": 0,
            "shard_count": local.len(),
            "local_shards": local,
            "remote_shards": [],
            "shard_transfers": [],
        }));
    };
    let me = cluster.nodes().len();
    if let Some(layout) = cluster.key_layout(c.name()) {
        let mut remote = Vec::new();
        for (key, group) in &layout {
            for &node in group {
                remote.push(json!({
                    "shard_id": remote.len(),
                    "shard_key": key.to_json(),
                    "peer_id": node,
                    "state": "Active",
                }));
            }
        }
        return Ok(json!({
            "peer_id": me,
            "shard_count": remote.len(),
            "local_shards": [],
            "remote_shards": remote,
            "shard_transfers": [],
        }));
    }
    let layout = cluster.known_hash_layout(c.name())?;
    let running = cluster.resharding_of(c.name());
    let shards = layout.read_shards();
    let remote: Vec<_> = (0..shards)
        .map(|k| {
            let state = match &running {
                Some((r, _)) if k == r.changed_shard() => match r.direction() {
                    shard_router::remote::Direction::Up => "Resharding",
                    shard_router::remote::Direction::Down => "ReshardingScaleDown",
                },
                _ => "Active",
            };
            json!({"shard_id": k, "peer_id": k, "state": state})
        })
        .collect();
    let mut info = json!({
        "peer_id": me,
        "shard_count": shards,
        "local_shards": [],
        "remote_shards": remote,
        "shard_transfers": [],
        "resharding_operations": [],
    });
    if let Some((r, progress)) = running {
        let shard = r.changed_shard();
        info["resharding_operations"] = json!([{
            "direction": r.direction().as_str(),
            "shard_id": shard,
            "peer_id": shard,
        }]);
        let drained: serde_json::Map<String, serde_json::Value> = r
            .drained
            .iter()
            .map(|(k, d)| {
                let d = match d {
                    shard_router::remote::Drained::Start => json!("start"),
                    shard_router::remote::Drained::Done => json!("done"),
                    shard_router::remote::Drained::Before(id) => {
                        json!({ "before": payload::point_id_to_json(*id) })
                    }
                };
                (k.to_string(), d)
            })
            .collect();
        info["resharding_progress"] = json!({
            "from": r.from,
            "to": r.to,
            "points_moved": progress.moved,
            "batches": progress.batches,
            "drained": drained,
            "error": progress.error,
        });
    }
    Ok(info)
}

/// `POST /collections/{name}/cluster`: one cluster operation.
pub async fn update_cluster(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    _params: Params<ManageParams>,
    Body(body): Body<model::ClusterOperation>,
) -> ApiResult {
    let start = Instant::now();
    let unserved = [
        ("move_shard", body.move_shard.is_some()),
        ("replicate_shard", body.replicate_shard.is_some()),
        ("abort_transfer", body.abort_transfer.is_some()),
        ("drop_replica", body.drop_replica.is_some()),
        ("restart_transfer", body.restart_transfer.is_some()),
        ("replicate_points", body.replicate_points.is_some()),
        ("abort_resharding", body.abort_resharding.is_some()),
    ];
    let given = unserved.iter().filter(|(_, set)| *set).count()
        + usize::from(body.start_resharding.is_some())
        + usize::from(body.create_sharding_key.is_some())
        + usize::from(body.drop_sharding_key.is_some());
    if given != 1 {
        return Err(convert::bad(
            "Validation error in JSON body: exactly one cluster operation is expected",
        ));
    }
    if let Some((op, _)) = unserved.iter().find(|(_, set)| *set) {
        return Err(ApiError::not_implemented(match *op {
            "abort_resharding" => "Not implemented: abort_resharding (a resharding runs to its \
                 end; the opposite one then undoes it)"
                .to_string(),
            op => format!(
                "Not implemented: {op} (each node holds one shard of a collection, without \
                 replicas: there is no shard to transfer)"
            ),
        }));
    }
    if let Some(key) = body.create_sharding_key {
        add_shard_key(&state, &name, key).await?;
    } else if let Some(key) = body.drop_sharding_key {
        drop_shard_key(&state, &name, &key.shard_key).await?;
    } else if let Some(r) = body.start_resharding {
        start_resharding(&state, &name, r).await?;
    }
    Ok(ok(start, &true))
}

/// Begins resharding a collection placed by hash over the cluster.
pub(crate) async fn start_resharding(
    state: &Arc<AppState>,
    name: &str,
    op: model::StartResharding,
) -> Result<(), ApiError> {
    use shard_router::remote::Direction;
    let c = collection(state, name)?;
    let Some(cluster) = state.cluster().cloned() else {
        return Err(ApiError::not_implemented(
            "Not implemented: resharding a collection held in this process (its shards are \
             fixed; a cluster router reshards over its nodes)",
        ));
    };
    if op.shard_key.as_ref().is_some_and(|k| !k.is_null()) || cluster.is_keyed(c.name()) {
        return Err(ApiError::not_implemented(
            "Not implemented: resharding a collection sharded by key (each key's group keeps \
             the shards it was created with)",
        ));
    }
    let direction = match op.direction {
        model::ReshardingDirection::Up => Direction::Up,
        model::ReshardingDirection::Down => Direction::Down,
    };
    if let Some(peer) = op.peer_id {
        let shards = cluster.known_hash_layout(c.name())?.shards;
        let expected = match direction {
            Direction::Up => shards,
            Direction::Down => shards.saturating_sub(1),
        };
        if usize::try_from(peer).ok() != Some(expected) {
            return Err(convert::bad(format!(
                "Bad request: peer_id {peer}: the shard {} goes {} node {expected} (shard k \
                 lives on the k-th node listed, from 0)",
                if direction == Direction::Up {
                    "added"
                } else {
                    "removed"
                },
                if direction == Direction::Up {
                    "on"
                } else {
                    "from"
                },
            )));
        }
    }
    let config = c.config();
    let create = shard_router::remote::wire::create_collection(c.name(), &config)
        .map_err(|e| convert::bad(format!("Bad request: {e}")))?;
    let template = shard_router::remote::ShardTemplate {
        create,
        indexes: indexes_pb(&c),
    };
    let n = c.name().to_string();
    to_completion(async move { Ok(cluster.start_resharding(&n, direction, template).await?) }).await
}

/// A collection's payload indexes, as gRPC field types.
fn indexes_pb(c: &storage::Collection) -> Vec<(String, qdrant_client::qdrant::FieldType)> {
    match c.payload_schema() {
        serde_json::Value::Object(m) => m
            .into_iter()
            .filter_map(|(field, info)| {
                let kind = payload::FieldSchema::from_json(info.get("data_type")?).ok()?;
                Some((field, field_type_pb(kind)))
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// A payload index kind as gRPC's field type.
pub(crate) fn field_type_pb(schema: payload::FieldSchema) -> qdrant_client::qdrant::FieldType {
    use payload::FieldSchema as F;
    use qdrant_client::qdrant::FieldType as T;
    match schema {
        F::Keyword => T::Keyword,
        F::Integer => T::Integer,
        F::Float => T::Float,
        F::Bool => T::Bool,
        F::Geo => T::Geo,
        F::Datetime => T::Datetime,
        F::Text => T::Text,
        F::Uuid => T::Uuid,
    }
}

/// The answer to a payload index or vector change (applied at once: no operation number).
fn index_changed(start: Instant, wait: bool) -> axum::response::Response {
    ok(
        start,
        &UpdateResult {
            operation_id: 0,
            status: UpdateStatus::waited(wait),
        },
    )
}

/// `PUT /collections/{name}/vectors/{vector_name}`: creates a named vector on a collection
/// that may hold points (they have none of it until written).
pub async fn create_vector(
    State(state): State<Arc<AppState>>,
    Path((name, vector)): Path<(String, String)>,
    params: Params<WriteParams>,
    body: Body<model::VectorNameConfig>,
) -> ApiResult {
    create_vector_named(state, name, vector, params, body).await
}

/// `PUT /collections/{name}/vectors/`: the unnamed vector (`""`, which the client puts in
/// the path as an empty segment).
pub async fn create_unnamed_vector(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    params: Params<WriteParams>,
    body: Body<model::VectorNameConfig>,
) -> ApiResult {
    create_vector_named(state, name, String::new(), params, body).await
}

async fn create_vector_named(
    state: Arc<AppState>,
    name: String,
    vector: String,
    Params(params): Params<WriteParams>,
    Body(body): Body<model::VectorNameConfig>,
) -> ApiResult {
    let start = Instant::now();
    state.local_only("creating a vector on a collection is")?;
    let wait = model::Flag::or(params.wait, false);
    let new = match (body.dense, body.sparse) {
        (None, Some(sparse)) => {
            if let Some(d) = sparse.datatype.as_deref() {
                if !matches!(d, "float32" | "float16" | "uint8") {
                    return Err(convert::bad(format!(
                        "Validation error in JSON body: sparse.datatype: `{d}` is not float32, \
                         float16 or uint8"
                    )));
                }
            }
            NewVector::Sparse(storage::SparseVectorParams {
                modifier: sparse.modifier,
                index: sparse.datatype.map(|d| storage::SparseIndexParams {
                    datatype: Some(d),
                    full_scan_threshold: None,
                    on_disk: None,
                }),
            })
        }
        (Some(dense), None) => NewVector::Dense(Box::new(storage::VectorParams {
            size: dense.size,
            distance: dense.distance,
            on_disk: None,
            hnsw_config: None,
            quantization_config: None,
            datatype: dense.datatype,
            multivector_config: dense.multivector_config,
            memory: None,
            index: None,
        })),
        _ => {
            return Err(convert::bad(
                "Format error in JSON body: exactly one of `dense` and `sparse` is expected",
            ))
        }
    };
    if let Some(r) = state.replica() {
        // The name as given: an alias is resolved where the command is applied.
        let command = crate::replica::Command::CreateVector {
            collection: name,
            vector,
            params: new,
        };
        r.propose(&command, Instant::now() + state.timeout).await?;
        return Ok(index_changed(start, wait));
    }
    let c = collection(&state, &name)?;
    change_vectors(state, c, move |c| new.create(c, &vector)).await?;
    Ok(index_changed(start, wait))
}

/// A vector added to a collection: what `PUT /collections/{name}/vectors/{vector}` asks,
/// checked (and, on a replica, what the log carries).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NewVector {
    /// A dense vector (boxed: its parameters are large beside a sparse vector's).
    Dense(Box<storage::VectorParams>),
    /// A sparse vector.
    Sparse(storage::SparseVectorParams),
}

impl NewVector {
    /// Adds it to `c` as `vector`; whether anything changed.
    pub fn create(self, c: &storage::Collection, vector: &str) -> storage::Result<bool> {
        match self {
            NewVector::Dense(p) => c.create_vector(vector, *p),
            NewVector::Sparse(p) => c.create_sparse_vector(vector, p),
        }
    }
}

/// `DELETE /collections/{name}/vectors/{vector_name}`: deletes a named vector from the
/// collection and its points.
pub async fn delete_vector(
    State(state): State<Arc<AppState>>,
    Path((name, vector)): Path<(String, String)>,
    params: Params<WriteParams>,
) -> ApiResult {
    delete_vector_named(state, name, vector, params).await
}

/// `DELETE /collections/{name}/vectors/`: the unnamed vector (`""`).
pub async fn delete_unnamed_vector(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    params: Params<WriteParams>,
) -> ApiResult {
    delete_vector_named(state, name, String::new(), params).await
}

async fn delete_vector_named(
    state: Arc<AppState>,
    name: String,
    vector: String,
    Params(params): Params<WriteParams>,
) -> ApiResult {
    let start = Instant::now();
    state.local_only("deleting a vector from a collection is")?;
    let wait = model::Flag::or(params.wait, false);
    if let Some(r) = state.replica() {
        let command = crate::replica::Command::DeleteVector {
            collection: name,
            vector,
        };
        r.propose(&command, Instant::now() + state.timeout).await?;
        return Ok(index_changed(start, wait));
    }
    let c = collection(&state, &name)?;
    change_vectors(state, c, move |c| c.delete_vector(&vector)).await?;
    Ok(index_changed(start, wait))
}

/// Runs a change of `c`'s vectors on a blocking thread, then drops its cached answers
/// whatever the outcome: a change that failed after its commit point took effect.
async fn change_vectors(
    state: Arc<AppState>,
    c: Arc<storage::Collection>,
    change: impl FnOnce(&storage::Collection) -> storage::Result<bool> + Send + 'static,
) -> Result<(), crate::error::ApiError> {
    blocking(move || {
        let changed = change(&c);
        state.cache.invalidate(c.name());
        changed.map(|_| ()).map_err(Into::into)
    })
    .await
}

/// `POST /collections/aliases`: create, delete and rename aliases, all or none.
pub async fn change_aliases(
    State(state): State<Arc<AppState>>,
    _params: Params<ManageParams>,
    raw: Bytes,
) -> ApiResult {
    let start = Instant::now();
    let changes = convert::alias_changes(model::parse(&raw)?)?;
    if let Some(r) = state.replica() {
        let command = crate::replica::Command::Aliases {
            body: replication::Blob(raw.to_vec()),
        };
        r.propose(&command, Instant::now() + state.timeout).await?;
        return Ok(ok(start, &true));
    }
    let st = state.clone();
    blocking(move || Ok(st.storage.change_aliases(&changes)?)).await?;
    Ok(ok(start, &true))
}

fn alias_list(aliases: impl Iterator<Item = (String, String)>) -> CollectionsAliasesResponse {
    CollectionsAliasesResponse {
        aliases: aliases
            .map(|(alias_name, collection_name)| AliasDescription {
                alias_name,
                collection_name,
            })
            .collect(),
    }
}

/// `GET /aliases`.
pub async fn aliases(State(state): State<Arc<AppState>>) -> ApiResult {
    let start = Instant::now();
    Ok(ok(start, &alias_list(state.storage.aliases().into_iter())))
}

/// `GET /collections/{name}/aliases`: the aliases of a collection (named directly or by
/// one of its aliases).
pub async fn collection_aliases(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ApiResult {
    let start = Instant::now();
    let c = collection(&state, &name)?;
    let list = alias_list(
        state
            .storage
            .aliases()
            .into_iter()
            .filter(|(_, target)| target == c.name()),
    );
    Ok(ok(start, &list))
}
