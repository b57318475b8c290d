//! The Qdrant REST calls a load test makes, as request bodies and response parsers.
//!
//! Only documented Qdrant shapes are used (see `COMPAT.md`), so the same run measures a
//! Qdrant server and ours alike: `PUT /collections/{c}`, batch upserts
//! (`{"batch":{"ids":[..],"vectors":[[..]]}}` with `wait=true`), `POST /points/query` with a
//! raw vector, `GET /collections/{c}` for `result.status`, and `DELETE /collections/{c}`.

use hyper::body::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::data::Distance;
use crate::error::{Error, Result};

/// How the collection is created. Unset options are left out of the request, so the
/// server's defaults apply (Qdrant: `m` 16, `ef_construct` 100, `indexing_threshold` 10000).
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionConfig {
    /// Vector dimension.
    pub dim: usize,
    /// Distance.
    pub distance: Distance,
    /// `hnsw_config.m`: graph degree.
    pub m: Option<usize>,
    /// `hnsw_config.ef_construct`: build-time beam width.
    pub ef_construct: Option<usize>,
    /// `optimizers_config.indexing_threshold`: segment size (in KB of vectors for Qdrant) above
    /// which an index is built; 0 disables indexing in Qdrant.
    pub indexing_threshold: Option<usize>,
    /// `shard_number`.
    pub shard_number: Option<usize>,
    /// A JSON object merged last into the request (for options without a flag, such as
    /// `quantization_config`); its keys replace the ones built from the flags.
    pub extra: Option<Map<String, Value>>,
}

/// The body of `PUT /collections/{c}`.
pub fn create_collection_body(config: &CollectionConfig) -> Value {
    let mut body = Map::new();
    body.insert(
        "vectors".into(),
        json!({"size": config.dim, "distance": config.distance.qdrant_name()}),
    );
    let mut hnsw = Map::new();
    if let Some(m) = config.m {
        hnsw.insert("m".into(), json!(m));
    }
    if let Some(ef) = config.ef_construct {
        hnsw.insert("ef_construct".into(), json!(ef));
    }
    if !hnsw.is_empty() {
        body.insert("hnsw_config".into(), Value::Object(hnsw));
    }
    if let Some(threshold) = config.indexing_threshold {
        body.insert(
            "optimizers_config".into(),
            json!({"indexing_threshold": threshold}),
        );
    }
    if let Some(shards) = config.shard_number {
        body.insert("shard_number".into(), json!(shards));
    }
    if let Some(extra) = &config.extra {
        for (key, value) in extra {
            body.insert(key.clone(), value.clone());
        }
    }
    Value::Object(body)
}

/// The body of one batch upsert: ids `first_id..` for the rows of `vectors` (row-major, `dim`
/// wide). Written by hand rather than through `serde_json::Value`, which would allocate a
/// node per number.
pub fn upsert_batch_body(first_id: u64, vectors: &[f32], dim: usize) -> Bytes {
    let rows = vectors.len() / dim.max(1);
    let mut out = String::with_capacity(32 + rows * (12 + dim * 12));
    out.push_str("{\"batch\":{\"ids\":[");
    for i in 0..rows {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&(first_id + i as u64).to_string());
    }
    out.push_str("],\"vectors\":[");
    for (i, row) in vectors.chunks_exact(dim.max(1)).enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_vector(&mut out, row);
    }
    out.push_str("]}}");
    Bytes::from(out)
}

/// Appends `[x,y,..]`; each `f32` in its shortest form that reads back to the same `f32`.
fn push_vector(out: &mut String, vector: &[f32]) {
    out.push('[');
    for (i, x) in vector.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if x.is_finite() {
            // Rust's `Display` for f32 is the shortest round-trip form, never an exponent;
            // whole numbers get a `.0` so every element reads as a float, as clients send them.
            let text = x.to_string();
            out.push_str(&text);
            if !text.contains('.') {
                out.push_str(".0");
            }
        } else {
            // JSON has no NaN or infinity; Qdrant clients send null, which servers reject.
            out.push_str("null");
        }
    }
    out.push(']');
}

/// The body of `POST /collections/{c}/points/query` for one vector: `{"query":[..],
/// "limit":k}` plus `params` when it is a non-empty object.
pub fn query_body(vector: &[f32], limit: usize, params: &Map<String, Value>) -> Bytes {
    let mut out = String::with_capacity(64 + vector.len() * 12);
    out.push_str("{\"query\":");
    push_vector(&mut out, vector);
    out.push_str(",\"limit\":");
    out.push_str(&limit.to_string());
    if !params.is_empty() {
        out.push_str(",\"params\":");
        out.push_str(&Value::Object(params.clone()).to_string());
    }
    out.push('}');
    Bytes::from(out)
}

/// A point id in an answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum AnswerId {
    /// An integer id (what a load test uploads).
    Num(u64),
    /// A UUID (never one of ours, so it never matches the ground truth).
    Uuid(String),
}

#[derive(Deserialize)]
struct QueryAnswer {
    result: QueryResult,
}

#[derive(Deserialize)]
struct QueryResult {
    points: Vec<ScoredPoint>,
}

#[derive(Deserialize)]
struct ScoredPoint {
    id: AnswerId,
}

/// The integer ids of a query answer (`result.points[].id`), in order. UUIDs are skipped:
/// they cannot be base rows.
pub fn parse_query_ids(body: &[u8]) -> std::result::Result<Vec<u64>, String> {
    let answer: QueryAnswer = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    Ok(answer
        .result
        .points
        .into_iter()
        .filter_map(|p| match p.id {
            AnswerId::Num(id) => Some(id),
            AnswerId::Uuid(_) => None,
        })
        .collect())
}

/// What `GET /collections/{c}` says about readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionState {
    /// `result.status`: `green` when the optimizers are done, `yellow` while they work.
    pub status: String,
    /// `result.points_count`, when sent.
    pub points_count: Option<u64>,
    /// `result.indexed_vectors_count`, when sent.
    pub indexed_vectors_count: Option<u64>,
}

/// Reads a `GET /collections/{c}` answer.
pub fn parse_collection_state(path: &str, body: &Value) -> Result<CollectionState> {
    let result = body.get("result").ok_or_else(|| Error::BadResponse {
        path: path.to_string(),
        reason: "no `result`".into(),
    })?;
    let status = result
        .get("status")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::BadResponse {
            path: path.to_string(),
            reason: "no `result.status` string".into(),
        })?
        .to_string();
    Ok(CollectionState {
        status,
        points_count: result.get("points_count").and_then(Value::as_u64),
        indexed_vectors_count: result.get("indexed_vectors_count").and_then(Value::as_u64),
    })
}

/// The path of a collection (names are URL path segments; reject what would need escaping).
pub fn collection_path(name: &str) -> Result<String> {
    let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.len() > 255 || !name.chars().all(fine) || name == "." || name == ".."
    {
        return Err(Error::argument(
            "collection",
            format!("`{name}`: use 1 to 255 characters from A-Z, a-z, 0-9, '-', '_', '.'"),
        ));
    }
    Ok(format!("/collections/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_body_is_qdrant_batch_json() {
        let body = upsert_batch_body(7, &[1.0, 0.5, -2.25, 1e-7], 2);
        let parsed: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            parsed,
            json!({"batch": {"ids": [7, 8], "vectors": [[1.0, 0.5], [-2.25, 1e-7]]}})
        );
    }

    #[test]
    fn floats_round_trip_exactly() {
        let values = [0.1f32, 1.0 / 3.0, f32::MIN_POSITIVE, 123456.78, -0.0];
        let body = query_body(&values, 10, &Map::new());
        let parsed: Value = serde_json::from_slice(&body).unwrap();
        let back: Vec<f32> = parsed["query"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(back, values);
        assert_eq!(parsed["limit"], 10);
        assert!(parsed.get("params").is_none());
    }

    #[test]
    fn reads_ids_and_skips_uuids() {
        let body = br#"{"result":{"points":[{"id":3,"version":0,"score":0.9},
            {"id":"5c56c793-69f3-4fbf-87e6-c4bf54c28c26","score":0.5},{"id":1,"score":0.1}]},
            "status":"ok","time":0.001}"#;
        assert_eq!(parse_query_ids(body).unwrap(), [3, 1]);
        assert!(parse_query_ids(br#"{"result":[]}"#).is_err());
    }

    #[test]
    fn collection_names_must_be_path_safe() {
        assert_eq!(collection_path("bench-1").unwrap(), "/collections/bench-1");
        for bad in ["", "a/b", "..", "a b", "é"] {
            assert!(collection_path(bad).is_err(), "{bad}");
        }
    }
}
