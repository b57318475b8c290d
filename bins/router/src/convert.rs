//! Qdrant's JSON shapes to and from storage types, with Qdrant's error messages.

use crate::error::ApiError;
use index_core::{PointId, SearchParams};
use payload::{Filter, Payload, PayloadSelector};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use storage::{CollectionConfig, PointSelector, PointWrite, Record, ScoredPoint, VectorSelector};

/// The most searches one batch request may carry.
pub const MAX_BATCH_SEARCHES: usize = 1_000;

pub fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg)
}

/// An object's field, rejecting fields the endpoint does not know (Qdrant does).
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    context: &'static str,
}

impl<'a> Fields<'a> {
    pub fn new(
        v: &'a Value,
        context: &'static str,
        known: &[&str],
    ) -> Result<Fields<'a>, ApiError> {
        let map = v.as_object().ok_or_else(|| {
            bad(format!(
                "Format error in JSON body: {context} must be an object"
            ))
        })?;
        if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(bad(format!(
                "Format error in JSON body: unknown field `{unknown}` in {context}, expected one of {}",
                known.join(", ")
            )));
        }
        Ok(Fields { map, context })
    }

    /// The field, treating `null` as absent (clients drop unset fields, some send null).
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    pub fn usize(&self, name: &str, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => match v.as_u64() {
                Some(n) if n as usize <= max => Ok(n as usize),
                Some(n) => Err(bad(format!(
                    "Validation error in JSON body: [{}.{name}: {n} must be at most {max}]",
                    self.context
                ))),
                None => Err(bad(format!(
                    "Format error in JSON body: {}.{name} must be a non-negative integer, got {v}",
                    self.context
                ))),
            },
        }
    }

    pub fn bool(&self, name: &str, default: bool) -> Result<bool, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(bad(format!(
                "Format error in JSON body: {}.{name} must be a boolean, got {v}",
                self.context
            ))),
        }
    }

    pub fn f64(&self, name: &str) -> Result<Option<f64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                bad(format!(
                    "Format error in JSON body: {}.{name} must be a number, got {v}",
                    self.context
                ))
            }),
        }
    }

    pub fn str(&self, name: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(bad(format!(
                "Format error in JSON body: {}.{name} must be a string, got {v}",
                self.context
            ))),
        }
    }

    /// Refuses a field we do not support, naming it, rather than ignoring it.
    pub fn unsupported(&self, name: &str) -> Result<(), ApiError> {
        match self.get(name) {
            None => Ok(()),
            Some(_) => Err(ApiError::not_implemented(format!(
                "`{name}` in {} is not supported by this server",
                self.context
            ))),
        }
    }
}

pub fn point_id(v: &Value) -> Result<PointId, ApiError> {
    payload::point_id_from_json(v).map_err(|e| bad(format!("Format error in JSON body: {e}")))
}

pub fn point_ids(v: &Value, context: &str) -> Result<Vec<PointId>, ApiError> {
    let list = v.as_array().ok_or_else(|| {
        bad(format!(
            "Format error in JSON body: {context} must be a list of ids"
        ))
    })?;
    if list.len() > storage::MAX_POINTS_PER_OPERATION {
        return Err(bad(format!(
            "Validation error in JSON body: {context}: {} ids, at most {}",
            list.len(),
            storage::MAX_POINTS_PER_OPERATION
        )));
    }
    list.iter().map(point_id).collect()
}

pub fn dense_vector(v: &Value, context: &str) -> Result<Vec<f32>, ApiError> {
    let list = v.as_array().ok_or_else(|| {
        bad(format!(
            "Format error in JSON body: {context} must be a list of numbers"
        ))
    })?;
    if list.len() > storage::MAX_VECTOR_SIZE {
        return Err(bad(format!(
            "Validation error in JSON body: {context} has {} values",
            list.len()
        )));
    }
    list.iter()
        .enumerate()
        .map(|(i, x)| match x {
            Value::Number(n) => {
                let f = n.as_f64().unwrap_or(f64::NAN) as f32;
                if f.is_finite() {
                    Ok(f)
                } else {
                    Err(bad(format!("Validation error in JSON body: {context}[{i}] is not a finite 32-bit number")))
                }
            }
            Value::Null => Err(bad(format!(
                "Validation error in JSON body: {context}[{i}] is null (NaN or infinity is not a valid vector value)"
            ))),
            Value::Array(_) => Err(ApiError::not_implemented(format!("{context}: multivectors are not supported"))),
            other => Err(bad(format!("Format error in JSON body: {context}[{i}] must be a number, got {other}"))),
        })
        .collect()
}

/// A point's vectors: a list (the unnamed vector) or a map of named ones.
pub fn vector_struct(v: &Value, context: &str) -> Result<Vec<(String, Vec<f32>)>, ApiError> {
    match v {
        Value::Array(_) => Ok(vec![(String::new(), dense_vector(v, context)?)]),
        Value::Object(m) => {
            let mut out = Vec::with_capacity(m.len());
            for (name, x) in m {
                if x.is_object() {
                    return Err(ApiError::not_implemented(format!(
                        "{context}.{name}: sparse vectors and documents are not supported"
                    )));
                }
                out.push((name.clone(), dense_vector(x, &format!("{context}.{name}"))?));
            }
            Ok(out)
        }
        _ => Err(bad(format!("Format error in JSON body: {context} must be a list of numbers or a map of named vectors"))),
    }
}

pub fn payload_object(v: Option<&Value>, context: &str) -> Result<Payload, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(Payload::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(other) => Err(bad(format!(
            "Format error in JSON body: {context} must be an object, got {other}"
        ))),
    }
}

/// The `points` of an upsert, list or batch form.
pub fn upsert_points(body: &Value) -> Result<Vec<PointWrite>, ApiError> {
    let f = Fields::new(
        body,
        "upsert",
        &[
            "points",
            "batch",
            "shard_key",
            "update_filter",
            "update_mode",
        ],
    )?;
    f.unsupported("shard_key")?;
    f.unsupported("update_filter")?;
    if let Some(mode) = f.str("update_mode")? {
        if mode != "upsert" {
            return Err(ApiError::not_implemented(format!(
                "update_mode `{mode}` is not supported (upsert)"
            )));
        }
    }
    match (f.get("points"), f.get("batch")) {
        (Some(points), None) => {
            let list = points
                .as_array()
                .ok_or_else(|| bad("Format error in JSON body: points must be a list"))?;
            check_count(list.len())?;
            list.iter()
                .enumerate()
                .map(|(i, p)| {
                    let pf = Fields::new(p, "point", &["id", "vector", "payload"])?;
                    let id = point_id(pf.get("id").ok_or_else(|| {
                        bad(format!(
                            "Format error in JSON body: points[{i}].id is missing"
                        ))
                    })?)?;
                    let vectors = match pf.get("vector") {
                        Some(v) => vector_struct(v, &format!("points[{i}].vector"))?,
                        None => {
                            return Err(bad(format!(
                                "Format error in JSON body: points[{i}].vector is missing"
                            )))
                        }
                    };
                    Ok(PointWrite {
                        id,
                        vectors,
                        payload: payload_object(pf.get("payload"), "payload")?,
                    })
                })
                .collect()
        }
        (None, Some(batch)) => {
            let bf = Fields::new(batch, "batch", &["ids", "vectors", "payloads"])?;
            let ids = point_ids(
                bf.get("ids")
                    .ok_or_else(|| bad("Format error in JSON body: batch.ids is missing"))?,
                "batch.ids",
            )?;
            check_count(ids.len())?;
            let n = ids.len();
            let vectors: Vec<Vec<(String, Vec<f32>)>> =
                match bf.get("vectors") {
                    Some(Value::Array(list)) => {
                        if list.len() != n {
                            return Err(bad(format!(
                                "Validation error in JSON body: {} vectors for {n} ids",
                                list.len()
                            )));
                        }
                        list.iter()
                            .enumerate()
                            .map(|(i, v)| {
                                Ok(vec![(
                                    String::new(),
                                    dense_vector(v, &format!("batch.vectors[{i}]"))?,
                                )])
                            })
                            .collect::<Result<_, ApiError>>()?
                    }
                    Some(Value::Object(m)) => {
                        let mut per_point = vec![Vec::new(); n];
                        for (name, list) in m {
                            let list = list.as_array().ok_or_else(|| {
                                bad(format!(
                                "Format error in JSON body: batch.vectors.{name} must be a list"
                            ))
                            })?;
                            if list.len() != n {
                                return Err(bad(format!(
                                "Validation error in JSON body: {} vectors `{name}` for {n} ids",
                                list.len()
                            )));
                            }
                            for (i, v) in list.iter().enumerate() {
                                per_point[i].push((
                                    name.clone(),
                                    dense_vector(v, &format!("batch.vectors.{name}[{i}]"))?,
                                ));
                            }
                        }
                        per_point
                    }
                    _ => return Err(bad(
                        "Format error in JSON body: batch.vectors must be a list or a map of lists",
                    )),
                };
            let payloads: Vec<Payload> = match bf.get("payloads") {
                None => vec![Payload::new(); n],
                Some(Value::Array(list)) => {
                    if list.len() != n {
                        return Err(bad(format!(
                            "Validation error in JSON body: {} payloads for {n} ids",
                            list.len()
                        )));
                    }
                    list.iter()
                        .map(|p| payload_object(Some(p), "batch.payloads[]"))
                        .collect::<Result<_, _>>()?
                }
                Some(_) => {
                    return Err(bad(
                        "Format error in JSON body: batch.payloads must be a list",
                    ))
                }
            };
            Ok(ids
                .into_iter()
                .zip(vectors)
                .zip(payloads)
                .map(|((id, vectors), payload)| PointWrite {
                    id,
                    vectors,
                    payload,
                })
                .collect())
        }
        (Some(_), Some(_)) => Err(bad(
            "Format error in JSON body: give either points or batch, not both",
        )),
        (None, None) => Err(bad(
            "Format error in JSON body: points or batch is required",
        )),
    }
}

fn check_count(n: usize) -> Result<(), ApiError> {
    if n > storage::MAX_POINTS_PER_OPERATION {
        return Err(bad(format!(
            "Validation error in JSON body: {n} points in one request, at most {}",
            storage::MAX_POINTS_PER_OPERATION
        )));
    }
    Ok(())
}

pub fn filter(v: Option<&Value>) -> Result<Option<Arc<Filter>>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => Filter::from_json(v)
            .map(|f| Some(Arc::new(f)))
            .map_err(|e| bad(format!("Format error in JSON body: {e}"))),
    }
}

/// `points` or `filter` of a payload or delete request.
pub fn selector(f: &Fields<'_>) -> Result<PointSelector, ApiError> {
    f.unsupported("shard_key")?;
    match (f.get("points"), f.get("filter")) {
        (Some(p), None) => Ok(PointSelector::Ids(point_ids(p, "points")?)),
        (None, Some(_)) => Ok(PointSelector::Filter(
            filter(f.get("filter"))?.expect("present"),
        )),
        (Some(_), Some(_)) => Err(bad(
            "Format error in JSON body: give either points or filter, not both",
        )),
        (None, None) => Err(bad(
            "Format error in JSON body: points or filter is required",
        )),
    }
}

pub fn payload_selector(v: Option<&Value>, default: bool) -> Result<PayloadSelector, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(if default {
            PayloadSelector::All
        } else {
            PayloadSelector::Nothing
        }),
        Some(v) => PayloadSelector::from_json(v)
            .map_err(|e| bad(format!("Format error in JSON body: with_payload: {e}"))),
    }
}

pub fn vector_selector(v: Option<&Value>) -> Result<VectorSelector, ApiError> {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(VectorSelector::Nothing),
        Some(Value::Bool(true)) => Ok(VectorSelector::All),
        Some(Value::Array(names)) => names
            .iter()
            .map(|n| n.as_str().map(str::to_string).ok_or_else(|| bad("Format error in JSON body: with_vector names must be strings")))
            .collect::<Result<_, _>>()
            .map(VectorSelector::Only),
        Some(other) => Err(bad(format!("Format error in JSON body: with_vector must be a boolean or a list of names, got {other}"))),
    }
}

/// Qdrant's `SearchParams` over our defaults.
pub fn search_params(v: Option<&Value>, limit: usize) -> Result<SearchParams, ApiError> {
    let mut p = SearchParams::top(limit);
    let Some(v) = v else { return Ok(p) };
    let f = Fields::new(
        v,
        "params",
        // `nprobe` is our extension for collections indexed with IVF.
        &[
            "hnsw_ef",
            "exact",
            "quantization",
            "indexed_only",
            "acorn",
            "nprobe",
        ],
    )?;
    if let Some(n) = f.get("nprobe") {
        let n = n
            .as_u64()
            .filter(|&n| n > 0 && n <= 1 << 22)
            .ok_or_else(|| {
                bad(format!(
                    "Validation error in JSON body: params.nprobe {n} must be a positive integer"
                ))
            })?;
        p.ivf_nprobe = Some(n as usize);
    }
    if let Some(ef) = f.get("hnsw_ef") {
        let ef = ef
            .as_u64()
            .filter(|&e| e > 0 && e <= index_core::MAX_LIMIT as u64)
            .ok_or_else(|| {
                bad(format!(
                    "Validation error in JSON body: params.hnsw_ef {ef} must be between 1 and {}",
                    index_core::MAX_LIMIT
                ))
            })?;
        p.hnsw_ef = Some(ef as usize);
    }
    p.exact = f.bool("exact", false)?;
    f.bool("indexed_only", false)?;
    if let Some(q) = f.get("quantization") {
        let qf = Fields::new(
            q,
            "params.quantization",
            &["ignore", "rescore", "oversampling"],
        )?;
        if qf.bool("ignore", false)? {
            // Searching without quantization means walking full vectors: the rescored result
            // is what that gives; keep rescoring on.
            p.rescore = Some(true);
        }
        if let Some(r) = qf.get("rescore") {
            p.rescore = Some(r.as_bool().ok_or_else(|| {
                bad("Format error in JSON body: params.quantization.rescore must be a boolean")
            })?);
        }
        if let Some(o) = qf.f64("oversampling")? {
            if !(1.0..=100.0).contains(&o) {
                return Err(bad(format!("Validation error in JSON body: params.quantization.oversampling {o} must be between 1 and 100")));
            }
            p.oversampling = Some(o as f32);
        }
    }
    Ok(p)
}

pub fn limit(f: &Fields<'_>, name: &str, default: usize) -> Result<usize, ApiError> {
    match f.get(name) {
        None => Ok(default),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 && n as usize <= index_core::MAX_LIMIT => Ok(n as usize),
            _ => Err(bad(format!(
                "Validation error in JSON body: [{name}: {v} must be an integer between 1 and {}]",
                index_core::MAX_LIMIT
            ))),
        },
    }
}

/// A point's vectors in the shape they were configured: a list for the unnamed vector, a map
/// for named ones.
pub fn vectors_json(named: bool, vectors: &[(String, Vec<f32>)]) -> Value {
    if !named {
        if let Some((_, v)) = vectors.iter().find(|(n, _)| n.is_empty()) {
            return json!(v);
        }
        return Value::Null;
    }
    Value::Object(vectors.iter().map(|(n, v)| (n.clone(), json!(v))).collect())
}

pub fn record_json(named: bool, r: &Record) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), payload::point_id_to_json(r.id));
    m.insert(
        "payload".into(),
        r.payload.clone().map_or(Value::Null, Value::Object),
    );
    m.insert(
        "vector".into(),
        r.vectors
            .as_ref()
            .map_or(Value::Null, |v| vectors_json(named, v)),
    );
    Value::Object(m)
}

/// Writes a scored point as Qdrant's `ScoredPoint` JSON (`id`, `version`, `score`,
/// `payload`, `vector`), straight to bytes: search answers never go through `Value`.
pub fn write_scored(out: &mut Vec<u8>, named: bool, p: &ScoredPoint) {
    out.extend_from_slice(b"{\"id\":");
    match p.record.id {
        PointId::Num(n) => out.extend_from_slice(n.to_string().as_bytes()),
        id @ PointId::Uuid(_) => {
            out.push(b'"');
            out.extend_from_slice(id.to_string().as_bytes());
            out.push(b'"');
        }
    }
    out.extend_from_slice(b",\"version\":0,\"score\":");
    match serde_json::Number::from_f64(f64::from(p.score)) {
        Some(n) => out.extend_from_slice(n.to_string().as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"payload\":");
    match &p.record.payload {
        Some(m) => serde_json::to_writer(&mut *out, m).expect("payload serialises"),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"vector\":");
    match &p.record.vectors {
        Some(v) => {
            serde_json::to_writer(&mut *out, &vectors_json(named, v)).expect("vectors serialise")
        }
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
}

/// `config` of `GET /collections/{name}`: what was set, with Qdrant's defaults filled in
/// where the response schema needs a value.
pub fn collection_config_json(c: &CollectionConfig) -> Value {
    let mut params = Map::new();
    params.insert(
        "vectors".into(),
        serde_json::to_value(&c.vectors).expect("json"),
    );
    params.insert("shard_number".into(), json!(c.shard_number.unwrap_or(1)));
    params.insert(
        "replication_factor".into(),
        json!(c.replication_factor.unwrap_or(1)),
    );
    params.insert(
        "write_consistency_factor".into(),
        json!(c.write_consistency_factor.unwrap_or(1)),
    );
    params.insert(
        "on_disk_payload".into(),
        json!(c.on_disk_payload.unwrap_or(true)),
    );
    if let Some(s) = &c.sharding_method {
        params.insert("sharding_method".into(), json!(s));
    }
    let h = c.hnsw_config.clone().unwrap_or_default();
    let defaults = index_hnsw::HnswConfig::default();
    let mut hnsw = json!({
        "m": h.m.unwrap_or(defaults.m),
        "ef_construct": h.ef_construct.unwrap_or(defaults.ef_construct),
        "full_scan_threshold": h.full_scan_threshold.unwrap_or(10_000),
        "max_indexing_threads": h.max_indexing_threads.unwrap_or(0),
        "on_disk": h.on_disk.unwrap_or(false),
    });
    if let Some(pm) = h.payload_m {
        hnsw["payload_m"] = json!(pm);
    }
    let o = c.optimizers_config.clone().unwrap_or_default();
    let mut optimizer = json!({
        "deleted_threshold": o.deleted_threshold.unwrap_or(0.2),
        "vacuum_min_vector_number": o.vacuum_min_vector_number.unwrap_or(1000),
        "default_segment_number": o.default_segment_number.unwrap_or(0),
        "flush_interval_sec": o.flush_interval_sec.unwrap_or(5),
    });
    if let Some(x) = o.max_segment_size {
        optimizer["max_segment_size"] = json!(x);
    }
    if let Some(x) = o.memmap_threshold {
        optimizer["memmap_threshold"] = json!(x);
    }
    if let Some(x) = o.indexing_threshold {
        optimizer["indexing_threshold"] = json!(x);
    }
    if let Some(x) = &o.max_optimization_threads {
        optimizer["max_optimization_threads"] = x.clone();
    }
    let w = c.wal_config.clone().unwrap_or_default();
    let mut out = json!({
        "params": params,
        "hnsw_config": hnsw,
        "optimizer_config": optimizer,
        "wal_config": {"wal_capacity_mb": w.wal_capacity_mb.unwrap_or(32), "wal_segments_ahead": w.wal_segments_ahead.unwrap_or(0)},
        "quantization_config": c.quantization_config.as_ref().map_or(Value::Null, |q| serde_json::to_value(q).expect("json")),
    });
    if let Some(m) = &c.strict_mode_config {
        out["strict_mode_config"] = m.clone();
    }
    if let Some(m) = &c.metadata {
        out["metadata"] = m.clone();
    }
    out
}
