//! Kernels on quantized codes: 8-bit asymmetric (`f32` query × `u8` codes) and integer
//! (`i8` query × `u8` codes) dot products, Hamming distance, and product-quantization table
//! lookup. Ours (dispatched), our portable fallback, and `simsimd` where it has the same
//! operation (its `i8 × i8` dot product, its Hamming over bytes).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use quant::kernels::PQ_KSUB;
use quant::{Isa, Kernels};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use simsimd::{BinarySimilarity, SpatialSimilarity};
use std::hint::black_box;
use std::time::Duration;
use vr_benches::uniform;

const DIMS: [usize; 6] = [50, 128, 384, 768, 1024, 1536];
const BLOCK: usize = 512;

fn bench(c: &mut Criterion) {
    let best = *quant::kernels();
    let scalar = Kernels::for_isa(Isa::Scalar).expect("scalar always runs");
    let ours = [
        ("ours-".to_string() + best.isa().name(), best),
        ("ours-scalar".to_string(), scalar),
    ];
    let mut rng = StdRng::seed_from_u64(3);
    for dim in DIMS {
        let q = uniform(1, dim, 1);
        let codes: Vec<u8> = (0..BLOCK * dim).map(|_| rng.random()).collect();
        let signed: Vec<i8> = (0..dim).map(|_| rng.random_range(-127..=127)).collect();
        let signed_codes: Vec<i8> = codes.iter().map(|&c| (c >> 1) as i8).collect();

        let mut group = c.benchmark_group(format!("sq8_asymmetric/{dim}"));
        group.throughput(Throughput::Bytes((BLOCK * dim) as u64));
        for (name, k) in &ours {
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| {
                    codes
                        .chunks_exact(dim)
                        .map(|v| k.dot_f32_u8(black_box(&q), v))
                        .sum::<f32>()
                })
            });
        }
        group.finish();

        let mut group = c.benchmark_group(format!("sq8_integer/{dim}"));
        group.throughput(Throughput::Bytes((BLOCK * dim) as u64));
        for (name, k) in &ours {
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| {
                    codes
                        .chunks_exact(dim)
                        .map(|v| k.dot_i8_u8(black_box(&signed), v))
                        .sum::<i32>()
                })
            });
        }
        group.bench_function(BenchmarkId::from_parameter("simsimd-i8xi8"), |b| {
            b.iter(|| {
                signed_codes
                    .chunks_exact(dim)
                    .map(|v| i8::dot(black_box(&signed), v).unwrap_or(0.0) as f32)
                    .sum::<f32>()
            })
        });
        group.finish();

        // Binary codes: one bit per dimension, rounded up to whole 64-bit words.
        let words = dim.div_ceil(64);
        let bits: Vec<u64> = (0..BLOCK * words).map(|_| rng.random()).collect();
        let qbits: Vec<u64> = (0..words).map(|_| rng.random()).collect();
        let bytes: Vec<u8> = bits.iter().flat_map(|w| w.to_le_bytes()).collect();
        let qbytes: Vec<u8> = qbits.iter().flat_map(|w| w.to_le_bytes()).collect();
        let mut group = c.benchmark_group(format!("hamming/{dim}"));
        group.throughput(Throughput::Bytes((BLOCK * words * 8) as u64));
        for (name, k) in &ours {
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| {
                    bits.chunks_exact(words)
                        .map(|v| k.hamming(black_box(&qbits), v))
                        .sum::<u32>()
                })
            });
        }
        group.bench_function(BenchmarkId::from_parameter("simsimd"), |b| {
            b.iter(|| {
                bytes
                    .chunks_exact(words * 8)
                    .map(|v| u8::hamming(black_box(&qbytes), v).unwrap_or(0.0) as u32)
                    .sum::<u32>()
            })
        });
        group.finish();

        // Product quantization with two dimensions per sub-space.
        let m = dim / 2;
        let table: Vec<f32> = (0..m * PQ_KSUB)
            .map(|_| rng.random_range(0.0..1.0))
            .collect();
        let pq_codes: Vec<u8> = (0..BLOCK * m).map(|_| rng.random()).collect();
        let mut group = c.benchmark_group(format!("pq_adc/{dim}"));
        group.throughput(Throughput::Bytes((BLOCK * m) as u64));
        for (name, k) in &ours {
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| {
                    pq_codes
                        .chunks_exact(m)
                        .map(|v| k.pq_adc(black_box(&table), v))
                        .sum::<f32>()
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
        .measurement_time(Duration::from_millis(800))
        .sample_size(20);
    targets = bench
}
criterion_main!(benches);
