//! Seeded clustered data, brute force and recall.

use index_core::{FlatIndex, ScoredOffset, SearchParams, VectorIndex, VectorIndexWrite};
use index_ivf::{IvfConfig, ListEncoding};
use quant::Metric;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A standard normal sample (Box–Muller).
pub fn gaussian(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.random::<f64>().max(1e-300);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// `n` vectors around 64 centers in `[-1, 1]^dim` (the same centers for every seed), spread
/// `sigma`: the clustered data IVF is meant for.
pub fn clustered(n: usize, dim: usize, sigma: f32, seed: u64) -> Vec<f32> {
    let mut centers_rng = StdRng::seed_from_u64(7);
    let centers: Vec<f32> = (0..64 * dim)
        .map(|_| centers_rng.random_range(-1.0..1.0))
        .collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let c = rng.random_range(0..64);
        for d in 0..dim {
            out.push(centers[c * dim + d] + sigma * gaussian(&mut rng));
        }
    }
    out
}

/// Every encoding the crate has, for `dim`-dimensional data; the product codes spend half a
/// byte a dimension (8-bit codes of 2 dimensions, 4-bit codes of one, as FAISS's `PQ50x4fs`
/// on 50 dimensions).
pub fn encodings(dim: usize) -> [ListEncoding; 4] {
    [
        ListEncoding::Flat,
        ListEncoding::Sq8,
        ListEncoding::Pq { m: dim / 2 },
        ListEncoding::PqFastScan { m: dim },
    ]
}

/// A small configuration: `nlist` lists, the given encoding.
pub fn config(nlist: usize, encoding: ListEncoding) -> IvfConfig {
    IvfConfig {
        nlist: Some(nlist),
        encoding,
        ..IvfConfig::default()
    }
}

/// Exact results of every query, from index-core's brute-force index.
pub fn brute_force(
    data: &[f32],
    queries: &[f32],
    dim: usize,
    metric: Metric,
    k: usize,
) -> Vec<Vec<ScoredOffset>> {
    let flat = FlatIndex::new(dim, metric);
    for (i, v) in data.chunks_exact(dim).enumerate() {
        flat.insert(i as u32, v).unwrap();
    }
    queries
        .chunks_exact(dim)
        .map(|q| flat.search(q, &SearchParams::top(k), None).unwrap())
        .collect()
}

/// |found ∩ truth| / |truth|, by offset.
pub fn recall(found: &[ScoredOffset], truth: &[ScoredOffset]) -> f64 {
    let hits = found
        .iter()
        .filter(|f| truth.iter().any(|t| t.offset == f.offset))
        .count();
    hits as f64 / truth.len() as f64
}
