//! The workload: base vectors to upload, query vectors, and the exact answers to score against.
//!
//! A dataset comes from files (TexMex `.fvecs`/`.ivecs` or 2-D `.npy`, read by the `dataset`
//! crate) or is generated (Gaussian clusters, seeded). Point ids are the base row numbers
//! (`0..n`), so a ground-truth row of base row numbers is directly a row of point ids.
//!
//! When no ground truth is given, or the one given cannot be trusted (the base was cut to
//! fewer rows, or it is shorter than the query `limit`), the exact top-k is computed here by
//! brute force on all cores with the project's own distance kernels, on vectors prepared as
//! the server stores them (unit-normalised for cosine).

use std::path::{Path, PathBuf};

use dataset::Matrix;
use quant::Metric;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};

/// The distance a collection is created with, in Qdrant's spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
pub enum Distance {
    /// Cosine similarity (vectors normalised when stored).
    Cosine,
    /// Euclidean (L2) distance.
    Euclid,
    /// Dot product.
    Dot,
    /// Manhattan (L1) distance.
    Manhattan,
}

impl Distance {
    /// The name Qdrant's `vectors.distance` takes.
    pub fn qdrant_name(self) -> &'static str {
        match self {
            Distance::Cosine => "Cosine",
            Distance::Euclid => "Euclid",
            Distance::Dot => "Dot",
            Distance::Manhattan => "Manhattan",
        }
    }

    /// The project's metric with the same order.
    pub fn metric(self) -> Metric {
        match self {
            Distance::Cosine => Metric::Cosine,
            Distance::Euclid => Metric::Euclidean,
            Distance::Dot => Metric::InnerProduct,
            Distance::Manhattan => Metric::Manhattan,
        }
    }
}

/// Exact nearest base rows of each query, nearest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroundTruth {
    k: usize,
    ids: Vec<u64>,
}

impl GroundTruth {
    /// Wraps `rows × k` ids, row-major.
    pub fn new(k: usize, ids: Vec<u64>) -> Result<GroundTruth> {
        if k == 0 || !ids.len().is_multiple_of(k) {
            return Err(Error::DatasetShape {
                what: "ground-truth length (a multiple of k)",
                expected: k.max(1) * (ids.len() / k.max(1)),
                found: ids.len(),
            });
        }
        Ok(GroundTruth { k, ids })
    }

    /// Ids per query.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Number of queries covered.
    pub fn rows(&self) -> usize {
        self.ids.len() / self.k
    }

    /// The exact ids of query `query`, nearest first.
    pub fn row(&self, query: usize) -> &[u64] {
        &self.ids[query * self.k..(query + 1) * self.k]
    }
}

/// Where the ground truth came from (reported, so a reader knows what recall means).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TruthSource {
    /// Read from the dataset's ground-truth file.
    File,
    /// Computed here by brute force.
    Computed,
}

/// Everything a load test sends and checks.
#[derive(Debug, Clone)]
pub struct Workload {
    /// A name for reports.
    pub name: String,
    /// The vectors to upload; row `i` is point id `i`.
    pub base: Matrix<f32>,
    /// The query vectors.
    pub queries: Matrix<f32>,
    /// The exact top-k of each query.
    pub ground_truth: GroundTruth,
    /// Where the ground truth came from.
    pub truth_source: TruthSource,
    /// The distance the collection uses.
    pub distance: Distance,
}

/// Files of a dataset on disk.
#[derive(Debug, Clone, Default)]
pub struct DatasetFiles {
    /// Base vectors (`.fvecs` or `.npy`).
    pub base: PathBuf,
    /// Query vectors (`.fvecs` or `.npy`).
    pub queries: PathBuf,
    /// Exact neighbours (`.ivecs` or `.npy` of integers), if any.
    pub ground_truth: Option<PathBuf>,
}

impl DatasetFiles {
    /// The files of a dataset directory: `base`, `query` (or `queries`) and optionally
    /// `groundtruth` (or `ground_truth`, `neighbors`), each `.fvecs`/`.ivecs` or `.npy`.
    pub fn in_directory(dir: &Path) -> Result<DatasetFiles> {
        let find = |stems: &[&str], exts: &[&str]| {
            stems.iter().find_map(|stem| {
                exts.iter()
                    .map(|ext| dir.join(format!("{stem}.{ext}")))
                    .find(|p| p.is_file())
            })
        };
        let missing = |what: &str| {
            Error::argument(
                "dataset",
                format!("{}: no {what} file (.fvecs or .npy)", dir.display()),
            )
        };
        Ok(DatasetFiles {
            base: find(&["base"], &["fvecs", "npy"]).ok_or_else(|| missing("base"))?,
            queries: find(&["query", "queries"], &["fvecs", "npy"])
                .ok_or_else(|| missing("query"))?,
            ground_truth: find(
                &["groundtruth", "ground_truth", "neighbors"],
                &["ivecs", "npy"],
            ),
        })
    }
}

/// Row limits applied when reading.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Use only the first rows of the base (the ground-truth file is then recomputed).
    pub max_points: Option<usize>,
    /// Use only the first query rows.
    pub max_query_rows: Option<usize>,
}

/// Reads a dataset, checks its parts against each other and makes sure it has a ground truth
/// at least `k` deep (computing one when needed).
pub fn load_files(
    files: &DatasetFiles,
    name: String,
    distance: Distance,
    limits: Limits,
    k: usize,
) -> Result<Workload> {
    let base = dataset::read_f32_limit(&files.base, limits.max_points)?;
    let queries = dataset::read_f32_limit(&files.queries, limits.max_query_rows)?;
    if queries.dim() != base.dim() {
        return Err(Error::DatasetShape {
            what: "query dimension",
            expected: base.dim(),
            found: queries.dim(),
        });
    }
    // A ground truth for the full base names rows a cut base may not have, and its nearest
    // rows may be gone: it is only usable when the base was read whole.
    let base_was_cut = limits
        .max_points
        .is_some_and(|max| max <= base.rows() && base_is_longer(&files.base, max));
    let from_file = match &files.ground_truth {
        Some(path) if !base_was_cut => read_ground_truth(path, &queries, base.rows(), k)?,
        _ => None,
    };
    let (ground_truth, truth_source) = match from_file {
        Some(truth) => (truth, TruthSource::File),
        None => (
            exact_ground_truth(&base, &queries, distance.metric(), k),
            TruthSource::Computed,
        ),
    };
    Ok(Workload {
        name,
        base,
        queries,
        ground_truth,
        truth_source,
        distance,
    })
}

/// Whether the file has more than `rows` rows (so reading `rows` cut it).
fn base_is_longer(path: &Path, rows: usize) -> bool {
    dataset::RowReader::<f32>::open(path).map_or(true, |reader| reader.rows_hint() > rows)
}

/// Reads a ground-truth file; `None` when it is shallower than `k` (then it is recomputed).
fn read_ground_truth(
    path: &Path,
    queries: &Matrix<f32>,
    base_rows: usize,
    k: usize,
) -> Result<Option<GroundTruth>> {
    let truth = dataset::read_i32_limit(path, Some(queries.rows()))?;
    if truth.rows() < queries.rows() {
        return Err(Error::DatasetShape {
            what: "ground-truth rows",
            expected: queries.rows(),
            found: truth.rows(),
        });
    }
    if truth.dim() < k {
        return Ok(None);
    }
    let mut ids = Vec::with_capacity(queries.rows() * k);
    for (query, row) in truth.iter().enumerate() {
        for &id in &row[..k] {
            if id < 0 || id as usize >= base_rows {
                return Err(Error::GroundTruthOutOfRange {
                    query,
                    id: i64::from(id),
                    base_rows,
                });
            }
            ids.push(id as u64);
        }
    }
    GroundTruth::new(k, ids).map(Some)
}

/// The exact `k` nearest base rows of every query under `metric`, nearest first and ties by
/// row number, computed on all cores. Vectors are prepared as the server stores them.
pub fn exact_ground_truth(
    base: &Matrix<f32>,
    queries: &Matrix<f32>,
    metric: Metric,
    k: usize,
) -> GroundTruth {
    let k = k.min(base.rows()).max(1);
    let prepare = |m: &Matrix<f32>| -> Vec<f32> {
        let mut data = m.as_slice().to_vec();
        if m.dim() > 0 {
            data.chunks_exact_mut(m.dim())
                .for_each(|row| metric.prepare(row));
        }
        data
    };
    let dim = base.dim();
    let prepared_base = prepare(base);
    let prepared_queries = prepare(queries);
    let kernels = quant::kernels();
    let rows: Vec<Vec<u64>> = prepared_queries
        .par_chunks_exact(dim.max(1))
        .map(|query| {
            // A bounded max-heap by (distance, row): the root is the worst kept candidate.
            let mut heap = std::collections::BinaryHeap::with_capacity(k + 1);
            for (row, vector) in prepared_base.chunks_exact(dim.max(1)).enumerate() {
                let candidate = Candidate(metric.distance(kernels, query, vector), row as u64);
                if heap.len() < k {
                    heap.push(candidate);
                } else if heap.peek().is_some_and(|worst| candidate < *worst) {
                    heap.pop();
                    heap.push(candidate);
                }
            }
            heap.into_sorted_vec().into_iter().map(|c| c.1).collect()
        })
        .collect();
    GroundTruth {
        k,
        ids: rows.into_iter().flatten().collect(),
    }
}

/// A (distance, row) pair ordered by distance, then row; NaN sorts last.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Candidate(f32, u64);

impl Eq for Candidate {}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let by_distance = match (self.0.is_nan(), other.0.is_nan()) {
            (false, false) => self.0.total_cmp(&other.0),
            (a, b) => a.cmp(&b),
        };
        by_distance.then(self.1.cmp(&other.1))
    }
}

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeneratedSpec {
    /// Base vectors.
    pub points: usize,
    /// Query vectors (drawn from the same clusters, not copies of base rows).
    pub queries: usize,
    /// Dimension.
    pub dim: usize,
    /// Gaussian clusters; centres uniform in `[-1, 1]^dim`.
    pub clusters: usize,
    /// Standard deviation of each coordinate around its centre.
    pub spread: f32,
    /// Seed of the generator; the same spec and seed give the same vectors.
    pub seed: u64,
}

impl GeneratedSpec {
    /// Checks the sizes.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("generate", self.points),
            ("generate-queries", self.queries),
            ("dim", self.dim),
            ("clusters", self.clusters),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(Error::argument(name, "must be at least 1"));
            }
        }
        if self.dim > quant::MAX_DIMENSION {
            return Err(Error::argument(
                "dim",
                format!("at most {} dimensions", quant::MAX_DIMENSION),
            ));
        }
        if !(self.spread.is_finite() && self.spread >= 0.0) {
            return Err(Error::argument("spread", "must be a finite number >= 0"));
        }
        Ok(())
    }
}

/// Generates clustered base and query vectors (see [`GeneratedSpec`]).
pub fn generate(spec: &GeneratedSpec) -> Result<(Matrix<f32>, Matrix<f32>)> {
    spec.validate()?;
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let centres: Vec<f32> = (0..spec.clusters * spec.dim)
        .map(|_| rng.random_range(-1.0f32..1.0))
        .collect();
    let mut draw = |rows: usize| -> Vec<f32> {
        let mut data = Vec::with_capacity(rows * spec.dim);
        for _ in 0..rows {
            let c = rng.random_range(0..spec.clusters);
            let centre = &centres[c * spec.dim..(c + 1) * spec.dim];
            data.extend(centre.iter().map(|&x| x + spec.spread * gaussian(&mut rng)));
        }
        data
    };
    let base = draw(spec.points);
    let queries = draw(spec.queries);
    let shape = |rows, data| {
        Matrix::from_vec(rows, spec.dim, data)
            .map_err(|e| Error::argument("generate", e.to_string()))
    };
    Ok((shape(spec.points, base)?, shape(spec.queries, queries)?))
}

/// A standard normal draw (Box–Muller; `rand` without `rand_distr` has no normal).
fn gaussian(rng: &mut StdRng) -> f32 {
    // 1 - u in (0, 1]: the logarithm never sees 0.
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// A generated workload with its exact ground truth.
pub fn generated_workload(spec: &GeneratedSpec, distance: Distance, k: usize) -> Result<Workload> {
    let (base, queries) = generate(spec)?;
    let ground_truth = exact_ground_truth(&base, &queries, distance.metric(), k);
    Ok(Workload {
        name: format!(
            "generated-{}x{}-c{}-s{}",
            spec.points, spec.dim, spec.clusters, spec.seed
        ),
        base,
        queries,
        ground_truth,
        truth_source: TruthSource::Computed,
        distance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(rows: &[&[f32]]) -> Matrix<f32> {
        let dim = rows[0].len();
        Matrix::from_vec(rows.len(), dim, rows.concat()).unwrap()
    }

    #[test]
    fn brute_force_orders_by_distance_then_row() {
        let base = matrix(&[&[0.0, 0.0], &[3.0, 0.0], &[1.0, 0.0], &[-1.0, 0.0]]);
        let queries = matrix(&[&[0.0, 0.0], &[2.9, 0.0]]);
        let gt = exact_ground_truth(&base, &queries, Metric::Euclidean, 3);
        // Rows 2 and 3 are both at distance 1 from the first query: the lower row wins the tie.
        assert_eq!(gt.row(0), [0, 2, 3]);
        assert_eq!(gt.row(1), [1, 2, 0]);
    }

    #[test]
    fn cosine_ignores_length() {
        let base = matrix(&[&[10.0, 0.0], &[0.1, 0.1], &[0.0, 5.0]]);
        let queries = matrix(&[&[1.0, 1.0]]);
        let gt = exact_ground_truth(&base, &queries, Metric::Cosine, 1);
        assert_eq!(gt.row(0), [1]);
        // By dot product the long vectors win instead.
        let gt = exact_ground_truth(&base, &queries, Metric::InnerProduct, 1);
        assert_eq!(gt.row(0), [0]);
    }

    #[test]
    fn generation_is_seeded() {
        let spec = GeneratedSpec {
            points: 50,
            queries: 5,
            dim: 4,
            clusters: 3,
            spread: 0.1,
            seed: 9,
        };
        let (a, qa) = generate(&spec).unwrap();
        let (b, qb) = generate(&spec).unwrap();
        assert_eq!((a.as_slice(), qa.as_slice()), (b.as_slice(), qb.as_slice()));
        let (c, _) = generate(&GeneratedSpec { seed: 10, ..spec }).unwrap();
        assert_ne!(a.as_slice(), c.as_slice());
        assert!(generate(&GeneratedSpec { dim: 0, ..spec }).is_err());
    }
}
