//! A collection with a small indexing threshold: segments get indexed (HNSW, or CAGRA) in the background,
//! the status turns green, and approximate search keeps recall@10 against brute force.

use crate::common::{assert_exact, brute_force, eventually, DataDirs, Distance, Rng, Router};
use serde_json::{json, Value};
use std::time::Duration;

const DIM: usize = 16;
const POINTS: u64 = 3000;
const SEED: u64 = 2024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_segments_keep_recall() {
    keeps_recall(
        json!({"hnsw_config": {"m": 16, "ef_construct": 100}}),
        "hnsw",
    )
    .await;
}

/// The same with CAGRA segments (the `"index"` extension): each shard's indexed segment is
/// built as a graph from its first batch, then grows through its tail and rebuilds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cagra_segments_keep_recall() {
    keeps_recall(
        json!({"index": {"type": "cagra", "graph_degree": 16, "intermediate_graph_degree": 32}}),
        "cagra",
    )
    .await;
}

/// Fills, indexes and searches a collection created with `index_settings`; its indexed
/// segments' files must end with `extension` (the index family that served the searches).
async fn keeps_recall(index_settings: Value, extension: &str) {
    let dirs = DataDirs::new();
    let r = Router::start(&dirs, &[]);
    // 16 KB of 64-byte vectors: a segment is sealed and indexed every 256 points per shard.
    let mut body = json!({
        "vectors": {"size": DIM, "distance": "Euclid"},
        "shard_number": 2,
        "optimizers_config": {"indexing_threshold": 16},
    });
    for (k, v) in index_settings.as_object().expect("an object") {
        body[k] = v.clone();
    }
    r.create("indexed", body).await;
    let mut rng = Rng::new(SEED);
    let points: Vec<(Value, Vec<f32>)> = (0..POINTS).map(|i| (json!(i), rng.vector(DIM))).collect();
    r.upsert_vectors("indexed", &points).await;
    assert_eq!(r.info("indexed").await["points_count"], json!(POINTS));

    // At most one unsealed segment per shard stays plain.
    let unindexed_at_most = 2 * 256;
    let info = eventually("indexing to finish", Duration::from_secs(40), || async {
        let info = r.info("indexed").await;
        let indexed = info["indexed_vectors_count"].as_u64().unwrap_or(0);
        (info["status"] == "green" && indexed + unindexed_at_most >= POINTS).then_some(info)
    })
    .await;
    assert_eq!(info["optimizer_status"], "ok", "{info}");
    assert!(info["segments_count"].as_u64().unwrap() >= 4, "{info}");

    let queries = 30;
    let mut found = 0;
    for i in 0..queries {
        let q = rng.vector(DIM);
        let expected = brute_force(Distance::Euclid, &q, &points);
        let got = r.query("indexed", json!({"query": q, "limit": 10})).await;
        assert_eq!(got.len(), 10);
        found += got
            .iter()
            .filter(|p| expected[..10].iter().any(|(id, _)| *id == p["id"]))
            .count();
        // Exact search on the indexed collection is still exact.
        if i < 3 {
            let got = r
                .query(
                    "indexed",
                    json!({"query": q, "limit": 10, "params": {"exact": true}}),
                )
                .await;
            assert_exact(
                &format!("exact on indexed (seed {SEED}) #{i}"),
                &got,
                &expected[..10],
            );
        }
    }
    let recall = found as f64 / (queries * 10) as f64;
    assert!(recall >= 0.95, "recall@10 {recall} < 0.95 (seed {SEED})");
    let files = files_under(&dirs.storage());
    assert!(
        files.iter().any(|f| f.ends_with(&format!(".{extension}"))),
        "no .{extension} graph file in {files:?}"
    );
}

fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}

/// Qdrant's configuration for many small tenants, `hnsw_config: {"payload_m": 16, "m": 0}`
/// with the tenant field indexed `is_tenant`: accepted, echoed, and served exactly. Indexed
/// segments are built without a graph, so every search, by tenant or over everything, is an
/// exact scan, whatever `hnsw_ef` asks; a `PATCH` to `m: 16` builds graphs and back to `m: 0`
/// drops them, with the answers exact again. (`payload_m`'s per-tenant links are not built:
/// a tenant's points are scanned instead.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collections_without_a_graph_answer_exactly() {
    let dirs = DataDirs::new();
    let r = Router::start(&dirs, &["--cache-ttl-secs", "0"]);
    r.create(
        "tenants",
        json!({
            "vectors": {"size": DIM, "distance": "Euclid"},
            "shard_number": 2,
            // A threshold of 1 KB (16 vectors): a graph would be walked for a tenant's ~190
            // points a shard, so the filtered half checks the scan too.
            "hnsw_config": {"payload_m": 16, "m": 0, "full_scan_threshold": 1},
            "optimizers_config": {"indexing_threshold": 16},
        }),
    )
    .await;
    r.put(
        "/collections/tenants/index?wait=true",
        json!({"field_name": "tenant", "field_schema": {"type": "keyword", "is_tenant": true}}),
    )
    .await;
    let info = r.info("tenants").await;
    assert_eq!(info["config"]["hnsw_config"]["m"], 0, "{info}");
    assert_eq!(info["config"]["hnsw_config"]["payload_m"], 16, "{info}");

    let tenants = ["a", "b", "c", "d", "e", "f", "g", "h"];
    let mut rng = Rng::new(SEED + 1);
    let points: Vec<(Value, Vec<f32>, &str)> = (0..POINTS)
        .map(|i| (json!(i), rng.vector(DIM), tenants[(i * 7 % 8) as usize]))
        .collect();
    for chunk in points.chunks(500) {
        let list: Vec<Value> = chunk
            .iter()
            .map(|(id, v, t)| json!({"id": id, "vector": v, "payload": {"tenant": t}}))
            .collect();
        r.upsert("tenants", json!({ "points": list })).await;
    }
    // Every exact answer, for a query over everything and one per tenant.
    let check = |context: &'static str| {
        let r = &r;
        let points = &points;
        let mut rng = Rng::new(SEED + 2);
        async move {
            let all: Vec<(Value, Vec<f32>)> = points
                .iter()
                .map(|(id, v, _)| (id.clone(), v.clone()))
                .collect();
            for i in 0..12 {
                let q = rng.vector(DIM);
                let got = r
                    .query(
                        "tenants",
                        json!({"query": q, "limit": 10, "params": {"hnsw_ef": 1}}),
                    )
                    .await;
                let expected = brute_force(Distance::Euclid, &q, &all);
                assert_exact(
                    &format!("{context}, everything #{i}"),
                    &got,
                    &expected[..10],
                );
                let tenant = tenants[i % tenants.len()];
                let own: Vec<(Value, Vec<f32>)> = points
                    .iter()
                    .filter(|p| p.2 == tenant)
                    .map(|(id, v, _)| (id.clone(), v.clone()))
                    .collect();
                let got = r
                    .query(
                        "tenants",
                        json!({"query": q, "limit": 10, "params": {"hnsw_ef": 1},
                               "filter": {"must": [{"key": "tenant", "match": {"value": tenant}}]}}),
                    )
                    .await;
                let expected = brute_force(Distance::Euclid, &q, &own);
                assert_exact(
                    &format!("{context}, tenant {tenant} #{i}"),
                    &got,
                    &expected[..10],
                );
            }
        }
    };
    let green = |indexed_at_least: u64| {
        let r = &r;
        async move {
            eventually("indexing to finish", Duration::from_secs(60), || async {
                let info = r.info("tenants").await;
                let indexed = info["indexed_vectors_count"].as_u64().unwrap_or(0);
                (info["status"] == "green" && indexed >= indexed_at_least).then_some(info)
            })
            .await
        }
    };
    // At most one unsealed segment per shard stays plain (256 points each).
    let info = green(POINTS - 2 * 256).await;
    assert!(info["segments_count"].as_u64().unwrap() >= 4, "{info}");
    check("no graph").await;
    // Bytes of the indexed segments' files per indexed point, once the collection is green
    // (the optimizer merges segments too, so their count and sizes change).
    let per_point = |info: &Value| {
        let indexed = info["indexed_vectors_count"].as_u64().unwrap_or(0);
        let bytes: u64 = files_under(&dirs.storage())
            .into_iter()
            .filter(|f| f.ends_with(".hnsw"))
            .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
            .sum();
        (info["status"] == "green" && indexed > 0).then(|| bytes as f64 / indexed as f64)
    };
    // A record without a graph holds its state word and 64 bytes of vector, padded to two
    // cache lines; with one, 33 link words more (256 bytes). Rows written since a segment's
    // file was saved are checkpointed elsewhere, so a figure may come out lower.
    const FLAT: f64 = 130.0;
    let flat = per_point(&info).expect("indexed segments are saved");
    assert!(flat <= FLAT, "{flat} bytes a point without a graph");

    // With a graph: built (two and a half times the bytes a point).
    let patch = |m: u64| {
        let r = &r;
        async move {
            let (status, answer) = r
                .call(
                    reqwest::Method::PATCH,
                    "/collections/tenants",
                    Some(&json!({"hnsw_config": {"m": m}})),
                )
                .await;
            assert_eq!(status, reqwest::StatusCode::OK, "{answer}");
        }
    };
    patch(16).await;
    eventually("graphs to be built", Duration::from_secs(60), || async {
        let per_point = per_point(&r.info("tenants").await);
        (per_point.is_some_and(|b| b > 200.0)).then_some(())
    })
    .await;
    let info = r.info("tenants").await;
    assert_eq!(info["config"]["hnsw_config"]["m"], 16, "{info}");
    patch(0).await;
    eventually("graphs to be dropped", Duration::from_secs(60), || async {
        let per_point = per_point(&r.info("tenants").await);
        (per_point.is_some_and(|b| b <= FLAT)).then_some(())
    })
    .await;
    check("graph dropped").await;
}
