//! GPU against CPU on a TexMex dataset (glove-50-angular by default): both build CAGRA with
//! the same parameters, then search at the same `itopk_size` values; prints build time,
//! recall@10 against the exact top-10, and QPS for a batch of every query and for queries one
//! at a time. Run by `gpu-check.sh` (feature `cuda`).
//!
//! ```sh
//! crates/gpu-cagra/gpu-check.sh                     # installs, builds and runs this
//! target/release/examples/gpu_check --data data/glove-50-angular --single 1000
//! ```

use gpu_cagra::gpu::{GpuCagraIndex, GpuData};
use gpu_cagra::{CagraConfig, CagraIndex, CagraSearchParams};
use index_core::ScoredOffset;
use quant::Metric;
use rayon::prelude::*;
use std::path::PathBuf;
use std::time::Instant;

fn recall(found: &[Vec<ScoredOffset>], truth: &[Vec<u32>]) -> f64 {
    let hits: usize = found
        .iter()
        .zip(truth)
        .map(|(f, t)| {
            f.iter()
                .take(10)
                .filter(|h| t[..10].contains(&h.offset))
                .count()
        })
        .sum();
    hits as f64 / (10 * found.len()) as f64
}

fn main() {
    let mut data = PathBuf::from("data/glove-50-angular");
    let mut itopks = vec![32, 64, 128, 256];
    let mut single = 1_000usize;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().expect("a value after each flag");
        match flag.as_str() {
            "--data" => data = PathBuf::from(value),
            "--itopk" => {
                itopks = value
                    .split(',')
                    .map(|v| v.parse().expect("a number"))
                    .collect()
            }
            "--single" => single = value.parse().expect("a number"),
            other => panic!("unknown argument {other}"),
        }
    }
    let base = dataset::read_f32(data.join("base.fvecs")).expect("base.fvecs");
    let queries = dataset::read_f32(data.join("query.fvecs")).expect("query.fvecs");
    let truth: Vec<Vec<u32>> = dataset::read_i32(data.join("groundtruth.ivecs"))
        .expect("groundtruth.ivecs")
        .iter()
        .map(|row| row.iter().map(|&i| i as u32).collect())
        .collect();
    let (dim, n, nq) = (base.dim(), base.rows(), queries.rows());
    let metric = Metric::Cosine;
    let config = CagraConfig::default();
    let threads = rayon::current_num_threads();
    println!(
        "dataset {} ({n} x {dim}, {nq} queries, cosine); graph degree {} from {}; CPU threads {threads}",
        data.display(),
        config.graph_degree,
        config.intermediate_graph_degree
    );

    let t = Instant::now();
    let gpu_data = GpuData::new(base.as_slice(), dim, metric).expect("data");
    let gpu = GpuCagraIndex::build(&gpu_data, &config).expect("GPU build");
    let gpu_build = t.elapsed().as_secs_f64();
    println!("GPU build (cuVS, NN-descent): {gpu_build:.2} s");

    let t = Instant::now();
    let cpu = CagraIndex::build(dim, metric, config.clone(), base.as_slice()).expect("CPU build");
    let cpu_build = t.elapsed().as_secs_f64();
    println!("CPU build ({threads} threads, NN-descent): {cpu_build:.2} s");

    println!("\n| itopk | GPU recall@10 | GPU batch QPS | GPU single QPS | CPU recall@10 | CPU batch QPS ({threads} threads) | CPU single QPS (1 thread) |");
    println!("|---|---|---|---|---|---|---|");
    let qs = queries.as_slice();
    for &itopk in &itopks {
        let params = CagraSearchParams {
            itopk_size: itopk,
            ..CagraSearchParams::default()
        };
        // GPU: one batch of every query (best of three), then queries one at a time.
        gpu.search(&qs[..dim], 10, &params).expect("GPU warm-up");
        let mut best = f64::INFINITY;
        let mut gpu_found = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            gpu_found = gpu.search(qs, 10, &params).expect("GPU search");
            best = best.min(t.elapsed().as_secs_f64());
        }
        let gpu_batch_qps = nq as f64 / best;
        let t = Instant::now();
        for q in qs.chunks_exact(dim).take(single) {
            std::hint::black_box(gpu.search(q, 10, &params).expect("GPU search"));
        }
        let gpu_single_qps = single.min(nq) as f64 / t.elapsed().as_secs_f64();
        // CPU: every query in parallel, then one thread.
        let t = Instant::now();
        let cpu_found: Vec<Vec<ScoredOffset>> = qs
            .par_chunks_exact(dim)
            .map(|q| {
                cpu.search_with(q, 10, &params, None, None, None)
                    .expect("CPU search")
            })
            .collect();
        let cpu_batch_qps = nq as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        for q in qs.chunks_exact(dim).take(single) {
            std::hint::black_box(
                cpu.search_with(q, 10, &params, None, None, None)
                    .expect("CPU search"),
            );
        }
        let cpu_single_qps = single.min(nq) as f64 / t.elapsed().as_secs_f64();
        println!(
            "| {itopk} | {:.4} | {gpu_batch_qps:.0} | {gpu_single_qps:.0} | {:.4} | {cpu_batch_qps:.0} | {cpu_single_qps:.0} |",
            recall(&gpu_found, &truth),
            recall(&cpu_found, &truth),
        );
    }
    println!(
        "\nbuild: GPU {gpu_build:.2} s, CPU {cpu_build:.2} s on {threads} threads ({:.1}x)",
        cpu_build / gpu_build
    );
}
