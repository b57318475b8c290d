//! Does numbering a graph's nodes for locality speed up its walk? (issue 17, part 2)
//!
//! Loads a saved `f32` index (`--index`, as `examples/hnsw --index` writes it), takes its
//! base layer, and serves the same layer under three numberings through
//! [`HnswIndex::from_graph`], which rebuilds the levels above over it (a node's level is drawn
//! from its number, so each numbering gets other upper levels and its recall differs a little):
//!
//! * `identity`: the order the points were inserted in;
//! * `bfs`: breadth-first from node 0 over the base layer (the Cuthill-McKee family);
//! * `kmeans`: grouped by their nearest of `n / 256` k-means centroids, so points close in
//!   space (the ones one query's walk measures) sit close in memory.
//!
//! Each numbering then answers the queries, one thread, best of three passes, and the three
//! alternate `--rounds` times, because the machine's noise is as large as the effect sought.
//!
//! ```sh
//! target/release/examples/hnsw --data data/glove-50-angular --index /tmp/glove.hnsw --ef 10
//! target/release/examples/reorder --data data/glove-50-angular --index /tmp/glove.hnsw --ef 64,96,128
//! ```

use index_core::{SearchParams, VectorIndex};
use index_hnsw::{BaseLayer, HnswIndex, LoadOptions};
use quant::{KMeans, KMeansConfig};
use std::path::PathBuf;
use std::time::Instant;
use vr_benches::{recall_at, Workload};

fn main() {
    let mut data = PathBuf::from("data/glove-50-angular");
    let mut cache: Option<PathBuf> = None;
    let mut efs = vec![64, 96, 128];
    let mut rounds = 2;
    let mut queries = 10_000;
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
            "--index" => cache = Some(PathBuf::from(value)),
            "--ef" => efs = value.split(',').map(num).collect(),
            "--rounds" => rounds = num(&value),
            "--queries" => queries = num(&value),
            other => fail(format!("unknown argument {other}")),
        }
    }
    let Some(cache) = cache else {
        fail("--index is required (a file saved by examples/hnsw --index)".into())
    };
    let w = Workload::load(&data, queries)
        .unwrap_or_else(|e| fail(format!("cannot load {}: {e}", data.display())));
    let saved = HnswIndex::load(&cache, LoadOptions::default())
        .unwrap_or_else(|e| fail(format!("load: {e}")));
    let config = saved.config().clone();
    let base = saved.base_layer();
    drop(saved);
    let n = base.len();
    assert_eq!(n, w.len(), "the index holds the data set's points");
    let degree = config.m0();

    let t = Instant::now();
    let bfs = bfs_order(&base);
    println!("bfs order in {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let kmeans = kmeans_order(&w.base, w.dim, n);
    println!("kmeans order in {:.1} s", t.elapsed().as_secs_f64());
    let orders: Vec<(&str, Vec<u32>)> = vec![
        ("identity", (0..n as u32).collect()),
        ("bfs", bfs),
        ("kmeans", kmeans),
    ];
    let mut indexes = Vec::new();
    for (name, old_of_new) in &orders {
        let mut new_of_old = vec![0u32; n];
        for (new, &old) in old_of_new.iter().enumerate() {
            new_of_old[old as usize] = new as u32;
        }
        let mut vectors = Vec::with_capacity(n * w.dim);
        let mut links = Vec::with_capacity(n * degree);
        for &old in old_of_new {
            let old = old as usize;
            vectors.extend_from_slice(&w.base[old * w.dim..(old + 1) * w.dim]);
            links.extend(base[old].iter().map(|&o| new_of_old[o as usize]));
            links.resize(links.len() + degree - base[old].len(), u32::MAX);
        }
        let t = Instant::now();
        let index = HnswIndex::from_graph(
            w.dim,
            w.metric,
            config.clone(),
            &vectors,
            BaseLayer {
                degree,
                links: &links,
                entry: new_of_old[0],
                hierarchy: true,
            },
        )
        .unwrap_or_else(|e| fail(format!("from_graph: {e}")));
        println!(
            "{name}: served in {:.1} s; mean distance in memory between a node and its links: {:.0} records",
            t.elapsed().as_secs_f64(),
            mean_link_span(&base, &new_of_old)
        );
        indexes.push((*name, index, old_of_new.clone()));
    }

    println!("\n| round | order | ef | recall@10 | QPS (1 thread) |");
    println!("|---|---|---|---|---|");
    for round in 1..=rounds {
        for (name, index, old_of_new) in &indexes {
            for &ef in &efs {
                let params = SearchParams {
                    hnsw_ef: Some(ef),
                    ..SearchParams::top(10)
                };
                let mut best = f64::INFINITY;
                let mut recall = 0.0;
                for _ in 0..3 {
                    let t = Instant::now();
                    let mut total = 0.0;
                    for i in 0..w.num_queries() {
                        let found = index.search(w.query(i), &params, None).expect("search");
                        let ids: Vec<u32> = found
                            .iter()
                            .map(|s| old_of_new[s.offset as usize])
                            .collect();
                        total += recall_at(&ids, &w.truth[i], 10);
                    }
                    best = best.min(t.elapsed().as_secs_f64());
                    recall = total / w.num_queries() as f64;
                }
                println!(
                    "| {round} | {name} | {ef} | {recall:.4} | {:.0} |",
                    w.num_queries() as f64 / best
                );
            }
        }
    }
}

/// Breadth-first numbering over the base layer from node 0; nodes it does not reach follow in
/// their old order.
fn bfs_order(base: &[Vec<u32>]) -> Vec<u32> {
    let n = base.len();
    let mut seen = vec![false; n];
    let mut order = Vec::with_capacity(n);
    for root in 0..n {
        if seen[root] {
            continue;
        }
        seen[root] = true;
        order.push(root as u32);
        let mut head = order.len() - 1;
        while head < order.len() {
            let node = order[head] as usize;
            head += 1;
            for &next in &base[node] {
                if !std::mem::replace(&mut seen[next as usize], true) {
                    order.push(next);
                }
            }
        }
    }
    order
}

/// Points grouped by their nearest k-means centroid (`n / 256` of them, trained on a sample),
/// the groups in centroid order.
fn kmeans_order(data: &[f32], dim: usize, n: usize) -> Vec<u32> {
    let k = (n / 256).max(1);
    let config = KMeansConfig {
        max_iterations: 10,
        max_points_per_centroid: 64,
        ..KMeansConfig::new(k)
    };
    let km = KMeans::train(data, dim, &config).expect("k-means");
    let assigned = km.assign(data).expect("assign");
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.sort_by_key(|&i| assigned[i as usize]);
    order
}

/// Mean of `|new(a) - new(b)|` over every link `a → b`: how far apart, in records, a node and
/// the nodes a walk measures after it lie.
fn mean_link_span(base: &[Vec<u32>], new_of_old: &[u32]) -> f64 {
    let (mut sum, mut count) = (0f64, 0u64);
    for (a, links) in base.iter().enumerate() {
        for &b in links {
            sum += (new_of_old[a] as f64 - new_of_old[b as usize] as f64).abs();
            count += 1;
        }
    }
    sum / count.max(1) as f64
}
