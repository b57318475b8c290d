//! HNSW search latency on a generated clustered set (20,000 × 64, cosine), per storage and
//! `ef`. The figures that compare with hnswlib come from the `hnsw` example on glove (see
//! docs/benchmarks.md); this bench tracks the search path itself between changes.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use index_core::{SearchParams, VectorIndex};
use index_hnsw::{HnswConfig, HnswIndex, StorageKind};
use quant::Metric;
use std::hint::black_box;
use std::time::Duration;
use vr_benches::clustered;

fn bench(c: &mut Criterion) {
    let (n, dim) = (20_000, 64);
    let data = clustered(n, dim, 100, 0.4, 1);
    let queries = clustered(256, dim, 100, 0.4, 2);
    for storage in [StorageKind::F32, StorageKind::Sq8] {
        let config = HnswConfig {
            storage,
            ..HnswConfig::default()
        };
        let index = HnswIndex::build(dim, Metric::Cosine, config, &data).expect("build");
        let mut group = c.benchmark_group(format!("hnsw_search/{storage:?}"));
        for ef in [32, 64, 128] {
            let params = SearchParams {
                hnsw_ef: Some(ef),
                ..SearchParams::top(10)
            };
            group.bench_function(BenchmarkId::from_parameter(ef), |b| {
                let mut i = 0;
                b.iter(|| {
                    i = (i + 1) % 256;
                    index
                        .search(black_box(&queries[i * dim..(i + 1) * dim]), &params, None)
                        .expect("search")
                })
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    targets = bench
}
criterion_main!(benches);
