//! Search parameters of the query body, and the sweep of one of them.
//!
//! A sweep is written `NAME=V1,V2,..`. The names Qdrant users know map to their place in the
//! `POST /points/query` body:
//!
//! | name | body field | meaning |
//! |---|---|---|
//! | `hnsw_ef` | `params.hnsw_ef` | HNSW search beam width |
//! | `oversampling` | `params.quantization.oversampling` | candidates re-scored per result |
//! | `nprobe` | `params.nprobe` | IVF lists visited (our router's extension; Qdrant has no IVF) |
//!
//! Any other name containing a dot is taken as a path into the body (`params.exact`), so a
//! server-specific knob can be swept without a new release. Values are JSON scalars.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// One parameter and the values it takes, in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sweep {
    /// The name as given (`hnsw_ef`).
    pub name: String,
    /// Its path in the query body (`["params", "hnsw_ef"]`).
    pub path: Vec<String>,
    /// The values, one run each.
    pub values: Vec<Value>,
}

impl Sweep {
    /// Parses `NAME=V1,V2,..`.
    pub fn parse(spec: &str) -> Result<Sweep> {
        let (name, values) = spec
            .split_once('=')
            .ok_or_else(|| Error::argument("sweep", format!("`{spec}`: expected NAME=V1,V2,..")))?;
        let name = name.trim();
        let path = parameter_path(name)?;
        let values = values
            .split(',')
            .map(|v| parse_scalar(v.trim()))
            .collect::<Result<Vec<_>>>()?;
        if values.is_empty() {
            return Err(Error::argument("sweep", "no values"));
        }
        Ok(Sweep {
            name: name.to_string(),
            path,
            values,
        })
    }
}

/// The body path of a parameter name (see the module doc).
pub fn parameter_path(name: &str) -> Result<Vec<String>> {
    let path: Vec<String> = match name {
        "hnsw_ef" => vec!["params".into(), "hnsw_ef".into()],
        "oversampling" => vec![
            "params".into(),
            "quantization".into(),
            "oversampling".into(),
        ],
        "nprobe" => vec!["params".into(), "nprobe".into()],
        other if other.contains('.') => other.split('.').map(str::to_string).collect(),
        other => {
            return Err(Error::argument(
                "sweep",
                format!(
                    "unknown parameter `{other}`: use hnsw_ef, oversampling, nprobe or a body path such as params.exact"
                ),
            ))
        }
    };
    if path.iter().any(String::is_empty) {
        return Err(Error::argument(
            "sweep",
            format!("`{name}`: empty path segment"),
        ));
    }
    if path.first().map(String::as_str) != Some("params") {
        return Err(Error::argument(
            "sweep",
            format!("`{name}`: only fields under `params` can be swept (the rest of the body is the query itself)"),
        ));
    }
    Ok(path)
}

/// A JSON scalar: number, `true`/`false`, or else a string.
fn parse_scalar(text: &str) -> Result<Value> {
    if text.is_empty() {
        return Err(Error::argument("sweep", "empty value"));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(v @ (Value::Number(_) | Value::Bool(_) | Value::String(_))) => Ok(v),
        _ => Ok(Value::String(text.to_string())),
    }
}

/// Sets `path` (whose first segment is `params`) in a `params` object to `value`, creating
/// the objects on the way; a non-object in the way is replaced.
pub fn set_param(params: &mut Map<String, Value>, path: &[String], value: Value) {
    let Some((last, inner)) = path[1..].split_last() else {
        return;
    };
    let mut node = params;
    for segment in inner {
        let entry = node
            .entry(segment.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(next) = entry else {
            return;
        };
        node = next;
    }
    node.insert(last.clone(), value);
}

/// A value as a label (`64`, `1.5`, `true`).
pub fn label(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_known_and_path_names() {
        let s = Sweep::parse("hnsw_ef=16, 32,64").unwrap();
        assert_eq!(s.path, ["params", "hnsw_ef"]);
        assert_eq!(s.values, [json!(16), json!(32), json!(64)]);
        let s = Sweep::parse("params.exact=true,false").unwrap();
        assert_eq!(s.values, [json!(true), json!(false)]);
        assert!(Sweep::parse("ef=1").is_err());
        assert!(Sweep::parse("limit.x=1").is_err());
        assert!(Sweep::parse("hnsw_ef").is_err());
        assert!(Sweep::parse("hnsw_ef=1,,2").is_err());
    }

    #[test]
    fn sets_nested_fields_without_losing_siblings() {
        let mut params = Map::new();
        params.insert("hnsw_ef".into(), json!(8));
        let path = parameter_path("oversampling").unwrap();
        set_param(&mut params, &path, json!(2.0));
        assert_eq!(
            Value::Object(params),
            json!({"hnsw_ef": 8, "quantization": {"oversampling": 2.0}})
        );
    }
}
