//! Recall against brute force, for every metric and storage.

use crate::common::{brute_force, clustered, queries, recall};
use index_core::{FlatIndex, SearchParams, VectorIndex, VectorIndexWrite};
use index_hnsw::{HnswConfig, HnswIndex, StorageKind};
use quant::Metric;

fn mean_recall(
    index: &HnswIndex,
    data: &[f32],
    dim: usize,
    metric: Metric,
    qs: &[f32],
    params: &SearchParams,
) -> f64 {
    let n = qs.len() / dim;
    let mut total = 0.0;
    for q in qs.chunks_exact(dim) {
        let found = index.search(q, params, None).unwrap();
        assert!(
            found.windows(2).all(|w| w[0] <= w[1]),
            "results sorted closest first"
        );
        total += recall(
            &found,
            &brute_force(data, dim, metric, q, params.limit, |_| true, None),
        );
    }
    total / n as f64
}

#[test]
fn recall_at_10_on_50k_clustered_vectors() {
    let (n, dim) = (50_000, 64);
    let data = clustered(n, dim, 0.3, 1);
    let qs = queries(200, dim, 0.3);
    let index = HnswIndex::build(dim, Metric::Cosine, HnswConfig::default(), &data).unwrap();
    assert_eq!(index.len(), n);
    let params = SearchParams {
        hnsw_ef: Some(64),
        ..SearchParams::top(10)
    };
    let r = mean_recall(&index, &data, dim, Metric::Cosine, &qs, &params);
    let mem = index.memory_usage();
    eprintln!(
        "hnsw 50k x 64 cosine, ef=64: recall@10 = {r:.4}; {:.0} bytes/vector",
        mem.bytes_per_vector()
    );
    assert!(r >= 0.95, "recall@10 {r:.4} < 0.95 at ef=64 (seed 1)");
}

#[test]
fn every_metric_reaches_recall() {
    let (n, dim) = (10_000, 32);
    let data = clustered(n, dim, 0.3, 2);
    let qs = queries(100, dim, 0.3);
    for metric in Metric::ALL {
        let index = HnswIndex::build(dim, metric, HnswConfig::default(), &data).unwrap();
        let params = SearchParams {
            hnsw_ef: Some(64),
            ..SearchParams::top(10)
        };
        let r = mean_recall(&index, &data, dim, metric, &qs, &params);
        eprintln!("hnsw {metric:?}: recall@10 = {r:.4}");
        assert!(r >= 0.95, "{metric:?}: recall@10 {r:.4}");
    }
}

#[test]
fn every_storage_reaches_recall_with_rescoring() {
    let (n, dim) = (20_000, 64);
    let data = clustered(n, dim, 0.3, 3);
    let qs = queries(100, dim, 0.3);
    for (storage, ef) in [
        (StorageKind::F32, 64),
        (StorageKind::F16, 64),
        (StorageKind::Sq8, 64),
        (StorageKind::Binary, 256),
        (StorageKind::Pq, 128),
    ] {
        let config = HnswConfig {
            storage,
            ..HnswConfig::default()
        };
        let index = HnswIndex::build(dim, Metric::Cosine, config, &data).unwrap();
        let oversampling = match storage {
            StorageKind::Binary => 10.0,
            // 16 one-byte codes for 64 dimensions: the table's order is coarse.
            StorageKind::Pq => 5.0,
            _ => 3.0,
        };
        let params = SearchParams {
            hnsw_ef: Some(ef),
            oversampling: Some(oversampling),
            ..SearchParams::top(10)
        };
        let r = mean_recall(&index, &data, dim, Metric::Cosine, &qs, &params);
        let mem = index.memory_usage();
        eprintln!(
            "hnsw {storage:?} ef={ef} oversampling={oversampling}: recall@10 = {r:.4}; vectors {} B/vector",
            mem.vector_bytes / n
        );
        assert!(r >= 0.95, "{storage:?}: recall@10 {r:.4}");
    }
}

#[test]
fn tiny_index_search_is_exact() {
    let dim = 8;
    let data = clustered(300, dim, 0.5, 4);
    for metric in Metric::ALL {
        let index = HnswIndex::build(dim, metric, HnswConfig::default(), &data).unwrap();
        let flat = FlatIndex::new(dim, metric);
        for (i, v) in data.chunks_exact(dim).enumerate() {
            flat.insert(i as u32, v).unwrap();
        }
        for q in data.chunks_exact(dim).step_by(17) {
            // ef = n: the walk sees every node of a connected graph.
            let params = SearchParams {
                hnsw_ef: Some(300),
                ..SearchParams::top(10)
            };
            let got: Vec<u32> = index
                .search(q, &params, None)
                .unwrap()
                .iter()
                .map(|s| s.offset)
                .collect();
            let want: Vec<u32> = flat
                .search(q, &SearchParams::top(10), None)
                .unwrap()
                .iter()
                .map(|s| s.offset)
                .collect();
            assert_eq!(got, want, "{metric:?}");
            let exact = SearchParams {
                exact: true,
                ..SearchParams::top(10)
            };
            let got: Vec<u32> = index
                .search(q, &exact, None)
                .unwrap()
                .iter()
                .map(|s| s.offset)
                .collect();
            assert_eq!(got, want, "{metric:?} exact");
        }
    }
}
