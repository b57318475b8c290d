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
