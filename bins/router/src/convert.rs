//! The typed request bodies ([`crate::model`]) to storage's internal requests, and storage's
//! configuration to the response model.
//!
//! Here live the checks serde does not make (ranges, counts, exactly one of two fields), the
//! defaults of optional fields, and the 501 answers for what is valid Qdrant but not served
//! here. A second protocol maps onto the same internal types (`storage::SearchRequest`,
//! `storage::Update`, ...), so what these functions decide is decided once.

use crate::error::ApiError;
use crate::model::{self, response, ExtendedPointId, VectorInput, VectorStruct};
use index_core::{PointId, SearchParams};
use payload::{Payload, PayloadSelector};
use storage::{CollectionConfig, PointSelector, PointWrite, VectorSelector};

/// The most searches one batch request may carry.
pub const MAX_BATCH_SEARCHES: usize = 1_000;

/// Shorthand for a 400 answer.
pub fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg)
}

/// Refuses a field this server does not serve, naming it, rather than ignoring it.
pub fn refuse_if_set<T>(field: &Option<T>, name: &str, context: &str) -> Result<(), ApiError> {
    match field {
        None => Ok(()),
        Some(_) => Err(ApiError::not_implemented(format!(
            "`{name}` in {context} is not supported by this server"
        ))),
    }
}

/// A request's `shard_key` (Qdrant's `ShardKeySelector`), read.
pub fn shard_keys(
    v: &Option<model::ShardKeySelector>,
) -> Result<Option<shard_router::remote::keys::KeySelection>, ApiError> {
    v.as_ref()
        .map(|v| {
            shard_router::remote::keys::KeySelection::from_json(v)
                .map_err(|e| bad(format!("Validation error in JSON body: {e}")))
        })
        .transpose()
}

/// An update and the shard keys it names.
pub type KeyedUpdate = (
    storage::Update,
    Option<shard_router::remote::keys::KeySelection>,
);

/// Ids, at most [`storage::MAX_POINTS_PER_OPERATION`].
pub fn point_ids(ids: Vec<ExtendedPointId>, context: &str) -> Result<Vec<PointId>, ApiError> {
    check_count(ids.len(), context)?;
    Ok(ids.into_iter().map(|id| id.0).collect())
}

fn check_count(n: usize, context: &str) -> Result<(), ApiError> {
    if n > storage::MAX_POINTS_PER_OPERATION {
        return Err(bad(format!(
            "Validation error in JSON body: {context}: {n} points in one request, at most {}",
            storage::MAX_POINTS_PER_OPERATION
        )));
    }
    Ok(())
}

/// A vector to store, dense, sparse or a matrix.
enum Stored {
    Dense(Vec<f32>),
    Sparse(storage::SparseVector),
    Multi(storage::MultiVector),
}

/// A point's vectors: dense, sparse and multivectors, by name (`""` names the unnamed one).
#[derive(Default)]
pub struct StoredVectors {
    /// Dense vectors.
    pub dense: Vec<(String, Vec<f32>)>,
    /// Sparse vectors.
    pub sparse: Vec<(String, storage::SparseVector)>,
    /// Multivectors.
    pub multi: Vec<(String, storage::MultiVector)>,
}

impl StoredVectors {
    /// Adds vector `name`; a name given twice keeps its last vector, as Qdrant reads a JSON
    /// object whose key repeats.
    fn push(&mut self, name: String, v: Stored) {
        self.dense.retain(|(n, _)| *n != name);
        self.sparse.retain(|(n, _)| *n != name);
        self.multi.retain(|(n, _)| *n != name);
        match v {
            Stored::Dense(v) => self.dense.push((name, v)),
            Stored::Sparse(v) => self.sparse.push((name, v)),
            Stored::Multi(v) => self.multi.push((name, v)),
        }
    }

    /// The vectors of a point `id` with `payload`, to write.
    pub fn into_write(self, id: PointId, payload: Payload) -> PointWrite {
        PointWrite {
            id,
            vectors: self.dense,
            sparse: self.sparse,
            multi: self.multi,
            payload,
        }
    }
}

/// A multivector checked as Qdrant checks it (at least one row, every row of one non-zero
/// length, finite values); its dimension is checked against the collection's by storage.
pub fn multi_vector(rows: Vec<Vec<f32>>, context: &str) -> Result<storage::MultiVector, ApiError> {
    storage::MultiVector::new(rows)
        .map_err(|e| bad(format!("Validation error in JSON body: {context}: {e}")))
}

/// A sparse vector checked as Qdrant checks it (indices unique, as many values as indices,
/// finite values) and sorted by index.
pub fn sparse_vector(
    v: model::vectors::SparseVector,
    context: &str,
) -> Result<storage::SparseVector, ApiError> {
    storage::SparseVector::new(v.indices, v.values)
        .map_err(|e| bad(format!("Validation error in JSON body: {context}: {e}")))
}

/// The unnamed vector to store, dense or a matrix (a sparse one is refused: sparse vectors
/// are always named).
fn unnamed_vector(v: VectorInput, context: &str) -> Result<StoredVectors, ApiError> {
    let mut out = StoredVectors::default();
    match stored_vector(v, context)? {
        Stored::Sparse(_) => {
            return Err(bad(format!(
                "Wrong input: {context}: a sparse vector must be given by the name of a sparse \
                 vector"
            )))
        }
        v => out.push(String::new(), v),
    }
    Ok(out)
}

/// A vector to store.
fn stored_vector(v: VectorInput, context: &str) -> Result<Stored, ApiError> {
    match v {
        VectorInput::Dense(v) => Ok(Stored::Dense(v)),
        VectorInput::Multi(rows) => multi_vector(rows, context).map(Stored::Multi),
        VectorInput::Sparse(v) => sparse_vector(v, context).map(Stored::Sparse),
        VectorInput::Inference(kind) => Err(ApiError::not_implemented(format!(
            "{context}: {kind} inference is not supported; send vectors"
        ))),
        VectorInput::Id(_) => Err(bad(format!(
            "Format error in JSON body: {context} must be a vector, not a point id"
        ))),
    }
}

/// A point's vectors, `""` naming the unnamed one.
pub fn vector_struct(v: VectorStruct, context: &str) -> Result<StoredVectors, ApiError> {
    let mut out = StoredVectors::default();
    match v {
        VectorStruct::Single(v) => out = unnamed_vector(v, context)?,
        VectorStruct::Named(named) => {
            for (name, v) in named {
                let v = stored_vector(v, &format!("{context}.{name}"))?;
                out.push(name, v);
            }
        }
    }
    Ok(out)
}

/// An upsert, list or batch form, with its `update_mode` and `update_filter`.
pub fn upsert(op: model::PointInsertOperations) -> Result<KeyedUpdate, ApiError> {
    let keys = shard_keys(&op.shard_key)?;
    let mode = match op.update_mode {
        None | Some(model::UpdateMode::Upsert) => storage::UpsertMode::Upsert,
        Some(model::UpdateMode::InsertOnly) => storage::UpsertMode::InsertOnly,
        Some(model::UpdateMode::UpdateOnly) => storage::UpsertMode::UpdateOnly,
    };
    let filter = op.update_filter.map(|f| f.0);
    let points = upsert_points(op.points, op.batch)?;
    let update = if mode == storage::UpsertMode::Upsert && filter.is_none() {
        storage::Update::Upsert(points)
    } else {
        storage::Update::ConditionalUpsert {
            points,
            mode,
            filter,
        }
    };
    Ok((update, keys))
}

/// `UpdateVectors` to the update: each point's vectors, checked like an upsert's.
pub fn update_vectors(body: model::UpdateVectors) -> Result<KeyedUpdate, ApiError> {
    let keys = shard_keys(&body.shard_key)?;
    check_count(body.points.len(), "points")?;
    let points = body
        .points
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let v = vector_struct(p.vector, &format!("points[{i}].vector"))?;
            Ok(v.into_write(p.id.0, Payload::new()))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let update = storage::Update::UpdateVectors {
        points,
        filter: body.update_filter.map(|f| f.0),
    };
    Ok((update, keys))
}

/// `DeleteVectors` to the update.
pub fn delete_vectors(body: model::DeleteVectors) -> Result<KeyedUpdate, ApiError> {
    let keys = shard_keys(&body.shard_key)?;
    let selector = selector(body.points, body.filter)?;
    if body.vector.is_empty() {
        return Err(bad(
            "Validation error in JSON body: vector: name at least one vector",
        ));
    }
    if body.vector.len() > storage::MAX_NAMED_VECTORS {
        return Err(bad(format!(
            "Validation error in JSON body: vector: at most {} names",
            storage::MAX_NAMED_VECTORS
        )));
    }
    let update = storage::Update::DeleteVectors {
        selector,
        names: body.vector,
    };
    Ok((update, keys))
}

/// The points of an upsert, list or batch form.
fn upsert_points(
    points: Option<Vec<model::PointStruct>>,
    batch: Option<model::Batch>,
) -> Result<Vec<PointWrite>, ApiError> {
    match (points, batch) {
        (Some(points), None) => {
            check_count(points.len(), "points")?;
            points
                .into_iter()
                .enumerate()
                .map(|(i, p)| {
                    let v = vector_struct(p.vector, &format!("points[{i}].vector"))?;
                    Ok(v.into_write(p.id.0, p.payload.unwrap_or_default()))
                })
                .collect()
        }
        (None, Some(batch)) => batch_points(batch),
        (Some(_), Some(_)) => Err(bad(
            "Format error in JSON body: give either points or batch, not both",
        )),
        (None, None) => Err(bad(
            "Format error in JSON body: points or batch is required",
        )),
    }
}

fn batch_points(batch: model::Batch) -> Result<Vec<PointWrite>, ApiError> {
    let ids = point_ids(batch.ids, "batch.ids")?;
    let n = ids.len();
    let vectors: Vec<StoredVectors> = match batch.vectors {
        model::BatchVectorStruct::Single(list) => {
            if list.len() != n {
                return Err(bad(format!(
                    "Validation error in JSON body: {} vectors for {n} ids",
                    list.len()
                )));
            }
            list.into_iter()
                .enumerate()
                .map(|(i, v)| unnamed_vector(v, &format!("batch.vectors[{i}]")))
                .collect::<Result<_, ApiError>>()?
        }
        model::BatchVectorStruct::Named(columns) => {
            let mut per_point: Vec<StoredVectors> =
                (0..n).map(|_| StoredVectors::default()).collect();
            for (name, list) in columns {
                if list.len() != n {
                    return Err(bad(format!(
                        "Validation error in JSON body: {} vectors `{name}` for {n} ids",
                        list.len()
                    )));
                }
                for (i, v) in list.into_iter().enumerate() {
                    let v = stored_vector(v, &format!("batch.vectors.{name}[{i}]"))?;
                    per_point[i].push(name.clone(), v);
                }
            }
            per_point
        }
    };
    let payloads: Vec<Payload> = match batch.payloads {
        None => vec![Payload::new(); n],
        Some(list) if list.len() == n => list.into_iter().map(Option::unwrap_or_default).collect(),
        Some(list) => {
            return Err(bad(format!(
                "Validation error in JSON body: {} payloads for {n} ids",
                list.len()
            )))
        }
    };
    Ok(ids
        .into_iter()
        .zip(vectors)
        .zip(payloads)
        .map(|((id, vectors), payload)| vectors.into_write(id, payload))
        .collect())
}

/// A delete by ids or filter.
pub fn delete(body: model::PointsSelector) -> Result<KeyedUpdate, ApiError> {
    let keys = shard_keys(&body.shard_key)?;
    let selector = selector(body.points, body.filter)?;
    Ok((storage::Update::Delete(selector), keys))
}

/// Keys merged into payloads.
pub fn set_payload(body: model::SetPayload) -> Result<KeyedUpdate, ApiError> {
    let keys = shard_keys(&body.shard_key)?;
    let selector = selector(body.points, body.filter)?;
    let update = storage::Update::SetPayload {
        payload: body.payload.unwrap_or_default(),
        selector,
        key: body.key,
    };
    Ok((update, keys))
}

/// Payloads replaced.
pub fn overwrite_payload(body: model::SetPayload) -> Result<KeyedUpdate, ApiError> {
    refuse_if_set(&body.key, "key", "overwrite payload")?;
    let keys = shard_keys(&body.shard_key)?;
    let selector = selector(body.points, body.filter)?;
    let update = storage::Update::OverwritePayload {
        payload: body.payload.unwrap_or_default(),
        selector,
    };
    Ok((update, keys))
}

/// Payload keys deleted.
pub fn delete_payload(body: model::DeletePayload) -> Result<KeyedUpdate, ApiError> {
    let shard_keys = shard_keys(&body.shard_key)?;
    let selector = selector(body.points, body.filter)?;
    let update = storage::Update::DeletePayload {
        keys: body.keys,
        selector,
    };
    Ok((update, shard_keys))
}

/// Payloads removed.
pub fn clear_payload(body: model::PointsSelector) -> Result<KeyedUpdate, ApiError> {
    let keys = shard_keys(&body.shard_key)?;
    let selector = selector(body.points, body.filter)?;
    Ok((storage::Update::ClearPayload(selector), keys))
}

/// `/points/batch`: the operations in order, as one update. An error names the operation
/// (`operations[i]`) it is in. A batch is one update on each shard: an operation naming
/// shard keys is refused (501), as the operations of one batch could then land on
/// different shards.
pub fn batch(body: model::UpdateOperations) -> Result<storage::Update, ApiError> {
    use model::UpdateOperation as Op;
    if body.operations.len() > storage::MAX_BATCH_OPERATIONS {
        return Err(bad(format!(
            "Validation error in JSON body: operations: at most {} operations, got {}",
            storage::MAX_BATCH_OPERATIONS,
            body.operations.len()
        )));
    }
    let updates = body
        .operations
        .into_iter()
        .enumerate()
        .map(|(i, op)| {
            match op {
                Op::Upsert(b) => upsert(b),
                Op::Delete(b) => delete(b),
                Op::SetPayload(b) => set_payload(b),
                Op::OverwritePayload(b) => overwrite_payload(b),
                Op::DeletePayload(b) => delete_payload(b),
                Op::ClearPayload(b) => clear_payload(b),
                Op::UpdateVectors(b) => update_vectors(b),
                Op::DeleteVectors(b) => delete_vectors(b),
            }
            .and_then(|(update, keys)| match keys {
                None => Ok(update),
                Some(_) => Err(ApiError::not_implemented(
                    "`shard_key` in a batch of operations is not supported by this server",
                )),
            })
            .map_err(|e| e.with_context(&format!("operations[{i}]")))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(storage::Update::Batch(updates))
}

/// `points` or `filter` of a payload or delete request.
pub fn selector(
    points: Option<Vec<ExtendedPointId>>,
    filter: Option<model::FilterInput>,
) -> Result<PointSelector, ApiError> {
    match (points, filter) {
        (Some(ids), None) => Ok(PointSelector::Ids(point_ids(ids, "points")?)),
        (None, Some(f)) => Ok(PointSelector::Filter(f.0)),
        (Some(_), Some(_)) => Err(bad(
            "Format error in JSON body: give either points or filter, not both",
        )),
        (None, None) => Err(bad(
            "Format error in JSON body: points or filter is required",
        )),
    }
}

/// `with_payload`, or the endpoint's default (all or nothing) when absent.
pub fn payload_selector(v: Option<model::WithPayload>, default: bool) -> PayloadSelector {
    match v {
        Some(model::WithPayload(s)) => s,
        None if default => PayloadSelector::All,
        None => PayloadSelector::Nothing,
    }
}

/// `with_vector` (default: none).
pub fn vector_selector(v: Option<model::WithVector>) -> VectorSelector {
    match v {
        None | Some(model::WithVector::Bool(false)) => VectorSelector::Nothing,
        Some(model::WithVector::Bool(true)) => VectorSelector::All,
        Some(model::WithVector::Names(names)) => VectorSelector::Only(names),
    }
}

/// Qdrant's `SearchParams` over our defaults, for a search of `limit` results.
pub fn search_params(
    v: Option<model::SearchParams>,
    limit: usize,
) -> Result<SearchParams, ApiError> {
    let mut p = SearchParams::top(limit);
    let Some(v) = v else { return Ok(p) };
    if let Some(n) = v.nprobe {
        if n == 0 || n > 1 << 22 {
            return Err(bad(format!(
                "Validation error in JSON body: params.nprobe {n} must be a positive integer"
            )));
        }
        p.ivf_nprobe = Some(n as usize);
    }
    if let Some(ef) = v.hnsw_ef {
        if ef == 0 || ef > index_core::MAX_LIMIT as u64 {
            return Err(bad(format!(
                "Validation error in JSON body: params.hnsw_ef {ef} must be between 1 and {}",
                index_core::MAX_LIMIT
            )));
        }
        p.hnsw_ef = Some(ef as usize);
    }
    p.exact = v.exact.unwrap_or(false);
    if let Some(q) = v.quantization {
        if q.ignore == Some(true) {
            // Searching without quantization means walking full vectors: the rescored result
            // is what that gives; keep rescoring on.
            p.rescore = Some(true);
        }
        if let Some(r) = q.rescore {
            p.rescore = Some(r);
        }
        if let Some(o) = q.oversampling {
            if !(1.0..=100.0).contains(&o) {
                return Err(bad(format!("Validation error in JSON body: params.quantization.oversampling {o} must be between 1 and 100")));
            }
            p.oversampling = Some(o as f32);
        }
    }
    Ok(p)
}

/// A result count: `default` when absent, else between 1 and [`index_core::MAX_LIMIT`].
pub fn limit(v: Option<u64>, name: &str, default: usize) -> Result<usize, ApiError> {
    match v {
        None => Ok(default),
        Some(n) if n >= 1 && n <= index_core::MAX_LIMIT as u64 => Ok(n as usize),
        Some(n) => Err(bad(format!(
            "Validation error in JSON body: [{name}: {n} must be an integer between 1 and {}]",
            index_core::MAX_LIMIT
        ))),
    }
}

/// Results skipped: at most [`index_core::MAX_LIMIT`].
pub fn offset(v: Option<u64>, context: &str) -> Result<usize, ApiError> {
    match v {
        None => Ok(0),
        Some(n) if n <= index_core::MAX_LIMIT as u64 => Ok(n as usize),
        Some(n) => Err(bad(format!(
            "Validation error in JSON body: [{context}.offset: {n} must be at most {}]",
            index_core::MAX_LIMIT
        ))),
    }
}

/// Searches in one batch: at most [`MAX_BATCH_SEARCHES`].
pub fn check_batch(n: usize) -> Result<(), ApiError> {
    if n > MAX_BATCH_SEARCHES {
        return Err(bad(format!(
            "Validation error in JSON body: at most {MAX_BATCH_SEARCHES} searches per batch"
        )));
    }
    Ok(())
}

/// `config` of `GET /collections/{name}`: what was set, with the effective defaults filled
/// in where the response schema needs a value (storage owns every default).
pub fn collection_config(c: &CollectionConfig) -> response::CollectionConfig {
    let h = c.hnsw_config.clone().unwrap_or_default();
    let hnsw_defaults = index_hnsw::HnswConfig::default();
    let o = c.optimizers_config.clone().unwrap_or_default();
    let (deleted_threshold, vacuum_min_vector_number) = c.vacuum_thresholds();
    response::CollectionConfig {
        params: response::CollectionParams {
            vectors: c.vectors.clone(),
            sparse_vectors: c.sparse_vectors.clone().filter(|s| !s.is_empty()),
            shard_number: c.shards(),
            replication_factor: c.replication_factor.unwrap_or(1),
            write_consistency_factor: c.write_consistency_factor.unwrap_or(1),
            on_disk_payload: c.on_disk_payload.unwrap_or(true),
            sharding_method: c.sharding_method.clone(),
        },
        hnsw_config: response::HnswConfig {
            m: h.m.unwrap_or(hnsw_defaults.m),
            ef_construct: h.ef_construct.unwrap_or(hnsw_defaults.ef_construct),
            full_scan_threshold: h
                .full_scan_threshold
                .unwrap_or(storage::DEFAULT_FULL_SCAN_THRESHOLD_KB),
            max_indexing_threads: h.max_indexing_threads.unwrap_or(0),
            on_disk: h.on_disk.unwrap_or(false),
            payload_m: h.payload_m,
        },
        optimizer_config: response::OptimizersConfig {
            deleted_threshold,
            vacuum_min_vector_number,
            default_segment_number: o.default_segment_number.unwrap_or(0),
            max_segment_size: o.max_segment_size,
            memmap_threshold: o.memmap_threshold,
            indexing_threshold: o.indexing_threshold,
            flush_interval_sec: c.flush_interval_sec(),
            max_optimization_threads: o.max_optimization_threads.as_ref().and_then(|t| t.as_u64()),
        },
        wal_config: response::WalConfig {
            wal_capacity_mb: c.wal_capacity_mb(),
            wal_segments_ahead: c
                .wal_config
                .as_ref()
                .and_then(|w| w.wal_segments_ahead)
                .unwrap_or(0),
        },
        quantization_config: c.quantization_config.clone(),
        strict_mode_config: c.strict_mode_config.clone(),
        metadata: c.metadata.clone(),
    }
}

/// The most alias changes one request may carry.
pub const MAX_ALIAS_ACTIONS: usize = 1_000;

/// `ChangeAliasesOperation` to storage's changes: each action exactly one of create, delete
/// and rename.
pub fn alias_changes(body: model::ChangeAliases) -> Result<Vec<storage::AliasChange>, ApiError> {
    if body.actions.len() > MAX_ALIAS_ACTIONS {
        return Err(bad(format!(
            "Validation error in JSON body: at most {MAX_ALIAS_ACTIONS} actions per request"
        )));
    }
    body.actions
        .into_iter()
        .enumerate()
        .map(|(i, a)| match (a.create_alias, a.delete_alias, a.rename_alias) {
            (Some(c), None, None) => Ok(storage::AliasChange::Create {
                collection: c.collection_name,
                alias: c.alias_name,
            }),
            (None, Some(d), None) => Ok(storage::AliasChange::Delete {
                alias: d.alias_name,
            }),
            (None, None, Some(r)) => Ok(storage::AliasChange::Rename {
                old: r.old_alias_name,
                new: r.new_alias_name,
            }),
            _ => Err(bad(format!(
                "Format error in JSON body: actions[{i}] must be exactly one of create_alias, delete_alias, rename_alias"
            ))),
        })
        .collect()
}
