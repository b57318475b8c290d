//! Multivector (late-interaction) search in process, through a durable collection
//! (`storage`): the ColBERT-shaped set `benches/make_multivector.py` builds (documents of 16
//! to 48 rows of 128 dimensions, queries of 16 rows), one cosine multivector scored by
//! MaxSim; single-thread QPS and recall@10 against the set's exact answers, exactly (every
//! document scored) and through the graph of the documents' fixed-dimensional encodings
//! (MUVERA; `storage::multi::Fde`) with exact re-scoring, at several candidate counts
//! (`hnsw_ef`). `benches/multivector_peer.py` runs the same workload in Qdrant's engine
//! (`qdrant-edge-py`: an HNSW graph whose distance is MaxSim itself, and exact search).
//!
//! ```sh
//! data/peers-venv/bin/python benches/make_multivector.py      # data/multi-synth
//! cargo run --release -p vr-benches --example multivector -- --data data/multi-synth
//! data/peers-venv/bin/python benches/multivector_peer.py --data data/multi-synth
//! ```
//!
//! QPS is the best of `--passes` passes (default 3), after one pass that warms up, on a pool
//! of one thread. The collection (one shard) is built in a temporary directory (`--storage`
//! to choose one) on every core, then optimised so that every document is in an indexed
//! segment.

use index_core::{PointId, SearchParams};
use payload::{Payload, PayloadSelector};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;
use storage::{
    Collection, CollectionConfig, MultiVector, PointWrite, Query, SearchRequest, Storage, Update,
    VectorSelector,
};

const K: usize = 10;

/// The matrices of a `rows.npy` and `starts.npy` pair.
fn read_matrices(rows: &Path, starts: &Path) -> Vec<MultiVector> {
    let rows = dataset::read_f32(rows).unwrap_or_else(|e| panic!("{}: {e}", rows.display()));
    let starts = dataset::read_i32(starts).unwrap_or_else(|e| panic!("{}: {e}", starts.display()));
    let dim = rows.dim();
    (0..starts.rows() - 1)
        .map(|i| {
            let (a, b) = (starts.row(i)[0] as usize, starts.row(i + 1)[0] as usize);
            let data: Vec<f32> = (a..b).flat_map(|r| rows.row(r).iter().copied()).collect();
            MultiVector::from_flat(dim, data).expect("a valid matrix")
        })
        .collect()
}

/// Share of the true top-10 slots filled by a point scoring at least the true 10th (ties
/// count whichever point came).
fn recall(got: &[f32], truth: &[f32]) -> f64 {
    let kth = truth[truth.len() - 1];
    let good = got.iter().filter(|s| **s >= kth - 1e-4 * kth.abs()).count();
    good.min(truth.len()) as f64 / truth.len() as f64
}

fn request(q: &MultiVector, exact: bool, ef: Option<usize>) -> SearchRequest {
    SearchRequest {
        vector_name: "colbert".into(),
        query: Query::Multi(q.clone()),
        filter: None,
        params: SearchParams {
            exact,
            hnsw_ef: ef,
            ..SearchParams::top(K)
        },
        with_payload: PayloadSelector::Nothing,
        with_vector: VectorSelector::Nothing,
        candidates: None,
    }
}

/// (recall@10, best QPS) of `queries` run as `req` makes them.
fn measure(
    c: &Collection,
    queries: &[MultiVector],
    truth: &dataset::Matrix<f32>,
    passes: usize,
    req: impl Fn(&MultiVector) -> SearchRequest,
) -> (f64, f64) {
    let scores: Vec<Vec<f32>> = queries
        .iter()
        .map(|q| {
            c.search(&req(q))
                .expect("search")
                .iter()
                .map(|h| h.score)
                .collect()
        })
        .collect();
    let r = scores
        .iter()
        .enumerate()
        .map(|(qi, got)| recall(got, truth.row(qi)))
        .sum::<f64>()
        / queries.len() as f64;
    let mut best = 0.0f64;
    for _ in 0..passes {
        let t = Instant::now();
        for q in queries {
            std::hint::black_box(c.search(&req(q)).expect("search"));
        }
        best = best.max(queries.len() as f64 / t.elapsed().as_secs_f64());
    }
    (r, best)
}

fn main() {
    let mut data = PathBuf::from("data/multi-synth");
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
    let docs = read_matrices(&data.join("docs.npy"), &data.join("doc-starts.npy"));
    let queries = read_matrices(&data.join("queries.npy"), &data.join("query-starts.npy"));
    let truth = dataset::read_f32(data.join("truth-scores.npy")).expect("truth-scores.npy");
    assert_eq!(truth.rows(), queries.len(), "truth rows");
    let dim = docs[0].dim();

    let tmp = tempdir(storage_dir);
    let store = Storage::open(&tmp.join("storage"), &tmp.join("snapshots")).expect("storage");
    let config = CollectionConfig::from_json(&json!({
        "vectors": {"colbert": {"size": dim, "distance": "Cosine",
                                "multivector_config": {"comparator": "max_sim"}}},
        "hnsw_config": {"m": 16, "ef_construct": 100},
        // 64 KB of 128-dimensional rows: segments of 128 documents, sealed as they fill, so
        // that every document but the last few ends up in the indexed segment.
        "optimizers_config": {"indexing_threshold": 64},
        "wal_config": {"wal_capacity_mb": 256},
    }))
    .expect("config");
    let c = store.create("multi", config).expect("create");
    let t = Instant::now();
    for (b, chunk) in docs.chunks(1_000).enumerate() {
        let points = chunk
            .iter()
            .enumerate()
            .map(|(i, m)| PointWrite {
                id: PointId::Num((b * 1_000 + i) as u64),
                vectors: Vec::new(),
                sparse: Vec::new(),
                multi: vec![("colbert".into(), m.clone())],
                payload: Payload::new(),
            })
            .collect();
        c.update(Update::Upsert(points), true).expect("upsert");
    }
    let upsert_s = t.elapsed().as_secs_f64();
    c.optimize_now().expect("optimize");
    let optimize_s = t.elapsed().as_secs_f64() - upsert_s;
    let stats = c.stats();
    let rows: usize = docs.iter().map(MultiVector::row_count).sum();
    println!(
        "ours: {} documents ({rows} rows of {dim}), upsert {upsert_s:.1} s (encodings \
         included), optimize {optimize_s:.1} s, {} indexed; matrices {:.1} MiB, encodings' \
         graph vectors {:.1} MiB",
        docs.len(),
        stats.indexed_points,
        (rows * dim * 4) as f64 / (1 << 20) as f64,
        stats.index_vector_bytes as f64 / (1 << 20) as f64
    );

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    pool.install(|| {
        let (r, qps) = measure(&c, &queries, &truth, passes, |q| request(q, true, None));
        println!("ours exact: recall@10 {r:.4}, QPS {qps:.1} (one thread, best of {passes})");
        for ef in [None, Some(200), Some(400), Some(800)] {
            let (r, qps) = measure(&c, &queries, &truth, passes, |q| request(q, false, ef));
            let label = ef.map_or("default (100)".to_string(), |e| e.to_string());
            println!(
                "ours through the encodings, candidates {label}: recall@10 {r:.4}, QPS {qps:.1}"
            );
        }
    });
    store.close().expect("close");
}

/// `dir`, or a fresh directory under the system's temporary one.
fn tempdir(dir: Option<PathBuf>) -> PathBuf {
    let dir = dir
        .unwrap_or_else(|| std::env::temp_dir().join(format!("vr-multi-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("storage directory");
    dir
}
