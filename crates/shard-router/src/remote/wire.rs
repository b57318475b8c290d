//! Internal requests written as Qdrant's gRPC messages, and gRPC answers read back into
//! storage's types: what a remote shard sends and receives.
//!
//! Every conversion is total over what the message can carry; what it cannot (a filter
//! condition Qdrant's protocol has no form for) is an error naming it, never dropped.

use index_core::PointId;
use payload::{AnyValues, Condition, FieldCheck, Filter, Match, MatchValue, PayloadSelector};
use qdrant_client::qdrant as pb;
use serde_json::{Map, Value as Json};
use std::collections::HashMap;
use storage::{
    multi::MultiVector, sparse::SparseVector, OrderValue, PointSelector, PointWrite, Record,
    VectorSelector,
};

/// A JSON value as a gRPC payload value. A number that fits `i64` is an integer, as Qdrant
/// answers.
pub fn json_value(v: &Json) -> pb::Value {
    use pb::value::Kind;
    let kind = match v {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Kind::IntegerValue(i),
            None => Kind::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(a) => Kind::ListValue(pb::ListValue {
            values: a.iter().map(json_value).collect(),
        }),
        Json::Object(o) => Kind::StructValue(pb::Struct {
            fields: json_map(o),
        }),
    };
    pb::Value { kind: Some(kind) }
}

/// A JSON object as a gRPC payload.
pub fn json_map(o: &Map<String, Json>) -> HashMap<String, pb::Value> {
    o.iter().map(|(k, v)| (k.clone(), json_value(v))).collect()
}

/// A gRPC payload value as JSON (integers stay integers, doubles stay doubles).
pub fn value_json(v: &pb::Value) -> Json {
    use pb::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or(Json::Null, Json::Number)
        }
        Some(Kind::IntegerValue(i)) => Json::from(*i),
        Some(Kind::StringValue(s)) => Json::String(s.clone()),
        Some(Kind::BoolValue(b)) => Json::Bool(*b),
        Some(Kind::StructValue(s)) => Json::Object(map_json(&s.fields)),
        Some(Kind::ListValue(l)) => Json::Array(l.values.iter().map(value_json).collect()),
    }
}

/// A gRPC payload (`map<string, Value>`) as a JSON object.
pub fn map_json(fields: &HashMap<String, pb::Value>) -> Map<String, Json> {
    fields
        .iter()
        .map(|(k, v)| (k.clone(), value_json(v)))
        .collect()
}

/// A point id as a gRPC id.
pub fn id(id: PointId) -> pb::PointId {
    pb::PointId {
        point_id_options: Some(match id {
            PointId::Num(n) => pb::point_id::PointIdOptions::Num(n),
            PointId::Uuid(_) => pb::point_id::PointIdOptions::Uuid(id.to_string()),
        }),
    }
}

/// A gRPC id read back.
pub fn point_id(id: Option<&pb::PointId>) -> Result<PointId, String> {
    match id.and_then(|i| i.point_id_options.as_ref()) {
        Some(pb::point_id::PointIdOptions::Num(n)) => Ok(PointId::Num(*n)),
        Some(pb::point_id::PointIdOptions::Uuid(s)) => payload::point_id_from_str(s)
            .ok_or_else(|| format!("the shard answered an unreadable id `{s}`")),
        None => Err("the shard answered a point without an id".into()),
    }
}

fn cond(c: pb::condition::ConditionOneOf) -> pb::Condition {
    pb::Condition {
        condition_one_of: Some(c),
    }
}

/// A parsed filter as gRPC's `Filter`.
pub fn filter(f: &Filter) -> Result<pb::Filter, String> {
    let all = |cs: &[Condition]| cs.iter().map(condition).collect::<Result<Vec<_>, _>>();
    Ok(pb::Filter {
        must: all(&f.must)?,
        should: all(&f.should)?,
        must_not: all(&f.must_not)?,
        min_should: match &f.min_should {
            Some(m) => Some(pb::MinShould {
                conditions: all(&m.conditions)?,
                min_count: m.min_count as u64,
            }),
            None => None,
        },
    })
}

fn condition(c: &Condition) -> Result<pb::Condition, String> {
    use pb::condition::ConditionOneOf as C;
    Ok(cond(match c {
        Condition::Field(f) => C::Field(field(&f.key.to_string(), &f.check)?),
        Condition::IsEmpty(k) => C::IsEmpty(pb::IsEmptyCondition { key: k.to_string() }),
        Condition::IsNull(k) => C::IsNull(pb::IsNullCondition { key: k.to_string() }),
        Condition::HasId(ids) => {
            // Sorted, so that one filter is always written the same way.
            let mut ids: Vec<PointId> = ids.iter().copied().collect();
            ids.sort();
            C::HasId(pb::HasIdCondition {
                has_id: ids.into_iter().map(id).collect(),
            })
        }
        Condition::HasVector(name) => C::HasVector(pb::HasVectorCondition {
            has_vector: name.clone(),
        }),
        Condition::Slice { total, index } => C::Slice(pb::SliceCondition {
            total: *total,
            index: *index,
        }),
        Condition::Nested { path, filter: f } => C::Nested(pb::NestedCondition {
            key: path.to_string(),
            filter: Some(filter(f)?),
        }),
        Condition::Filter(f) => C::Filter(filter(f)?),
    }))
}

fn geo(p: payload::GeoPoint) -> pb::GeoPoint {
    pb::GeoPoint {
        lat: p.lat,
        lon: p.lon,
    }
}

/// A ring as a closed line string (the parser drops the repeated closing point).
fn ring(r: &payload::Ring) -> pb::GeoLineString {
    let mut points: Vec<pb::GeoPoint> = r
        .iter()
        .map(|&(lat, lon)| pb::GeoPoint { lat, lon })
        .collect();
    if let Some(first) = points.first().copied() {
        points.push(first);
    }
    pb::GeoLineString { points }
}

fn timestamp(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1_000) as i32,
    }
}

fn field(key: &str, check: &FieldCheck) -> Result<pb::FieldCondition, String> {
    use pb::r#match::MatchValue as M;
    let mut out = pb::FieldCondition {
        key: key.to_string(),
        ..Default::default()
    };
    match check {
        FieldCheck::ValuesCount(b) => {
            out.values_count = Some(pb::ValuesCount {
                lt: b.lt,
                gt: b.gt,
                gte: b.gte,
                lte: b.lte,
            })
        }
        FieldCheck::IsEmpty(b) => out.is_empty = Some(*b),
        FieldCheck::IsNull(b) => out.is_null = Some(*b),
        FieldCheck::Match(m) => {
            let value = match m {
                Match::Value(MatchValue::Keyword(s)) => M::Keyword(s.clone()),
                Match::Value(MatchValue::Integer(i)) => M::Integer(*i),
                Match::Value(MatchValue::Bool(b)) => M::Boolean(*b),
                Match::Any(AnyValues::Keywords(k)) => M::Keywords(strings(k)),
                Match::Any(AnyValues::Integers(k)) => M::Integers(integers(k)),
                Match::Except(AnyValues::Keywords(k)) => M::ExceptKeywords(strings(k)),
                Match::Except(AnyValues::Integers(k)) => M::ExceptIntegers(integers(k)),
                Match::Text(t) => M::Text(t.join(" ")),
                Match::TextAny(t) => M::TextAny(t.join(" ")),
                Match::Phrase(t) => M::Phrase(t.join(" ")),
                Match::Prefix(s) => M::Prefix(s.clone()),
                Match::Substring(s) => M::Substring(s.clone()),
            };
            out.r#match = Some(pb::Match {
                match_value: Some(value),
            });
        }
        FieldCheck::Range(payload::RangeCheck::Number(b)) => {
            out.range = Some(pb::Range {
                lt: b.lt,
                gt: b.gt,
                gte: b.gte,
                lte: b.lte,
            })
        }
        FieldCheck::Range(payload::RangeCheck::Datetime(b)) => {
            out.datetime_range = Some(pb::DatetimeRange {
                lt: b.lt.map(timestamp),
                gt: b.gt.map(timestamp),
                gte: b.gte.map(timestamp),
                lte: b.lte.map(timestamp),
            })
        }
        FieldCheck::GeoBoundingBox {
            top_left,
            bottom_right,
        } => {
            out.geo_bounding_box = Some(pb::GeoBoundingBox {
                top_left: Some(geo(*top_left)),
                bottom_right: Some(geo(*bottom_right)),
            })
        }
        FieldCheck::GeoRadius { center, radius } => {
            // The message carries the radius as `float`, as Qdrant's own remote shards send
            // it: a radius of thousands of kilometres moves by centimetres.
            out.geo_radius = Some(pb::GeoRadius {
                center: Some(geo(*center)),
                radius: *radius as f32,
            })
        }
        FieldCheck::GeoPolygon {
            exterior,
            interiors,
        } => {
            out.geo_polygon = Some(pb::GeoPolygon {
                exterior: Some(ring(exterior)),
                interiors: interiors.iter().map(ring).collect(),
            })
        }
    }
    Ok(out)
}

fn strings(k: &std::collections::HashSet<String>) -> pb::RepeatedStrings {
    let mut strings: Vec<String> = k.iter().cloned().collect();
    strings.sort();
    pb::RepeatedStrings { strings }
}

fn integers(k: &std::collections::HashSet<i64>) -> pb::RepeatedIntegers {
    let mut integers: Vec<i64> = k.iter().copied().collect();
    integers.sort();
    pb::RepeatedIntegers { integers }
}

/// A payload selector as gRPC's.
pub fn with_payload(s: &PayloadSelector) -> pb::WithPayloadSelector {
    use pb::with_payload_selector::SelectorOptions as S;
    let paths = |p: &[payload::KeyPath]| p.iter().map(ToString::to_string).collect();
    pb::WithPayloadSelector {
        selector_options: Some(match s {
            PayloadSelector::All => S::Enable(true),
            PayloadSelector::Nothing => S::Enable(false),
            PayloadSelector::Include(p) => {
                S::Include(pb::PayloadIncludeSelector { fields: paths(p) })
            }
            PayloadSelector::Exclude(p) => {
                S::Exclude(pb::PayloadExcludeSelector { fields: paths(p) })
            }
        }),
    }
}

/// A vector selector as gRPC's.
pub fn with_vectors(s: &VectorSelector) -> pb::WithVectorsSelector {
    use pb::with_vectors_selector::SelectorOptions as S;
    pb::WithVectorsSelector {
        selector_options: Some(match s {
            VectorSelector::Nothing => S::Enable(false),
            VectorSelector::All => S::Enable(true),
            VectorSelector::Only(names) => S::Include(pb::VectorsSelector {
                names: names.clone(),
            }),
        }),
    }
}

/// A dense vector as a point's vector.
fn dense_vector(v: &[f32]) -> pb::Vector {
    vector(pb::vector::Vector::Dense(pb::DenseVector {
        data: v.to_vec(),
    }))
}

#[allow(deprecated)] // the deprecated fields stay empty; `vector` carries the value
fn vector(v: pb::vector::Vector) -> pb::Vector {
    pb::Vector {
        data: Vec::new(),
        indices: None,
        vectors_count: None,
        vector: Some(v),
    }
}

fn sparse_pb(s: &SparseVector) -> pb::SparseVector {
    pb::SparseVector {
        indices: s.indices.clone(),
        values: s.values.clone(),
    }
}

fn multi_pb(m: &MultiVector) -> pb::MultiDenseVector {
    pb::MultiDenseVector {
        vectors: m
            .rows()
            .map(|r| pb::DenseVector { data: r.to_vec() })
            .collect(),
    }
}

/// A point's vectors, every one named (`""` is the unnamed vector, which only a collection of
/// one unnamed vector has, and which is then sent alone and unnamed).
pub fn vectors(p: &PointWrite) -> pb::Vectors {
    use pb::vectors::VectorsOptions as V;
    if let [(name, v)] = p.vectors.as_slice() {
        if name.is_empty() && p.sparse.is_empty() && p.multi.is_empty() {
            return pb::Vectors {
                vectors_options: Some(V::Vector(dense_vector(v))),
            };
        }
    }
    let mut named: HashMap<String, pb::Vector> = HashMap::new();
    for (name, v) in &p.vectors {
        named.insert(name.clone(), dense_vector(v));
    }
    for (name, s) in &p.sparse {
        named.insert(
            name.clone(),
            vector(pb::vector::Vector::Sparse(sparse_pb(s))),
        );
    }
    for (name, m) in &p.multi {
        named.insert(
            name.clone(),
            vector(pb::vector::Vector::MultiDense(multi_pb(m))),
        );
    }
    pb::Vectors {
        vectors_options: Some(V::Vectors(pb::NamedVectors { vectors: named })),
    }
}

/// A point to upsert.
pub fn point(p: &PointWrite) -> pb::PointStruct {
    pb::PointStruct {
        id: Some(id(p.id)),
        payload: json_map(&p.payload),
        vectors: Some(vectors(p)),
    }
}

/// A point selector.
pub fn selector(s: &PointSelector) -> Result<pb::PointsSelector, String> {
    use pb::points_selector::PointsSelectorOneOf as S;
    Ok(pb::PointsSelector {
        points_selector_one_of: Some(match s {
            PointSelector::Ids(ids) => S::Points(pb::PointsIdsList {
                ids: ids.iter().copied().map(id).collect(),
            }),
            PointSelector::Filter(f) => S::Filter(filter(f)?),
        }),
    })
}

/// A query vector input.
pub fn dense_input(v: &[f32]) -> pb::VectorInput {
    pb::VectorInput {
        variant: Some(pb::vector_input::Variant::Dense(pb::DenseVector {
            data: v.to_vec(),
        })),
    }
}

/// A sparse query vector input.
pub fn sparse_input(v: &SparseVector) -> pb::VectorInput {
    pb::VectorInput {
        variant: Some(pb::vector_input::Variant::Sparse(sparse_pb(v))),
    }
}

/// A multivector query input.
pub fn multi_input(v: &MultiVector) -> pb::VectorInput {
    pb::VectorInput {
        variant: Some(pb::vector_input::Variant::MultiDense(multi_pb(v))),
    }
}

/// Examples as a universal query.
pub fn examples_query<V>(
    ex: &storage::Examples<V>,
    input: impl Fn(&V) -> pb::VectorInput,
) -> pb::query::Variant {
    use pb::query::Variant as Q;
    let pairs = |c: &[storage::Pair<V>]| pb::ContextInput {
        pairs: c
            .iter()
            .map(|p| pb::ContextInputPair {
                positive: Some(input(&p.positive)),
                negative: Some(input(&p.negative)),
            })
            .collect(),
    };
    match ex {
        storage::Examples::Recommend {
            positive,
            negative,
            strategy,
        } => Q::Recommend(pb::RecommendInput {
            positive: positive.iter().map(&input).collect(),
            negative: negative.iter().map(&input).collect(),
            strategy: Some(match strategy {
                storage::RecommendStrategy::BestScore => pb::RecommendStrategy::BestScore,
                storage::RecommendStrategy::SumScores => pb::RecommendStrategy::SumScores,
            } as i32),
        }),
        storage::Examples::Discover { target, context } => Q::Discover(pb::DiscoverInput {
            target: Some(input(target)),
            context: Some(pairs(context)),
        }),
        storage::Examples::Context { context } => Q::Context(pairs(context)),
    }
}

/// A point's vectors as answered, into a record's fields (dense by name, sparse, multi).
#[allow(deprecated)] // Qdrant servers before 1.16 answer in the deprecated fields
pub fn read_vectors(
    v: Option<pb::VectorsOutput>,
    r: &mut Record,
    asked: &VectorSelector,
) -> Result<(), String> {
    use pb::vectors_output::VectorsOptions as V;
    if matches!(asked, VectorSelector::Nothing) {
        return Ok(());
    }
    let mut dense = Vec::new();
    let mut one = |name: String, v: pb::VectorOutput| -> Result<(), String> {
        use pb::vector_output::Vector as O;
        match v.vector {
            Some(O::Dense(d)) => dense.push((name, d.data)),
            Some(O::Sparse(s)) => r.sparse.push((
                name,
                SparseVector::new(s.indices, s.values).map_err(|e| format!("answered {e}"))?,
            )),
            Some(O::MultiDense(m)) => r.multi.push((
                name,
                MultiVector::new(m.vectors.into_iter().map(|d| d.data).collect())
                    .map_err(|e| format!("answered {e}"))?,
            )),
            None => match (v.indices, v.vectors_count) {
                (Some(i), _) => r.sparse.push((
                    name,
                    SparseVector::new(i.data, v.data).map_err(|e| format!("answered {e}"))?,
                )),
                (None, Some(n)) if n > 0 && v.data.len().is_multiple_of(n as usize) => {
                    let dim = v.data.len() / n as usize;
                    let rows = v.data.chunks(dim.max(1)).map(<[f32]>::to_vec).collect();
                    r.multi.push((
                        name,
                        MultiVector::new(rows).map_err(|e| format!("answered {e}"))?,
                    ));
                }
                _ => dense.push((name, v.data)),
            },
        }
        Ok(())
    };
    match v.and_then(|v| v.vectors_options) {
        None => {}
        Some(V::Vector(v)) => one(String::new(), v)?,
        Some(V::Vectors(named)) => {
            let mut named: Vec<_> = named.vectors.into_iter().collect();
            named.sort_by(|a, b| a.0.cmp(&b.0));
            for (name, v) in named {
                one(name, v)?;
            }
        }
    }
    r.vectors = Some(dense);
    Ok(())
}

/// A retrieved point as a record.
pub fn record(
    id: Option<pb::PointId>,
    payload: HashMap<String, pb::Value>,
    vectors: Option<pb::VectorsOutput>,
    with_payload: &PayloadSelector,
    with_vector: &VectorSelector,
) -> Result<Record, String> {
    let mut r = Record {
        id: point_id(id.as_ref())?,
        payload: (!matches!(with_payload, PayloadSelector::Nothing)).then(|| map_json(&payload)),
        vectors: None,
        sparse: Vec::new(),
        multi: Vec::new(),
    };
    read_vectors(vectors, &mut r, with_vector)?;
    Ok(r)
}

/// An order value as answered.
pub fn order_value(v: Option<&pb::OrderValue>) -> Option<OrderValue> {
    match v?.variant.as_ref()? {
        pb::order_value::Variant::Int(i) => Some(OrderValue::Int(*i)),
        pb::order_value::Variant::Float(f) => Some(OrderValue::Float(*f)),
    }
}

/// The order of an ordered scroll.
pub fn order_by(o: &storage::OrderBy) -> pb::OrderBy {
    pb::OrderBy {
        key: o.key.to_string(),
        direction: Some(if o.descending {
            pb::Direction::Desc
        } else {
            pb::Direction::Asc
        } as i32),
        start_from: o.start_from.map(|s| pb::StartFrom {
            value: Some(match s {
                OrderValue::Int(i) => pb::start_from::Value::Integer(i),
                OrderValue::Float(f) => pb::start_from::Value::Float(f),
            }),
        }),
    }
}

/// A facet value as JSON.
pub fn facet_value(v: Option<pb::FacetValue>) -> Json {
    use pb::facet_value::Variant as F;
    match v.and_then(|v| v.variant) {
        Some(F::StringValue(s)) => Json::String(s),
        Some(F::IntegerValue(i)) => Json::from(i),
        Some(F::BoolValue(b)) => Json::Bool(b),
        None => Json::Null,
    }
}

/// A collection's configuration as the `CreateCollection` message each node receives. The
/// nodes hold ordinary collections of one shard each; what the message has no field for is
/// refused by name rather than dropped, so no node holds a collection other than the one
/// asked for. `replication_factor` and `write_consistency_factor` go to the node as given:
/// a node that is a Qdrant cluster keeps that many copies of its collection and acknowledges
/// a write once that many hold it (a replica set of ours, replicating everything, and a
/// single node echo them).
#[allow(deprecated)] // `on_disk` fields: what REST clients send, which Qdrant 1.20 still reads
pub fn create_collection(
    name: &str,
    c: &storage::CollectionConfig,
) -> Result<pb::CreateCollection, String> {
    let refuse = |field: &str| {
        Err(format!(
            "`{field}` is not yet carried to the nodes of a cluster: create the collection \
             without it"
        ))
    };
    if c.quantization_config.is_some() {
        return refuse("quantization_config");
    }
    if c.index.is_some() {
        return refuse("index");
    }
    if c.init_from.is_some() {
        return refuse("init_from");
    }
    if c.strict_mode_config.is_some() {
        return refuse("strict_mode_config");
    }
    if c.payload.is_some() {
        return refuse("payload");
    }
    if c.sharding_method.as_deref().is_some_and(|m| m != "auto") {
        return refuse("sharding_method");
    }
    let vectors_config = match &c.vectors {
        storage::VectorsConfig::Single(p) => pb::vectors_config::Config::Params(vector_params(p)?),
        storage::VectorsConfig::Multi(m) => {
            pb::vectors_config::Config::ParamsMap(pb::VectorParamsMap {
                map: m
                    .iter()
                    .map(|(k, p)| Ok((k.clone(), vector_params(p)?)))
                    .collect::<Result<_, String>>()?,
            })
        }
    };
    let optimizers_config = match &c.optimizers_config {
        None => None,
        Some(o) => {
            if o.max_optimization_threads.is_some() {
                return refuse("optimizers_config.max_optimization_threads");
            }
            Some(pb::OptimizersConfigDiff {
                deleted_threshold: o.deleted_threshold,
                vacuum_min_vector_number: o.vacuum_min_vector_number.map(|x| x as u64),
                default_segment_number: o.default_segment_number.map(|x| x as u64),
                max_segment_size: o.max_segment_size.map(|x| x as u64),
                memmap_threshold: o.memmap_threshold.map(|x| x as u64),
                indexing_threshold: o.indexing_threshold.map(|x| x as u64),
                flush_interval_sec: o.flush_interval_sec,
                prevent_unoptimized: o.prevent_unoptimized,
                ..Default::default()
            })
        }
    };
    let wal_config = match &c.wal_config {
        None => None,
        Some(w) => {
            if w.fsync_interval_ms.is_some() {
                return refuse("wal_config.fsync_interval_ms");
            }
            Some(pb::WalConfigDiff {
                wal_capacity_mb: w.wal_capacity_mb,
                wal_segments_ahead: w.wal_segments_ahead,
                wal_retain_closed: w.wal_retain_closed,
            })
        }
    };
    let sparse_vectors_config = match &c.sparse_vectors {
        None => None,
        Some(m) => Some(pb::SparseVectorConfig {
            map: m
                .iter()
                .map(|(k, p)| {
                    let index = match &p.index {
                        None => None,
                        Some(i) => Some(pb::SparseIndexConfig {
                            full_scan_threshold: i.full_scan_threshold,
                            on_disk: i.on_disk,
                            datatype: i.datatype.as_deref().map(datatype).transpose()?,
                            memory: None,
                        }),
                    };
                    if p.modifier == Some(storage::SparseModifier::Idf) {
                        // The router scales a query by the whole collection's document
                        // frequencies, which it does not yet gather from the nodes.
                        return Err(format!(
                            "sparse vector `{k}`: the `idf` modifier is not yet served in \
                             cluster mode"
                        ));
                    }
                    let modifier = p.modifier.map(|_| pb::Modifier::None as i32);
                    Ok((k.clone(), pb::SparseVectorParams { index, modifier }))
                })
                .collect::<Result<_, String>>()?,
        }),
    };
    Ok(pb::CreateCollection {
        collection_name: name.to_string(),
        hnsw_config: c.hnsw_config.as_ref().map(hnsw).transpose()?,
        wal_config,
        optimizers_config,
        on_disk_payload: c.on_disk_payload,
        replication_factor: c.replication_factor,
        write_consistency_factor: c.write_consistency_factor,
        vectors_config: Some(pb::VectorsConfig {
            config: Some(vectors_config),
        }),
        sparse_vectors_config,
        metadata: match &c.metadata {
            Some(Json::Object(m)) => json_map(m),
            Some(_) => return refuse("metadata"),
            None => HashMap::new(),
        },
        ..Default::default()
    })
}

#[allow(deprecated)] // `on_disk` fields: what REST clients send, which Qdrant 1.20 still reads
fn hnsw(h: &storage::HnswConfigDiff) -> Result<pb::HnswConfigDiff, String> {
    if h.memory.is_some() {
        return Err("`hnsw_config.memory` is not yet carried to the nodes of a cluster".into());
    }
    Ok(pb::HnswConfigDiff {
        m: h.m.map(|x| x as u64),
        ef_construct: h.ef_construct.map(|x| x as u64),
        full_scan_threshold: h.full_scan_threshold.map(|x| x as u64),
        max_indexing_threads: h.max_indexing_threads.map(|x| x as u64),
        on_disk: h.on_disk,
        payload_m: h.payload_m.map(|x| x as u64),
        ..Default::default()
    })
}

fn datatype(d: &str) -> Result<i32, String> {
    Ok(match d {
        "float32" => pb::Datatype::Float32,
        "float16" => pb::Datatype::Float16,
        "uint8" => pb::Datatype::Uint8,
        other => return Err(format!("datatype `{other}` is not one gRPC carries")),
    } as i32)
}

#[allow(deprecated)] // `on_disk` fields: what REST clients send, which Qdrant 1.20 still reads
fn vector_params(p: &storage::VectorParams) -> Result<pb::VectorParams, String> {
    if p.quantization_config.is_some() {
        return Err(
            "a vector's `quantization_config` is not yet carried to the nodes of a cluster".into(),
        );
    }
    if p.index.is_some() || p.memory.is_some() {
        return Err(
            "a vector's `index` and `memory` are not yet carried to the nodes of a cluster".into(),
        );
    }
    Ok(pb::VectorParams {
        size: p.size as u64,
        distance: match p.distance {
            storage::Distance::Cosine => pb::Distance::Cosine,
            storage::Distance::Euclid => pb::Distance::Euclid,
            storage::Distance::Dot => pb::Distance::Dot,
            storage::Distance::Manhattan => pb::Distance::Manhattan,
        } as i32,
        hnsw_config: p.hnsw_config.as_ref().map(hnsw).transpose()?,
        quantization_config: None,
        on_disk: p.on_disk,
        datatype: p.datatype.as_deref().map(datatype).transpose()?,
        multivector_config: p
            .multivector_config
            .as_ref()
            .map(|_| pb::MultiVectorConfig {
                comparator: pb::MultiVectorComparator::MaxSim as i32,
            }),
        memory: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_collection_keeps_its_replication_on_the_node() {
        let config: storage::CollectionConfig = serde_json::from_value(json!({
            "vectors": {"size": 4, "distance": "Cosine"},
            "replication_factor": 3,
            "write_consistency_factor": 2
        }))
        .unwrap();
        let m = create_collection("c", &config).unwrap();
        assert_eq!(
            (m.replication_factor, m.write_consistency_factor),
            (Some(3), Some(2))
        );
        let plain: storage::CollectionConfig =
            serde_json::from_value(json!({"vectors": {"size": 4, "distance": "Cosine"}})).unwrap();
        let m = create_collection("c", &plain).unwrap();
        assert_eq!(
            (m.replication_factor, m.write_consistency_factor),
            (None, None)
        );
    }

    #[test]
    fn filters_keep_every_condition() {
        let f = Filter::from_json(&json!({
            "must": [
                {"key": "city", "match": {"any": ["b", "a"]}},
                {"key": "n", "range": {"gte": 1.5, "lt": 9}},
                {"key": "t", "range": {"gt": "2024-01-02T03:04:05.000006Z"}},
                {"key": "loc", "geo_polygon": {"exterior": {"points": [
                    {"lat": 0, "lon": 0}, {"lat": 0, "lon": 1}, {"lat": 1, "lon": 1},
                    {"lat": 0, "lon": 0}]}}},
                {"has_id": [3, 1]},
                {"nested": {"key": "items[]", "filter": {"must": [{"key": "k", "match": {"value": 1}}]}}},
            ],
            "should": [{"is_empty": {"key": "x"}}, {"has_vector": "v"}],
            "must_not": [{"key": "flag", "match": {"value": true}}],
            "min_should": {"conditions": [{"key": "c", "values_count": {"gte": 2}}], "min_count": 1}
        }))
        .unwrap();
        let pb = filter(&f).unwrap();
        assert_eq!(pb.must.len(), 6);
        let field = |c: &pb::Condition| match &c.condition_one_of {
            Some(pb::condition::ConditionOneOf::Field(f)) => f.clone(),
            other => panic!("not a field condition: {other:?}"),
        };
        assert_eq!(
            field(&pb.must[0]).r#match.unwrap().match_value,
            Some(pb::r#match::MatchValue::Keywords(pb::RepeatedStrings {
                strings: vec!["a".into(), "b".into()]
            }))
        );
        let range = field(&pb.must[1]).range.unwrap();
        assert_eq!(
            (range.gte, range.lt, range.gt),
            (Some(1.5), Some(9.0), None)
        );
        let t = field(&pb.must[2]).datetime_range.unwrap().gt.unwrap();
        assert_eq!((t.seconds, t.nanos), (1_704_164_645, 6_000));
        let ring = field(&pb.must[3]).geo_polygon.unwrap().exterior.unwrap();
        assert_eq!(ring.points.len(), 4, "the ring is closed again");
        assert_eq!(ring.points[0], ring.points[3]);
        // Latitude and longitude in their places (the second point is lat 0, lon 1).
        assert_eq!((ring.points[1].lat, ring.points[1].lon), (0.0, 1.0));
        assert_eq!((ring.points[2].lat, ring.points[2].lon), (1.0, 1.0));
        match &pb.must[5].condition_one_of {
            Some(pb::condition::ConditionOneOf::Nested(n)) => assert_eq!(n.key, "items"),
            other => panic!("{other:?}"),
        }
        assert_eq!(pb.should.len(), 2);
        assert_eq!(pb.min_should.unwrap().min_count, 1);
    }

    #[test]
    fn points_and_records_travel_both_ways() {
        let p = PointWrite {
            id: PointId::Num(7),
            vectors: vec![("a".into(), vec![1.0, 2.0])],
            sparse: vec![(
                "s".into(),
                SparseVector::new(vec![3, 1], vec![0.5, 0.25]).unwrap(),
            )],
            multi: Vec::new(),
            payload: json!({"k": [1, 2.5, "x", null, {"o": true}]})
                .as_object()
                .unwrap()
                .clone(),
        };
        let s = point(&p);
        let out = pb::VectorsOutput {
            vectors_options: match s.vectors.unwrap().vectors_options.unwrap() {
                pb::vectors::VectorsOptions::Vectors(n) => Some(
                    pb::vectors_output::VectorsOptions::Vectors(pb::NamedVectorsOutput {
                        vectors: n
                            .vectors
                            .into_iter()
                            .map(|(k, v)| {
                                let o = match v.vector.unwrap() {
                                    pb::vector::Vector::Dense(d) => {
                                        pb::vector_output::Vector::Dense(d)
                                    }
                                    pb::vector::Vector::Sparse(s) => {
                                        pb::vector_output::Vector::Sparse(s)
                                    }
                                    other => panic!("{other:?}"),
                                };
                                #[allow(deprecated)]
                                let o = pb::VectorOutput {
                                    data: Vec::new(),
                                    indices: None,
                                    vectors_count: None,
                                    vector: Some(o),
                                };
                                (k, o)
                            })
                            .collect(),
                    }),
                ),
                other => panic!("{other:?}"),
            },
        };
        let r = record(
            s.id,
            s.payload,
            Some(out),
            &PayloadSelector::All,
            &VectorSelector::All,
        )
        .unwrap();
        assert_eq!(r.id, PointId::Num(7));
        assert_eq!(r.payload.as_ref(), Some(&p.payload));
        assert_eq!(r.vectors, Some(p.vectors.clone()));
        assert_eq!(r.sparse, p.sparse);
    }
}
