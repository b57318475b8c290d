//! Seeded synthetic data and brute-force helpers shared by the tests.

use quant::{kernels, Metric};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A standard normal sample (Box–Muller), so the tests need no distribution crate.
pub fn gaussian(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.random::<f64>().max(1e-300);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// `n` vectors of dimension `dim` around `clusters` centers drawn in `[-1, 1]^dim`, with
/// per-dimension spread `sigma`; a flat buffer.
pub fn clustered(n: usize, dim: usize, clusters: usize, sigma: f32, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let centers: Vec<f32> = (0..clusters * dim)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let mut out = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let c = rng.random_range(0..clusters);
        for d in 0..dim {
            out.push(centers[c * dim + d] + sigma * gaussian(&mut rng));
        }
    }
    out
}

/// Prepares every vector of a flat buffer for the metric (normalises for cosine).
pub fn prepared(mut data: Vec<f32>, dim: usize, metric: Metric) -> Vec<f32> {
    data.chunks_exact_mut(dim).for_each(|v| metric.prepare(v));
    data
}

/// Exact top-`k` ids of `query` in `data`, by internal distance then id.
pub fn exact_top_k(
    data: &[f32],
    dim: usize,
    query: &[f32],
    metric: Metric,
    k: usize,
) -> Vec<usize> {
    let kern = kernels();
    let mut scored: Vec<(f32, usize)> = data
        .chunks_exact(dim)
        .enumerate()
        .map(|(i, v)| (metric.distance(kern, query, v), i))
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    scored.truncate(k);
    scored.into_iter().map(|(_, i)| i).collect()
}

/// Ranks all ids by `approx`, keeps `candidates`, rescores them exactly, returns the top `k`.
pub fn rerank_top_k(
    data: &[f32],
    dim: usize,
    query: &[f32],
    metric: Metric,
    k: usize,
    candidates: usize,
    approx: impl Fn(usize) -> f32,
) -> Vec<usize> {
    let n = data.len() / dim;
    let mut ranked: Vec<(f32, usize)> = (0..n).map(|i| (approx(i), i)).collect();
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    ranked.truncate(candidates);
    let kern = kernels();
    let mut exact: Vec<(f32, usize)> = ranked
        .iter()
        .map(|&(_, i)| {
            (
                metric.distance(kern, query, &data[i * dim..(i + 1) * dim]),
                i,
            )
        })
        .collect();
    exact.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    exact.truncate(k);
    exact.into_iter().map(|(_, i)| i).collect()
}

/// |found ∩ truth| / |truth|.
pub fn recall(found: &[usize], truth: &[usize]) -> f64 {
    let hits = found.iter().filter(|i| truth.contains(i)).count();
    hits as f64 / truth.len() as f64
}
