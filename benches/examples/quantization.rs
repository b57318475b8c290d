//! Measures every vector encoding of `quant` on a dataset: training and encoding time, bytes
//! per vector, single-thread scan speed, and recall@k of ranking by codes, then rescoring
//! `k · oversampling` candidates with the full-precision vectors.
//!
//! ```sh
//! cargo run --release -p vr-benches --example quantization                       # data/glove-50-angular if present, else synthetic
//! cargo run --release -p vr-benches --example quantization -- --data DIR --queries 1000
//! cargo run --release -p vr-benches --example quantization -- --synthetic 100000x128
//! ```

use half::f16;
use quant::{
    kernels, BinaryQuantizer, BinaryQuantizerConfig, Metric, ProductQuantizer,
    ProductQuantizerConfig, ScalarQuantizer, ScalarQuantizerConfig,
};
use rayon::prelude::*;
use std::path::PathBuf;
use std::time::Instant;
use vr_benches::{recall_at, Workload};

const OVERSAMPLING: [usize; 5] = [1, 2, 3, 5, 10];

struct Args {
    data: Option<PathBuf>,
    synthetic: (usize, usize),
    queries: usize,
    k: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        data: None,
        synthetic: (100_000, 128),
        queries: 1000,
        k: 10,
    };
    let default_data = PathBuf::from("data/glove-50-angular");
    if default_data.join("base.fvecs").exists() {
        args.data = Some(default_data);
    }
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--data" => args.data = Some(PathBuf::from(value()?)),
            "--synthetic" => {
                let v = value()?;
                let (n, d) = v
                    .split_once('x')
                    .ok_or("--synthetic takes NxDIM, e.g. 100000x128")?;
                args.synthetic = (
                    n.parse().map_err(|e| format!("{e}"))?,
                    d.parse().map_err(|e| format!("{e}"))?,
                );
                args.data = None;
            }
            "--queries" => {
                args.queries = value()?.parse().map_err(|e| format!("--queries: {e}"))?
            }
            "--k" => args.k = value()?.parse().map_err(|e| format!("--k: {e}"))?,
            "-h" | "--help" => {
                println!(
                    "usage: quantization [--data DIR | --synthetic NxDIM] [--queries N] [--k K]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.k == 0 || args.queries == 0 {
        return Err("--k and --queries must be at least 1".into());
    }
    Ok(args)
}

/// One encoding under test: its name, build seconds, bytes per vector, and a function giving
/// the approximate distance from a prepared query to every base vector.
/// Writes the approximate distance from a prepared query to every base vector into the buffer.
type Scan<'a> = Box<dyn Fn(&[f32], &mut Vec<f32>) + Sync + 'a>;

struct Method<'a> {
    name: String,
    build_s: f64,
    bytes_per_vector: f64,
    scan: Scan<'a>,
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let w = match &args.data {
        Some(dir) => match Workload::load(dir, args.queries) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("error: cannot load {}: {e}", dir.display());
                std::process::exit(1);
            }
        },
        None => Workload::synthetic(
            args.synthetic.0,
            args.queries,
            args.synthetic.1,
            Metric::Cosine,
            args.k,
        ),
    };
    let (dim, metric, k) = (w.dim, w.metric, args.k);
    if w.truth.iter().any(|t| t.len() < k) {
        eprintln!("error: the ground truth has fewer than {k} neighbours per query");
        std::process::exit(1);
    }
    let mut base = w.base.clone();
    base.chunks_exact_mut(dim).for_each(|v| metric.prepare(v));
    let base = &base[..];
    let n = base.len() / dim;
    println!(
        "dataset: {} ({n} x {dim}, {} queries, {metric:?}); kernels: {}; threads: {}",
        w.name,
        w.num_queries(),
        kernels().isa().name(),
        rayon::current_num_threads()
    );

    let kern = kernels();
    let mut methods: Vec<Method<'_>> = Vec::new();
    methods.push(Method {
        name: "f32 (exact)".into(),
        build_s: 0.0,
        bytes_per_vector: (dim * 4) as f64,
        scan: Box::new(move |q, out| {
            out.clear();
            out.extend(base.chunks_exact(dim).map(|v| metric.distance(kern, q, v)));
        }),
    });

    let t = Instant::now();
    let halves: Vec<f16> = base.iter().map(|&x| f16::from_f32(x)).collect();
    let build_s = t.elapsed().as_secs_f64();
    methods.push(Method {
        name: "f16".into(),
        build_s,
        bytes_per_vector: (dim * 2) as f64,
        scan: Box::new(move |q, out| {
            out.clear();
            out.extend(
                halves
                    .chunks_exact(dim)
                    .map(|v| metric.distance_f16(kern, q, v)),
            );
        }),
    });

    for (label, per_dimension, quantile) in [
        ("sq8 per-dim q0.99", true, 0.99),
        ("sq8 global q0.99", false, 0.99),
        ("sq8 per-dim q1.0", true, 1.0),
    ] {
        let t = Instant::now();
        let config = ScalarQuantizerConfig {
            per_dimension,
            quantile,
            ..Default::default()
        };
        let sq = ScalarQuantizer::train(base, dim, &config).expect("train sq8");
        let codes = sq.encode_all(base).expect("encode sq8");
        let build_s = t.elapsed().as_secs_f64();
        let bytes = sq.bytes_per_vector() as f64;
        let (sq2, codes2) = (sq.clone(), codes.clone());
        methods.push(Method {
            name: format!("{label} asymmetric"),
            build_s,
            bytes_per_vector: bytes,
            scan: Box::new(move |q, out| {
                let s = sq.query(q, metric).expect("query");
                out.clear();
                out.extend((0..n).map(|i| s.distance(codes.code(i), codes.correction(i))));
            }),
        });
        methods.push(Method {
            name: format!("{label} integer"),
            build_s,
            bytes_per_vector: bytes,
            scan: Box::new(move |q, out| {
                let s = sq2.query_int(q, metric).expect("query");
                out.clear();
                out.extend((0..n).map(|i| s.distance(codes2.code(i), codes2.correction(i))));
            }),
        });
    }

    for m in [dim / 2, dim / 4].into_iter().filter(|&m| m >= 1) {
        let t = Instant::now();
        let pq =
            ProductQuantizer::train(base, dim, &ProductQuantizerConfig::new(m)).expect("train pq");
        let codes = pq.encode_all(base).expect("encode pq");
        methods.push(Method {
            name: format!("pq M={m}"),
            build_s: t.elapsed().as_secs_f64(),
            bytes_per_vector: m as f64,
            scan: Box::new(move |q, out| {
                let table = pq.table(q, metric).expect("table");
                out.clear();
                out.extend((0..n).map(|i| table.distance(codes.code(i))));
            }),
        });
    }

    let t = Instant::now();
    let bq =
        BinaryQuantizer::train(base, dim, &BinaryQuantizerConfig::default()).expect("train binary");
    let bits = bq.encode_all(base).expect("encode binary");
    let build_s = t.elapsed().as_secs_f64();
    let bq2 = bq.clone();
    let bits2 = bits.clone();
    methods.push(Method {
        name: "binary asymmetric".into(),
        build_s,
        bytes_per_vector: (bq.words() * 8) as f64,
        scan: Box::new(move |q, out| {
            let s = bq.query(q, metric).expect("query");
            out.clear();
            out.extend((0..n).map(|i| s.distance(bits.code(i))));
        }),
    });
    methods.push(Method {
        name: "binary hamming".into(),
        build_s,
        bytes_per_vector: (bq2.words() * 8) as f64,
        scan: Box::new(move |q, out| {
            let qb = bq2.encode(q).expect("encode query");
            out.clear();
            out.extend((0..n).map(|i| bits2.hamming(i, &qb) as f32));
        }),
    });

    let mut queries = w.queries.clone();
    queries
        .chunks_exact_mut(dim)
        .for_each(|q| metric.prepare(q));
    let nq = w.num_queries();
    let max_candidates = (k * OVERSAMPLING[OVERSAMPLING.len() - 1]).min(n);

    print!("\n| encoding | build s | bytes/vector | scans/s (1 thread) |");
    OVERSAMPLING.iter().for_each(|o| print!(" R@{k} x{o} |"));
    print!("\n|---|---|---|---|");
    OVERSAMPLING.iter().for_each(|_| print!("---|"));
    println!();
    for method in &methods {
        // Speed: single-thread full scans over the first queries.
        let timed = nq.min(20);
        let mut buf = Vec::with_capacity(n);
        let t = Instant::now();
        for i in 0..timed {
            (method.scan)(&queries[i * dim..(i + 1) * dim], &mut buf);
            std::hint::black_box(&buf);
        }
        let scans_per_s = timed as f64 / t.elapsed().as_secs_f64();

        // Recall: all queries, in parallel.
        let recalls: Vec<[f64; OVERSAMPLING.len()]> = (0..nq)
            .into_par_iter()
            .map_init(Vec::new, |buf, i| {
                let q = &queries[i * dim..(i + 1) * dim];
                (method.scan)(q, buf);
                let mut ranked: Vec<(f32, u32)> = buf
                    .iter()
                    .enumerate()
                    .map(|(j, &d)| (d, j as u32))
                    .collect();
                let cmp = |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
                if ranked.len() > max_candidates {
                    ranked.select_nth_unstable_by(max_candidates - 1, cmp);
                    ranked.truncate(max_candidates);
                }
                ranked.sort_by(cmp);
                let mut out = [0.0; OVERSAMPLING.len()];
                for (slot, &o) in out.iter_mut().zip(&OVERSAMPLING) {
                    let mut rescored: Vec<(f32, u32)> = ranked
                        .iter()
                        .take(k * o)
                        .map(|&(_, j)| {
                            (
                                metric.distance(
                                    kern,
                                    q,
                                    &base[j as usize * dim..(j as usize + 1) * dim],
                                ),
                                j,
                            )
                        })
                        .collect();
                    rescored.sort_by(cmp);
                    let found: Vec<u32> = rescored.iter().take(k).map(|&(_, j)| j).collect();
                    *slot = recall_at(&found, &w.truth[i], k);
                }
                out
            })
            .collect();
        print!(
            "| {} | {:.2} | {:.0} | {:.1} |",
            method.name, method.build_s, method.bytes_per_vector, scans_per_s
        );
        for o in 0..OVERSAMPLING.len() {
            print!(
                " {:.4} |",
                recalls.iter().map(|r| r[o]).sum::<f64>() / nq as f64
            );
        }
        println!();
    }
}
