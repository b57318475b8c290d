//! IVF search latency on a generated clustered set (20,000 × 64, cosine), per list encoding
//! and `nprobe`. The figures that compare with FAISS come from the `ivf` example on glove (see
//! docs/benchmarks.md); this bench tracks the search path itself between changes.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use index_core::{SearchParams, VectorIndex};
use index_ivf::{IvfConfig, IvfIndex, ListEncoding};
use quant::Metric;
use std::hint::black_box;
use std::time::Duration;
use vr_benches::clustered;

fn bench(c: &mut Criterion) {
    let (n, dim) = (20_000, 64);
    let data = clustered(n, dim, 100, 0.4, 1);
    let queries = clustered(256, dim, 100, 0.4, 2);
    for encoding in [
        ListEncoding::Flat,
        ListEncoding::Sq8,
        ListEncoding::PqFastScan { m: 32 },
    ] {
        let config = IvfConfig {
            nlist: Some(128),
            encoding,
            ..IvfConfig::default()
        };
        let index = IvfIndex::build(dim, Metric::Cosine, config, &data).expect("build");
        let mut group = c.benchmark_group(format!("ivf_search/{encoding:?}"));
        for nprobe in [4, 16] {
            let params = SearchParams {
                ivf_nprobe: Some(nprobe),
                ..SearchParams::top(10)
            };
            group.bench_function(BenchmarkId::from_parameter(nprobe), |b| {
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
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = bench
}
criterion_main!(benches);
