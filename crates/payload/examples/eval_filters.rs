//! Reads JSON lines and prints one answer per line: the Rust side of the differential test
//! against `qdrant_client.local` (`tests/differential.py`).
//!
//! Each line is one of:
//!
//! * `{"payload": {..} | null, "id": ID, "vectors"?: [name], "filter": F}` → `true` / `false`
//! * `{"op": "select", "payload": {..}, "with_payload": WP}` → the selected payload as JSON
//! * `{"op": "set", "payload": {..}, "new": {..}, "key"?: str}` → the payload after the merge
//! * `{"op": "delete", "payload": {..}, "keys": [str]}` → the payload after the deletion
//!
//! An input the crate rejects prints `error: <message>`.
//!
//! ```text
//! cargo run --release -p payload --example eval_filters < cases.jsonl
//! ```

use std::io::{self, BufRead, BufWriter, Write};

use payload::{
    delete_keys, point_id_from_json, set_payload, Filter, KeyPath, Payload, PayloadSelector,
    PlainPoint,
};
use serde_json::Value;

fn payload_of(v: Option<&Value>) -> Result<Option<Payload>, String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map.clone())),
        Some(other) => Err(format!("payload must be an object, got {other}")),
    }
}

fn answer(line: &str) -> Result<String, String> {
    let case: Value = serde_json::from_str(line).map_err(|e| format!("bad JSON line: {e}"))?;
    let op = case.get("op").and_then(Value::as_str).unwrap_or("filter");
    let payload = payload_of(case.get("payload"))?;
    match op {
        "filter" => {
            let id = point_id_from_json(case.get("id").unwrap_or(&Value::Null))
                .map_err(|e| e.to_string())?;
            let vectors = case
                .get("vectors")
                .and_then(Value::as_array)
                .map(|names| {
                    names
                        .iter()
                        .filter_map(|n| n.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let filter = Filter::from_json(case.get("filter").unwrap_or(&Value::Null))
                .map_err(|e| e.to_string())?;
            let point = PlainPoint {
                id,
                payload,
                vectors,
            };
            Ok(filter.matches(&point).to_string())
        }
        "select" => {
            let selector =
                PayloadSelector::from_json(case.get("with_payload").unwrap_or(&Value::Null))
                    .map_err(|e| e.to_string())?;
            let selected = selector.apply(&payload.unwrap_or_default());
            Ok(selected.map_or(Value::Null, Value::Object).to_string())
        }
        "set" => {
            let mut target = payload.unwrap_or_default();
            let new = payload_of(case.get("new"))?.unwrap_or_default();
            let key = match case.get("key").and_then(Value::as_str) {
                Some(k) => Some(KeyPath::parse(k).map_err(|e| e.to_string())?),
                None => None,
            };
            set_payload(&mut target, &new, key.as_ref()).map_err(|e| e.to_string())?;
            Ok(Value::Object(target).to_string())
        }
        "delete" => {
            let mut target = payload.unwrap_or_default();
            let keys = case
                .get("keys")
                .and_then(Value::as_array)
                .ok_or("delete needs `keys`")?
                .iter()
                .map(|k| KeyPath::parse(k.as_str().unwrap_or_default()).map_err(|e| e.to_string()))
                .collect::<Result<Vec<_>, _>>()?;
            delete_keys(&mut target, &keys);
            Ok(Value::Object(target).to_string())
        }
        other => Err(format!("unknown op `{other}`")),
    }
}

fn main() -> io::Result<()> {
    let stdin = io::stdin();
    let mut out = BufWriter::new(io::stdout().lock());
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match answer(&line) {
            Ok(text) => writeln!(out, "{text}")?,
            Err(message) => writeln!(out, "error: {}", message.replace('\n', " "))?,
        }
    }
    out.flush()
}
