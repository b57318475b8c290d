//! Malformed filters, selectors and schemas are typed errors that say where.

use payload::{FieldSchema, Filter, PayloadError, PayloadErrorKind, PayloadSelector};
use serde_json::json;

/// Parses `filter`, expecting an `InvalidFilter` error at `at` whose reason mentions `says`.
fn rejected(filter: serde_json::Value, at: &str, says: &str) {
    let err = Filter::from_json(&filter).expect_err(&filter.to_string());
    assert_eq!(err.kind(), PayloadErrorKind::InvalidInput);
    match &err {
        PayloadError::InvalidFilter { at: where_, reason } => {
            assert_eq!(where_, at, "{filter}: {err}");
            assert!(
                reason.contains(says),
                "{filter}: `{reason}` should mention `{says}`"
            );
        }
        other => panic!("{filter}: {other:?}"),
    }
}

#[test]
fn structure_errors() {
    rejected(json!([]), "filter", "must be an object");
    rejected(json!({"mustnt": []}), "filter", "unknown field `mustnt`");
    rejected(json!({"must": [1]}), "must[0]", "must be an object");
    rejected(
        json!({"must": [{"unknown": 1}]}),
        "must[0]",
        "unknown field `unknown`",
    );
    rejected(
        json!({"should": {"must": [{"x": 1}]}}),
        "should.must[0]",
        "unknown field `x`",
    );
    rejected(
        json!({"min_should": {"conditions": [], "min_count": 0}}),
        "min_should.min_count",
        "1 or more",
    );
    rejected(
        json!({"min_should": {"conditions": {}, "min_count": 1}}),
        "min_should.conditions",
        "array",
    );
    rejected(
        json!({"min_should": {"min_count": 1}}),
        "min_should",
        "missing field `conditions`",
    );
    rejected(
        json!({"min_should": {"conditions": [], "min_count": 1, "x": 0}}),
        "min_should",
        "unknown field `x`",
    );
}

#[test]
fn field_condition_errors() {
    let c = |cond: serde_json::Value| json!({ "must": [cond] });
    rejected(
        c(json!({"key": "a"})),
        "must[0]",
        "at least one field condition",
    );
    rejected(
        c(json!({"key": "a", "match": null})),
        "must[0]",
        "at least one field condition",
    );
    rejected(
        c(json!({"key": 5, "match": {"value": 1}})),
        "must[0].key",
        "expected a string",
    );
    rejected(
        c(json!({"key": "a..b", "match": {"value": 1}})),
        "must[0].key",
        "invalid payload key path",
    );
    rejected(
        c(json!({"key": "a", "matches": {"value": 1}})),
        "must[0]",
        "unknown field `matches`",
    );
    rejected(
        c(json!({"key": "a", "match": {"valeu": 1}})),
        "must[0].match.valeu",
        "unknown match",
    );
    rejected(
        c(json!({"key": "a", "match": {}})),
        "must[0].match",
        "exactly one",
    );
    rejected(
        c(json!({"key": "a", "match": {"value": 1, "any": [1]}})),
        "must[0].match",
        "exactly one",
    );
    rejected(
        c(json!({"key": "a", "match": {"value": 1.5}})),
        "must[0].match.value",
        "64-bit integer",
    );
    rejected(
        c(json!({"key": "a", "match": {"value": u64::MAX}})),
        "must[0].match.value",
        "64-bit integer",
    );
    rejected(
        c(json!({"key": "a", "match": {"value": null}})),
        "must[0].match.value",
        "got null",
    );
    rejected(
        c(json!({"key": "a", "match": {"value": [1]}})),
        "must[0].match.value",
        "got an array",
    );
    rejected(
        c(json!({"key": "a", "match": {"any": ["x", 1]}})),
        "must[0].match.any[1]",
        "only strings or only",
    );
    rejected(
        c(json!({"key": "a", "match": {"any": [true]}})),
        "must[0].match.any[0]",
        "got a boolean",
    );
    rejected(
        c(json!({"key": "a", "match": {"except": "x"}})),
        "must[0].match.except",
        "expected an array",
    );
    rejected(
        c(json!({"key": "a", "match": {"text": 1}})),
        "must[0].match.text",
        "expected a string",
    );
    rejected(
        c(json!({"key": "a", "range": {"gt": "soon"}})),
        "must[0].range.gt",
        "not an RFC 3339",
    );
    rejected(
        c(json!({"key": "a", "range": {"gt": 1, "lt": "2021-01-01"}})),
        "must[0].range",
        "all numbers",
    );
    rejected(
        c(json!({"key": "a", "range": {"gt": true}})),
        "must[0].range",
        "all numbers",
    );
    rejected(
        c(json!({"key": "a", "range": {"between": 1}})),
        "must[0].range",
        "unknown field `between`",
    );
    rejected(
        c(json!({"key": "a", "range": [1, 2]})),
        "must[0].range",
        "must be an object",
    );
    rejected(
        c(json!({"key": "a", "values_count": {"gt": -1}})),
        "must[0].values_count.gt",
        "unsigned integer",
    );
    rejected(
        c(json!({"key": "a", "is_empty": "yes"})),
        "must[0].is_empty",
        "boolean",
    );
}

#[test]
fn geo_errors() {
    let c = |cond: serde_json::Value| json!({ "must": [cond] });
    let pt = |lat: f64, lon: f64| json!({"lat": lat, "lon": lon});
    rejected(
        c(json!({"key": "g", "geo_radius": {"center": pt(91.0, 0.0), "radius": 1}})),
        "must[0].geo_radius.center.lat",
        "outside [-90, 90]",
    );
    rejected(
        c(json!({"key": "g", "geo_radius": {"center": pt(0.0, -180.5), "radius": 1}})),
        "must[0].geo_radius.center.lon",
        "outside [-180, 180]",
    );
    rejected(
        c(json!({"key": "g", "geo_radius": {"center": {"lat": 0}, "radius": 1}})),
        "must[0].geo_radius.center",
        "missing field `lon`",
    );
    rejected(
        c(json!({"key": "g", "geo_radius": {"center": pt(0.0, 0.0)}})),
        "must[0].geo_radius",
        "missing field `radius`",
    );
    rejected(
        c(json!({"key": "g", "geo_bounding_box": {"top_left": pt(1.0, 1.0)}})),
        "must[0].geo_bounding_box",
        "missing field `bottom_right`",
    );
    let open = json!({"points": [pt(0.0, 0.0), pt(0.0, 1.0), pt(1.0, 1.0), pt(1.0, 0.0)]});
    rejected(
        c(json!({"key": "g", "geo_polygon": {"exterior": open}})),
        "must[0].geo_polygon.exterior.points",
        "the same to close",
    );
    let short = json!({"points": [pt(0.0, 0.0), pt(1.0, 1.0), pt(0.0, 0.0)]});
    let closed = json!({"points": [pt(0.0, 0.0), pt(0.0, 1.0), pt(1.0, 1.0), pt(0.0, 0.0)]});
    rejected(
        c(json!({"key": "g", "geo_polygon": {"exterior": closed, "interiors": [short]}})),
        "must[0].geo_polygon.interiors[0].points",
        "at least 4 points",
    );
}

#[test]
fn other_condition_errors() {
    let c = |cond: serde_json::Value| json!({ "must": [cond] });
    rejected(
        c(json!({"has_id": ["not-a-uuid"]})),
        "must[0].has_id[0]",
        "invalid point id",
    );
    rejected(
        c(json!({"has_id": [1, -1]})),
        "must[0].has_id[1]",
        "invalid point id",
    );
    rejected(
        c(json!({"has_id": 1})),
        "must[0].has_id",
        "array of point ids",
    );
    rejected(
        c(json!({"has_vector": 1})),
        "must[0].has_vector",
        "expected a string",
    );
    rejected(
        c(json!({"has_vector": "v", "x": 1})),
        "must[0]",
        "unknown field `x`",
    );
    rejected(
        c(json!({"is_empty": {"key": "a", "x": 1}})),
        "must[0].is_empty",
        "unknown field `x`",
    );
    rejected(
        c(json!({"is_null": "a"})),
        "must[0].is_null",
        "must be an object",
    );
    rejected(
        c(json!({"is_null": {"key": "a["}})),
        "must[0].is_null.key",
        "no closing",
    );
    rejected(
        c(json!({"nested": {"key": "a"}})),
        "must[0].nested",
        "missing field `filter`",
    );
    rejected(
        c(json!({"nested": {"key": "a", "filter": {"must": [{"key": "b"}]}}})),
        "must[0].nested.filter.must[0]",
        "at least one field condition",
    );
    rejected(
        c(json!({"slice": {"total": 0, "index": 0}})),
        "must[0].slice.total",
        "1 or more",
    );
    rejected(
        c(json!({"slice": {"total": 2, "index": 2}})),
        "must[0].slice.index",
        "[0, 1]",
    );
    rejected(
        c(json!({"slice": {"total": 2}})),
        "must[0].slice",
        "missing field `index`",
    );
}

#[test]
fn nulls_are_absent_fields() {
    let f = Filter::from_json(&json!({"must": null, "should": null, "min_should": null})).unwrap();
    assert_eq!(f, Filter::default());
    let with_null_bound =
        Filter::from_json(&json!({"must": {"key": "a", "range": {"gt": null, "lt": 3}}})).unwrap();
    let without = Filter::from_json(&json!({"must": {"key": "a", "range": {"lt": 3}}})).unwrap();
    assert_eq!(with_null_bound, without);
}

#[test]
fn selector_errors() {
    for bad in [
        json!(null),
        json!("a"),
        json!(1),
        json!([1]),
        json!(["a..b"]),
        json!({"include": "a"}),
        json!({"include": ["a"], "exclude": ["b"]}),
        json!({"only": ["a"]}),
        json!({}),
    ] {
        let err = PayloadSelector::from_json(&bad).expect_err(&bad.to_string());
        assert!(
            matches!(err, PayloadError::InvalidSelector { .. }),
            "{bad}: {err:?}"
        );
        assert_eq!(err.kind(), PayloadErrorKind::InvalidInput);
    }
}

#[test]
fn schema_errors() {
    for bad in [
        json!("keywords"),
        json!(1),
        json!(null),
        json!({"tokenizer": "word"}),
        json!({"type": "text", "tokenizer": "words"}),
        json!({"type": "text", "min_token_len": -1}),
        json!({"type": "text", "stopwords": "klingon"}),
        json!({"type": "text", "stemmer": {"type": "snowball"}}),
        json!({"type": "keyword", "tokenizer": "word"}),
        json!({"type": "integer", "lookup": "yes"}),
        json!({"type": "geo", "memory": "hot"}),
    ] {
        let err = FieldSchema::from_json(&bad).expect_err(&bad.to_string());
        assert!(
            matches!(err, PayloadError::InvalidFieldSchema { .. }),
            "{bad}: {err:?}"
        );
    }
}
