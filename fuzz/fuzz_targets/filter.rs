//! Filter parsing and evaluation: any JSON a client sends as a filter either parses into a
//! `Filter` or is refused with an error, and a parsed filter evaluates on any point without
//! panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use payload::{Filter, PlainPoint};
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(filter) = Filter::from_json(&value) else {
        return;
    };
    let payloads = [
        json!({}),
        json!({"city": "London", "n": 3, "f": 2.5, "tags": ["a", "b"], "flag": true,
               "nested": {"arr": [{"k": 1}, {"k": "x"}]}, "geo": {"lat": 51.5, "lon": -0.1},
               "date": "2024-01-02T03:04:05Z", "nul": null, "text": "the quick brown fox"}),
        json!({"n": -1e300, "tags": [], "nested": {"arr": []}, "uuid": "550e8400-e29b-41d4-a716-446655440000"}),
    ];
    for (i, p) in payloads.iter().enumerate() {
        let point = PlainPoint {
            id: index_core::PointId::Num(i as u64),
            payload: p.as_object().cloned(),
            vectors: vec![String::new()],
        };
        let _ = filter.matches(&point);
    }
});
