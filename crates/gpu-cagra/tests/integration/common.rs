//! Seeded clustered data, brute force, recall, and the graph checks every build must pass.

use gpu_cagra::{BuildAlgo, CagraConfig, CagraIndex, CagraSearchParams};
use index_core::{
    FlatIndex, PointFilter, ScoredOffset, SearchParams, VectorIndex, VectorIndexWrite,
};
use quant::Metric;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A standard normal sample (Box–Muller).
pub fn gaussian(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.random::<f64>().max(1e-300);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// `n` vectors around `clusters` centers in `[-1, 1]^dim` (the same centers for every seed),
/// spread `sigma`, the clusters overlapping: data where a walk has real choices to make.
pub fn clustered(n: usize, dim: usize, clusters: usize, sigma: f32, seed: u64) -> Vec<f32> {
    let mut centers_rng = StdRng::seed_from_u64(7);
    let centers: Vec<f32> = (0..clusters * dim)
        .map(|_| centers_rng.random_range(-1.0..1.0))
        .collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let c = rng.random_range(0..clusters);
        for d in 0..dim {
            out.push(centers[c * dim + d] + sigma * gaussian(&mut rng));
        }
    }
    out
}

/// The test set: 20,000 clustered 32-dimensional points (a walk at `itopk_size` 64 measures
/// a few thousand of them, far from all) and 200 queries from the same distribution.
pub fn dataset() -> (Vec<f32>, Vec<f32>) {
    (
        clustered(20_000, 32, 100, 0.6, 1),
        clustered(200, 32, 100, 0.6, 2),
    )
}

/// The index most tests search: [`dataset`] built once per test binary with the default
/// configuration and NN-descent, Euclidean. Tests that delete build their own.
pub fn shared_index() -> &'static CagraIndex {
    static INDEX: std::sync::OnceLock<CagraIndex> = std::sync::OnceLock::new();
    INDEX.get_or_init(|| {
        let (data, _) = dataset();
        CagraIndex::build(32, Metric::Euclidean, config(BuildAlgo::NnDescent), &data).unwrap()
    })
}

/// Exact results of every query, from index-core's brute-force index.
pub fn exact(
    data: &[f32],
    queries: &[f32],
    dim: usize,
    metric: Metric,
    k: usize,
    filter: Option<&dyn PointFilter>,
) -> Vec<Vec<ScoredOffset>> {
    let flat = FlatIndex::new(dim, metric);
    for (i, v) in data.chunks_exact(dim).enumerate() {
        flat.insert(i as u32, v).unwrap();
    }
    queries
        .chunks_exact(dim)
        .map(|q| flat.search(q, &SearchParams::top(k), filter).unwrap())
        .collect()
}

/// Mean recall@k of `found` against `truth`.
pub fn recall(found: &[Vec<ScoredOffset>], truth: &[Vec<ScoredOffset>], k: usize) -> f64 {
    let mut hits = 0usize;
    let mut total = 0usize;
    for (f, t) in found.iter().zip(truth) {
        let t: Vec<u32> = t.iter().take(k).map(|s| s.offset).collect();
        hits += f.iter().take(k).filter(|s| t.contains(&s.offset)).count();
        total += t.len();
    }
    hits as f64 / total.max(1) as f64
}

/// Every query searched with `params`, `k` results.
pub fn search_all(
    index: &CagraIndex,
    queries: &[f32],
    k: usize,
    params: &CagraSearchParams,
    filter: Option<&dyn PointFilter>,
) -> Vec<Vec<ScoredOffset>> {
    queries
        .chunks_exact(index.dim())
        .map(|q| index.search_with(q, k, params, filter, None, None).unwrap())
        .collect()
}

/// The build configuration of the tests: the defaults (degree 64 pruned to 32), with the
/// given initial-graph algorithm.
pub fn config(algo: BuildAlgo) -> CagraConfig {
    CagraConfig {
        build_algo: algo,
        ..CagraConfig::default()
    }
}

/// Checks every node has exactly `graph_degree` distinct out-links, none to itself and none
/// past the nodes.
pub fn assert_fixed_degree(index: &CagraIndex) {
    let degree = index.graph_degree();
    assert_eq!(index.graph().len(), index.size() * degree);
    for (node, links) in index.graph().chunks_exact(degree).enumerate() {
        let mut sorted = links.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            degree,
            "node {node} has a repeated link: {links:?}"
        );
        assert!(
            !links.contains(&(node as u32)),
            "node {node} links to itself"
        );
        assert!(
            links.iter().all(|&l| (l as usize) < index.size()),
            "node {node}: {links:?}"
        );
    }
}

/// Checks each result's distance is the exact distance of its point (values, not only ids),
/// and results come closest first.
pub fn assert_exact_distances(index: &CagraIndex, queries: &[f32], found: &[Vec<ScoredOffset>]) {
    let dim = index.dim();
    for (q, hits) in queries.chunks_exact(dim).zip(found) {
        let mut q = q.to_vec();
        index.metric().prepare(&mut q);
        for h in hits {
            let v = index.stored_vector(h.offset).unwrap();
            let d = index.metric().distance(quant::kernels(), &q, v);
            assert!(
                (d - h.distance).abs() <= 1e-4 * (1.0 + d.abs()),
                "{h:?} against {d}"
            );
        }
        assert!(hits.windows(2).all(|w| w[0].distance <= w[1].distance));
    }
}
