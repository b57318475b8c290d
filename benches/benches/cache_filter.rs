//! The request path's small costs: a result-cache lookup (hit and miss, with key building)
//! and payload filter evaluation (parsed filter on one point, per condition kind, and the
//! indexed candidate set of a keyword match over 100,000 points).

use cache::{CacheConfig, KeyBuilder, ResultCache};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use index_core::PointId;
use payload::{FieldSchema, Filter, Payload, PayloadIndexes, PlainPoint};
use serde_json::json;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

const COLORS: [&str; 4] = ["red", "green", "blue", "black"];

fn request_key(q: &[f32]) -> Vec<u8> {
    let mut k = KeyBuilder::new();
    k.push_str("query")
        .push_str("collection")
        .push_f32s(q)
        .push_json(&json!({"limit": 10, "params": {"hnsw_ef": 64}}));
    k.finish()
}

fn bench(c: &mut Criterion) {
    let cache: ResultCache<Vec<u8>> = ResultCache::new(&CacheConfig::default());
    let q: Vec<f32> = (0..768).map(|i| i as f32 * 0.001).collect();
    let epoch = cache.epoch("collection");
    cache.insert(
        "collection",
        epoch,
        request_key(&q),
        Arc::new(vec![b'x'; 600]),
        600,
    );
    let mut group = c.benchmark_group("cache");
    group.bench_function("hit_d768", |b| {
        b.iter(|| cache.get("collection", &request_key(black_box(&q))))
    });
    let other: Vec<f32> = q.iter().map(|x| x + 1.0).collect();
    group.bench_function("miss_d768", |b| {
        b.iter(|| cache.get("collection", &request_key(black_box(&other))))
    });
    group.finish();

    let point = PlainPoint {
        id: PointId::Num(7),
        payload: json!({
            "city": "Berlin", "price": 12.5, "tags": ["a", "b", "c"],
            "location": {"lat": 52.52, "lon": 13.40},
            "visits": [{"year": 2019, "ok": true}, {"year": 2021, "ok": false}],
            "text": "the quick brown fox jumps over the lazy dog"
        })
        .as_object()
        .cloned(),
        vectors: vec![String::new()],
    };
    let filters = [
        (
            "match_value",
            json!({"must": {"key": "city", "match": {"value": "Berlin"}}}),
        ),
        (
            "match_any",
            json!({"must": {"key": "tags", "match": {"any": ["x", "c"]}}}),
        ),
        (
            "range",
            json!({"must": {"key": "price", "range": {"gte": 10, "lt": 20}}}),
        ),
        (
            "geo_radius",
            json!({"must": {"key": "location", "geo_radius": {"center": {"lat": 52.5, "lon": 13.4}, "radius": 5000.0}}}),
        ),
        (
            "text",
            json!({"must": {"key": "text", "match": {"text": "lazy dog"}}}),
        ),
        (
            "nested",
            json!({"must": {"nested": {"key": "visits", "filter": {"must": [{"key": "year", "range": {"gte": 2020}}, {"key": "ok", "match": {"value": false}}]}}}}),
        ),
        (
            "bool_mix",
            json!({"should": [{"key": "city", "match": {"value": "Paris"}}, {"key": "price", "range": {"lt": 13}}], "must_not": {"is_empty": {"key": "tags"}}}),
        ),
    ];
    let mut group = c.benchmark_group("filter_eval");
    for (name, f) in &filters {
        let filter = Filter::from_json(f).expect("filter");
        group.bench_function(*name, |b| b.iter(|| filter.matches(black_box(&point))));
    }
    group.finish();

    let mut indexes = PayloadIndexes::new();
    let payloads: Vec<(PointId, Payload)> = (0..100_000u64)
        .map(|i| {
            (
                PointId::Num(i),
                json!({"color": COLORS[i as usize % 4], "n": i % 1000})
                    .as_object()
                    .cloned()
                    .unwrap(),
            )
        })
        .collect();
    indexes
        .create(
            "color",
            FieldSchema::Keyword,
            payloads.iter().map(|(id, p)| (*id, p)),
        )
        .expect("index");
    let selective = Filter::from_json(&json!({"must": [{"key": "color", "match": {"value": "red"}}, {"key": "n", "range": {"lt": 10}}]})).unwrap();
    let mut group = c.benchmark_group("indexed_candidates");
    group.bench_function(BenchmarkId::from_parameter("keyword_100k"), |b| {
        b.iter(|| selective.indexed_candidates(black_box(&indexes)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = bench
}
criterion_main!(benches);
