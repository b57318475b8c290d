//! Point ids as JSON: what requests carry and what responses return.

use index_core::PointId;
use serde_json::Value;

use crate::error::{PayloadError, Result};

/// Reads a point id: an unsigned 64-bit integer, or a UUID string in any spelling Qdrant takes
/// (hyphenated, 32 plain hex digits, `{hyphenated}` or `urn:uuid:hyphenated`, any case).
///
/// Negative, fractional and out-of-range numbers, booleans and other strings are typed errors.
pub fn point_id_from_json(v: &Value) -> Result<PointId> {
    let parsed = match v {
        Value::Number(n) => n.as_u64().map(PointId::Num),
        Value::String(s) => parse_uuid_spelling(s),
        _ => None,
    };
    parsed.ok_or_else(|| PayloadError::InvalidPointId {
        value: v.to_string(),
    })
}

/// Reads a point id written as a string: a UUID in any spelling Qdrant takes (see
/// [`point_id_from_json`]). Path segments and typed request bodies use it.
pub fn point_id_from_str(s: &str) -> Option<PointId> {
    parse_uuid_spelling(s)
}

/// Writes a point id as Qdrant returns it: a number, or a lowercase hyphenated UUID string.
pub fn point_id_to_json(id: PointId) -> Value {
    match id {
        PointId::Num(n) => Value::from(n),
        PointId::Uuid(_) => Value::String(id.to_string()),
    }
}

/// The UUID spellings the server's `uuid` crate parses: `PointId::parse_uuid` takes the bare
/// ones, the braced and URN forms wrap a hyphenated one.
pub(crate) fn parse_uuid_spelling(s: &str) -> Option<PointId> {
    let inner = if let Some(braced) = s.strip_prefix('{') {
        let inner = braced.strip_suffix('}')?;
        // A braced UUID is always hyphenated; `{<32 hex>}` is not a UUID spelling.
        if !inner.contains('-') {
            return None;
        }
        inner
    } else if let Some(urn) = s.strip_prefix("urn:uuid:") {
        if !urn.contains('-') {
            return None;
        }
        urn
    } else {
        s
    };
    PointId::parse_uuid(inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_uuid_spelling_is_the_same_id() {
        let canonical = "550e8400-e29b-41d4-a716-446655440000";
        let want = point_id_from_json(&json!(canonical)).unwrap();
        for spelling in [
            "550E8400-E29B-41D4-A716-446655440000",
            "550e8400e29b41d4a716446655440000",
            "{550e8400-e29b-41d4-a716-446655440000}",
            "urn:uuid:550e8400-e29b-41d4-a716-446655440000",
        ] {
            assert_eq!(
                point_id_from_json(&json!(spelling)).unwrap(),
                want,
                "{spelling}"
            );
        }
        assert_eq!(point_id_to_json(want), json!(canonical));
    }

    #[test]
    fn malformed_ids_are_errors() {
        for bad in [
            json!(-1),
            json!(1.5),
            json!(1.0),
            json!(true),
            json!(null),
            json!("12"),
            json!("{550e8400e29b41d4a716446655440000}"),
            json!("urn:uuid:550e8400e29b41d4a716446655440000"),
            json!("550e8400-e29b-41d4-a716-44665544000"),
            json!([1]),
        ] {
            let err = point_id_from_json(&bad).unwrap_err();
            assert!(matches!(err, PayloadError::InvalidPointId { .. }), "{bad}");
        }
    }
}
