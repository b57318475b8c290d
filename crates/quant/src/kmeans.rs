//! The one k-means of the project: k-means++ seeding, Lloyd iterations, parallel over points.
//!
//! Product quantization trains its sub-space codebooks with it, and the IVF index its coarse
//! quantizer. Training runs on a sample (at most `max_points_per_centroid · k` points, 256 by
//! default, as FAISS does), in the calling thread's rayon pool, so a caller bounds the threads
//! with `ThreadPool::install`.
//!
//! The assignment step is the cost of k-means (`n · k · dim` multiply-adds an iteration). For
//! wide vectors and many centroids it runs blocked, as a matrix product would:
//! [`CentroidPanels`] stores the centroids 16 at a time, transposed, and
//! [`crate::Kernels::min_panel16`] computes a block of rows against a panel with the identity
//! `‖x − c‖² = ‖x‖² − 2 x·c + ‖c‖²`, keeping the running minimum in registers. Narrow
//! product-quantization sub-spaces keep an exact unrolled loop.

use crate::error::check_vectors;
use crate::kernels::{kernels, Kernels, PANEL_WIDTH};
use crate::{Error, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

/// How the first centroids are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KMeansInit {
    /// k-means++ (Arthur and Vassilvitskii, 2007): each next seed drawn with probability
    /// proportional to its squared distance from the seeds so far.
    PlusPlus,
    /// `k` distinct training points drawn uniformly.
    Random,
}

/// Training parameters.
#[derive(Debug, Clone)]
pub struct KMeansConfig {
    /// Number of centroids, `k`. No default: the caller decides.
    pub k: usize,
    /// Maximum Lloyd iterations. Default 25.
    pub max_iterations: usize,
    /// Stop when the relative decrease of the inertia falls below this. Default `1e-4`.
    pub tolerance: f64,
    /// The training sample holds at most `k ·` this many points. Default 256.
    pub max_points_per_centroid: usize,
    /// k-means++ draws its seeds from at most `k ·` this many sample points. Default 32.
    pub seeding_points_per_centroid: usize,
    /// Seeding method. Default [`KMeansInit::PlusPlus`].
    pub init: KMeansInit,
    /// Normalise centroids to unit length after each update (spherical k-means, for inner
    /// product and cosine data). Default `false`.
    pub spherical: bool,
    /// Seed of every random choice; the same seed and data give the same centroids.
    pub seed: u64,
}

impl KMeansConfig {
    /// The defaults, for `k` centroids.
    pub fn new(k: usize) -> KMeansConfig {
        KMeansConfig {
            k,
            max_iterations: 25,
            tolerance: 1e-4,
            max_points_per_centroid: 256,
            seeding_points_per_centroid: 32,
            init: KMeansInit::PlusPlus,
            spherical: false,
            seed: 0x5eed,
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        let invalid = |name, reason: &str| {
            Err(Error::InvalidParameter {
                name,
                reason: reason.into(),
            })
        };
        if self.k == 0 {
            return invalid("k", "must be at least 1");
        }
        if self.max_iterations == 0 {
            return invalid("max_iterations", "must be at least 1");
        }
        if self.tolerance.is_nan() || self.tolerance < 0.0 {
            return invalid("tolerance", "must be a non-negative number");
        }
        if self.max_points_per_centroid == 0 || self.seeding_points_per_centroid == 0 {
            return invalid("max_points_per_centroid", "must be at least 1");
        }
        Ok(())
    }
}

/// A trained set of centroids.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeans {
    dim: usize,
    centroids: Vec<f32>,
    inertia: f64,
    iterations: usize,
}

impl KMeans {
    /// Trains `config.k` centroids on `data`, a flat buffer of `dim`-dimensional vectors.
    ///
    /// Errors: an invalid dimension or ragged buffer, NaN or infinity in the data, an empty
    /// training set, or more centroids than points.
    pub fn train(data: &[f32], dim: usize, config: &KMeansConfig) -> Result<KMeans> {
        config.validate()?;
        let n = check_vectors(data, dim)?;
        if n == 0 {
            return Err(Error::EmptyTrainingSet);
        }
        if config.k > n {
            return Err(Error::TooFewPoints { k: config.k, n });
        }
        let k = config.k;
        let kern = kernels();
        let mut rng = StdRng::seed_from_u64(config.seed);

        let sample = sample_rows(
            data,
            dim,
            n,
            k.saturating_mul(config.max_points_per_centroid),
            &mut rng,
        );
        let ns = sample.len() / dim;

        let mut centroids = match config.init {
            KMeansInit::Random => {
                let picks = rand::seq::index::sample(&mut rng, ns, k);
                let mut c = Vec::with_capacity(k * dim);
                for i in picks.iter() {
                    c.extend_from_slice(&sample[i * dim..(i + 1) * dim]);
                }
                c
            }
            KMeansInit::PlusPlus => {
                let pool = sample_rows(
                    &sample,
                    dim,
                    ns,
                    k.saturating_mul(config.seeding_points_per_centroid),
                    &mut rng,
                );
                plus_plus(kern, &pool, dim, k, &mut rng)
            }
        };
        if config.spherical {
            centroids
                .chunks_exact_mut(dim)
                .for_each(crate::metric::normalize);
        }

        let mut assignment = vec![0u32; ns];
        let mut prev_inertia = f64::INFINITY;
        let mut inertia = f64::INFINITY;
        let mut iterations = 0;
        for _ in 0..config.max_iterations {
            iterations += 1;
            inertia = assign_into(kern, &centroids, dim, &sample, &mut assignment);
            let counts = update_centroids(&sample, dim, k, &assignment, &mut centroids);
            repair_empty(&sample, dim, &assignment, &counts, &mut centroids, &mut rng);
            if config.spherical {
                centroids
                    .chunks_exact_mut(dim)
                    .for_each(crate::metric::normalize);
            }
            if prev_inertia.is_finite() && prev_inertia - inertia <= config.tolerance * prev_inertia
            {
                break;
            }
            prev_inertia = inertia;
        }
        Ok(KMeans {
            dim,
            centroids,
            inertia,
            iterations,
        })
    }

    /// Wraps existing centroids (e.g. loaded from elsewhere); checks them like training data.
    pub fn from_centroids(centroids: Vec<f32>, dim: usize) -> Result<KMeans> {
        let k = check_vectors(&centroids, dim)?;
        if k == 0 {
            return Err(Error::EmptyTrainingSet);
        }
        Ok(KMeans {
            dim,
            centroids,
            inertia: f64::NAN,
            iterations: 0,
        })
    }

    /// Number of centroids.
    pub fn k(&self) -> usize {
        self.centroids.len() / self.dim
    }

    /// Dimension of the centroids.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// All centroids, row after row.
    pub fn centroids(&self) -> &[f32] {
        &self.centroids
    }

    /// Centroid `i`.
    pub fn centroid(&self, i: usize) -> &[f32] {
        &self.centroids[i * self.dim..(i + 1) * self.dim]
    }

    /// Sum of squared distances of the training sample to its centroids after the last
    /// assignment (NaN for centroids not trained here).
    pub fn inertia(&self) -> f64 {
        self.inertia
    }

    /// Lloyd iterations run.
    pub fn iterations(&self) -> usize {
        self.iterations
    }

    /// The nearest centroid of `v` and its squared L2 distance.
    pub fn nearest(&self, v: &[f32]) -> Result<(usize, f32)> {
        if v.len() != self.dim {
            return Err(Error::DimensionMismatch {
                expected: self.dim,
                found: v.len(),
            });
        }
        Ok(nearest(kernels(), &self.centroids, self.dim, v))
    }

    /// The nearest centroid of every vector of `data`, in parallel.
    pub fn assign(&self, data: &[f32]) -> Result<Vec<u32>> {
        if !data.len().is_multiple_of(self.dim) {
            return Err(Error::RaggedBuffer {
                len: data.len(),
                dim: self.dim,
            });
        }
        let mut out = vec![0u32; data.len() / self.dim];
        assign_into(kernels(), &self.centroids, self.dim, data, &mut out);
        Ok(out)
    }

    fn encode_payload(&self, enc: &mut crate::codec::Encoder) {
        enc.u64(self.dim as u64);
        enc.u64(self.iterations as u64);
        enc.u64(self.inertia.to_bits());
        enc.f32s(&self.centroids);
    }

    fn decode_payload(dec: &mut crate::codec::Decoder) -> Result<KMeans> {
        let dim = dec.usize()?;
        let iterations = dec.usize()?;
        let inertia = f64::from_bits(dec.u64()?);
        let centroids = dec.f32s()?;
        let mut km =
            KMeans::from_centroids(centroids, dim).map_err(|e| dec.malformed(&e.to_string()))?;
        km.iterations = iterations;
        km.inertia = inertia;
        Ok(km)
    }
}

crate::codec::impl_persist!(KMeans, crate::codec::Kind::KMeans);

/// Up to `max` distinct rows of `data` drawn uniformly (all rows, in order, when `n <= max`).
fn sample_rows(data: &[f32], dim: usize, n: usize, max: usize, rng: &mut StdRng) -> Vec<f32> {
    if n <= max {
        return data[..n * dim].to_vec();
    }
    let mut picks = rand::seq::index::sample(rng, n, max).into_vec();
    // Sorted, so the copy walks memory forwards.
    picks.sort_unstable();
    let mut out = Vec::with_capacity(max * dim);
    for i in picks {
        out.extend_from_slice(&data[i * dim..(i + 1) * dim]);
    }
    out
}

/// k-means++ seeding over `pool`.
fn plus_plus(kern: &Kernels, pool: &[f32], dim: usize, k: usize, rng: &mut StdRng) -> Vec<f32> {
    let n = pool.len() / dim;
    let mut centroids = Vec::with_capacity(k * dim);
    let first = rng.random_range(0..n);
    centroids.extend_from_slice(&pool[first * dim..(first + 1) * dim]);
    let mut best: Vec<f32> = vec![f32::INFINITY; n];
    for c in 1..k {
        let last = &centroids[(c - 1) * dim..c * dim];
        best.par_iter_mut()
            .zip(pool.par_chunks_exact(dim))
            .for_each(|(b, x)| {
                let d = kern.l2sq_f32(x, last);
                if d < *b {
                    *b = d;
                }
            });
        let total: f64 = best.iter().map(|&d| d as f64).sum();
        let pick = if total > 0.0 && total.is_finite() {
            let mut target = rng.random::<f64>() * total;
            let mut pick = n - 1;
            for (i, &d) in best.iter().enumerate() {
                target -= d as f64;
                if target <= 0.0 && d > 0.0 {
                    pick = i;
                    break;
                }
            }
            pick
        } else {
            // Every point already coincides with a seed (duplicates): any point will do.
            rng.random_range(0..n)
        };
        centroids.extend_from_slice(&pool[pick * dim..(pick + 1) * dim]);
    }
    centroids
}

/// The nearest of the centroids (rows of `dim` values) to `v`, and its squared L2 distance.
///
/// Product-quantization sub-spaces are narrow (often 2 to 8 dimensions), where a kernel call
/// per centroid costs more than the arithmetic; those widths get a loop the compiler unrolls.
#[inline]
pub(crate) fn nearest(kern: &Kernels, centroids: &[f32], dim: usize, v: &[f32]) -> (usize, f32) {
    match dim {
        1 => nearest_fixed::<1>(centroids, v),
        2 => nearest_fixed::<2>(centroids, v),
        3 => nearest_fixed::<3>(centroids, v),
        4 => nearest_fixed::<4>(centroids, v),
        5 => nearest_fixed::<5>(centroids, v),
        6 => nearest_fixed::<6>(centroids, v),
        7 => nearest_fixed::<7>(centroids, v),
        8 => nearest_fixed::<8>(centroids, v),
        _ => {
            let mut best = (0usize, f32::INFINITY);
            for (j, c) in centroids.chunks_exact(dim).enumerate() {
                let d = kern.l2sq_f32(v, c);
                if d < best.1 {
                    best = (j, d);
                }
            }
            best
        }
    }
}

#[inline]
fn nearest_fixed<const D: usize>(centroids: &[f32], v: &[f32]) -> (usize, f32) {
    let v: &[f32; D] = v.try_into().expect("caller passes a D-dimensional vector");
    let mut best = (0usize, f32::INFINITY);
    for (j, c) in centroids.chunks_exact(D).enumerate() {
        let mut d = 0.0;
        for i in 0..D {
            let t = v[i] - c[i];
            d += t * t;
        }
        if d < best.1 {
            best = (j, d);
        }
    }
    best
}

/// Assigns every row of `data` to its nearest centroid; returns the inertia.
///
/// Wide vectors against many centroids go through [`CentroidPanels`] (blocked inner products
/// and the norms identity), which is what makes a coarse quantizer of a thousand lists on
/// hundreds of thousands of points affordable; narrow product-quantization sub-spaces keep
/// the unrolled exact loop of [`nearest`].
fn assign_into(
    kern: &Kernels,
    centroids: &[f32],
    dim: usize,
    data: &[f32],
    out: &mut [u32],
) -> f64 {
    let k = centroids.len() / dim;
    if dim > 8 && k >= PANEL_WIDTH {
        let panels = CentroidPanels::new(centroids, dim);
        return out
            .par_chunks_mut(PANEL_ROWS)
            .zip(data.par_chunks(PANEL_ROWS * dim))
            .map(|(slots, rows)| {
                let mut dist = [0f32; PANEL_ROWS];
                panels.nearest(kern, rows, PanelMeasure::SquaredL2, slots, &mut dist);
                dist[..slots.len()].iter().map(|&d| d as f64).sum::<f64>()
            })
            .sum();
    }
    out.par_iter_mut()
        .zip(data.par_chunks_exact(dim))
        .with_min_len(256)
        .map(|(slot, v)| {
            let (j, d) = nearest(kern, centroids, dim, v);
            *slot = j as u32;
            d as f64
        })
        .sum()
}

/// Rows measured per call of [`CentroidPanels::nearest`]: a block small enough to stay in the
/// first-level cache while every panel of centroids streams past it.
pub const PANEL_ROWS: usize = 32;

/// What [`CentroidPanels`] minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanelMeasure {
    /// Squared Euclidean distance, `‖x‖² − 2 x·c + ‖c‖²`.
    SquaredL2,
    /// Negated inner product, `−x·c` (the project's distance for inner product and cosine).
    NegativeDot,
}

/// Centroids laid out for blocked distance computation: groups of 16 stored transposed
/// (see [`Kernels::dot_panel16`]) with their squared norms, so that the distances of a block of
/// rows to 16 centroids cost one pass of multiply-adds, as in a matrix product.
///
/// Squared L2 uses `‖x − c‖² = ‖x‖² − 2 x·c + ‖c‖²`: one inner product per pair instead of
/// a difference and a square, at the price of rounding when `x` and `c` nearly coincide
/// (distances are clamped at zero).
#[derive(Debug, Clone)]
pub struct CentroidPanels {
    dim: usize,
    k: usize,
    /// `ceil(k / 16)` panels of `16 · dim` values.
    panels: Vec<f32>,
    /// `‖c‖²` per centroid, `+∞` for the padding columns of the last panel.
    norms: Vec<f32>,
    /// 0 per centroid, `+∞` for the padding columns.
    padding: Vec<f32>,
}

impl CentroidPanels {
    /// Lays out `centroids` (rows of `dim` values). `dim` must be non-zero and divide the
    /// buffer (the caller has validated the centroids).
    pub fn new(centroids: &[f32], dim: usize) -> CentroidPanels {
        assert!(
            dim > 0 && centroids.len().is_multiple_of(dim),
            "ragged centroids"
        );
        let k = centroids.len() / dim;
        let groups = k.div_ceil(PANEL_WIDTH);
        let mut panels = vec![0f32; groups * PANEL_WIDTH * dim];
        let mut norms = vec![f32::INFINITY; groups * PANEL_WIDTH];
        let mut padding = vec![f32::INFINITY; groups * PANEL_WIDTH];
        let kern = kernels();
        for (c, v) in centroids.chunks_exact(dim).enumerate() {
            let (g, col) = (c / PANEL_WIDTH, c % PANEL_WIDTH);
            let panel = &mut panels[g * PANEL_WIDTH * dim..(g + 1) * PANEL_WIDTH * dim];
            for (j, &x) in v.iter().enumerate() {
                panel[j * PANEL_WIDTH + col] = x;
            }
            norms[c] = kern.dot_f32(v, v);
            padding[c] = 0.0;
        }
        CentroidPanels {
            dim,
            k,
            panels,
            norms,
            padding,
        }
    }

    /// Number of centroids.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Dimension of the centroids.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        (self.panels.capacity() + self.norms.capacity() + self.padding.capacity()) * 4
    }

    /// The distance of `row` to every centroid, by `measure`, into `out` (`k` values).
    pub fn distances(&self, kern: &Kernels, row: &[f32], measure: PanelMeasure, out: &mut [f32]) {
        assert!(
            row.len() == self.dim && out.len() == self.k,
            "row or output of the wrong size"
        );
        let row_norm = match measure {
            PanelMeasure::SquaredL2 => kern.dot_f32(row, row),
            PanelMeasure::NegativeDot => 0.0,
        };
        let mut dots = [0f32; PANEL_WIDTH];
        for (g, panel) in self.panels.chunks_exact(PANEL_WIDTH * self.dim).enumerate() {
            kern.dot_panel16(row, panel, &mut dots);
            let base = g * PANEL_WIDTH;
            let cols = (self.k - base).min(PANEL_WIDTH);
            for (c, o) in out[base..base + cols].iter_mut().enumerate() {
                *o = match measure {
                    PanelMeasure::SquaredL2 => {
                        (row_norm - 2.0 * dots[c] + self.norms[base + c]).max(0.0)
                    }
                    PanelMeasure::NegativeDot => -dots[c],
                };
            }
        }
    }

    /// The nearest centroid of each of at most [`PANEL_ROWS`] rows (flat, `dim` values each),
    /// by `measure`: its index into `index` and its distance into `distance`.
    pub fn nearest(
        &self,
        kern: &Kernels,
        rows: &[f32],
        measure: PanelMeasure,
        index: &mut [u32],
        distance: &mut [f32],
    ) {
        let n = rows.len() / self.dim;
        assert!(
            n <= PANEL_ROWS
                && rows.len().is_multiple_of(self.dim)
                && index.len() >= n
                && distance.len() >= n,
            "at most PANEL_ROWS whole rows, with room for their answers"
        );
        // Per row, the best distance and panel seen so far in each of the 16 columns, kept
        // by the fused kernel; the 16 columns are reduced once at the end.
        let mut best_d = [[f32::INFINITY; PANEL_WIDTH]; PANEL_ROWS];
        let mut best_g = [[0u32; PANEL_WIDTH]; PANEL_ROWS];
        let (bias, scale) = match measure {
            PanelMeasure::SquaredL2 => (&self.norms, -2.0),
            PanelMeasure::NegativeDot => (&self.padding, -1.0),
        };
        for (g, panel) in self.panels.chunks_exact(PANEL_WIDTH * self.dim).enumerate() {
            kern.min_panel16(
                rows,
                panel,
                scale,
                &bias[g * PANEL_WIDTH..(g + 1) * PANEL_WIDTH],
                g as u32,
                best_d[..n].as_flattened_mut(),
                best_g[..n].as_flattened_mut(),
            );
        }
        let mut best = [(f32::INFINITY, 0u32); PANEL_ROWS];
        for (b, (bd, bg)) in best.iter_mut().zip(best_d.iter().zip(&best_g)).take(n) {
            for c in 0..PANEL_WIDTH {
                let j = bg[c] * PANEL_WIDTH as u32 + c as u32;
                // Ties go to the lower centroid index, as a sequential scan would.
                if bd[c] < b.0 || (bd[c] == b.0 && j < b.1) {
                    *b = (bd[c], j);
                }
            }
        }
        for (i, row) in rows.chunks_exact(self.dim).enumerate() {
            index[i] = best[i].1;
            distance[i] = match measure {
                PanelMeasure::SquaredL2 => (best[i].0 + kern.dot_f32(row, row)).max(0.0),
                PanelMeasure::NegativeDot => best[i].0,
            };
        }
    }
}

/// Moves each centroid to the mean of its points; returns the count per centroid.
/// A centroid with no points keeps its place (and is repaired by `repair_empty`).
fn update_centroids(
    data: &[f32],
    dim: usize,
    k: usize,
    assignment: &[u32],
    centroids: &mut [f32],
) -> Vec<usize> {
    let chunk = assignment
        .len()
        .div_ceil(rayon::current_num_threads() * 4)
        .max(1024);
    let (sums, counts) = assignment
        .par_chunks(chunk)
        .zip(data.par_chunks(chunk * dim))
        .map(|(assign, rows)| {
            let mut sums = vec![0f64; k * dim];
            let mut counts = vec![0usize; k];
            for (&j, v) in assign.iter().zip(rows.chunks_exact(dim)) {
                let j = j as usize;
                counts[j] += 1;
                sums[j * dim..(j + 1) * dim]
                    .iter_mut()
                    .zip(v)
                    .for_each(|(s, &x)| *s += x as f64);
            }
            (sums, counts)
        })
        .reduce(
            || (vec![0f64; k * dim], vec![0usize; k]),
            |(mut s1, mut c1), (s2, c2)| {
                s1.iter_mut().zip(&s2).for_each(|(a, b)| *a += b);
                c1.iter_mut().zip(&c2).for_each(|(a, b)| *a += b);
                (s1, c1)
            },
        );
    for j in 0..k {
        if counts[j] > 0 {
            let inv = 1.0 / counts[j] as f64;
            for (c, s) in centroids[j * dim..(j + 1) * dim]
                .iter_mut()
                .zip(&sums[j * dim..(j + 1) * dim])
            {
                *c = (s * inv) as f32;
            }
        }
    }
    counts
}

/// Gives every empty centroid a point of the largest cluster, so that no centroid is wasted.
fn repair_empty(
    data: &[f32],
    dim: usize,
    assignment: &[u32],
    counts: &[usize],
    centroids: &mut [f32],
    rng: &mut StdRng,
) {
    let mut counts = counts.to_vec();
    for j in 0..counts.len() {
        if counts[j] != 0 {
            continue;
        }
        let (big, &big_count) = counts
            .iter()
            .enumerate()
            .max_by_key(|(_, &c)| c)
            .expect("k >= 1");
        if big_count < 2 {
            break;
        }
        // A random member of the largest cluster becomes the new centroid; the next
        // assignment splits that cluster between the two.
        let target = rng.random_range(0..big_count);
        let member = assignment
            .iter()
            .enumerate()
            .filter(|(_, &a)| a as usize == big)
            .nth(target)
            .map(|(i, _)| i);
        if let Some(i) = member {
            centroids[j * dim..(j + 1) * dim].copy_from_slice(&data[i * dim..(i + 1) * dim]);
            counts[big] -= big_count / 2;
            counts[j] = big_count / 2;
        }
    }
}
