//! Sparse search in process, through a durable collection (`storage`): the BM25 set
//! `benches/make_sparse.py` builds (document vectors over Python's standard library, queries
//! of 2 to 6 terms), one sparse vector with Qdrant's `idf` modifier, single-thread QPS and
//! recall@10 against the set's exact answers; beside it, an exact brute-force scan (every
//! document's dot product with the query, the IDF weights applied) on the same data.
//! `benches/sparse_peer.py` runs the same workload in Qdrant's engine (`qdrant-edge-py`).
//!
//! ```sh
//! data/peers-venv/bin/python benches/make_sparse.py            # data/sparse-stdlib
//! cargo run --release -p vr-benches --example sparse -- --data data/sparse-stdlib
//! data/peers-venv/bin/python benches/sparse_peer.py --data data/sparse-stdlib
//! ```
//!
//! QPS is the best of `--passes` passes (default 3), after one pass that warms up. The
//! collection is built in a temporary directory (`--storage` to choose one), one shard.

use index_core::{PointId, SearchParams};
use payload::{Payload, PayloadSelector};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;
use storage::{
    CollectionConfig, PointWrite, Query, SearchRequest, SparseVector, Storage, Update,
    VectorSelector,
};

const K: usize = 10;

/// The rows of a `make_sparse.py` file (layout in its docstring), checked.
fn read_sparse(path: &Path) -> Vec<SparseVector> {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        raw.len() >= 32 && &raw[..8] == b"VRSPARSE",
        "{}: not a sparse file",
        path.display()
    );
    let u32_at = |at: usize| u32::from_le_bytes(raw[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(raw[at..at + 8].try_into().unwrap());
    assert_eq!(u32_at(8), 1, "{}: version", path.display());
    let (rows, entries) = (u64_at(12) as usize, u64_at(20) as usize);
    let body = &raw[32..];
    assert_eq!(
        persist::crc32(body),
        u32_at(28),
        "{}: checksum",
        path.display()
    );
    assert_eq!(
        body.len(),
        (rows + 1) * 8 + entries * 8,
        "{}: length",
        path.display()
    );
    let start = |r: usize| u64::from_le_bytes(body[r * 8..r * 8 + 8].try_into().unwrap()) as usize;
    let idx_at = (rows + 1) * 8;
    let val_at = idx_at + entries * 4;
    (0..rows)
        .map(|r| {
            let (a, b) = (start(r), start(r + 1));
            let indices = (a..b)
                .map(|e| {
                    u32::from_le_bytes(body[idx_at + e * 4..idx_at + e * 4 + 4].try_into().unwrap())
                })
                .collect();
            let values = (a..b)
                .map(|e| {
                    f32::from_le_bytes(body[val_at + e * 4..val_at + e * 4 + 4].try_into().unwrap())
                })
                .collect();
            SparseVector::new(indices, values).expect("a valid sparse vector")
        })
        .collect()
}

/// Share of the true top-10 slots filled by a point scoring at least the true 10th.
fn recall(got: &[f32], truth: &[f32]) -> f64 {
    let want: Vec<f32> = truth.iter().copied().filter(|s| *s > 0.0).collect();
    let Some(&kth) = want.last() else {
        return 1.0;
    };
    let good = got.iter().filter(|s| **s >= kth - 1e-4 * kth.abs()).count();
    good.min(want.len()) as f64 / want.len() as f64
}

fn main() {
    let mut data = PathBuf::from("data/sparse-stdlib");
    let mut storage_dir: Option<PathBuf> = None;
    let mut passes = 3;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--data" => data = PathBuf::from(value),
            "--storage" => storage_dir = Some(PathBuf::from(value)),
            "--passes" => passes = value.parse().expect("--passes: a number"),
            other => panic!("unknown flag {other}"),
        }
    }
    let docs = read_sparse(&data.join("docs.sparse"));
    let queries = read_sparse(&data.join("queries.sparse"));
    let truth = dataset::read_f32(data.join("truth-scores.npy")).expect("truth-scores.npy");
    assert_eq!(truth.rows(), queries.len(), "truth rows");

    let tmp = tempfile_dir(storage_dir);
    let store = Storage::open(&tmp.join("storage"), &tmp.join("snapshots")).expect("storage");
    let config = CollectionConfig::from_json(&json!({
        "vectors": {},
        "sparse_vectors": {"text": {"modifier": "idf"}},
        "wal_config": {"wal_capacity_mb": 256},
    }))
    .expect("config");
    let c = store.create("sparse", config).expect("create");
    let t = Instant::now();
    for (b, chunk) in docs.chunks(5_000).enumerate() {
        let points = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| PointWrite {
                id: PointId::Num((b * 5_000 + i) as u64),
                vectors: Vec::new(),
                sparse: vec![("text".into(), v.clone())],
                multi: Vec::new(),
                payload: Payload::new(),
            })
            .collect();
        c.update(Update::Upsert(points), true).expect("upsert");
    }
    let upsert_s = t.elapsed().as_secs_f64();

    let request = |q: &SparseVector| SearchRequest {
        vector_name: "text".into(),
        query: Query::Sparse(c.sparse_query("text", q.clone()).expect("idf")),
        filter: None,
        params: SearchParams::top(K),
        with_payload: PayloadSelector::Nothing,
        with_vector: VectorSelector::Nothing,
        candidates: None,
    };
    let answers: Vec<Vec<f32>> = queries
        .iter()
        .map(|q| {
            c.search(&request(q))
                .expect("search")
                .iter()
                .map(|h| h.score)
                .collect()
        })
        .collect();
    let r: f64 = answers
        .iter()
        .enumerate()
        .map(|(qi, got)| recall(got, truth.row(qi)))
        .sum::<f64>()
        / queries.len() as f64;
    let mut best = 0.0f64;
    for _ in 0..passes {
        let t = Instant::now();
        for q in &queries {
            std::hint::black_box(c.search(&request(q)).expect("search"));
        }
        best = best.max(queries.len() as f64 / t.elapsed().as_secs_f64());
    }
    println!(
        "ours: {} docs, upsert {upsert_s:.1} s, recall@10 {r:.4}, QPS {best:.0} (one thread, \
         best of {passes}; IDF statistics gathered per query)",
        docs.len()
    );

    // The exact scan: every document scored, the same IDF-weighted query.
    let weighted: Vec<SparseVector> = queries
        .iter()
        .map(|q| c.sparse_query("text", q.clone()).expect("idf"))
        .collect();
    let scan = |q: &SparseVector| -> Vec<f32> {
        let mut scores: Vec<f32> = docs.iter().filter_map(|d| q.dot(d)).collect();
        scores.sort_by(|a, b| b.total_cmp(a));
        scores.truncate(K);
        scores
    };
    let r_scan: f64 = weighted
        .iter()
        .enumerate()
        .map(|(qi, q)| recall(&scan(q), truth.row(qi)))
        .sum::<f64>()
        / queries.len() as f64;
    let sample = weighted.len().min(200);
    let t = Instant::now();
    for q in &weighted[..sample] {
        std::hint::black_box(scan(q));
    }
    let scan_qps = sample as f64 / t.elapsed().as_secs_f64();
    println!("exact scan: recall@10 {r_scan:.4}, QPS {scan_qps:.0} (one thread, {sample} queries)");
    store.close().expect("close");
}

/// `dir`, or a fresh directory under the system's temporary one.
fn tempfile_dir(dir: Option<PathBuf>) -> PathBuf {
    let dir = dir
        .unwrap_or_else(|| std::env::temp_dir().join(format!("vr-sparse-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("storage directory");
    dir
}
