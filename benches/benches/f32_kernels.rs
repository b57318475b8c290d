//! Full-precision kernels: ours (dispatched), our portable fallback, and `simsimd`, per
//! dimension. Each iteration scores one query against a block of vectors that stays in L2, so
//! the figure is kernel speed, not memory bandwidth; throughput counts the bytes of stored
//! vectors read.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use half::f16;
use quant::{Isa, Kernels};
use simsimd::SpatialSimilarity;
use std::hint::black_box;
use std::time::Duration;
use vr_benches::uniform;

const DIMS: [usize; 6] = [50, 128, 384, 768, 1024, 1536];
const BLOCK: usize = 128;

fn bench(c: &mut Criterion) {
    let best = *quant::kernels();
    let scalar = Kernels::for_isa(Isa::Scalar).expect("scalar always runs");
    let ours = [
        ("ours-".to_string() + best.isa().name(), best),
        ("ours-scalar".to_string(), scalar),
    ];
    for dim in DIMS {
        let q = uniform(1, dim, 1);
        let block = uniform(BLOCK, dim, 2);
        let rows = || block.chunks_exact(dim);

        let mut group = c.benchmark_group(format!("dot_f32/{dim}"));
        group.throughput(Throughput::Bytes((BLOCK * dim * 4) as u64));
        for (name, k) in &ours {
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| rows().map(|v| k.dot_f32(black_box(&q), v)).sum::<f32>())
            });
        }
        group.bench_function(BenchmarkId::from_parameter("simsimd"), |b| {
            b.iter(|| {
                rows()
                    .map(|v| f32::dot(black_box(&q), v).unwrap_or(0.0) as f32)
                    .sum::<f32>()
            })
        });
        group.finish();

        let mut group = c.benchmark_group(format!("l2sq_f32/{dim}"));
        group.throughput(Throughput::Bytes((BLOCK * dim * 4) as u64));
        for (name, k) in &ours {
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| rows().map(|v| k.l2sq_f32(black_box(&q), v)).sum::<f32>())
            });
        }
        group.bench_function(BenchmarkId::from_parameter("simsimd"), |b| {
            b.iter(|| {
                rows()
                    .map(|v| f32::l2sq(black_box(&q), v).unwrap_or(0.0) as f32)
                    .sum::<f32>()
            })
        });
        group.finish();

        // f16 storage: ours scores an f32 query against f16 vectors; simsimd has f16 × f16.
        let hq: Vec<f16> = q.iter().map(|&x| f16::from_f32(x)).collect();
        let hblock: Vec<f16> = block.iter().map(|&x| f16::from_f32(x)).collect();
        let sq: Vec<simsimd::f16> = q.iter().map(|&x| simsimd::f16::from_f32(x)).collect();
        let sblock: Vec<simsimd::f16> = block.iter().map(|&x| simsimd::f16::from_f32(x)).collect();
        let mut group = c.benchmark_group(format!("dot_f16/{dim}"));
        group.throughput(Throughput::Bytes((BLOCK * dim * 2) as u64));
        for (name, k) in &ours {
            group.bench_function(BenchmarkId::new(name, "f32xf16"), |b| {
                b.iter(|| {
                    hblock
                        .chunks_exact(dim)
                        .map(|v| k.dot_f32_f16(black_box(&q), v))
                        .sum::<f32>()
                })
            });
            group.bench_function(BenchmarkId::new(name, "f16xf16"), |b| {
                b.iter(|| {
                    hblock
                        .chunks_exact(dim)
                        .map(|v| k.dot_f16(black_box(&hq), v))
                        .sum::<f32>()
                })
            });
        }
        group.bench_function(BenchmarkId::new("simsimd", "f16xf16"), |b| {
            b.iter(|| {
                sblock
                    .chunks_exact(dim)
                    .map(|v| simsimd::f16::dot(black_box(&sq), v).unwrap_or(0.0) as f32)
                    .sum::<f32>()
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(800))
        .sample_size(20);
    targets = bench
}
criterion_main!(benches);
