//! Qdrant's payload language for vector-router: filters, key paths, payload selectors, payload
//! writes and payload field indexes.
//!
//! * [`Filter`] parses the whole filter grammar of Qdrant's REST API (`must`, `should`,
//!   `must_not` with one condition or a list, `min_should`, nested filters as conditions;
//!   `match` value / any / except / text / text_any / phrase / prefix / substring; numeric and
//!   datetime `range`; `geo_radius`, `geo_bounding_box`, `geo_polygon` with holes;
//!   `values_count`; `is_empty`; `is_null`; `has_id`; `has_vector`; `slice`; `nested`) into a
//!   validated form, rejecting unknown fields with [`PayloadError`]s that say where, and
//!   evaluates it on any [`PointView`].
//! * [`KeyPath`] and [`values_at`]: `a.b`, `a[].b`, `arr[0][1]`, `arr[]`, `a."b.c"`, and the
//!   values a path selects (an array at the end of a path is flattened one level).
//! * [`PayloadSelector`] (`with_payload`), [`set_payload`] and [`delete_keys`]: what responses
//!   carry and how payload writes merge, nested paths included.
//! * [`PayloadIndexes`]: keyword, integer, float, bool, geo, datetime, text and uuid indexes
//!   kept in sync with writes; [`Filter::indexed_candidates`] turns a filter into a superset of
//!   its matches from them, so storage can scan a few points instead of walking a graph.
//!
//! Semantics follow Qdrant; where they are subtle (a condition on an array holds when any
//! element passes; `is_empty` holds for a missing key, `null` and `[]`; `is_null` only for an
//! explicit `null`; `except` never holds on a missing or null value; a range ignores
//! non-numbers; how `values_count` counts; one element must satisfy every condition of a
//! `nested` filter), the reference is the in-memory mode of the Python client
//! (`qdrant_client.local`, version 1.20.0).
//!
//! ```
//! use index_core::PointId;
//! use payload::{Filter, FieldSchema, PayloadIndexes, PayloadSelector, PlainPoint};
//! use serde_json::json;
//!
//! let filter = Filter::from_json(&json!({
//!     "must": [
//!         {"key": "city", "match": {"value": "Berlin"}},
//!         {"nested": {"key": "visits", "filter": {"must": [
//!             {"key": "year", "range": {"gte": 2020}},
//!             {"key": "ok", "match": {"value": true}}
//!         ]}}}
//!     ],
//!     "must_not": {"is_empty": {"key": "tags"}}
//! }))
//! .unwrap();
//! let payload = json!({
//!     "city": ["Paris", "Berlin"],
//!     "visits": [{"year": 2019, "ok": true}, {"year": 2021, "ok": true}],
//!     "tags": []
//! });
//! let point = PlainPoint {
//!     id: PointId::Num(7),
//!     payload: payload.as_object().cloned(),
//!     vectors: vec![String::new()],
//! };
//! // `tags` is empty, so `must_not` rejects the point.
//! assert!(!filter.matches(&point));
//!
//! // An index on `city` narrows the candidates without reading payloads.
//! let mut indexes = PayloadIndexes::new();
//! let points = [(PointId::Num(7), point.payload.as_ref().unwrap())];
//! indexes.create("city", FieldSchema::Keyword, points.into_iter()).unwrap();
//! let candidates = filter.indexed_candidates(&indexes).unwrap();
//! assert!(candidates.contains(&PointId::Num(7)));
//!
//! let selector = PayloadSelector::from_json(&json!(["visits[].year"])).unwrap();
//! let shown = selector.apply(point.payload.as_ref().unwrap()).unwrap();
//! assert_eq!(serde_json::Value::Object(shown), json!({"visits": [{"year": 2019}, {"year": 2021}]}));
//!
//! // Malformed filters are typed errors that say where.
//! let err = Filter::from_json(&json!({"must": [{"key": "a", "match": {"valeu": 1}}]})).unwrap_err();
//! assert!(err.to_string().contains("must[0].match"));
//! ```
//!
//! # Differential test against the Python client
//!
//! `tests/differential.py` generates a few thousand random payloads and filters of every kind,
//! evaluates them with `qdrant_client.local` and with `examples/eval_filters.rs`, and compares
//! (selectors, `set_payload` and `delete_payload` too). From the workspace root:
//!
//! ```text
//! python3 -m venv data/e2e-venv && data/e2e-venv/bin/pip install qdrant-client==1.20.0
//! cargo build --release -p payload --example eval_filters
//! data/e2e-venv/bin/python crates/payload/tests/differential.py --cases 4000 --seed 1
//! ```
//!
//! # Deliberate differences from the reference
//!
//! * The filter is validated as the server validates it, where the Python client is lax or
//!   checks lazily: a field condition with no check, a bad key path, an invalid UUID in
//!   `has_id`, a datetime bound that does not parse, a latitude outside ±90 or longitude outside
//!   ±180, an open polygon ring or one of fewer than 4 points, and integers outside 64 bits in
//!   `match` are errors here.
//! * Dates use ASCII digits only (Python's `strptime` also takes other Unicode digits, and a
//!   space-padded day).
//! * Full-text tokens are runs of `char::is_alphanumeric`; Python's `\w` differs on a few
//!   combining marks.
//! * A text index tokenizes with the default word tokenizer whatever its parameters say
//!   (Qdrant honours the tokenizer, lowercasing, token lengths, stop words and stemming), so
//!   indexed and unindexed full-text matches agree here. Index parameters are validated and
//!   otherwise ignored.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod datetime;
mod error;
mod filter;
mod geo;
mod ids;
mod index;
mod key_path;
mod mutation;
mod selector;
mod slice;
mod text;

pub use datetime::parse_datetime_micros;
pub use error::{PayloadError, PayloadErrorKind, Result};
pub use filter::{
    geo_shape_from_json, AnyValues, Bounds, Condition, FieldCheck, FieldCondition, Filter, Match,
    MatchValue, MinShould, PlainPoint, PointView, RangeCheck,
};
pub use geo::{haversine_m, in_closed_polygon, GeoPoint, Ring, MEAN_EARTH_RADIUS_M};
pub use ids::{point_id_from_json, point_id_from_str, point_id_to_json};
pub use index::{FieldSchema, PayloadIndexes};
pub use key_path::{values_at, values_at_unflattened, KeyPath, PathItem};
pub use mutation::{delete_keys, set_payload};
pub use selector::PayloadSelector;

/// A point's payload: a JSON object.
pub type Payload = serde_json::Map<String, serde_json::Value>;
