//! Qdrant's gRPC messages in the shape of its REST bodies, and back.
//!
//! A gRPC request is written as the JSON its REST twin would carry and read by the same typed
//! model (`crate::model`), so both protocols share one parser per body, one set of limits and
//! defaults, and one error wording (naming the field's path). Payloads and filters are JSON
//! data in either protocol; what the JSON step adds for a query is a few dozen numbers of the
//! query vector written and read again.
//!
//! Answers come back from the same code as REST's: search answers are the JSON bytes the
//! result cache keeps, read here into `ScoredPoint`s; records and counts are converted from
//! storage's types.

use crate::error::ApiError;
use crate::model::response::OrderValue as RestOrderValue;
use index_core::PointId as StoredId;
use qdrant_client::qdrant as pb;
use serde::Deserialize;
use serde_json::{json, Map, Value as Json};

/// A gRPC request field that cannot be written as REST JSON.
pub fn invalid(message: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("Wrong input: {message}"))
}

// Payload values both ways: the same conversions remote shards use.
pub use shard_router::remote::wire::{json_map, json_value, map_json};

/// A point id as REST writes it.
pub fn id_json(id: &pb::PointId, field: &str) -> Result<Json, ApiError> {
    match &id.point_id_options {
        Some(pb::point_id::PointIdOptions::Num(n)) => Ok(Json::from(*n)),
        Some(pb::point_id::PointIdOptions::Uuid(s)) => Ok(Json::String(s.clone())),
        None => Err(invalid(format!("{field}: a point id without a value"))),
    }
}

fn ids_json(ids: &[pb::PointId], field: &str) -> Result<Json, ApiError> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| id_json(id, &format!("{field}[{i}]")))
        .collect::<Result<Vec<_>, _>>()
        .map(Json::Array)
}

/// A stored point id as a gRPC id.
pub fn id_pb(id: StoredId) -> pb::PointId {
    pb::PointId {
        point_id_options: Some(match id {
            StoredId::Num(n) => pb::point_id::PointIdOptions::Num(n),
            StoredId::Uuid(_) => pb::point_id::PointIdOptions::Uuid(id.to_string()),
        }),
    }
}

/// A REST JSON id (a number or a UUID string) as a gRPC id.
fn json_id_pb(v: &Json) -> Option<pb::PointId> {
    let options = match v {
        Json::Number(n) => pb::point_id::PointIdOptions::Num(n.as_u64()?),
        Json::String(s) => pb::point_id::PointIdOptions::Uuid(s.clone()),
        _ => return None,
    };
    Some(pb::PointId {
        point_id_options: Some(options),
    })
}

/// `Filter` as REST's filter object.
pub fn filter_json(f: &pb::Filter) -> Result<Json, ApiError> {
    let mut out = Map::new();
    for (key, conds) in [
        ("must", &f.must),
        ("should", &f.should),
        ("must_not", &f.must_not),
    ] {
        if !conds.is_empty() {
            out.insert(key.into(), conditions_json(conds)?);
        }
    }
    if let Some(m) = &f.min_should {
        out.insert(
            "min_should".into(),
            json!({"conditions": conditions_json(&m.conditions)?, "min_count": m.min_count}),
        );
    }
    Ok(Json::Object(out))
}

fn conditions_json(conds: &[pb::Condition]) -> Result<Json, ApiError> {
    conds
        .iter()
        .map(condition_json)
        .collect::<Result<Vec<_>, _>>()
        .map(Json::Array)
}

fn condition_json(c: &pb::Condition) -> Result<Json, ApiError> {
    use pb::condition::ConditionOneOf as C;
    Ok(match &c.condition_one_of {
        None => return Err(invalid("a filter condition without a kind")),
        Some(C::Field(f)) => field_json(f)?,
        Some(C::IsEmpty(c)) => json!({"is_empty": {"key": c.key}}),
        Some(C::IsNull(c)) => json!({"is_null": {"key": c.key}}),
        Some(C::HasId(c)) => json!({"has_id": ids_json(&c.has_id, "has_id")?}),
        Some(C::Filter(f)) => filter_json(f)?,
        Some(C::Nested(n)) => {
            let filter = match &n.filter {
                Some(f) => filter_json(f)?,
                None => return Err(invalid(format!("nested `{}`: a filter is required", n.key))),
            };
            json!({"nested": {"key": n.key, "filter": filter}})
        }
        Some(C::HasVector(h)) => json!({"has_vector": h.has_vector}),
        Some(C::Slice(s)) => json!({"slice": {"index": s.index, "total": s.total}}),
    })
}

fn field_json(f: &pb::FieldCondition) -> Result<Json, ApiError> {
    let mut out = Map::new();
    out.insert("key".into(), Json::String(f.key.clone()));
    if let Some(m) = &f.r#match {
        out.insert("match".into(), match_json(m, &f.key)?);
    }
    if let Some(r) = &f.range {
        let bound = |b: Option<f64>| {
            b.map(|x| finite(x, &format!("range on `{}`", f.key)))
                .transpose()
        };
        out.insert(
            "range".into(),
            bounds_json([bound(r.lt)?, bound(r.gt)?, bound(r.gte)?, bound(r.lte)?]),
        );
    }
    if let Some(r) = &f.datetime_range {
        if f.range.is_some() {
            return Err(invalid(format!(
                "`{}`: a condition takes a range or a datetime range, not both",
                f.key
            )));
        }
        for t in [&r.lt, &r.gt, &r.gte, &r.lte].into_iter().flatten() {
            if !(0..1_000_000_000).contains(&t.nanos) {
                return Err(invalid(format!(
                    "datetime range on `{}`: nanos {} out of range",
                    f.key, t.nanos
                )));
            }
        }
        let at = |t: &Option<prost_types::Timestamp>| t.as_ref().map(|t| Json::String(rfc3339(t)));
        out.insert(
            "range".into(),
            bounds_json([at(&r.lt), at(&r.gt), at(&r.gte), at(&r.lte)]),
        );
    }
    if let Some(v) = &f.values_count {
        out.insert(
            "values_count".into(),
            bounds_json([v.lt, v.gt, v.gte, v.lte].map(|b| b.map(Json::from))),
        );
    }
    if let Some(b) = &f.geo_bounding_box {
        out.insert(
            "geo_bounding_box".into(),
            json!({"top_left": geo_json(b.top_left.as_ref())?,
                   "bottom_right": geo_json(b.bottom_right.as_ref())?}),
        );
    }
    if let Some(r) = &f.geo_radius {
        out.insert(
            "geo_radius".into(),
            json!({"center": geo_json(r.center.as_ref())?, "radius": r.radius}),
        );
    }
    if let Some(p) = &f.geo_polygon {
        let line = |l: &pb::GeoLineString| -> Result<Json, ApiError> {
            let points = l
                .points
                .iter()
                .map(|p| geo_json(Some(p)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(json!({ "points": points }))
        };
        let exterior = match &p.exterior {
            Some(e) => line(e)?,
            None => return Err(invalid(format!("geo_polygon on `{}`: no exterior", f.key))),
        };
        let interiors = p
            .interiors
            .iter()
            .map(line)
            .collect::<Result<Vec<_>, _>>()?;
        out.insert(
            "geo_polygon".into(),
            json!({"exterior": exterior, "interiors": interiors}),
        );
    }
    put(&mut out, "is_empty", f.is_empty.map(Json::from));
    put(&mut out, "is_null", f.is_null.map(Json::from));
    Ok(Json::Object(out))
}

/// A float as JSON; NaN and infinities (which JSON cannot carry, and which would otherwise
/// read as an absent bound) are refused.
pub fn finite(x: f64, field: &str) -> Result<Json, ApiError> {
    serde_json::Number::from_f64(x)
        .map(Json::Number)
        .ok_or_else(|| invalid(format!("{field}: {x} is not a finite number")))
}

fn bounds_json(b: [Option<Json>; 4]) -> Json {
    let mut out = Map::new();
    for (name, v) in ["lt", "gt", "gte", "lte"].into_iter().zip(b) {
        if let Some(v) = v {
            out.insert(name.into(), v);
        }
    }
    Json::Object(out)
}

fn geo_json(p: Option<&pb::GeoPoint>) -> Result<Json, ApiError> {
    let p = p.ok_or_else(|| invalid("a geo point is missing"))?;
    Ok(json!({"lon": p.lon, "lat": p.lat}))
}

fn match_json(m: &pb::Match, key: &str) -> Result<Json, ApiError> {
    use pb::r#match::MatchValue as M;
    Ok(match &m.match_value {
        None => return Err(invalid(format!("match on `{key}` without a value"))),
        Some(M::Keyword(s)) => json!({ "value": s }),
        Some(M::Integer(i)) => json!({ "value": i }),
        Some(M::Boolean(b)) => json!({ "value": b }),
        Some(M::Text(s)) => json!({ "text": s }),
        Some(M::Phrase(s)) => json!({ "phrase": s }),
        Some(M::TextAny(s)) => json!({ "text_any": s }),
        Some(M::Prefix(s)) => json!({ "prefix": s }),
        Some(M::Substring(s)) => json!({ "substring": s }),
        Some(M::Keywords(k)) => json!({ "any": k.strings }),
        Some(M::Integers(k)) => json!({ "any": k.integers }),
        Some(M::ExceptKeywords(k)) => json!({ "except": k.strings }),
        Some(M::ExceptIntegers(k)) => json!({ "except": k.integers }),
    })
}

/// A timestamp as RFC 3339 in UTC (`1970-01-01T00:00:00.000000Z`), the form REST filters and
/// `start_from` carry.
pub fn rfc3339(t: &prost_types::Timestamp) -> String {
    // Days to a civil date (Howard Hinnant's algorithm), proleptic Gregorian.
    let secs = t.seconds;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let micros = t.nanos.clamp(0, 999_999_999) / 1000;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `with_payload` as REST's `WithPayloadInterface`.
pub fn with_payload_json(w: &pb::WithPayloadSelector) -> Json {
    use pb::with_payload_selector::SelectorOptions as S;
    match &w.selector_options {
        None => Json::Bool(false),
        Some(S::Enable(b)) => Json::Bool(*b),
        Some(S::Include(i)) => json!({ "include": i.fields }),
        Some(S::Exclude(e)) => json!({ "exclude": e.fields }),
    }
}

/// `with_vectors` as REST's `WithVector`.
pub fn with_vectors_json(w: &pb::WithVectorsSelector) -> Json {
    use pb::with_vectors_selector::SelectorOptions as S;
    match &w.selector_options {
        None => Json::Bool(false),
        Some(S::Enable(b)) => Json::Bool(*b),
        Some(S::Include(i)) => json!(i.names),
    }
}

/// A vector as REST writes it: a list of floats, a sparse `{indices, values}`, or a list of
/// rows. Both the current `vector` field and the deprecated `data`/`indices`/`vectors_count`
/// form (which clients still send) are read.
#[allow(deprecated)] // the deprecated fields are what older clients send
pub fn vector_json(v: &pb::Vector, field: &str) -> Result<Json, ApiError> {
    use pb::vector::Vector as V;
    match &v.vector {
        Some(V::Dense(d)) => Ok(floats(&d.data)),
        Some(V::Sparse(s)) => Ok(json!({"indices": s.indices, "values": floats(&s.values)})),
        Some(V::MultiDense(m)) => Ok(Json::Array(m.vectors.iter().map(|d| floats(&d.data)).collect())),
        Some(V::Document(_) | V::Image(_) | V::Object(_)) => Err(ApiError::not_implemented(
            format!("{field}: documents, images and objects need inference, which this server does not run"),
        )),
        None => {
            if let Some(indices) = &v.indices {
                return Ok(json!({"indices": indices.data, "values": floats(&v.data)}));
            }
            match v.vectors_count {
                // As Qdrant reads it: any count makes a multivector, of that many rows.
                Some(n) => {
                    let n = n as usize;
                    if n == 0 || v.data.is_empty() || !v.data.len().is_multiple_of(n) {
                        return Err(invalid(format!(
                            "{field}: {} values do not make {n} rows",
                            v.data.len()
                        )));
                    }
                    let dim = v.data.len() / n;
                    Ok(Json::Array(v.data.chunks(dim).map(floats).collect()))
                }
                None => Ok(floats(&v.data)),
            }
        }
    }
}

fn floats(v: &[f32]) -> Json {
    Json::Array(v.iter().map(|x| float_json(*x)).collect())
}

/// An `f32` as a JSON number; a non-finite value (which JSON cannot carry) as a string, which
/// the typed model then refuses by its path.
fn float_json(x: f32) -> Json {
    serde_json::Number::from_f64(f64::from(x))
        .map_or_else(|| Json::String(x.to_string()), Json::Number)
}

/// A point's vectors (`Vectors`) as REST's `VectorStruct`.
pub fn vectors_json(v: &pb::Vectors, field: &str) -> Result<Json, ApiError> {
    use pb::vectors::VectorsOptions as V;
    match &v.vectors_options {
        None => Ok(json!({})),
        Some(V::Vector(v)) => {
            #[allow(deprecated)] // the deprecated `indices` form is sparse too
            let sparse =
                v.indices.is_some() || matches!(v.vector, Some(pb::vector::Vector::Sparse(_)));
            if sparse {
                // REST would read `{indices, values}` here as two named vectors.
                return Err(invalid(format!("{field}: a sparse vector must be named")));
            }
            vector_json(v, field)
        }
        Some(V::Vectors(named)) => named
            .vectors
            .iter()
            .map(|(name, v)| Ok((name.clone(), vector_json(v, &format!("{field}.{name}"))?)))
            .collect::<Result<Map<_, _>, ApiError>>()
            .map(Json::Object),
    }
}

/// A query vector input (`VectorInput`): an id, or a vector.
pub fn vector_input_json(v: &pb::VectorInput, field: &str) -> Result<Json, ApiError> {
    use pb::vector_input::Variant as V;
    match &v.variant {
        None => Err(invalid(format!("{field}: a vector input without a value"))),
        Some(V::Id(id)) => id_json(id, field),
        Some(V::Dense(d)) => Ok(floats(&d.data)),
        Some(V::Sparse(s)) => Ok(json!({"indices": s.indices, "values": floats(&s.values)})),
        Some(V::MultiDense(m)) => Ok(Json::Array(m.vectors.iter().map(|d| floats(&d.data)).collect())),
        Some(V::Document(_) | V::Image(_) | V::Object(_)) => Err(ApiError::not_implemented(
            format!("{field}: documents, images and objects need inference, which this server does not run"),
        )),
    }
}

fn vector_inputs_json(v: &[pb::VectorInput], field: &str) -> Result<Json, ApiError> {
    v.iter()
        .enumerate()
        .map(|(i, x)| vector_input_json(x, &format!("{field}[{i}]")))
        .collect::<Result<Vec<_>, _>>()
        .map(Json::Array)
}

fn context_json(c: &pb::ContextInput, field: &str) -> Result<Json, ApiError> {
    c.pairs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let side = |v: &Option<pb::VectorInput>, s: &str| {
                let at = format!("{field}[{i}].{s}");
                v.as_ref()
                    .ok_or_else(|| invalid(format!("{at} is required")))
                    .and_then(|v| vector_input_json(v, &at))
            };
            Ok(json!({"positive": side(&p.positive, "positive")?,
                      "negative": side(&p.negative, "negative")?}))
        })
        .collect::<Result<Vec<_>, ApiError>>()
        .map(Json::Array)
}

/// A universal query (`Query`) as REST's `QueryInterface`.
pub fn query_json(q: &pb::Query) -> Result<Json, ApiError> {
    use pb::query::Variant as Q;
    Ok(match &q.variant {
        None => return Err(invalid("query: a query without a kind")),
        Some(Q::Nearest(v)) => json!({ "nearest": vector_input_json(v, "query.nearest")? }),
        Some(Q::NearestWithMmr(n)) => {
            let nearest = n
                .nearest
                .as_ref()
                .ok_or_else(|| invalid("query.nearest is required"))?;
            let mut mmr = Map::new();
            if let Some(m) = &n.mmr {
                if let Some(d) = m.diversity {
                    mmr.insert("diversity".into(), json!(d));
                }
                if let Some(c) = m.candidates_limit {
                    mmr.insert("candidates_limit".into(), json!(c));
                }
            }
            json!({"nearest": vector_input_json(nearest, "query.nearest")?, "mmr": mmr})
        }
        Some(Q::Recommend(r)) => {
            let strategy = match r.strategy {
                None => None,
                Some(0) => Some("average_vector"),
                Some(1) => Some("best_score"),
                Some(2) => Some("sum_scores"),
                Some(other) => {
                    return Err(invalid(format!(
                        "query.recommend.strategy {other} is unknown"
                    )))
                }
            };
            let mut input = Map::new();
            input.insert(
                "positive".into(),
                vector_inputs_json(&r.positive, "query.recommend.positive")?,
            );
            input.insert(
                "negative".into(),
                vector_inputs_json(&r.negative, "query.recommend.negative")?,
            );
            if let Some(s) = strategy {
                input.insert("strategy".into(), json!(s));
            }
            json!({ "recommend": input })
        }
        Some(Q::Discover(d)) => {
            let target = d
                .target
                .as_ref()
                .ok_or_else(|| invalid("query.discover.target is required"))?;
            let context = match &d.context {
                Some(c) => context_json(c, "query.discover.context")?,
                None => json!([]),
            };
            json!({"discover": {"target": vector_input_json(target, "query.discover.target")?,
                                "context": context}})
        }
        Some(Q::Context(c)) => json!({ "context": context_json(c, "query.context")? }),
        Some(Q::OrderBy(o)) => json!({ "order_by": order_by_json(o)? }),
        Some(Q::Fusion(0)) => json!({"fusion": "rrf"}),
        Some(Q::Fusion(1)) => json!({"fusion": "dbsf"}),
        Some(Q::Fusion(other)) => return Err(invalid(format!("query.fusion {other} is unknown"))),
        Some(Q::Rrf(r)) => {
            let mut rrf = Map::new();
            put(&mut rrf, "k", r.k.map(Json::from));
            if !r.weights.is_empty() {
                rrf.insert("weights".into(), floats(&r.weights));
            }
            json!({ "rrf": rrf })
        }
        Some(Q::Sample(0)) => json!({"sample": "random"}),
        Some(Q::Sample(other)) => return Err(invalid(format!("query.sample {other} is unknown"))),
        Some(Q::Formula(_)) => {
            return Err(ApiError::not_implemented(
                "query.formula over gRPC (it is served over REST)",
            ))
        }
        Some(Q::RelevanceFeedback(_)) => {
            return Err(ApiError::not_implemented("query.relevance_feedback"))
        }
        Some(Q::Text(_)) => return Err(ApiError::not_implemented("query.text")),
    })
}

/// `OrderBy` as REST's `OrderBy`.
pub fn order_by_json(o: &pb::OrderBy) -> Result<Json, ApiError> {
    let mut out = Map::new();
    out.insert("key".into(), Json::String(o.key.clone()));
    match o.direction {
        None => {}
        Some(0) => {
            out.insert("direction".into(), json!("asc"));
        }
        Some(1) => {
            out.insert("direction".into(), json!("desc"));
        }
        Some(other) => return Err(invalid(format!("order_by.direction {other} is unknown"))),
    }
    if let Some(s) = o.start_from.as_ref().and_then(|s| s.value.as_ref()) {
        use pb::start_from::Value as S;
        let v = match s {
            S::Float(f) => finite(*f, "order_by.start_from")?,
            S::Integer(i) => json!(i),
            S::Timestamp(t) if (0..1_000_000_000).contains(&t.nanos) => Json::String(rfc3339(t)),
            S::Timestamp(t) => {
                return Err(invalid(format!(
                    "order_by.start_from: nanos {} out of range",
                    t.nanos
                )))
            }
            S::Datetime(d) => Json::String(d.clone()),
        };
        out.insert("start_from".into(), v);
    }
    Ok(Json::Object(out))
}

/// `SearchParams` as REST's.
pub fn search_params_json(p: &pb::SearchParams) -> Result<Json, ApiError> {
    if p.idf.is_some() {
        return Err(ApiError::not_implemented("params.idf is not served"));
    }
    if p.acorn.is_some() {
        return Err(ApiError::not_implemented("params.acorn is not served"));
    }
    let mut out = Map::new();
    if let Some(ef) = p.hnsw_ef {
        out.insert("hnsw_ef".into(), json!(ef));
    }
    if let Some(e) = p.exact {
        out.insert("exact".into(), json!(e));
    }
    if let Some(i) = p.indexed_only {
        out.insert("indexed_only".into(), json!(i));
    }
    if let Some(q) = &p.quantization {
        let mut qo = Map::new();
        if let Some(i) = q.ignore {
            qo.insert("ignore".into(), json!(i));
        }
        if let Some(r) = q.rescore {
            qo.insert("rescore".into(), json!(r));
        }
        if let Some(o) = q.oversampling {
            qo.insert("oversampling".into(), json!(o));
        }
        out.insert("quantization".into(), Json::Object(qo));
    }
    Ok(Json::Object(out))
}

/// `LookupLocation` as REST's.
pub fn lookup_json(l: &pb::LookupLocation) -> Result<Json, ApiError> {
    if l.shard_key_selector.is_some() {
        return Err(ApiError::not_implemented(
            "lookup_from.shard_key_selector (custom sharding is not served)",
        ));
    }
    let mut out = Map::new();
    out.insert("collection".into(), Json::String(l.collection_name.clone()));
    if let Some(v) = &l.vector_name {
        out.insert("vector".into(), Json::String(v.clone()));
    }
    Ok(Json::Object(out))
}

/// `PointsSelector` as REST's (`{"points": [...]}` or `{"filter": {...}}`).
pub fn selector_json(s: Option<&pb::PointsSelector>, field: &str) -> Result<Json, ApiError> {
    use pb::points_selector::PointsSelectorOneOf as S;
    match s.and_then(|s| s.points_selector_one_of.as_ref()) {
        None => Err(invalid(format!("{field} is required"))),
        Some(S::Points(ids)) => Ok(json!({ "points": ids_json(&ids.ids, field)? })),
        Some(S::Filter(f)) => Ok(json!({ "filter": filter_json(f)? })),
    }
}

/// Inserts `key: value` when the value is present.
pub fn put(out: &mut Map<String, Json>, key: &str, value: Option<Json>) {
    if let Some(v) = value {
        out.insert(key.into(), v);
    }
}

/// A REST scored point, as the search answers' bytes hold it.
#[derive(Deserialize)]
struct RestScored {
    id: Json,
    score: f64,
    #[serde(default)]
    payload: Option<Map<String, Json>>,
    #[serde(default)]
    vector: Option<Json>,
    #[serde(default)]
    order_value: Option<Json>,
}

/// A search answer (the JSON array of scored points REST sends) as gRPC scored points.
pub fn scored_points(answer: &[u8]) -> Result<Vec<pb::ScoredPoint>, ApiError> {
    let points: Vec<RestScored> = serde_json::from_slice(answer).map_err(unreadable)?;
    Ok(points.into_iter().map(scored_pb).collect())
}

/// Scored points in a REST answer's JSON (a group's hits) as gRPC's.
pub fn scored_points_json(v: &Json) -> Result<Vec<pb::ScoredPoint>, ApiError> {
    let points: Vec<RestScored> = Vec::deserialize(v).map_err(unreadable)?;
    Ok(points.into_iter().map(scored_pb).collect())
}

fn unreadable(e: serde_json::Error) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        format!("Service internal error: an answer did not read back: {e}"),
    )
}

fn scored_pb(p: RestScored) -> pb::ScoredPoint {
    pb::ScoredPoint {
        id: json_id_pb(&p.id),
        payload: p.payload.as_ref().map(json_map).unwrap_or_default(),
        score: p.score as f32,
        version: 0,
        vectors: p.vector.as_ref().and_then(vectors_output_json),
        shard_key: None,
        order_value: p.order_value.as_ref().and_then(order_value_json),
    }
}

/// A REST record's JSON (a group's lookup) as a gRPC `RetrievedPoint`.
pub fn record_json(v: &Json) -> Option<pb::RetrievedPoint> {
    Some(pb::RetrievedPoint {
        id: json_id_pb(v.get("id")?),
        payload: v
            .get("payload")
            .and_then(Json::as_object)
            .map(json_map)
            .unwrap_or_default(),
        vectors: v.get("vector").and_then(vectors_output_json),
        shard_key: None,
        order_value: None,
    })
}

/// A REST id in an answer (a number or a UUID string) as a gRPC id.
pub fn answer_id(v: &Json) -> Option<pb::PointId> {
    json_id_pb(v)
}

fn order_value_json(v: &Json) -> Option<pb::OrderValue> {
    let n = v.as_number()?;
    let variant = match n.as_i64() {
        Some(i) => pb::order_value::Variant::Int(i),
        None => pb::order_value::Variant::Float(n.as_f64()?),
    };
    Some(pb::OrderValue {
        variant: Some(variant),
    })
}

/// A stored order value as gRPC's.
pub fn order_value_pb(v: RestOrderValue) -> Option<pb::OrderValue> {
    order_value_json(&serde_json::to_value(v).ok()?)
}

/// REST's vector output (a list, a sparse object, a list of rows, or a map of those) as
/// gRPC's `VectorsOutput`.
fn vectors_output_json(v: &Json) -> Option<pb::VectorsOutput> {
    use pb::vectors_output::VectorsOptions as V;
    let options = match v {
        Json::Null => return None,
        Json::Object(m) if !is_sparse(m) => V::Vectors(pb::NamedVectorsOutput {
            vectors: m
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), vector_output_json(v)?)))
                .collect(),
        }),
        other => V::Vector(vector_output_json(other)?),
    };
    Some(pb::VectorsOutput {
        vectors_options: Some(options),
    })
}

fn is_sparse(m: &Map<String, Json>) -> bool {
    m.len() == 2 && m.contains_key("indices") && m.contains_key("values")
}

fn json_floats(v: &Json) -> Option<Vec<f32>> {
    v.as_array()?
        .iter()
        .map(|x| x.as_f64().map(|f| f as f32))
        .collect()
}

#[allow(deprecated)] // the deprecated fields stay empty; `vector` carries the value
fn vector_output_json(v: &Json) -> Option<pb::VectorOutput> {
    use pb::vector_output::Vector as V;
    let vector = match v {
        Json::Object(m) if is_sparse(m) => V::Sparse(pb::SparseVector {
            indices: m["indices"]
                .as_array()?
                .iter()
                .map(|i| i.as_u64().map(|i| i as u32))
                .collect::<Option<_>>()?,
            values: json_floats(&m["values"])?,
        }),
        Json::Array(rows) if rows.first().is_some_and(Json::is_array) => {
            V::MultiDense(pb::MultiDenseVector {
                vectors: rows
                    .iter()
                    .map(|r| json_floats(r).map(|data| pb::DenseVector { data }))
                    .collect::<Option<_>>()?,
            })
        }
        Json::Array(_) => V::Dense(pb::DenseVector {
            data: json_floats(v)?,
        }),
        _ => return None,
    };
    Some(pb::VectorOutput {
        data: Vec::new(),
        indices: None,
        vectors_count: None,
        vector: Some(vector),
    })
}

/// A stored record as a gRPC `RetrievedPoint`, in the shape the collection answers REST.
pub fn retrieved_point(
    named: bool,
    r: &storage::Record,
    order_value: Option<RestOrderValue>,
) -> pb::RetrievedPoint {
    let vectors = serde_json::to_value(crate::model::response::Vectors::of(named, r))
        .ok()
        .and_then(|v| vectors_output_json(&v));
    pb::RetrievedPoint {
        id: Some(id_pb(r.id)),
        payload: r
            .payload
            .as_ref()
            .map(|p| p.iter().map(|(k, v)| (k.clone(), json_value(v))).collect())
            .unwrap_or_default(),
        vectors,
        shard_key: None,
        order_value: order_value.and_then(order_value_pb),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_written_in_utc() {
        let at = |seconds, nanos| rfc3339(&prost_types::Timestamp { seconds, nanos });
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 5_000), "2000-02-29T00:00:00.000005Z");
        assert_eq!(at(1_700_000_000, 0), "2023-11-14T22:13:20.000000Z");
        assert_eq!(at(-1, 0), "1969-12-31T23:59:59.000000Z");
    }

    #[test]
    fn payload_values_keep_integers_and_doubles_apart() {
        let v = json!({"i": 3, "f": 2.5, "s": "x", "l": [1, null, true], "o": {"k": -1}});
        let back: Json = Json::Object(map_json(&json_map(v.as_object().unwrap())));
        assert_eq!(back, v);
        assert!(back["f"].is_f64() && back["i"].is_i64());
    }

    #[test]
    fn filters_take_rest_shape() {
        let f = pb::Filter {
            must: vec![pb::Condition {
                condition_one_of: Some(pb::condition::ConditionOneOf::Field(pb::FieldCondition {
                    key: "city".into(),
                    r#match: Some(pb::Match {
                        match_value: Some(pb::r#match::MatchValue::Keywords(pb::RepeatedStrings {
                            strings: vec!["a".into(), "b".into()],
                        })),
                    }),
                    ..Default::default()
                })),
            }],
            ..Default::default()
        };
        assert_eq!(
            filter_json(&f).unwrap(),
            json!({"must": [{"key": "city", "match": {"any": ["a", "b"]}}]})
        );
    }
}
