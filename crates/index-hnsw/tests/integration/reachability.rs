//! Every point finds itself, at rank 1 with the default `ef`, after a concurrent build: on the
//! lattice data of the crate example (where a concurrent build once left points no walk found),
//! on clustered data like real embeddings and on clustered data with outliers (the kind of
//! point glove-50 has that the link heuristic prunes from every neighbour's list), over several
//! seeds, thread counts and metrics.

use crate::common::{clustered, gaussian};
use index_core::{SearchParams, VectorIndex};
use index_hnsw::{HnswConfig, HnswIndex};
use quant::Metric;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `n` vectors whose values are `((i · step) mod modulus) / modulus`: distinct values while
/// `n · dim < modulus` (`step` and `modulus` coprime), many equal distances, like a lattice.
fn lattice(n: usize, dim: usize, step: usize, modulus: usize) -> Vec<f32> {
    (0..n * dim)
        .map(|i| ((i * step) % modulus) as f32 / modulus as f32)
        .collect()
}

/// Clustered data in which one point in fifty is an outlier: a cluster point pushed far off
/// in a random direction, alone in its neighbourhood.
fn with_outliers(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut data = clustered(n, dim, 0.2, seed);
    let mut rng = StdRng::seed_from_u64(seed ^ 0xa5a5);
    for v in data.chunks_exact_mut(dim) {
        if rng.random_range(0..50) == 0 {
            v.iter_mut().for_each(|x| *x += 1.5 * gaussian(&mut rng));
        }
    }
    data
}

/// The offsets whose own vector does not find them at rank 1 with the default `ef`.
fn not_found(index: &HnswIndex, data: &[f32], dim: usize) -> Vec<usize> {
    (0..data.len() / dim)
        .filter(|&i| {
            let hits = index
                .search(&data[i * dim..(i + 1) * dim], &SearchParams::top(1), None)
                .unwrap();
            hits.first().is_none_or(|h| h.offset as usize != i)
        })
        .collect()
}

fn build_with(threads: usize, dim: usize, metric: Metric, seed: u64, data: &[f32]) -> HnswIndex {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let config = HnswConfig {
        seed,
        ..HnswConfig::default()
    };
    pool.install(|| HnswIndex::build(dim, metric, config, data).unwrap())
}

fn assert_all_found(what: &str, index: &HnswIndex, data: &[f32], dim: usize) {
    let missing = not_found(index, data, dim);
    assert!(
        missing.is_empty(),
        "{what}: {} of {} points do not find themselves, e.g. {:?}",
        missing.len(),
        data.len() / dim,
        &missing[..missing.len().min(5)]
    );
}

#[test]
fn every_point_finds_itself_on_the_crate_example_lattice() {
    // The crate example's 500 points, built again and again: the race this guards against
    // (a concurrent insert descending onto a node whose lower lists were not yet written)
    // depends on the schedule, so many builds give it many chances.
    let data = lattice(500, 4, 7919, 2003);
    for threads in [2, 3, 4, 8] {
        for seed in 0..12u64 {
            let index = build_with(threads, 4, Metric::Euclidean, seed, &data);
            assert_all_found(
                &format!("lattice, {threads} threads, seed {seed}"),
                &index,
                &data,
                4,
            );
        }
    }
}

#[test]
fn every_point_finds_itself_on_clustered_data() {
    let (n, dim) = (20_000, 24);
    let data = clustered(n, dim, 0.3, 41);
    for (threads, seed, metric) in [
        (2, 3, Metric::Euclidean),
        (4, 5, Metric::Cosine),
        (8, 11, Metric::Euclidean),
        (8, 13, Metric::Cosine),
    ] {
        let index = build_with(threads, dim, metric, seed, &data);
        assert_all_found(
            &format!("clustered {metric:?}, {threads} threads, seed {seed}"),
            &index,
            &data,
            dim,
        );
    }
}

#[test]
fn every_point_finds_itself_on_clustered_data_with_outliers() {
    let (n, dim) = (20_000, 32);
    for (threads, seed, metric) in [
        (1, 17, Metric::Cosine),
        (2, 19, Metric::Euclidean),
        (4, 23, Metric::Cosine),
    ] {
        let data = with_outliers(n, dim, seed);
        let index = build_with(threads, dim, metric, seed, &data);
        assert_all_found(
            &format!("outliers {metric:?}, {threads} threads, seed {seed}"),
            &index,
            &data,
            dim,
        );
    }
}
