//! `qdrant.Collections` and `qdrant.Snapshots`.
//!
//! A collection is created from the REST create body its gRPC message maps to (storage's
//! own config type reads it), and described from the REST `CollectionInfo`, so both
//! protocols echo one configuration.

// Qdrant marks `on_disk` and `always_ram` deprecated in favour of `memory`, but clients still
// send them and REST's configuration holds them: both are read and answered here.
#![allow(deprecated)]

use super::json::{self, invalid, put};
use super::{manage_params, rest_result, seconds};
use crate::api::collections as rest;
use crate::api::snapshots;
use crate::api::Params;
use crate::error::ApiError;
use crate::AppState;
use axum::extract::{Path, State};
use qdrant_client::qdrant as pb;
use serde_json::{json, Map, Value as Json};
use std::sync::Arc;
use std::time::Instant;
use tonic::{Request, Response, Status};

/// The collections service over the router's state.
pub struct Collections(pub Arc<AppState>);

fn distance_name(d: i32) -> Result<&'static str, ApiError> {
    match pb::Distance::try_from(d) {
        Ok(pb::Distance::Cosine) => Ok("Cosine"),
        Ok(pb::Distance::Euclid) => Ok("Euclid"),
        Ok(pb::Distance::Dot) => Ok("Dot"),
        Ok(pb::Distance::Manhattan) => Ok("Manhattan"),
        _ => Err(invalid(format!("distance {d} is unknown"))),
    }
}

fn distance_of(name: &str) -> i32 {
    match name {
        "Cosine" => pb::Distance::Cosine as i32,
        "Euclid" => pb::Distance::Euclid as i32,
        "Dot" => pb::Distance::Dot as i32,
        "Manhattan" => pb::Distance::Manhattan as i32,
        _ => pb::Distance::UnknownDistance as i32,
    }
}

fn datatype_name(d: i32) -> Result<Option<&'static str>, ApiError> {
    match pb::Datatype::try_from(d) {
        Ok(pb::Datatype::Default) => Ok(None),
        Ok(pb::Datatype::Float32) => Ok(Some("float32")),
        Ok(pb::Datatype::Uint8) => Ok(Some("uint8")),
        Ok(pb::Datatype::Float16) => Ok(Some("float16")),
        _ => Err(invalid(format!("datatype {d} is not served"))),
    }
}

fn datatype_of(name: &str) -> Option<i32> {
    Some(match name {
        "float32" => pb::Datatype::Float32 as i32,
        "uint8" => pb::Datatype::Uint8 as i32,
        "float16" => pb::Datatype::Float16 as i32,
        _ => return None,
    })
}

fn hnsw_json(h: &pb::HnswConfigDiff) -> Json {
    let mut out = Map::new();
    put(&mut out, "m", h.m.map(Json::from));
    put(&mut out, "ef_construct", h.ef_construct.map(Json::from));
    put(
        &mut out,
        "full_scan_threshold",
        h.full_scan_threshold.map(Json::from),
    );
    put(
        &mut out,
        "max_indexing_threads",
        h.max_indexing_threads.map(Json::from),
    );
    put(&mut out, "on_disk", h.on_disk.map(Json::from));
    put(&mut out, "payload_m", h.payload_m.map(Json::from));
    put(&mut out, "inline_storage", h.inline_storage.map(Json::from));
    Json::Object(out)
}

fn quantization_json(q: &pb::QuantizationConfig) -> Result<Json, ApiError> {
    use pb::quantization_config::Quantization as Q;
    Ok(match &q.quantization {
        None => return Err(invalid("quantization_config without a kind")),
        Some(Q::Scalar(s)) => {
            let mut o = Map::new();
            o.insert("type".into(), json!("int8"));
            put(&mut o, "quantile", s.quantile.map(Json::from));
            put(&mut o, "always_ram", s.always_ram.map(Json::from));
            json!({ "scalar": o })
        }
        Some(Q::Product(p)) => {
            let ratio = match pb::CompressionRatio::try_from(p.compression) {
                Ok(pb::CompressionRatio::X4) => "x4",
                Ok(pb::CompressionRatio::X8) => "x8",
                Ok(pb::CompressionRatio::X16) => "x16",
                Ok(pb::CompressionRatio::X32) => "x32",
                Ok(pb::CompressionRatio::X64) => "x64",
                Err(_) => return Err(invalid(format!("compression {} is unknown", p.compression))),
            };
            let mut o = Map::new();
            o.insert("compression".into(), json!(ratio));
            put(&mut o, "always_ram", p.always_ram.map(Json::from));
            json!({ "product": o })
        }
        Some(Q::Binary(b)) => {
            let mut o = Map::new();
            put(&mut o, "always_ram", b.always_ram.map(Json::from));
            if let Some(e) = b.encoding {
                let name = match e {
                    0 => "one_bit",
                    1 => "two_bits",
                    2 => "one_and_half_bits",
                    other => return Err(invalid(format!("binary encoding {other} is unknown"))),
                };
                o.insert("encoding".into(), json!(name));
            }
            use pb::binary_quantization_query_encoding::Variant;
            if let Some(Variant::Setting(q)) = b.query_encoding.as_ref().and_then(|q| q.variant) {
                let name = match q {
                    0 => "default",
                    1 => "binary",
                    2 => "scalar4bits",
                    3 => "scalar8bits",
                    other => {
                        return Err(invalid(format!("binary query encoding {other} is unknown")))
                    }
                };
                o.insert("query_encoding".into(), json!(name));
            }
            json!({ "binary": o })
        }
        Some(Q::Turboquant(_)) => {
            return Err(ApiError::not_implemented(
                "turbo quantization is not served",
            ))
        }
    })
}

fn vector_params_json(p: &pb::VectorParams) -> Result<Json, ApiError> {
    let mut out = Map::new();
    out.insert("size".into(), json!(p.size));
    out.insert("distance".into(), json!(distance_name(p.distance)?));
    put(
        &mut out,
        "hnsw_config",
        p.hnsw_config.as_ref().map(hnsw_json),
    );
    if let Some(q) = &p.quantization_config {
        out.insert("quantization_config".into(), quantization_json(q)?);
    }
    put(&mut out, "on_disk", p.on_disk.map(Json::from));
    if let Some(d) = p.datatype {
        put(&mut out, "datatype", datatype_name(d)?.map(Json::from));
    }
    if p.multivector_config.is_some() {
        out.insert(
            "multivector_config".into(),
            json!({"comparator": "max_sim"}),
        );
    }
    Ok(Json::Object(out))
}

/// A `CreateVectorNameRequest`'s configuration as REST's `VectorNameConfig` body
/// (`PUT /collections/{name}/vectors/{vector}`).
pub(crate) fn vector_name_config_json(r: &pb::CreateVectorNameRequest) -> Result<Json, ApiError> {
    use pb::create_vector_name_request::VectorConfig;
    match &r.vector_config {
        Some(VectorConfig::DenseConfig(d)) => {
            let mut out = Map::new();
            out.insert("size".into(), json!(d.size));
            out.insert("distance".into(), json!(distance_name(d.distance)?));
            if let Some(t) = d.datatype {
                put(&mut out, "datatype", datatype_name(t)?.map(Json::from));
            }
            if d.multivector_config.is_some() {
                out.insert(
                    "multivector_config".into(),
                    json!({"comparator": "max_sim"}),
                );
            }
            Ok(json!({ "dense": out }))
        }
        Some(VectorConfig::SparseConfig(s)) => {
            let mut out = Map::new();
            match s.modifier.map(pb::Modifier::try_from) {
                None => {}
                Some(Ok(pb::Modifier::Idf)) => {
                    out.insert("modifier".into(), json!("idf"));
                }
                Some(Ok(pb::Modifier::None)) => {
                    out.insert("modifier".into(), json!("none"));
                }
                Some(Err(_)) => {
                    return Err(invalid(format!(
                        "vector_config.sparse_config.modifier {} is unknown",
                        s.modifier.unwrap_or_default()
                    )))
                }
            }
            if let Some(t) = s.datatype {
                put(&mut out, "datatype", datatype_name(t)?.map(Json::from));
            }
            Ok(json!({ "sparse": out }))
        }
        None => Err(invalid("vector_config is required")),
    }
}

/// `CreateCollection` as REST's create body.
fn create_json(c: &pb::CreateCollection) -> Result<Json, ApiError> {
    use pb::vectors_config::Config;
    let mut out = Map::new();
    match c.vectors_config.as_ref().and_then(|v| v.config.as_ref()) {
        None => {}
        Some(Config::Params(p)) => {
            out.insert("vectors".into(), vector_params_json(p)?);
        }
        Some(Config::ParamsMap(m)) => {
            let map = m
                .map
                .iter()
                .map(|(k, p)| Ok((k.clone(), vector_params_json(p)?)))
                .collect::<Result<Map<_, _>, ApiError>>()?;
            out.insert("vectors".into(), Json::Object(map));
        }
    }
    if let Some(s) = &c.sparse_vectors_config {
        let mut map = Map::new();
        for (name, p) in &s.map {
            let mut o = Map::new();
            if let Some(i) = &p.index {
                let mut idx = Map::new();
                put(
                    &mut idx,
                    "full_scan_threshold",
                    i.full_scan_threshold.map(Json::from),
                );
                put(&mut idx, "on_disk", i.on_disk.map(Json::from));
                if let Some(d) = i.datatype {
                    put(&mut idx, "datatype", datatype_name(d)?.map(Json::from));
                }
                o.insert("index".into(), Json::Object(idx));
            }
            match p.modifier {
                Some(1) => {
                    o.insert("modifier".into(), json!("idf"));
                }
                Some(0) => {
                    o.insert("modifier".into(), json!("none"));
                }
                _ => {}
            }
            map.insert(name.clone(), Json::Object(o));
        }
        out.insert("sparse_vectors".into(), Json::Object(map));
    }
    put(&mut out, "shard_number", c.shard_number.map(Json::from));
    put(
        &mut out,
        "replication_factor",
        c.replication_factor.map(Json::from),
    );
    put(
        &mut out,
        "write_consistency_factor",
        c.write_consistency_factor.map(Json::from),
    );
    put(
        &mut out,
        "on_disk_payload",
        c.on_disk_payload.map(Json::from),
    );
    put(
        &mut out,
        "hnsw_config",
        c.hnsw_config.as_ref().map(hnsw_json),
    );
    if let Some(w) = &c.wal_config {
        let mut o = Map::new();
        put(&mut o, "wal_capacity_mb", w.wal_capacity_mb.map(Json::from));
        put(
            &mut o,
            "wal_segments_ahead",
            w.wal_segments_ahead.map(Json::from),
        );
        put(
            &mut o,
            "wal_retain_closed",
            w.wal_retain_closed.map(Json::from),
        );
        out.insert("wal_config".into(), Json::Object(o));
    }
    if let Some(o) = &c.optimizers_config {
        out.insert("optimizers_config".into(), optimizers_json(o));
    }
    if let Some(q) = &c.quantization_config {
        out.insert("quantization_config".into(), quantization_json(q)?);
    }
    if c.sharding_method == Some(pb::ShardingMethod::Custom as i32) {
        out.insert("sharding_method".into(), json!("custom"));
    }
    if c.strict_mode_config.is_some() {
        return Err(ApiError::not_implemented(
            "strict_mode_config over gRPC (it is served over REST)",
        ));
    }
    if !c.metadata.is_empty() {
        out.insert("metadata".into(), Json::Object(json::map_json(&c.metadata)));
    }
    Ok(Json::Object(out))
}

/// A node's collection configuration (`GetCollectionInfo`'s `config`) as the REST create
/// body that makes the same collection: what a cluster coordinator records in its catalog
/// for a collection it finds on its nodes.
pub(crate) fn create_json_of_info(info: &pb::CollectionInfo) -> Result<Json, ApiError> {
    let config = info
        .config
        .as_ref()
        .ok_or_else(|| json::invalid("a collection description without its configuration"))?;
    let params = config
        .params
        .as_ref()
        .ok_or_else(|| json::invalid("a collection configuration without its parameters"))?;
    #[allow(deprecated)] // `on_disk_payload`: what the node reports
    let create = pb::CreateCollection {
        vectors_config: params.vectors_config.clone(),
        sparse_vectors_config: params.sparse_vectors_config.clone(),
        on_disk_payload: Some(params.on_disk_payload),
        hnsw_config: config.hnsw_config,
        wal_config: config.wal_config,
        optimizers_config: config.optimizer_config,
        metadata: config.metadata.clone(),
        ..Default::default()
    };
    create_json(&create)
}

fn optimizers_json(o: &pb::OptimizersConfigDiff) -> Json {
    let mut out = Map::new();
    put(
        &mut out,
        "deleted_threshold",
        o.deleted_threshold.map(Json::from),
    );
    put(
        &mut out,
        "vacuum_min_vector_number",
        o.vacuum_min_vector_number.map(Json::from),
    );
    put(
        &mut out,
        "default_segment_number",
        o.default_segment_number.map(Json::from),
    );
    put(
        &mut out,
        "max_segment_size",
        o.max_segment_size.map(Json::from),
    );
    put(
        &mut out,
        "memmap_threshold",
        o.memmap_threshold.map(Json::from),
    );
    put(
        &mut out,
        "indexing_threshold",
        o.indexing_threshold.map(Json::from),
    );
    put(
        &mut out,
        "flush_interval_sec",
        o.flush_interval_sec.map(Json::from),
    );
    use pb::max_optimization_threads::Variant;
    // Older clients send the thread count in the deprecated field.
    let deprecated = o.deprecated_max_optimization_threads.map(Variant::Value);
    match o
        .max_optimization_threads
        .as_ref()
        .and_then(|m| m.variant)
        .or(deprecated)
    {
        Some(Variant::Value(n)) => {
            out.insert("max_optimization_threads".into(), json!(n));
        }
        Some(Variant::Setting(_)) => {
            out.insert("max_optimization_threads".into(), json!("auto"));
        }
        None => {}
    }
    Json::Object(out)
}

// ---- REST `CollectionInfo` (as JSON) to gRPC ----------------------------------------------

fn u64_at(v: &Json, key: &str) -> Option<u64> {
    v.get(key).and_then(Json::as_u64)
}

fn bool_at(v: &Json, key: &str) -> Option<bool> {
    v.get(key).and_then(Json::as_bool)
}

fn hnsw_pb(v: &Json) -> pb::HnswConfigDiff {
    pb::HnswConfigDiff {
        m: u64_at(v, "m"),
        ef_construct: u64_at(v, "ef_construct"),
        full_scan_threshold: u64_at(v, "full_scan_threshold"),
        max_indexing_threads: u64_at(v, "max_indexing_threads"),
        on_disk: bool_at(v, "on_disk"),
        payload_m: u64_at(v, "payload_m"),
        ..Default::default()
    }
}

fn quantization_pb(v: &Json) -> Option<pb::QuantizationConfig> {
    use pb::quantization_config::Quantization as Q;
    let q = if let Some(s) = v.get("scalar") {
        Q::Scalar(pb::ScalarQuantization {
            r#type: pb::QuantizationType::Int8 as i32,
            quantile: s.get("quantile").and_then(Json::as_f64).map(|q| q as f32),
            always_ram: bool_at(s, "always_ram"),
            memory: None,
        })
    } else if let Some(p) = v.get("product") {
        let compression = match p.get("compression").and_then(Json::as_str) {
            Some("x4") => pb::CompressionRatio::X4,
            Some("x8") => pb::CompressionRatio::X8,
            Some("x16") => pb::CompressionRatio::X16,
            Some("x32") => pb::CompressionRatio::X32,
            _ => pb::CompressionRatio::X64,
        };
        Q::Product(pb::ProductQuantization {
            compression: compression as i32,
            always_ram: bool_at(p, "always_ram"),
            memory: None,
        })
    } else if let Some(b) = v.get("binary") {
        use pb::binary_quantization_query_encoding::Variant;
        let encoding = match b.get("encoding").and_then(Json::as_str) {
            Some("one_bit") => Some(0),
            Some("two_bits") => Some(1),
            Some("one_and_half_bits") => Some(2),
            _ => None,
        };
        let query_encoding = match b.get("query_encoding").and_then(Json::as_str) {
            Some("default") => Some(0),
            Some("binary") => Some(1),
            Some("scalar4bits") => Some(2),
            Some("scalar8bits") => Some(3),
            _ => None,
        };
        Q::Binary(pb::BinaryQuantization {
            always_ram: bool_at(b, "always_ram"),
            encoding,
            query_encoding: query_encoding.map(|q| pb::BinaryQuantizationQueryEncoding {
                variant: Some(Variant::Setting(q)),
            }),
            ..Default::default()
        })
    } else {
        // RaBitQ codes (an extension) have no form in Qdrant's gRPC schema.
        return None;
    };
    Some(pb::QuantizationConfig {
        quantization: Some(q),
    })
}

fn vector_params_pb(v: &Json) -> pb::VectorParams {
    pb::VectorParams {
        size: u64_at(v, "size").unwrap_or(0),
        distance: distance_of(v.get("distance").and_then(Json::as_str).unwrap_or("")),
        hnsw_config: v.get("hnsw_config").filter(|h| h.is_object()).map(hnsw_pb),
        quantization_config: v.get("quantization_config").and_then(quantization_pb),
        on_disk: bool_at(v, "on_disk"),
        datatype: v
            .get("datatype")
            .and_then(Json::as_str)
            .and_then(datatype_of),
        multivector_config: v
            .get("multivector_config")
            .filter(|m| m.is_object())
            .map(|_| pb::MultiVectorConfig {
                comparator: pb::MultiVectorComparator::MaxSim as i32,
            }),
        memory: None,
    }
}

fn vectors_config_pb(v: &Json) -> Option<pb::VectorsConfig> {
    use pb::vectors_config::Config;
    let config = match v {
        // One unnamed vector's parameters (a size that is a number), or named vectors (a vector
        // called "size" maps to an object).
        Json::Object(m) if m.get("size").is_some_and(Json::is_u64) => {
            Config::Params(vector_params_pb(v))
        }
        Json::Object(m) => Config::ParamsMap(pb::VectorParamsMap {
            map: m
                .iter()
                .map(|(k, p)| (k.clone(), vector_params_pb(p)))
                .collect(),
        }),
        _ => return None,
    };
    Some(pb::VectorsConfig {
        config: Some(config),
    })
}

fn sparse_config_pb(v: &Json) -> Option<pb::SparseVectorConfig> {
    let m = v.as_object()?;
    Some(pb::SparseVectorConfig {
        map: m
            .iter()
            .map(|(k, p)| {
                let index =
                    p.get("index")
                        .filter(|i| i.is_object())
                        .map(|i| pb::SparseIndexConfig {
                            full_scan_threshold: u64_at(i, "full_scan_threshold"),
                            on_disk: bool_at(i, "on_disk"),
                            datatype: i
                                .get("datatype")
                                .and_then(Json::as_str)
                                .and_then(datatype_of),
                            memory: None,
                        });
                let modifier = match p.get("modifier").and_then(Json::as_str) {
                    Some("idf") => Some(pb::Modifier::Idf as i32),
                    Some("none") => Some(pb::Modifier::None as i32),
                    _ => None,
                };
                (k.clone(), pb::SparseVectorParams { index, modifier })
            })
            .collect(),
    })
}

fn optimizers_pb(v: &Json) -> pb::OptimizersConfigDiff {
    use pb::max_optimization_threads::Variant;
    pb::OptimizersConfigDiff {
        deleted_threshold: v.get("deleted_threshold").and_then(Json::as_f64),
        vacuum_min_vector_number: u64_at(v, "vacuum_min_vector_number"),
        default_segment_number: u64_at(v, "default_segment_number"),
        max_segment_size: u64_at(v, "max_segment_size"),
        memmap_threshold: u64_at(v, "memmap_threshold"),
        indexing_threshold: u64_at(v, "indexing_threshold"),
        flush_interval_sec: u64_at(v, "flush_interval_sec"),
        max_optimization_threads: u64_at(v, "max_optimization_threads").map(|n| {
            pb::MaxOptimizationThreads {
                variant: Some(Variant::Value(n)),
            }
        }),
        ..Default::default()
    }
}

fn payload_type_of(name: &str) -> i32 {
    (match name {
        "keyword" => pb::PayloadSchemaType::Keyword,
        "integer" => pb::PayloadSchemaType::Integer,
        "float" => pb::PayloadSchemaType::Float,
        "geo" => pb::PayloadSchemaType::Geo,
        "text" => pb::PayloadSchemaType::Text,
        "bool" => pb::PayloadSchemaType::Bool,
        "datetime" => pb::PayloadSchemaType::Datetime,
        "uuid" => pb::PayloadSchemaType::Uuid,
        _ => pb::PayloadSchemaType::UnknownType,
    }) as i32
}

/// The REST `CollectionInfo` (as JSON) as gRPC's.
fn info_pb(v: &Json) -> pb::CollectionInfo {
    let status = match v.get("status").and_then(Json::as_str) {
        Some("green") => pb::CollectionStatus::Green,
        Some("yellow") => pb::CollectionStatus::Yellow,
        Some("red") => pb::CollectionStatus::Red,
        Some("grey") => pb::CollectionStatus::Grey,
        _ => pb::CollectionStatus::UnknownCollectionStatus,
    };
    let optimizer_status = match v.get("optimizer_status") {
        Some(Json::Object(m)) => pb::OptimizerStatus {
            ok: false,
            error: m
                .get("error")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string(),
        },
        _ => pb::OptimizerStatus {
            ok: true,
            error: String::new(),
        },
    };
    let config = &v["config"];
    let params = &config["params"];
    let payload_schema = v
        .get("payload_schema")
        .and_then(Json::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, s)| {
                    let info = pb::PayloadSchemaInfo {
                        data_type: payload_type_of(
                            s.get("data_type").and_then(Json::as_str).unwrap_or(""),
                        ),
                        params: None,
                        points: u64_at(s, "points"),
                    };
                    (k.clone(), info)
                })
                .collect()
        })
        .unwrap_or_default();
    pb::CollectionInfo {
        status: status as i32,
        optimizer_status: Some(optimizer_status),
        segments_count: u64_at(v, "segments_count").unwrap_or(0),
        config: Some(pb::CollectionConfig {
            params: Some(pb::CollectionParams {
                shard_number: u64_at(params, "shard_number").unwrap_or(1) as u32,
                on_disk_payload: bool_at(params, "on_disk_payload").unwrap_or(false),
                vectors_config: params.get("vectors").and_then(vectors_config_pb),
                replication_factor: u64_at(params, "replication_factor").map(|n| n as u32),
                write_consistency_factor: u64_at(params, "write_consistency_factor")
                    .map(|n| n as u32),
                sparse_vectors_config: params.get("sparse_vectors").and_then(sparse_config_pb),
                sharding_method: match params.get("sharding_method").and_then(Json::as_str) {
                    Some("custom") => Some(pb::ShardingMethod::Custom as i32),
                    Some("auto") => Some(pb::ShardingMethod::Auto as i32),
                    _ => None,
                },
                ..Default::default()
            }),
            hnsw_config: Some(hnsw_pb(&config["hnsw_config"])),
            optimizer_config: Some(optimizers_pb(&config["optimizer_config"])),
            wal_config: Some(pb::WalConfigDiff {
                wal_capacity_mb: u64_at(&config["wal_config"], "wal_capacity_mb"),
                wal_segments_ahead: u64_at(&config["wal_config"], "wal_segments_ahead"),
                wal_retain_closed: u64_at(&config["wal_config"], "wal_retain_closed"),
            }),
            quantization_config: config.get("quantization_config").and_then(quantization_pb),
            strict_mode_config: None,
            metadata: config
                .get("metadata")
                .and_then(Json::as_object)
                .map(json::json_map)
                .unwrap_or_default(),
        }),
        payload_schema,
        points_count: u64_at(v, "points_count"),
        indexed_vectors_count: u64_at(v, "indexed_vectors_count"),
        ..Default::default()
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Json, ApiError> {
    serde_json::to_value(v).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("Service internal error: {e}"),
        )
    })
}

#[tonic::async_trait]
impl pb::collections_server::Collections for Collections {
    async fn get(
        &self,
        request: Request<pb::GetCollectionInfoRequest>,
    ) -> Result<Response<pb::GetCollectionInfoResponse>, Status> {
        let start = Instant::now();
        let name = request.into_inner().collection_name;
        let info = rest::collection_info(&self.0, &name).await?;
        Ok(Response::new(pb::GetCollectionInfoResponse {
            result: Some(info_pb(&to_json(&info)?)),
            time: seconds(start),
        }))
    }

    async fn list(
        &self,
        _request: Request<pb::ListCollectionsRequest>,
    ) -> Result<Response<pb::ListCollectionsResponse>, Status> {
        let start = Instant::now();
        let collections = self
            .0
            .storage
            .list()
            .into_iter()
            .map(|name| pb::CollectionDescription { name })
            .collect();
        Ok(Response::new(pb::ListCollectionsResponse {
            collections,
            time: seconds(start),
        }))
    }

    async fn create(
        &self,
        request: Request<pb::CreateCollection>,
    ) -> Result<Response<pb::CollectionOperationResponse>, Status> {
        let start = Instant::now();
        let c = request.into_inner();
        let body = serde_json::to_vec(&create_json(&c)?).expect("JSON values serialise");
        rest::create_collection(&self.0, c.collection_name, &body).await?;
        Ok(Response::new(pb::CollectionOperationResponse {
            result: true,
            time: seconds(start),
        }))
    }

    async fn update(
        &self,
        request: Request<pb::UpdateCollection>,
    ) -> Result<Response<pb::CollectionOperationResponse>, Status> {
        let start = Instant::now();
        let r = request.into_inner();
        let body = serde_json::to_vec(&update_json(&r)?).expect("JSON values serialise");
        rest_result(
            rest::update(
                State(self.0.clone()),
                Path(r.collection_name),
                Params(manage_params(None)),
                body.into(),
            )
            .await,
        )
        .await?;
        Ok(Response::new(pb::CollectionOperationResponse {
            result: true,
            time: seconds(start),
        }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteCollection>,
    ) -> Result<Response<pb::CollectionOperationResponse>, Status> {
        let start = Instant::now();
        let name = request.into_inner().collection_name;
        let existed = rest::delete_collection(&self.0, name).await?;
        Ok(Response::new(pb::CollectionOperationResponse {
            result: existed,
            time: seconds(start),
        }))
    }

    async fn update_aliases(
        &self,
        request: Request<pb::ChangeAliases>,
    ) -> Result<Response<pb::CollectionOperationResponse>, Status> {
        use pb::alias_operations::Action;
        let start = Instant::now();
        let r = request.into_inner();
        let actions = r
            .actions
            .iter()
            .enumerate()
            .map(|(i, a)| match &a.action {
                Some(Action::CreateAlias(c)) => Ok(json!({"create_alias": {
                    "collection_name": c.collection_name, "alias_name": c.alias_name}})),
                Some(Action::RenameAlias(c)) => Ok(json!({"rename_alias": {
                    "old_alias_name": c.old_alias_name, "new_alias_name": c.new_alias_name}})),
                Some(Action::DeleteAlias(c)) => {
                    Ok(json!({"delete_alias": {"alias_name": c.alias_name}}))
                }
                None => Err(invalid(format!("actions[{i}]: an action without a kind"))),
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        let body =
            serde_json::to_vec(&json!({ "actions": actions })).expect("JSON values serialise");
        rest_result(
            rest::change_aliases(
                State(self.0.clone()),
                Params(manage_params(None)),
                body.into(),
            )
            .await,
        )
        .await?;
        Ok(Response::new(pb::CollectionOperationResponse {
            result: true,
            time: seconds(start),
        }))
    }

    async fn list_collection_aliases(
        &self,
        request: Request<pb::ListCollectionAliasesRequest>,
    ) -> Result<Response<pb::ListAliasesResponse>, Status> {
        let start = Instant::now();
        let name = request.into_inner().collection_name;
        let v =
            rest_result(rest::collection_aliases(State(self.0.clone()), Path(name)).await).await?;
        Ok(Response::new(aliases_pb(&v, start)))
    }

    async fn list_aliases(
        &self,
        _request: Request<pb::ListAliasesRequest>,
    ) -> Result<Response<pb::ListAliasesResponse>, Status> {
        let start = Instant::now();
        let v = rest_result(rest::aliases(State(self.0.clone())).await).await?;
        Ok(Response::new(aliases_pb(&v, start)))
    }

    async fn collection_cluster_info(
        &self,
        request: Request<pb::CollectionClusterInfoRequest>,
    ) -> Result<Response<pb::CollectionClusterInfoResponse>, Status> {
        let start = Instant::now();
        let name = request.into_inner().collection_name;
        let info = rest::cluster_info_of(&self.0, &name).await?;
        let u64_of = |v: &Json| v.as_u64().unwrap_or(0);
        let state_of = |v: &Json| {
            pb::ReplicaState::from_str_name(v.as_str().unwrap_or("Active"))
                .unwrap_or(pb::ReplicaState::Active) as i32
        };
        let key_of = |v: &Json| -> Option<pb::ShardKey> {
            let key = match v {
                Json::String(s) => pb::shard_key::Key::Keyword(s.clone()),
                Json::Number(n) => pb::shard_key::Key::Number(n.as_u64()?),
                _ => return None,
            };
            Some(pb::ShardKey { key: Some(key) })
        };
        let list = |k: &str| info[k].as_array().cloned().unwrap_or_default();
        Ok(Response::new(pb::CollectionClusterInfoResponse {
            peer_id: u64_of(&info["peer_id"]),
            shard_count: u64_of(&info["shard_count"]),
            local_shards: list("local_shards")
                .iter()
                .map(|s| pb::LocalShardInfo {
                    shard_id: u64_of(&s["shard_id"]) as u32,
                    points_count: u64_of(&s["points_count"]),
                    state: state_of(&s["state"]),
                    shard_key: key_of(&s["shard_key"]),
                })
                .collect(),
            remote_shards: list("remote_shards")
                .iter()
                .map(|s| pb::RemoteShardInfo {
                    shard_id: u64_of(&s["shard_id"]) as u32,
                    peer_id: u64_of(&s["peer_id"]),
                    state: state_of(&s["state"]),
                    shard_key: key_of(&s["shard_key"]),
                })
                .collect(),
            shard_transfers: Vec::new(),
            resharding_operations: list("resharding_operations")
                .iter()
                .map(|r| pb::ReshardingInfo {
                    shard_id: u64_of(&r["shard_id"]) as u32,
                    peer_id: u64_of(&r["peer_id"]),
                    shard_key: None,
                    direction: match r["direction"].as_str() {
                        Some("down") => pb::ReshardingDirection::Down,
                        _ => pb::ReshardingDirection::Up,
                    } as i32,
                })
                .collect(),
            time: seconds(start),
        }))
    }

    async fn collection_exists(
        &self,
        request: Request<pb::CollectionExistsRequest>,
    ) -> Result<Response<pb::CollectionExistsResponse>, Status> {
        let start = Instant::now();
        let name = request.into_inner().collection_name;
        // A collection or an alias of one, as over REST.
        let exists = self.0.storage.get(&name).is_ok();
        Ok(Response::new(pb::CollectionExistsResponse {
            result: Some(pb::CollectionExists { exists }),
            time: seconds(start),
        }))
    }

    async fn update_collection_cluster_setup(
        &self,
        request: Request<pb::UpdateCollectionClusterSetupRequest>,
    ) -> Result<Response<pb::UpdateCollectionClusterSetupResponse>, Status> {
        use pb::update_collection_cluster_setup_request::Operation as Op;
        let start = Instant::now();
        let r = request.into_inner();
        match r.operation {
            Some(Op::CreateShardKey(c)) => {
                let body = crate::model::CreateShardingKey {
                    shard_key: shard_key_json(c.shard_key.as_ref(), "create_shard_key.shard_key")?,
                    shards_number: c.shards_number,
                    replication_factor: c.replication_factor,
                    placement: (!c.placement.is_empty()).then_some(c.placement),
                    initial_state: None,
                    region: None,
                };
                rest::add_shard_key(&self.0, &r.collection_name, body).await?;
            }
            Some(Op::DeleteShardKey(d)) => {
                let key = shard_key_json(d.shard_key.as_ref(), "delete_shard_key.shard_key")?;
                rest::drop_shard_key(&self.0, &r.collection_name, &key).await?;
            }
            // Resharding is a REST operation in Qdrant's API (`POST /collections/{name}/cluster`);
            // transfers and replicas have nothing to act on (one shard a node, no replicas).
            Some(op) => {
                let name = match op {
                    Op::MoveShard(_) => "move_shard",
                    Op::ReplicateShard(_) => "replicate_shard",
                    Op::AbortTransfer(_) => "abort_transfer",
                    Op::DropReplica(_) => "drop_replica",
                    Op::RestartTransfer(_) => "restart_transfer",
                    Op::ReplicatePoints(_) => "replicate_points",
                    Op::CreateShardKey(_) | Op::DeleteShardKey(_) => unreachable!("served above"),
                };
                return Err(Status::unimplemented(format!(
                    "Collections/UpdateCollectionClusterSetup: {name} is not served (each node \
                     holds one shard of a collection, without replicas)"
                )));
            }
            None => return Err(invalid("operation is required").into()),
        }
        Ok(Response::new(pb::UpdateCollectionClusterSetupResponse {
            result: true,
            time: seconds(start),
        }))
    }

    async fn create_shard_key(
        &self,
        request: Request<pb::CreateShardKeyRequest>,
    ) -> Result<Response<pb::CreateShardKeyResponse>, Status> {
        let start = Instant::now();
        let r = request.into_inner();
        let c = r.request.ok_or_else(|| invalid("request is required"))?;
        let key = shard_key_json(c.shard_key.as_ref(), "request.shard_key")?;
        let initial_state = match c.initial_state {
            None => None,
            Some(s) => Some(
                pb::ReplicaState::try_from(s)
                    .map_err(|_| invalid(format!("request.initial_state: unknown state {s}")))?
                    .as_str_name()
                    .to_string(),
            ),
        };
        let body = crate::model::CreateShardingKey {
            shard_key: key,
            shards_number: c.shards_number,
            replication_factor: c.replication_factor,
            placement: (!c.placement.is_empty()).then_some(c.placement),
            initial_state,
            region: None,
        };
        rest::add_shard_key(&self.0, &r.collection_name, body).await?;
        Ok(Response::new(pb::CreateShardKeyResponse {
            result: true,
            time: seconds(start),
        }))
    }

    async fn delete_shard_key(
        &self,
        request: Request<pb::DeleteShardKeyRequest>,
    ) -> Result<Response<pb::DeleteShardKeyResponse>, Status> {
        let start = Instant::now();
        let r = request.into_inner();
        let d = r.request.ok_or_else(|| invalid("request is required"))?;
        let key = shard_key_json(d.shard_key.as_ref(), "request.shard_key")?;
        rest::drop_shard_key(&self.0, &r.collection_name, &key).await?;
        Ok(Response::new(pb::DeleteShardKeyResponse {
            result: true,
            time: seconds(start),
        }))
    }

    async fn list_shard_keys(
        &self,
        request: Request<pb::ListShardKeysRequest>,
    ) -> Result<Response<pb::ListShardKeysResponse>, Status> {
        let start = Instant::now();
        let r = request.into_inner();
        let keys = rest::shard_keys_of(&self.0, &r.collection_name)?.unwrap_or_default();
        let shard_keys = keys
            .into_iter()
            .map(|k| pb::ShardKeyDescription {
                key: Some(pb::ShardKey {
                    key: Some(match k {
                        shard_router::remote::keys::ShardKey::Keyword(w) => {
                            pb::shard_key::Key::Keyword(w)
                        }
                        shard_router::remote::keys::ShardKey::Number(n) => {
                            pb::shard_key::Key::Number(n)
                        }
                    }),
                }),
            })
            .collect();
        Ok(Response::new(pb::ListShardKeysResponse {
            shard_keys,
            time: seconds(start),
        }))
    }
}

/// The snapshots service: create, list and delete (downloads, uploads and recovery are
/// REST's, as in Qdrant, whose gRPC API has none).
pub struct Snapshots(pub Arc<AppState>);

#[tonic::async_trait]
impl pb::snapshots_server::Snapshots for Snapshots {
    async fn create(
        &self,
        request: Request<pb::CreateSnapshotRequest>,
    ) -> Result<Response<pb::CreateSnapshotResponse>, Status> {
        let start = Instant::now();
        let name = request.into_inner().collection_name;
        let v = rest_result(
            snapshots::create(
                State(self.0.clone()),
                Path(name),
                Params(manage_params(Some(true))),
            )
            .await,
        )
        .await?;
        Ok(Response::new(pb::CreateSnapshotResponse {
            snapshot_description: Some(snapshot_pb(&v)),
            time: seconds(start),
        }))
    }

    async fn list(
        &self,
        request: Request<pb::ListSnapshotsRequest>,
    ) -> Result<Response<pb::ListSnapshotsResponse>, Status> {
        let start = Instant::now();
        let name = request.into_inner().collection_name;
        let v = rest_result(snapshots::list(State(self.0.clone()), Path(name)).await).await?;
        Ok(Response::new(snapshots_pb(&v, start)))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteSnapshotRequest>,
    ) -> Result<Response<pb::DeleteSnapshotResponse>, Status> {
        let start = Instant::now();
        let r = request.into_inner();
        rest_result(
            snapshots::remove(
                State(self.0.clone()),
                Path((r.collection_name, r.snapshot_name)),
                Params(manage_params(None)),
            )
            .await,
        )
        .await?;
        Ok(Response::new(pb::DeleteSnapshotResponse {
            time: seconds(start),
        }))
    }

    async fn create_full(
        &self,
        _request: Request<pb::CreateFullSnapshotRequest>,
    ) -> Result<Response<pb::CreateSnapshotResponse>, Status> {
        let start = Instant::now();
        let v = rest_result(
            snapshots::create_full(State(self.0.clone()), Params(manage_params(Some(true)))).await,
        )
        .await?;
        Ok(Response::new(pb::CreateSnapshotResponse {
            snapshot_description: Some(snapshot_pb(&v)),
            time: seconds(start),
        }))
    }

    async fn list_full(
        &self,
        _request: Request<pb::ListFullSnapshotsRequest>,
    ) -> Result<Response<pb::ListSnapshotsResponse>, Status> {
        let start = Instant::now();
        let v = rest_result(snapshots::list_full(State(self.0.clone())).await).await?;
        Ok(Response::new(snapshots_pb(&v, start)))
    }

    async fn delete_full(
        &self,
        request: Request<pb::DeleteFullSnapshotRequest>,
    ) -> Result<Response<pb::DeleteSnapshotResponse>, Status> {
        let start = Instant::now();
        let name = request.into_inner().snapshot_name;
        rest_result(
            snapshots::remove_full(
                State(self.0.clone()),
                Path(name),
                Params(manage_params(None)),
            )
            .await,
        )
        .await?;
        Ok(Response::new(pb::DeleteSnapshotResponse {
            time: seconds(start),
        }))
    }
}

fn aliases_pb(v: &Json, start: Instant) -> pb::ListAliasesResponse {
    let aliases = v["aliases"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| pb::AliasDescription {
                    alias_name: d["alias_name"].as_str().unwrap_or_default().to_string(),
                    collection_name: d["collection_name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    pb::ListAliasesResponse {
        aliases,
        time: seconds(start),
    }
}

/// A REST snapshot description as gRPC's (its creation time, RFC 3339 without a zone, read
/// as UTC).
fn snapshot_pb(v: &Json) -> pb::SnapshotDescription {
    let creation_time = v["creation_time"]
        .as_str()
        .and_then(payload::parse_datetime_micros)
        .map(|us| prost_types::Timestamp {
            seconds: us.div_euclid(1_000_000),
            nanos: (us.rem_euclid(1_000_000) * 1000) as i32,
        });
    pb::SnapshotDescription {
        name: v["name"].as_str().unwrap_or_default().to_string(),
        creation_time,
        size: v["size"].as_i64().unwrap_or(0),
        checksum: v["checksum"].as_str().map(str::to_string),
    }
}

fn snapshots_pb(v: &Json, start: Instant) -> pb::ListSnapshotsResponse {
    pb::ListSnapshotsResponse {
        snapshot_descriptions: v
            .as_array()
            .map(|l| l.iter().map(snapshot_pb).collect())
            .unwrap_or_default(),
        time: seconds(start),
    }
}

fn quantization_diff_json(q: &pb::QuantizationConfigDiff) -> Result<Json, ApiError> {
    use pb::quantization_config::Quantization as Q;
    use pb::quantization_config_diff::Quantization as D;
    let full = |q: Q| {
        quantization_json(&pb::QuantizationConfig {
            quantization: Some(q),
        })
    };
    match &q.quantization {
        None => Err(invalid("quantization_config without a kind")),
        Some(D::Disabled(_)) => Ok(json!("Disabled")),
        Some(D::Scalar(s)) => full(Q::Scalar(*s)),
        Some(D::Product(p)) => full(Q::Product(*p)),
        Some(D::Binary(b)) => full(Q::Binary(*b)),
        Some(D::Turboquant(_)) => Err(ApiError::not_implemented(
            "turbo quantization is not served",
        )),
    }
}

fn vector_diff_json(d: &pb::VectorParamsDiff) -> Result<Json, ApiError> {
    let mut out = Map::new();
    put(
        &mut out,
        "hnsw_config",
        d.hnsw_config.as_ref().map(hnsw_json),
    );
    if let Some(q) = &d.quantization_config {
        out.insert("quantization_config".into(), quantization_diff_json(q)?);
    }
    put(&mut out, "on_disk", d.on_disk.map(Json::from));
    Ok(Json::Object(out))
}

/// `UpdateCollection` as REST's `PATCH` body.
fn update_json(u: &pb::UpdateCollection) -> Result<Json, ApiError> {
    use pb::vectors_config_diff::Config;
    let mut out = Map::new();
    if let Some(o) = &u.optimizers_config {
        out.insert("optimizers_config".into(), optimizers_json(o));
    }
    if let Some(p) = &u.params {
        let mut o = Map::new();
        put(
            &mut o,
            "replication_factor",
            p.replication_factor.map(Json::from),
        );
        put(
            &mut o,
            "write_consistency_factor",
            p.write_consistency_factor.map(Json::from),
        );
        put(&mut o, "on_disk_payload", p.on_disk_payload.map(Json::from));
        out.insert("params".into(), Json::Object(o));
    }
    put(
        &mut out,
        "hnsw_config",
        u.hnsw_config.as_ref().map(hnsw_json),
    );
    match u.vectors_config.as_ref().and_then(|v| v.config.as_ref()) {
        None => {}
        Some(Config::Params(d)) => {
            out.insert("vectors".into(), json!({ "": vector_diff_json(d)? }));
        }
        Some(Config::ParamsMap(m)) => {
            let map = m
                .map
                .iter()
                .map(|(k, d)| Ok((k.clone(), vector_diff_json(d)?)))
                .collect::<Result<Map<_, _>, ApiError>>()?;
            out.insert("vectors".into(), Json::Object(map));
        }
    }
    if let Some(q) = &u.quantization_config {
        out.insert("quantization_config".into(), quantization_diff_json(q)?);
    }
    if u.sparse_vectors_config.is_some() {
        return Err(ApiError::not_implemented(
            "changing sparse_vectors is not served",
        ));
    }
    if u.strict_mode_config.is_some() {
        return Err(ApiError::not_implemented(
            "strict_mode_config over gRPC (it is served over REST)",
        ));
    }
    if !u.metadata.is_empty() {
        out.insert("metadata".into(), Json::Object(json::map_json(&u.metadata)));
    }
    Ok(Json::Object(out))
}

/// A gRPC shard key as JSON.
fn shard_key_json(k: Option<&pb::ShardKey>, at: &str) -> Result<Json, ApiError> {
    match k.and_then(|k| k.key.as_ref()) {
        Some(pb::shard_key::Key::Keyword(w)) => Ok(Json::String(w.clone())),
        Some(pb::shard_key::Key::Number(n)) => Ok(Json::from(*n)),
        None => Err(invalid(format!("{at} is required"))),
    }
}
