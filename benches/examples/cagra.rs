//! Builds a CAGRA index on a TexMex dataset and sweeps `itopk_size`: recall@10,
//! single-thread QPS, batch QPS on the build's threads, build time and bytes per vector; with
//! `--hnsw yes`, our HNSW built and swept the same way in the same run, and the CAGRA graph
//! exported to `index-hnsw` as its base layer (`--hierarchy no`: a single layer) and swept at
//! the same sizes.
//!
//! ```sh
//! cargo run --release -p vr-benches --example cagra -- --data data/glove-50-angular --hnsw yes
//! cargo run --release -p vr-benches --example cagra -- --storage sq8 --itopk 32,64,128
//! ```

use gpu_cagra::{CagraConfig, CagraIndex, CagraSearchParams, CagraStorage};
use index_core::{SearchParams, VectorIndex};
use index_hnsw::{BaseLayer, HnswConfig, HnswIndex};
use rayon::prelude::*;
use std::path::PathBuf;
use std::time::Instant;
use vr_benches::{recall_at, Workload};

fn main() {
    let mut data = PathBuf::from("data/glove-50-angular");
    let mut itopks = vec![16, 32, 48, 64, 96, 128, 192, 256, 512];
    let mut queries = 10_000;
    let mut threads = 2;
    let mut config = CagraConfig::default();
    let mut hnsw = false;
    let mut width = 1;
    let mut hierarchy = true;
    let mut it = std::env::args().skip(1);
    let fail = |msg: String| -> ! {
        eprintln!("error: {msg}");
        std::process::exit(2)
    };
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| fail(format!("{flag} needs a value")));
        let num = |v: &str| {
            v.parse::<usize>()
                .unwrap_or_else(|e| fail(format!("{flag}: {e}")))
        };
        match flag.as_str() {
            "--data" => data = PathBuf::from(value),
            "--storage" => {
                config.storage = match value.as_str() {
                    "f32" => CagraStorage::F32,
                    "sq8" => CagraStorage::Sq8,
                    other => fail(format!("unknown storage {other}")),
                }
            }
            "--itopk" => itopks = value.split(',').map(num).collect(),
            "--graph-degree" => config.graph_degree = num(&value),
            "--intermediate-degree" => config.intermediate_graph_degree = num(&value),
            "--niter" => config.nn_descent_niter = num(&value),
            "--max-candidates" => config.nn_descent_max_candidates = num(&value),
            "--search-width" => width = num(&value),
            "--queries" => queries = num(&value),
            "--threads" => threads = num(&value),
            "--hnsw" => hnsw = value == "yes",
            "--hierarchy" => hierarchy = value == "yes",
            other => fail(format!("unknown argument {other}")),
        }
    }
    let w = Workload::load(&data, queries)
        .unwrap_or_else(|e| fail(format!("cannot load {}: {e}", data.display())));
    println!(
        "dataset {} ({} x {}, {} queries); {config:?}; kernels {}",
        w.name,
        w.len(),
        w.dim,
        w.num_queries(),
        quant::kernels().isa().name()
    );
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    let rss_before = vr_benches::rss_bytes();
    let t = Instant::now();
    let index = pool
        .install(|| CagraIndex::build(w.dim, w.metric, config.clone(), &w.base))
        .unwrap_or_else(|e| fail(format!("build: {e}")));
    let build_s = t.elapsed().as_secs_f64();
    let rss_growth = vr_benches::rss_bytes().saturating_sub(rss_before);
    let mem = index.memory_usage();
    println!(
        "CAGRA build {build_s:.1} s on {threads} threads; RSS growth {:.0} bytes/vector; RAM {:.0} bytes/vector (vectors {:.0}, graph {:.0})",
        rss_growth as f64 / w.len() as f64,
        mem.bytes_per_vector(),
        mem.vector_bytes as f64 / mem.points as f64,
        mem.index_bytes as f64 / mem.points as f64,
    );
    let sweep = |name: &str, search: &(dyn Fn(&[f32], usize) -> Vec<u32> + Sync)| {
        println!("\n{name}\n\n| itopk / ef | recall@10 | QPS (1 thread) | QPS ({threads} threads, batch) |");
        println!("|---|---|---|---|");
        let mut rows = Vec::new();
        for &itopk in &itopks {
            let mut best = f64::INFINITY;
            let mut recall = 0.0;
            for _ in 0..3 {
                let t = Instant::now();
                let mut total = 0.0;
                for i in 0..w.num_queries() {
                    total += recall_at(&search(w.query(i), itopk), &w.truth[i], 10);
                }
                best = best.min(t.elapsed().as_secs_f64());
                recall = total / w.num_queries() as f64;
            }
            let t = Instant::now();
            pool.install(|| {
                (0..w.num_queries()).into_par_iter().for_each(|i| {
                    std::hint::black_box(search(w.query(i), itopk));
                })
            });
            let batch_qps = w.num_queries() as f64 / t.elapsed().as_secs_f64();
            let qps = w.num_queries() as f64 / best;
            println!("| {itopk} | {recall:.4} | {qps:.0} | {batch_qps:.0} |");
            rows.push((itopk, recall, qps));
        }
        vr_benches::print_best_qps("itopk / ef", &rows);
    };
    sweep("CAGRA (itopk_size)", &|q, itopk| {
        let params = CagraSearchParams {
            itopk_size: itopk,
            search_width: width,
            ..CagraSearchParams::default()
        };
        index
            .search_with(q, 10, &params, None, None, None)
            .expect("search")
            .iter()
            .map(|s| s.offset)
            .collect()
    });
    if hnsw {
        let exported = HnswIndex::from_graph(
            w.dim,
            w.metric,
            HnswConfig {
                m: index.graph_degree().div_ceil(2),
                ..HnswConfig::default()
            },
            index.vectors(),
            BaseLayer {
                degree: index.graph_degree(),
                links: index.graph(),
                entry: index.center(),
                hierarchy,
            },
        )
        .unwrap_or_else(|e| fail(format!("export: {e}")));
        let ef_search = |index: &HnswIndex, q: &[f32], ef: usize| -> Vec<u32> {
            let params = SearchParams {
                hnsw_ef: Some(ef),
                ..SearchParams::top(10)
            };
            index
                .search(q, &params, None)
                .expect("search")
                .iter()
                .map(|s| s.offset)
                .collect()
        };
        let label = if hierarchy {
            "with levels built above it"
        } else {
            "single layer"
        };
        sweep(
            &format!("CAGRA graph exported to index-hnsw ({label}, ef)"),
            &|q, ef| ef_search(&exported, q, ef),
        );
        drop(exported);
        let t = Instant::now();
        let hnsw_index = pool
            .install(|| {
                HnswIndex::build(
                    w.dim,
                    w.metric,
                    HnswConfig {
                        m: 16,
                        ef_construct: 200,
                        ..HnswConfig::default()
                    },
                    &w.base,
                )
            })
            .unwrap_or_else(|e| fail(format!("hnsw build: {e}")));
        println!(
            "\nHNSW (m 16, ef_construct 200) build {:.1} s on {threads} threads",
            t.elapsed().as_secs_f64()
        );
        sweep("HNSW (ef)", &|q, ef| ef_search(&hnsw_index, q, ef));
    }
}
