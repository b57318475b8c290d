//! Shared pieces of vector-router's benchmarks and measurement examples: seeded synthetic
//! data, dataset loading with a synthetic fallback, recall arithmetic and timing.
//!
//! The criterion benches live in `benches/`, one file per concern, each group holding our
//! dispatched kernel, our portable fallback and the peer crate side by side. The examples in
//! `examples/` measure whole components on a real dataset (`glove-50-angular`, made by
//! `../shared/datasets/prepare.sh`) or, when it is absent, on generated data.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use quant::{kernels, Metric};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use std::path::Path;

/// Uniform random vectors in `[-1, 1)`, flat.
pub fn uniform(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n * dim).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// A standard normal sample (Box–Muller).
fn gaussian(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.random::<f64>().max(1e-300);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// `n` vectors around `clusters` centers in `[-1, 1]^dim`, spread `sigma`, flat.
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

/// A dataset for a measurement: base vectors, queries, exact top-`k` ids per query.
pub struct Workload {
    /// Where it came from, for the report.
    pub name: String,
    /// Dimension.
    pub dim: usize,
    /// Metric of the ground truth.
    pub metric: Metric,
    /// Base vectors, flat.
    pub base: Vec<f32>,
    /// Query vectors, flat.
    pub queries: Vec<f32>,
    /// Exact neighbour ids, `k` per query, closest first.
    pub truth: Vec<Vec<u32>>,
}

impl Workload {
    /// Number of base vectors.
    pub fn len(&self) -> usize {
        self.base.len() / self.dim
    }

    /// Whether there are no base vectors.
    pub fn is_empty(&self) -> bool {
        self.base.is_empty()
    }

    /// Number of queries.
    pub fn num_queries(&self) -> usize {
        self.queries.len() / self.dim
    }

    /// Query `i`.
    pub fn query(&self, i: usize) -> &[f32] {
        &self.queries[i * self.dim..(i + 1) * self.dim]
    }

    /// Loads a TexMex directory (`base.fvecs`, `query.fvecs`, `groundtruth.ivecs`), as made by
    /// `../shared/datasets/prepare.sh`, keeping at most `max_queries` queries. The ground
    /// truth there is by inner product on unit vectors, i.e. cosine.
    pub fn load(dir: &Path, max_queries: usize) -> Result<Workload, dataset::Error> {
        let base = dataset::read_f32(dir.join("base.fvecs"))?;
        let queries = dataset::read_f32_limit(dir.join("query.fvecs"), Some(max_queries))?;
        let truth = dataset::read_i32_limit(dir.join("groundtruth.ivecs"), Some(max_queries))?;
        Ok(Workload {
            name: dir.display().to_string(),
            dim: base.dim(),
            metric: Metric::Cosine,
            truth: truth
                .iter()
                .map(|row| row.iter().map(|&i| i as u32).collect())
                .collect(),
            base: base.into_vec(),
            queries: queries.into_vec(),
        })
    }

    /// A generated clustered workload with exact ground truth computed here, in parallel.
    pub fn synthetic(
        n: usize,
        num_queries: usize,
        dim: usize,
        metric: Metric,
        k: usize,
    ) -> Workload {
        let prepare = |mut v: Vec<f32>| {
            v.chunks_exact_mut(dim).for_each(|x| metric.prepare(x));
            v
        };
        let base = prepare(clustered(n, dim, 100, 0.4, 1));
        let queries = prepare(clustered(num_queries, dim, 100, 0.4, 2));
        let truth = exact_top_k(&base, &queries, dim, metric, k);
        Workload {
            name: format!("synthetic clustered {n} x {dim}"),
            dim,
            metric,
            base,
            queries,
            truth,
        }
    }
}

/// Exact top-`k` ids of every query by brute force, in parallel over queries.
pub fn exact_top_k(
    base: &[f32],
    queries: &[f32],
    dim: usize,
    metric: Metric,
    k: usize,
) -> Vec<Vec<u32>> {
    let kern = kernels();
    queries
        .par_chunks_exact(dim)
        .map(|q| {
            let mut top = index_core::TopK::new(k);
            for (i, v) in base.chunks_exact(dim).enumerate() {
                top.push(index_core::ScoredOffset::new(
                    i as u32,
                    metric.distance(kern, q, v),
                ));
            }
            top.into_sorted_vec()
                .into_iter()
                .map(|s| s.offset)
                .collect()
        })
        .collect()
}

/// recall@k: |found ∩ truth[..k]| / k.
pub fn recall_at(found: &[u32], truth: &[u32], k: usize) -> f64 {
    let truth = &truth[..k.min(truth.len())];
    found.iter().take(k).filter(|i| truth.contains(i)).count() as f64 / k as f64
}

/// QPS at `recall` read off a sweep of `(knob value, recall, QPS)` rows, linearly
/// interpolated between the two rows whose recalls bracket it (the way `docs/benchmarks.md`
/// compares sweeps whose knobs land on different recalls); `None` when no two rows do.
pub fn qps_at_recall(rows: &[(usize, f64, f64)], recall: f64) -> Option<f64> {
    let mut sorted: Vec<(f64, f64)> = rows.iter().map(|r| (r.1, r.2)).collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    sorted.windows(2).find_map(|pair| {
        let ((r0, q0), (r1, q1)) = (pair[0], pair[1]);
        if !(r0..=r1).contains(&recall) {
            return None;
        }
        if r1 == r0 {
            return Some(q0.max(q1));
        }
        Some(q0 + (q1 - q0) * (recall - r0) / (r1 - r0))
    })
}

/// The most QPS a sweep offers at a recall of at least `recall`, where the sweep's rows fall
/// into `runs` by the path that served them (an `ef` sweep through a planner may walk at some
/// `ef` and scan at others): [`qps_at_recall`] within a run whose rows bracket the level, or
/// any row at or above it if that is more; `None` when no row reaches it.
///
/// Interpolating between a walk's row and a scan's would give a figure no setting serves:
/// between them lies the `ef` where the planner switches, not a blend of the two.
pub fn qps_at_least_recall(runs: &[Vec<(usize, f64, f64)>], recall: f64) -> Option<f64> {
    runs.iter()
        .flat_map(|run| {
            let above = run.iter().filter(|r| r.1 >= recall).map(|r| r.2);
            qps_at_recall(run, recall).into_iter().chain(above)
        })
        .max_by(f64::total_cmp)
}

/// SplitMix64's output function: the seeded payloads and filters of the benchmarks, which
/// any language reproduces (`benches/filtered_peer.py` does).
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Resident set size of this process, from /proc (0 where it cannot be read).
pub fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<usize>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Prints the best QPS at recall@10 of 0.90, 0.95 and 0.99 from a sweep of
/// `(knob value, recall, QPS)` rows, naming the knob (`ef`, `nprobe`).
pub fn print_best_qps(knob: &str, rows: &[(usize, f64, f64)]) {
    print_best_qps_at(knob, 10, rows)
}

/// [`print_best_qps`] for rows of recall@`k`.
pub fn print_best_qps_at(knob: &str, k: usize, rows: &[(usize, f64, f64)]) {
    print!("\nbest QPS at recall@{k} >=");
    for level in [0.90, 0.95, 0.99] {
        match rows
            .iter()
            .filter(|r| r.1 >= level)
            .max_by(|a, b| a.2.total_cmp(&b.2))
        {
            Some((value, _, qps)) => print!(" {level:.2}: {qps:.0} ({knob} {value});"),
            None => print!(" {level:.2}: -;"),
        }
    }
    println!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qps_at_recall_interpolates_between_bracketing_rows() {
        // Rows in knob order, recall rising and QPS falling, as a sweep of `ef` gives them.
        let rows = [(32, 0.90, 4000.0), (64, 0.94, 3000.0), (128, 0.98, 1000.0)];
        assert_eq!(qps_at_recall(&rows, 0.94), Some(3000.0));
        let mid = qps_at_recall(&rows, 0.96).unwrap();
        assert!((mid - 2000.0).abs() < 1e-6, "{mid}");
        let low = qps_at_recall(&rows, 0.91).unwrap();
        assert!((low - 3750.0).abs() < 1e-6, "{low}");
        assert_eq!(qps_at_recall(&rows, 0.99), None);
        assert_eq!(qps_at_recall(&rows, 0.85), None);
        assert_eq!(qps_at_recall(&rows[..1], 0.90), None);
    }

    #[test]
    fn qps_at_least_recall_interpolates_within_a_path_only() {
        // A walk to ef 96, then an exact scan from ef 128 on (recall 1).
        let walk = vec![(64, 0.92, 3000.0), (96, 0.96, 2000.0)];
        let scan = vec![(128, 1.0, 2300.0), (256, 1.0, 2250.0)];
        let runs = [walk.clone(), scan.clone()];
        // The scan's row beats the walk's interpolation at 0.95 (2,250).
        assert_eq!(qps_at_least_recall(&runs, 0.95), Some(2300.0));
        // Below where the scan starts paying, the walk's interpolation wins.
        let low = qps_at_least_recall(&runs, 0.93).unwrap();
        assert!((low - 2750.0).abs() < 1e-6, "{low}");
        // The walk's last row and the scan's first are never blended: with the scan slower
        // than the walk's interpolation the walk's figure stands, not one between the paths.
        let slow_scan = [walk.clone(), vec![(128, 1.0, 1000.0)]];
        let mid = qps_at_least_recall(&slow_scan, 0.94).unwrap();
        assert!((mid - 2500.0).abs() < 1e-6, "{mid}");
        assert_eq!(qps_at_least_recall(&[walk, vec![]], 0.97), None);
        assert_eq!(qps_at_least_recall(&[scan], 0.95), Some(2300.0));
    }

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // The first outputs of Vigna's splitmix64 seeded with 0: state + golden gamma, mixed.
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(0x9E37_79B9_7F4A_7C15), 0x6E78_9E6A_A1B9_65F4);
    }
}
