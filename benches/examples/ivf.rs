//! Builds an IVF index on a TexMex dataset and sweeps `nprobe`: recall@k (k 10 unless `--k`), single-thread QPS,
//! train and add time and bytes per vector, one row per `nprobe` (the layout of
//! `../shared/bench/peers.py`, so both can be read side by side).
//!
//! ```sh
//! cargo run --release -p vr-benches --example ivf -- --encoding flat
//! cargo run --release -p vr-benches --example ivf -- --encoding fs:50             # PQ50x4fs + re-rank
//! cargo run --release -p vr-benches --example ivf -- --encoding pq:25 --oversampling 10
//! cargo run --release -p vr-benches --example ivf -- --encoding rabitq:1             # bound-driven re-rank
//! cargo run --release -p vr-benches --example ivf -- --encoding fs:50 --save-and-reload data/g.ivf
//! cargo run --release -p vr-benches --example ivf -- --encoding fs:50 --index data/g.ivf   # build once, then reuse
//! cargo run --release -p vr-benches --example ivf -- --encoding rabitq:1 --k 100            # recall@100
//! ```

use index_core::{SearchParams, VectorIndex};
use index_ivf::{IvfConfig, IvfIndex, ListEncoding, LoadOptions};
use std::path::PathBuf;
use std::time::Instant;
use vr_benches::{recall_at, Workload};

fn main() {
    let mut data = PathBuf::from("data/glove-50-angular");
    let mut encoding = ListEncoding::Flat;
    let mut nlist = 1024;
    // The grid of ../shared/bench/peers.py.
    let mut nprobes = vec![1, 2, 4, 8, 16, 32, 64, 128];
    let mut queries = 10_000;
    let mut threads = 2;
    let mut oversampling = 4.0f32;
    // An explicit `--oversampling` also fixes it per search, so that it holds for a loaded
    // index (whose configuration comes from its file); RaBitQ then re-ranks `limit ·
    // oversampling` instead of by its bound, as the hnsw example does.
    let mut fixed_oversampling: Option<f32> = None;
    let mut refine = true;
    let mut passes = 3;
    let mut reload: Option<PathBuf> = None;
    let mut cache: Option<PathBuf> = None;
    let mut k = 10;
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
            "--encoding" => {
                encoding = match value.split_once(':') {
                    None if value == "flat" => ListEncoding::Flat,
                    None if value == "sq8" => ListEncoding::Sq8,
                    Some(("pq", m)) => ListEncoding::Pq { m: num(m) },
                    Some(("fs", m)) => ListEncoding::PqFastScan { m: num(m) },
                    Some(("rabitq", b)) => ListEncoding::Rabitq { bits: num(b) as u8 },
                    _ => fail(format!(
                        "unknown encoding {value} (flat, sq8, pq:M, fs:M, rabitq:BITS)"
                    )),
                }
            }
            "--nlist" => nlist = num(&value),
            "--nprobe" => nprobes = value.split(',').map(num).collect(),
            "--queries" => queries = num(&value),
            "--threads" => threads = num(&value),
            "--passes" => passes = num(&value).max(1),
            "--oversampling" => {
                oversampling = value
                    .parse()
                    .unwrap_or_else(|e| fail(format!("{flag}: {e}")));
                fixed_oversampling = Some(oversampling);
            }
            "--refine" => refine = value == "true",
            "--save-and-reload" => reload = Some(PathBuf::from(value)),
            "--index" => cache = Some(PathBuf::from(value)),
            "--k" => k = num(&value).clamp(1, 100),
            other => fail(format!("unknown argument {other}")),
        }
    }
    let w = Workload::load(&data, queries)
        .unwrap_or_else(|e| fail(format!("cannot load {}: {e}", data.display())));
    let config = IvfConfig {
        nlist: Some(nlist),
        encoding,
        refine,
        oversampling,
        ..IvfConfig::default()
    };
    println!(
        "dataset {} ({} x {}, {} queries); nlist={nlist} encoding={encoding:?} refine={refine} oversampling={oversampling}; kernels {}",
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
    let cached = cache.as_ref().filter(|p| p.exists()).map(|path| {
        println!(
            "loaded the index from {} (build not measured)",
            path.display()
        );
        IvfIndex::load(path, LoadOptions::default()).unwrap_or_else(|e| fail(format!("load: {e}")))
    });
    let mut index = cached.unwrap_or_else(|| {
        pool.install(|| {
            let mut index = IvfIndex::new(w.dim, w.metric, config.clone())
                .unwrap_or_else(|e| fail(format!("config: {e}")));
            index
                .train(&w.base)
                .unwrap_or_else(|e| fail(format!("train: {e}")));
            let train_s = t.elapsed().as_secs_f64();
            index
                .add(0, &w.base)
                .unwrap_or_else(|e| fail(format!("add: {e}")));
            index.shrink_to_fit();
            println!(
                "train {train_s:.2} s, add {:.2} s on {threads} threads",
                t.elapsed().as_secs_f64() - train_s
            );
            index
        })
    });
    let build_s = t.elapsed().as_secs_f64();
    if let Some(path) = cache.as_ref().filter(|p| !p.exists()) {
        index
            .save(path)
            .unwrap_or_else(|e| fail(format!("save: {e}")));
    }
    let rss_growth = vr_benches::rss_bytes().saturating_sub(rss_before);
    if let Some(path) = reload {
        index
            .save(&path)
            .unwrap_or_else(|e| fail(format!("save: {e}")));
        index = IvfIndex::load(
            &path,
            LoadOptions {
                vectors_on_disk: true,
            },
        )
        .unwrap_or_else(|e| fail(format!("load: {e}")));
        println!(
            "saved to and reloaded from {} with full vectors on disk",
            path.display()
        );
    }
    let mem = index.memory_usage();
    println!(
        "build (train + add) {build_s:.2} s; RSS growth {:.0} MB ({:.0} bytes/vector, as peers.py measures)",
        rss_growth as f64 / 1e6,
        rss_growth as f64 / w.len() as f64
    );
    println!(
        "RAM {:.1} bytes/vector (codes and full vectors {:.1}, ids and centroids {:.1}); on disk {:.1} bytes/vector",
        mem.bytes_per_vector(),
        mem.vector_bytes as f64 / mem.points as f64,
        mem.index_bytes as f64 / mem.points as f64,
        mem.vector_bytes_on_disk as f64 / mem.points as f64,
    );
    println!("\n| nprobe | recall@{k} | QPS (1 thread) | mean latency us | re-ranked a query |");
    println!("|---|---|---|---|---|");
    let mut rows: Vec<(usize, f64, f64)> = Vec::new();
    for &nprobe in &nprobes {
        let params = SearchParams {
            ivf_nprobe: Some(nprobe),
            oversampling: fixed_oversampling,
            ..SearchParams::top(k)
        };
        // Best of `passes` timed passes over all queries on this thread, as peers.py does.
        let mut best = f64::INFINITY;
        let mut recall = 0.0;
        let reranked_before = index.reranked();
        for _ in 0..passes {
            let t = Instant::now();
            let mut total = 0.0;
            for i in 0..w.num_queries() {
                let found = index.search(w.query(i), &params, None).expect("search");
                let ids: Vec<u32> = found.iter().map(|s| s.offset).collect();
                total += recall_at(&ids, &w.truth[i], k);
            }
            best = best.min(t.elapsed().as_secs_f64());
            recall = total / w.num_queries() as f64;
        }
        let qps = w.num_queries() as f64 / best;
        let reranked =
            (index.reranked() - reranked_before) as f64 / (passes * w.num_queries()) as f64;
        println!(
            "| {nprobe} | {recall:.4} | {qps:.0} | {:.1} | {reranked:.0} |",
            1e6 / qps
        );
        rows.push((nprobe, recall, qps));
    }
    vr_benches::print_best_qps_at("nprobe", k, &rows);
}
