//! Seeded clustered data and brute-force ground truth.

use index_core::{PointFilter, ScoredOffset, TopK};
use quant::{kernels, Metric};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub fn gaussian(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.random::<f64>().max(1e-300);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// `n` vectors of dimension `dim` like real embeddings: 100 clusters on a 12-dimensional
/// latent space, mapped to `dim` dimensions by a fixed random linear map, plus a little noise
/// in every dimension. (Gaussian clusters in all `dim` dimensions would have an intrinsic
/// dimension of `dim`, which no real embedding has, and would test the data, not the index.)
/// Flat, seeded by `seed`; the map and centers depend only on `dim`.
pub fn clustered(n: usize, dim: usize, sigma: f32, seed: u64) -> Vec<f32> {
    const LATENT: usize = 12;
    let mut fixed = StdRng::seed_from_u64(dim as u64);
    let map: Vec<f32> = (0..LATENT * dim)
        .map(|_| gaussian(&mut fixed) / (LATENT as f32).sqrt())
        .collect();
    let centers: Vec<f32> = (0..100 * LATENT)
        .map(|_| fixed.random_range(-1.0..1.0))
        .collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n * dim);
    let mut latent = [0f32; LATENT];
    for _ in 0..n {
        let c = rng.random_range(0..100);
        for (j, l) in latent.iter_mut().enumerate() {
            *l = centers[c * LATENT + j] + sigma * gaussian(&mut rng);
        }
        for d in 0..dim {
            let x: f32 = (0..LATENT).map(|j| latent[j] * map[j * dim + d]).sum();
            out.push(x + 0.02 * gaussian(&mut rng));
        }
    }
    out
}

/// Queries drawn like the data (another seed).
pub fn queries(n: usize, dim: usize, sigma: f32) -> Vec<f32> {
    clustered(n, dim, sigma, 999)
}

/// Exact top-`k` offsets by brute force among `live` offsets passing `filter`.
pub fn brute_force(
    data: &[f32],
    dim: usize,
    metric: Metric,
    query: &[f32],
    k: usize,
    live: impl Fn(u32) -> bool,
    filter: Option<&dyn PointFilter>,
) -> Vec<u32> {
    let mut q = query.to_vec();
    metric.prepare(&mut q);
    let mut top = TopK::new(k);
    let mut v = vec![0.0; dim];
    for (i, row) in data.chunks_exact(dim).enumerate() {
        let i = i as u32;
        if !live(i) || filter.is_some_and(|f| !f.allows(i)) {
            continue;
        }
        v.copy_from_slice(row);
        metric.prepare(&mut v);
        top.push(ScoredOffset::new(i, metric.distance(kernels(), &q, &v)));
    }
    top.into_sorted_vec()
        .into_iter()
        .map(|s| s.offset)
        .collect()
}

pub fn recall(found: &[ScoredOffset], truth: &[u32]) -> f64 {
    if truth.is_empty() {
        return 1.0;
    }
    found.iter().filter(|s| truth.contains(&s.offset)).count() as f64 / truth.len() as f64
}
