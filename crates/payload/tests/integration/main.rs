//! Integration tests of `payload`: one binary, a module per concern.

mod conditions;
mod errors;
mod indexes;
mod key_paths;
mod selectors_and_writes;

use index_core::PointId;
use payload::{Filter, Payload, PlainPoint};
use serde_json::Value;

/// A payload from a JSON object literal.
pub fn payload(v: Value) -> Payload {
    match v {
        Value::Object(map) => map,
        other => panic!("test payloads are objects, got {other}"),
    }
}

/// A point with an integer id, the given payload and the unnamed vector.
pub fn point(id: u64, v: Value) -> PlainPoint {
    PlainPoint {
        id: PointId::Num(id),
        payload: Some(payload(v)),
        vectors: vec![String::new()],
    }
}

/// Whether the filter (JSON) matches the payload (JSON) of point 1.
pub fn holds(filter: Value, on: Value) -> bool {
    let filter = Filter::from_json(&filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
    filter.matches(&point(1, on))
}
