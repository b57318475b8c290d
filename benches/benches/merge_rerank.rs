//! Merging shard answers and re-ranking them: the pure k-way merge the router and segments
//! use (`index_core::merge_top_k`), against the obvious concatenate-and-sort, for 1 to 16
//! shards of `limit` hits; and an exact re-rank of `limit · oversampling` candidates with
//! full-precision vectors (what a quantized shard's answer gets before the cut).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use index_core::{merge_top_k, ScoredOffset};
use quant::{kernels, Metric};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use std::time::Duration;

fn sorted_lists(shards: usize, limit: usize, rng: &mut StdRng) -> Vec<Vec<ScoredOffset>> {
    (0..shards)
        .map(|s| {
            let mut l: Vec<ScoredOffset> = (0..limit)
                .map(|i| ScoredOffset::new((s * limit + i) as u32, rng.random_range(0.0..1.0)))
                .collect();
            l.sort();
            l
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(1);
    let mut group = c.benchmark_group("merge_top_k");
    for shards in [1, 4, 16] {
        for limit in [10, 100] {
            let lists = sorted_lists(shards, limit, &mut rng);
            let id = format!("{shards}x{limit}");
            group.bench_function(BenchmarkId::new("heap", &id), |b| {
                b.iter(|| merge_top_k(black_box(&lists), limit, |h| h.distance, |h| h.offset))
            });
            group.bench_function(BenchmarkId::new("concat_sort", &id), |b| {
                b.iter(|| {
                    let mut all: Vec<ScoredOffset> =
                        black_box(&lists).iter().flatten().copied().collect();
                    all.sort();
                    all.dedup_by_key(|h| h.offset);
                    all.truncate(limit);
                    all
                })
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("rerank");
    let k = kernels();
    for (dim, candidates) in [(50, 30), (768, 30), (768, 300)] {
        let vectors: Vec<f32> = (0..candidates * dim)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let query: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
        group.bench_function(
            BenchmarkId::from_parameter(format!("d{dim}x{candidates}")),
            |b| {
                b.iter(|| {
                    let mut scored: Vec<ScoredOffset> = vectors
                        .chunks_exact(dim)
                        .enumerate()
                        .map(|(i, v)| {
                            ScoredOffset::new(
                                i as u32,
                                Metric::Cosine.distance(k, black_box(&query), v),
                            )
                        })
                        .collect();
                    scored.sort();
                    scored.truncate(10);
                    scored
                })
            },
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = bench
}
criterion_main!(benches);
