//! Builds an HNSW index on a TexMex dataset and sweeps `ef`: recall@10, single-thread QPS,
//! build time and bytes per vector, as one row per `ef` (the layout of
//! `../shared/bench/peers.py`, so both can be read side by side).
//!
//! ```sh
//! cargo run --release -p vr-benches --example hnsw -- --data data/glove-50-angular
//! cargo run --release -p vr-benches --example hnsw -- --storage sq8 --ef 32,64,128,256
//! cargo run --release -p vr-benches --example hnsw -- --storage pq --pq-subspaces 25 --oversampling 8
//! cargo run --release -p vr-benches --example hnsw -- --storage rabitq:1 --ef 64,128,256   # bound-driven re-ranking
//! cargo run --release -p vr-benches --example hnsw -- --index data/glove.hnsw   # build once, then reuse
//! cargo run --release -p vr-benches --example hnsw -- --k 100 --ef 128,256   # recall@100, 100 results
//! cargo run --release -p vr-benches --example hnsw -- --index data/glove.hnsw --filter-share 10,3,25
//! ```
//!
//! `--cold N` (with `--save-and-reload`) adds single-query latencies with the full vectors on
//! disk: N queries each started from a cold page cache, then warm, and the bytes read from
//! the disk a query; with `--filter-share`, for each share as well.
//!
//! `--filter-share P,...` adds, after the unfiltered sweep, one sweep per share: a seeded
//! random bitset passing `P` percent of the points (point `i` passes when
//! `splitmix64(i) % 1,000,000 < P · 10,000`), recall against an exact scan of the passing
//! points, `--filter-queries` queries (default 1,000), and the QPS of an exact scan of the
//! passing points beside it. `--filter-sets N` draws N such bitsets per share (set `j` by
//! `splitmix64(j·2^40 + i)`) and gives them to the queries in turn, so that one filter's
//! points do not stay in the processor's caches from query to query. It measures the
//! index's own filter planner (scan, filter-first walk or plain walk, by the bitset's count
//! and the asked `ef`; each row names the path, set 0's with several sets) on a saved
//! graph, at any share and on any set. `--filter-walk filter-first,plain` (`yes` for
//! `filter-first`) sweeps those walks as well, each at every `ef`, whatever the planner
//! would take.

use index_core::{AllowedSet, PointFilter, SearchParams, VectorIndex};
use index_hnsw::{FilterPlan, HnswConfig, HnswIndex, LoadOptions, StorageKind};
use std::path::PathBuf;
use std::time::Instant;
use vr_benches::{recall_at, Workload};

fn main() {
    let mut data = PathBuf::from("data/glove-50-angular");
    let mut storage = StorageKind::F32;
    // The grid of ../shared/bench/peers.py, so that "best QPS at recall >= level" compares
    // like with like.
    let mut efs = vec![10, 16, 20, 32, 40, 64, 80, 128, 160, 256, 512];
    let mut m = 16;
    let mut ef_construct = 200;
    let mut queries = 10_000;
    let mut threads = 2;
    let mut oversampling = 3.0f32;
    let mut pq_subspaces = 0;
    let mut rabitq_bits = 1u8;
    // Only an explicit `--oversampling` fixes it per search: RaBitQ otherwise re-ranks by its
    // bound.
    let mut fixed_oversampling: Option<f32> = None;
    let mut reload: Option<PathBuf> = None;
    let mut cache: Option<PathBuf> = None;
    let mut self_check = false;
    // Queries of the cold and warm latency passes (`--cold`, with `--save-and-reload`).
    let mut cold_queries = 0;
    // `--rescore no`: quantized walks answer with their estimates, no full vector read.
    let mut rescore: Option<bool> = None;
    // Results asked for, and the k of recall@k (the ground truth holds 100).
    let mut k = 10;
    let mut filter_shares: Vec<f64> = Vec::new();
    let mut filter_queries = 1_000;
    // Bitsets a share is drawn as, the queries taking them in turn (`--filter-sets`).
    let mut filter_sets = 1usize;
    // Paths swept on their own after the planner's, at every `ef` (`--filter-walk`).
    let mut forced_paths: Vec<FilterPlan> = Vec::new();
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
                storage = match value.as_str() {
                    "f32" => StorageKind::F32,
                    "f16" => StorageKind::F16,
                    "sq8" => StorageKind::Sq8,
                    "binary" => StorageKind::Binary,
                    "pq" => StorageKind::Pq,
                    "rabitq" => StorageKind::Rabitq,
                    other => match other.strip_prefix("rabitq:").map(str::parse::<u8>) {
                        Some(Ok(bits)) => {
                            rabitq_bits = bits;
                            StorageKind::Rabitq
                        }
                        _ => fail(format!("unknown storage {other}")),
                    },
                }
            }
            "--pq-subspaces" => pq_subspaces = num(&value),
            "--ef" => efs = value.split(',').map(num).collect(),
            "--m" => m = num(&value),
            "--ef-construct" => ef_construct = num(&value),
            "--queries" => queries = num(&value),
            "--threads" => threads = num(&value),
            "--oversampling" => {
                oversampling = value
                    .parse()
                    .unwrap_or_else(|e| fail(format!("{flag}: {e}")));
                fixed_oversampling = Some(oversampling);
            }
            "--save-and-reload" => reload = Some(PathBuf::from(value)),
            "--index" => cache = Some(PathBuf::from(value)),
            "--self-check" => self_check = value == "yes",
            "--cold" => cold_queries = num(&value),
            "--rescore" => {
                rescore = match value.as_str() {
                    "yes" => Some(true),
                    "no" => Some(false),
                    other => fail(format!("--rescore: {other} is not yes or no")),
                }
            }
            "--k" => k = num(&value).clamp(1, 100),
            "--filter-share" => {
                filter_shares = value
                    .split(',')
                    .map(|v| match v.parse::<f64>() {
                        // One point in a million is the finest share the filter draws.
                        Ok(p) if (0.0001..=100.0).contains(&p) => p,
                        _ => fail(format!(
                            "--filter-share: {v} is not a percentage from 0.0001 to 100"
                        )),
                    })
                    .collect()
            }
            "--filter-queries" => filter_queries = num(&value).max(1),
            "--filter-sets" => filter_sets = num(&value).max(1),
            "--filter-walk" => {
                forced_paths = value
                    .split(',')
                    .map(|v| match v {
                        "yes" | "filter-first" => FilterPlan::FilterFirst,
                        "plain" => FilterPlan::PassThrough,
                        _ => fail(format!(
                            "--filter-walk: {v} is not filter-first (or yes) or plain"
                        )),
                    })
                    .collect()
            }
            other => fail(format!("unknown argument {other}")),
        }
    }
    let w = Workload::load(&data, queries)
        .unwrap_or_else(|e| fail(format!("cannot load {}: {e}", data.display())));
    let config = HnswConfig {
        m,
        ef_construct,
        storage,
        oversampling,
        pq_subspaces,
        rabitq_bits,
        ..HnswConfig::default()
    };
    println!(
        "dataset {} ({} x {}, {} queries); m={m} ef_construct={ef_construct} storage={storage:?}; kernels {}",
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
    let mut index = match &cache {
        Some(path) if path.exists() => {
            println!(
                "loaded the index from {} (build time not measured)",
                path.display()
            );
            HnswIndex::load(path, LoadOptions::default())
                .unwrap_or_else(|e| fail(format!("load: {e}")))
        }
        _ => pool
            .install(|| HnswIndex::build(w.dim, w.metric, config, &w.base))
            .unwrap_or_else(|e| fail(format!("build: {e}"))),
    };
    let build_s = t.elapsed().as_secs_f64();
    let rss_growth = vr_benches::rss_bytes().saturating_sub(rss_before);
    if let Some(path) = cache.as_ref().filter(|p| !p.exists()) {
        index
            .save(path)
            .unwrap_or_else(|e| fail(format!("save: {e}")));
    }
    if let Some(path) = &reload {
        index
            .save(path)
            .unwrap_or_else(|e| fail(format!("save: {e}")));
        index = HnswIndex::load(
            path,
            LoadOptions {
                vectors_on_disk: true,
            },
        )
        .unwrap_or_else(|e| fail(format!("load: {e}")));
        println!(
            "saved to and reloaded from {} with vectors on disk; process RSS {:.0} MB",
            path.display(),
            vr_benches::rss_bytes() as f64 / 1e6
        );
    }
    let mem = index.memory_usage();
    println!(
        "RSS growth over the build: {:.0} MB ({:.0} bytes/vector; peers.py measures the same way)",
        rss_growth as f64 / 1e6,
        rss_growth as f64 / w.len() as f64
    );
    println!(
        "build {build_s:.1} s on {threads} threads; RAM {:.0} bytes/vector (vectors {:.0}, graph {:.0}); on disk {:.0} bytes/vector",
        mem.bytes_per_vector(),
        mem.vector_bytes as f64 / mem.points as f64,
        mem.index_bytes as f64 / mem.points as f64,
        mem.vector_bytes_on_disk as f64 / mem.points as f64,
    );
    if self_check {
        // Every base point searched for with its own vector and the default `ef`: the points
        // that do not come back are the ones a search cannot find.
        let t = Instant::now();
        let params = SearchParams::top(10);
        let lost: Vec<u32> = pool.install(|| {
            use rayon::prelude::*;
            (0..w.len() as u32)
                .into_par_iter()
                .filter(|&i| {
                    let v = &w.base[i as usize * w.dim..(i as usize + 1) * w.dim];
                    let found = index.search(v, &params, None).expect("search");
                    !found.iter().any(|s| s.offset == i)
                })
                .collect()
        });
        println!(
            "self-check: {} of {} points not found by a search for their own vector (ef {}, {:.1} s){}",
            lost.len(),
            w.len(),
            index.config().ef_search,
            t.elapsed().as_secs_f64(),
            if lost.is_empty() { String::new() } else { format!(", first {:?}", &lost[..lost.len().min(10)]) }
        );
    }
    println!("\n| ef | recall@{k} | QPS (1 thread) | mean latency us | re-ranked a query |");
    println!("|---|---|---|---|---|");
    let mut rows: Vec<(usize, f64, f64)> = Vec::new();
    for &ef in &efs {
        let params = SearchParams {
            hnsw_ef: Some(ef),
            oversampling: fixed_oversampling,
            rescore,
            ..SearchParams::top(k)
        };
        let reranked_before = index.reranked();
        let (recall, qps) =
            timed_sweep(&index, &w, &w.truth[..w.num_queries()], &params, &[], None);
        // Bound-driven re-ranks (RaBitQ); a fixed oversampling re-ranks `limit · oversampling`.
        let reranked = (index.reranked() - reranked_before) as f64 / (3 * w.num_queries()) as f64;
        println!(
            "| {ef} | {recall:.4} | {qps:.0} | {:.1} | {reranked:.1} |",
            1e6 / qps
        );
        rows.push((ef, recall, qps));
    }
    vr_benches::print_best_qps_at("ef", k, &rows);
    let unfiltered = rows;
    if cold_queries > 0 {
        let Some(path) = &reload else {
            fail("--cold needs --save-and-reload (the vectors on disk)".into())
        };
        cold_and_warm(
            &index,
            &w,
            path,
            &efs,
            k,
            (fixed_oversampling, rescore),
            cold_queries,
            &[],
            &w.truth,
        );
    }

    for share in filter_shares {
        let n = w.len() as u32;
        let cut = (share * 10_000.0).round() as u64;
        // Set `j` passes point `i` when `splitmix64(j·2^40 + i)` falls under the cut: set 0
        // is the one bitset of a run without `--filter-sets`.
        let sets: Vec<AllowedSet> = (0..filter_sets as u64)
            .map(|j| {
                let mut allowed = AllowedSet::with_capacity(n as usize);
                for i in 0..n {
                    if vr_benches::splitmix64(j << 40 | i as u64) % 1_000_000 < cut {
                        allowed.insert(i);
                    }
                }
                allowed
            })
            .collect();
        let passing: Vec<Vec<u32>> = sets.iter().map(|s| s.iter().collect()).collect();
        if passing.iter().any(Vec::is_empty) {
            println!("\nfilter: {share}% of the points pass: none in a set here, no sweep");
            continue;
        }
        let nq = filter_queries.min(w.num_queries());
        // The filtered ground truth: an exact scan of the passing points, the same distance.
        let truth: Vec<Vec<u32>> = pool.install(|| {
            use rayon::prelude::*;
            (0..nq)
                .into_par_iter()
                .map(|i| {
                    let found = index
                        .exact_search(w.query(i), &passing[i % filter_sets], k)
                        .expect("exact search");
                    found.iter().map(|s| s.offset).collect()
                })
                .collect()
        });
        println!(
            "\nfilter: {share}% of the points pass ({} of {n}{}), {nq} queries",
            passing[0].len(),
            if filter_sets > 1 {
                format!(" in set 0 of {filter_sets}, taken in turn")
            } else {
                String::new()
            }
        );
        println!(
            "\n| ef | path the planner takes | recall@{k} | QPS (1 thread) | QPS unfiltered at this recall | re-ranked a query |"
        );
        println!("|---|---|---|---|---|---|");
        let filters: Vec<&dyn PointFilter> = sets.iter().map(|s| s as &dyn PointFilter).collect();
        let filter = filters[0];
        let mut rows: Vec<SweepRow> = Vec::new();
        // The same rows by the path the planner took, for the QPS at a recall.
        let mut runs: Vec<(FilterPlan, Vec<SweepRow>)> = Vec::new();
        for &ef in &efs {
            let params = SearchParams {
                hnsw_ef: Some(ef),
                oversampling: fixed_oversampling,
                rescore,
                ..SearchParams::top(k)
            };
            let path = index.filter_plan(&params, Some(filter));
            let reranked_before = index.reranked();
            let (recall, qps) = timed_sweep(&index, &w, &truth, &params, &filters, None);
            let reranked = (index.reranked() - reranked_before) as f64 / (3 * nq) as f64;
            let level = vr_benches::qps_at_recall(&unfiltered, recall)
                .map_or("-".to_string(), |q| format!("{q:.0}"));
            println!("| {ef} | {path:?} | {recall:.4} | {qps:.0} | {level} | {reranked:.1} |");
            rows.push((ef, recall, qps));
            match runs.iter_mut().find(|(p, _)| *p == path) {
                Some((_, run)) => run.push((ef, recall, qps)),
                None => runs.push((path, vec![(ef, recall, qps)])),
            }
        }
        vr_benches::print_best_qps_at("ef", k, &rows);
        // Each forced walk at every `ef`, where the planner may have taken another path.
        let mut forced_rows: Vec<(FilterPlan, Vec<SweepRow>)> = Vec::new();
        for &path in &forced_paths {
            println!("\n{path:?} at every ef (told to take it):\n");
            println!("| ef | recall@{k} | QPS (1 thread) |");
            println!("|---|---|---|");
            let mut path_rows = Vec::new();
            for &ef in &efs {
                let params = SearchParams {
                    hnsw_ef: Some(ef),
                    oversampling: fixed_oversampling,
                    rescore,
                    ..SearchParams::top(k)
                };
                let forced = Some(path);
                let (recall, qps) = timed_sweep(&index, &w, &truth, &params, &filters, forced);
                println!("| {ef} | {recall:.4} | {qps:.0} |");
                path_rows.push((ef, recall, qps));
            }
            forced_rows.push((path, path_rows));
        }
        // What the planner's other path would serve: an exact scan of the passing points
        // (recall 1), on at most 200 queries, one pass (it is slow at wide shares).
        let scanned = nq.min(200);
        let exact = SearchParams {
            exact: true,
            ..SearchParams::top(k)
        };
        let t = Instant::now();
        for i in 0..scanned {
            index
                .search(w.query(i), &exact, Some(filters[i % filter_sets]))
                .expect("exact search");
        }
        println!(
            "exact scan of the passing points: {:.0} QPS ({scanned} queries)",
            scanned as f64 / t.elapsed().as_secs_f64()
        );
        if cold_queries > 0 {
            if let Some(path) = &reload {
                cold_and_warm(
                    &index,
                    &w,
                    path,
                    &efs,
                    k,
                    (fixed_oversampling, rescore),
                    cold_queries,
                    &filters,
                    &truth,
                );
            }
        }
        let by_path: Vec<Vec<SweepRow>> = runs.into_iter().map(|(_, run)| run).collect();
        for level in [0.95, 0.99] {
            let walk: String = forced_rows
                .iter()
                .map(|(path, rows)| {
                    vr_benches::qps_at_least_recall(std::slice::from_ref(rows), level)
                        .map_or(format!(" ({path:?} alone: not reached)"), |q| {
                            format!(" ({path:?} alone: {q:.0})")
                        })
                })
                .collect();
            match (
                vr_benches::qps_at_least_recall(&by_path, level),
                vr_benches::qps_at_recall(&unfiltered, level),
            ) {
                (Some(f), Some(u)) => println!(
                    "at recall@{k} {level}: {f:.0} QPS filtered (at least {level}){walk}, {u:.0} unfiltered (interpolated), ratio {:.2}",
                    f / u
                ),
                _ => println!(
                    "at recall@{k} {level}: not reached or not bracketed by the sweeps{walk}"
                ),
            }
        }
    }
}

/// Single-query latencies with the full vectors on disk: each query of the cold pass starts
/// with none of them in memory (unmapped by the index, then dropped from the page cache), the
/// warm pass runs the same queries again after one pass to load what they read. Also the
/// bytes the process read from the disk a query (`read_bytes` of `/proc/self/io`). Query
/// `i` passes `filters[i % filters.len()]` (none when empty), and is scored against
/// `truth`.
#[allow(clippy::too_many_arguments)]
fn cold_and_warm(
    index: &HnswIndex,
    w: &Workload,
    file: &std::path::Path,
    efs: &[usize],
    k: usize,
    (oversampling, rescore): (Option<f32>, Option<bool>),
    queries: usize,
    filters: &[&dyn PointFilter],
    truth: &[Vec<u32>],
) {
    let filter_of = |i: usize| (!filters.is_empty()).then(|| filters[i % filters.len()]);
    use std::os::fd::AsRawFd;
    let queries = queries.min(truth.len()).min(w.num_queries());
    let file = std::fs::File::open(file).expect("the saved index");
    let evict = || {
        index.release_vectors_on_disk();
        // SAFETY: a plain system call on a file descriptor this function owns; it reads no
        // memory of ours.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(rc, 0, "posix_fadvise");
    };
    let read_bytes = || -> u64 {
        std::fs::read_to_string("/proc/self/io")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("read_bytes: ")?.trim().parse().ok())
            })
            .unwrap_or(0)
    };
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
    };
    println!(
        "\ncold and warm single queries ({queries} each), full vectors on disk; re-ranks a query as above\n"
    );
    println!("| ef | path | recall@{k} | cold p50 us | cold p99 us | disk KB read a cold query | warm p50 us | warm p99 us |");
    println!("|---|---|---|---|---|---|---|---|");
    for &ef in efs {
        let params = SearchParams {
            hnsw_ef: Some(ef),
            oversampling,
            rescore,
            ..SearchParams::top(k)
        };
        let mut cold = Vec::with_capacity(queries);
        let mut read = 0u64;
        let mut recall = 0.0;
        for (i, want) in truth[..queries].iter().enumerate() {
            evict();
            let before = read_bytes();
            let t = Instant::now();
            let found = index
                .search(w.query(i), &params, filter_of(i))
                .expect("search");
            cold.push(t.elapsed().as_secs_f64() * 1e6);
            read += read_bytes() - before;
            let ids: Vec<u32> = found.iter().map(|s| s.offset).collect();
            recall += recall_at(&ids, want, k.min(want.len()));
        }
        for i in 0..queries {
            index
                .search(w.query(i), &params, filter_of(i))
                .expect("search");
        }
        let mut warm: Vec<f64> = (0..queries)
            .map(|i| {
                let t = Instant::now();
                index
                    .search(w.query(i), &params, filter_of(i))
                    .expect("search");
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        let path = filter_of(0).map_or("unfiltered".to_string(), |f| {
            format!("{:?}", index.filter_plan(&params, Some(f)))
        });
        println!(
            "| {ef} | {path} | {:.4} | {:.0} | {:.0} | {:.1} | {:.0} | {:.0} |",
            recall / queries as f64,
            pct(&mut cold, 0.5),
            pct(&mut cold, 0.99),
            read as f64 / queries as f64 / 1024.0,
            pct(&mut warm, 0.5),
            pct(&mut warm, 0.99),
        );
    }
}

/// One row of an `ef` sweep: `ef`, recall, QPS.
type SweepRow = (usize, f64, f64);

/// Recall@`params.limit` and single-thread QPS over the first `truth.len()` queries: the best
/// of three timed passes, as peers.py does. Query `i` passes `filters[i % filters.len()]`
/// (none when empty). A query whose truth holds fewer than `limit` points (a narrow filter)
/// is scored on those it has.
fn timed_sweep(
    index: &HnswIndex,
    w: &Workload,
    truth: &[Vec<u32>],
    params: &SearchParams,
    filters: &[&dyn PointFilter],
    plan: Option<FilterPlan>,
) -> (f64, f64) {
    let mut best = f64::INFINITY;
    let mut recall = 0.0;
    for _ in 0..3 {
        let t = Instant::now();
        let mut total = 0.0;
        for (i, want) in truth.iter().enumerate() {
            let filter = (!filters.is_empty()).then(|| filters[i % filters.len()]);
            let found = index
                .search_with_plan(w.query(i), params, filter, plan)
                .expect("search");
            let ids: Vec<u32> = found.iter().map(|s| s.offset).collect();
            total += recall_at(&ids, want, params.limit.min(want.len()));
        }
        best = best.min(t.elapsed().as_secs_f64());
        recall = total / truth.len() as f64;
    }
    (recall, truth.len() as f64 / best)
}
