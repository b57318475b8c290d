//! Multivectors (late interaction, as ColBERT and ColPali produce): a point holds a matrix,
//! one row per token or patch, and scores against a query matrix by MaxSim: for each query
//! row the best similarity to any of the point's rows, summed over the query rows.
//!
//! The similarity of two rows is the metric's, higher closer: the dot product (of unit rows
//! under cosine: every row is normalised when stored), the negated squared Euclidean
//! distance, the negated Manhattan distance. The score Qdrant returns is the sum itself for
//! dot and cosine, `sqrt(|sum|)` for Euclid and `|sum|` for Manhattan (both smaller is
//! better), as its Python client computes it in local mode (the oracle of the end-to-end
//! tests). A hit's internal distance is the negated sum, so smaller is closer under every
//! metric.
//!
//! Under dot and cosine the query is transposed once into panels of 16 rows, and each point's
//! rows are multiplied against a panel at a time ([`quant::Kernels::dot_panel16`]): one load
//! of a point's row serves 16 query rows, which is what makes exact MaxSim over thousands of
//! matrices affordable.

use quant::{kernels, Metric};
use std::cell::RefCell;

/// The most rows one multivector may hold.
pub const MAX_MULTIVECTOR_ROWS: usize = 8_192;
/// The most values (rows × dimension) one multivector may hold: 16 MiB of `f32`.
pub const MAX_MULTIVECTOR_VALUES: usize = 1 << 22;

/// A matrix of rows of one dimension, stored row after row.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MultiVector {
    dim: usize,
    data: Vec<f32>,
}

impl MultiVector {
    /// A multivector from its rows: at least one, every row of the same non-zero length,
    /// every value finite, within [`MAX_MULTIVECTOR_ROWS`] and [`MAX_MULTIVECTOR_VALUES`] (as
    /// Qdrant checks a multivector).
    pub fn new(rows: Vec<Vec<f32>>) -> Result<MultiVector, String> {
        let Some(first) = rows.first() else {
            return Err("a multivector must not be empty".into());
        };
        let dim = first.len();
        if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != dim) {
            return Err(format!(
                "all vectors of a multivector must have the same dimension: vector 0 has {dim}, \
                 vector {i} has {}",
                r.len()
            ));
        }
        let data: Vec<f32> = rows.into_iter().flatten().collect();
        MultiVector::from_flat(dim, data)
    }

    /// A multivector from rows of `dim` values laid one after the other, checked as
    /// [`MultiVector::new`] checks.
    pub fn from_flat(dim: usize, data: Vec<f32>) -> Result<MultiVector, String> {
        if dim == 0 {
            return Err("all vectors of a multivector must be non-empty".into());
        }
        if data.is_empty() {
            return Err("a multivector must not be empty".into());
        }
        if !data.len().is_multiple_of(dim) {
            return Err(format!(
                "{} values do not make rows of {dim} values",
                data.len()
            ));
        }
        let rows = data.len() / dim;
        if rows > MAX_MULTIVECTOR_ROWS {
            return Err(format!(
                "at most {MAX_MULTIVECTOR_ROWS} vectors in a multivector, got {rows}"
            ));
        }
        if data.len() > MAX_MULTIVECTOR_VALUES {
            return Err(format!(
                "at most {MAX_MULTIVECTOR_VALUES} values in a multivector, got {}",
                data.len()
            ));
        }
        if let Some(v) = data.iter().find(|v| !v.is_finite()) {
            return Err(format!("values must be finite numbers, got {v}"));
        }
        Ok(MultiVector { dim, data })
    }

    /// Checks the dimension against the configured one and prepares every row for `metric`
    /// (unit length under cosine; a zero row stays zero).
    pub fn prepared(mut self, dim: usize, metric: Metric) -> Result<MultiVector, String> {
        if self.dim != dim {
            return Err(format!(
                "expected dim: {dim}, got {} (in each vector of a multivector)",
                self.dim
            ));
        }
        for row in self.data.chunks_exact_mut(dim) {
            metric.prepare(row);
        }
        Ok(self)
    }

    /// Values per row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of rows.
    pub fn row_count(&self) -> usize {
        self.data.len() / self.dim.max(1)
    }

    /// Every value, row after row.
    pub fn as_flat(&self) -> &[f32] {
        &self.data
    }

    /// The rows.
    pub fn rows(&self) -> impl Iterator<Item = &[f32]> {
        self.data.chunks_exact(self.dim.max(1))
    }

    /// The rows, copied out.
    pub fn to_rows(&self) -> Vec<Vec<f32>> {
        self.rows().map(<[f32]>::to_vec).collect()
    }

    /// Qdrant's `average_vector` recommendation over multivectors: every positive example's
    /// rows, then every negative example's rows negated, as one query matrix.
    pub fn recommend_average(positive: &[MultiVector], negative: &[MultiVector]) -> MultiVector {
        let dim = positive.iter().chain(negative).next().map_or(0, |m| m.dim);
        let mut data = Vec::new();
        for m in positive {
            data.extend_from_slice(&m.data);
        }
        for m in negative {
            data.extend(m.data.iter().map(|x| -x));
        }
        MultiVector { dim, data }
    }
}

/// Panel width of [`quant::Kernels::dot_panel16`].
const PANEL: usize = 16;

/// A query matrix ready to score points by MaxSim under one metric.
#[derive(Debug, Clone)]
pub struct MaxSimQuery {
    metric: Metric,
    query: MultiVector,
    /// Under dot and cosine: the query rows transposed, 16 per panel, zero-padded.
    panels: Vec<Vec<f32>>,
}

thread_local! {
    /// Products of one point's rows with one panel, reused between points.
    static PRODUCTS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// A half-width matrix widened for scoring, reused between points.
    static WIDENED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Rows borrowed for scoring.
struct MultiRows<'a> {
    dim: usize,
    data: &'a [f32],
}

impl MultiRows<'_> {
    fn rows(&self) -> impl Iterator<Item = &[f32]> {
        self.data.chunks_exact(self.dim)
    }
}

/// A matrix as a point holds it: full precision, or at half width for a multivector whose
/// `datatype` is `float16` (half the memory; scored after widening, values rounded to the
/// nearest `f16` when stored).
#[derive(Debug, Clone, PartialEq)]
pub enum StoredMatrix {
    /// `f32` rows.
    Full(MultiVector),
    /// `f16` rows.
    Half {
        /// Values per row.
        dim: usize,
        /// The rows, one after the other.
        data: Box<[half::f16]>,
    },
}

impl StoredMatrix {
    /// `m` as stored: at half width when `half`.
    pub fn store(m: MultiVector, half: bool) -> StoredMatrix {
        if !half {
            return StoredMatrix::Full(m);
        }
        StoredMatrix::Half {
            dim: m.dim,
            data: m.data.iter().map(|&x| half::f16::from_f32(x)).collect(),
        }
    }

    /// The matrix at full width (as stored: half-width values widened exactly).
    pub fn to_multi(&self) -> MultiVector {
        self.widened().into_owned()
    }

    /// The matrix at full width, borrowed when it is stored so.
    pub fn widened(&self) -> std::borrow::Cow<'_, MultiVector> {
        match self {
            StoredMatrix::Full(m) => std::borrow::Cow::Borrowed(m),
            StoredMatrix::Half { dim, data } => std::borrow::Cow::Owned(MultiVector {
                dim: *dim,
                data: data.iter().map(|x| x.to_f32()).collect(),
            }),
        }
    }

    /// Values per row.
    pub fn dim(&self) -> usize {
        match self {
            StoredMatrix::Full(m) => m.dim,
            StoredMatrix::Half { dim, .. } => *dim,
        }
    }
}

impl MaxSimQuery {
    /// Prepares `query` (already checked and prepared for `metric`, see
    /// [`MultiVector::prepared`]).
    pub fn new(query: MultiVector, metric: Metric) -> MaxSimQuery {
        let panels = match metric {
            Metric::InnerProduct | Metric::Cosine => {
                let dim = query.dim;
                query
                    .data
                    .chunks(PANEL * dim)
                    .map(|block| {
                        let mut panel = vec![0f32; PANEL * dim];
                        for (c, row) in block.chunks_exact(dim).enumerate() {
                            for (j, x) in row.iter().enumerate() {
                                panel[j * PANEL + c] = *x;
                            }
                        }
                        panel
                    })
                    .collect()
            }
            Metric::Euclidean | Metric::Manhattan => Vec::new(),
        };
        MaxSimQuery {
            metric,
            query,
            panels,
        }
    }

    /// The query matrix.
    pub fn matrix(&self) -> &MultiVector {
        &self.query
    }

    /// The sum over query rows of the best similarity to a row of `doc` (higher closer).
    /// `doc` must have the query's dimension.
    pub fn similarity(&self, doc: &MultiVector) -> f32 {
        debug_assert_eq!(doc.dim, self.query.dim);
        self.similarity_rows(&doc.data)
    }

    /// [`Self::similarity`] of a stored matrix, widened to `f32` first when it is stored at
    /// half width.
    pub fn similarity_stored(&self, doc: &StoredMatrix) -> f32 {
        match doc {
            StoredMatrix::Full(m) => self.similarity(m),
            StoredMatrix::Half { data, .. } => WIDENED.with(|w| {
                let mut w = w.borrow_mut();
                w.clear();
                w.extend(data.iter().map(|x| x.to_f32()));
                self.similarity_rows(&w)
            }),
        }
    }

    fn similarity_rows(&self, doc: &[f32]) -> f32 {
        let doc = MultiRows {
            dim: self.query.dim,
            data: doc,
        };
        let k = kernels();
        match self.metric {
            Metric::InnerProduct | Metric::Cosine => PRODUCTS.with(|p| {
                let mut products = p.borrow_mut();
                let rows = doc.data.len() / doc.dim;
                products.resize(rows * PANEL, 0.0);
                let mut total = 0f32;
                let query_rows = self.query.row_count();
                for (i, panel) in self.panels.iter().enumerate() {
                    k.dot_panel16(doc.data, panel, &mut products);
                    let columns = (query_rows - i * PANEL).min(PANEL);
                    let mut best = [f32::NEG_INFINITY; PANEL];
                    for r in products.chunks_exact(PANEL) {
                        for (b, x) in best.iter_mut().zip(r) {
                            *b = b.max(*x);
                        }
                    }
                    total += best[..columns].iter().sum::<f32>();
                }
                total
            }),
            Metric::Euclidean | Metric::Manhattan => self
                .query
                .rows()
                .map(|q| {
                    doc.rows()
                        .map(|d| -self.metric.distance(k, q, d))
                        .fold(f32::NEG_INFINITY, f32::max)
                })
                .sum(),
        }
    }

    /// The score Qdrant returns for a similarity sum.
    pub fn score(&self, similarity: f32) -> f32 {
        score_of(self.metric, similarity)
    }
}

/// The score Qdrant returns for a MaxSim similarity sum under `metric`.
pub fn score_of(metric: Metric, similarity: f32) -> f32 {
    match metric {
        Metric::InnerProduct | Metric::Cosine => similarity,
        Metric::Euclidean => similarity.abs().sqrt(),
        Metric::Manhattan => similarity.abs(),
    }
}

/// Fixed-dimensional encodings of multivectors (MUVERA: Dhulipala et al., "MUVERA:
/// Multi-Vector Retrieval via Fixed Dimensional Encodings", NeurIPS 2024): one vector per
/// matrix such that the inner product of a query's encoding with a point's approximates
/// their MaxSim under the inner product. Points' encodings go into an ordinary HNSW graph;
/// its nearest points are the candidates that MaxSim then scores exactly.
///
/// Each of [`FDE_REPETITIONS`] repetitions cuts the space by [`FDE_BITS`] random hyperplanes
/// (SimHash) into `2^bits` regions, and each row falls in one region. A point's block for a
/// region is the mean of its rows there, projected to [`FDE_PROJECTION`] dimensions by a
/// random ±1 matrix (a region none of its rows falls in takes the row nearest to it in
/// hyperplane signs); a query's block is the sum of its rows there. A query row then meets,
/// in the product, the centroid of the point's rows on its side of every hyperplane: mostly
/// the rows nearest to it, as MaxSim would pick.
///
/// The random planes and projections come from a fixed seed through this module's own
/// generator, so an encoding never changes between runs, machines or dependency versions: the
/// graphs on disk hold encodings. Changing any constant here changes [`FDE_VERSION`], which
/// names the column the encodings live in (a new version starts an empty column).
#[derive(Debug, Clone)]
pub struct Fde {
    dim: usize,
    /// Dimensions of a projected row (`dim` itself, unprojected, when not larger).
    proj: usize,
    /// `repetitions × bits` hyperplane normals of `dim` values.
    planes: Vec<f32>,
    /// `repetitions × proj` rows of `dim` values, ±1/√proj; empty when rows are not projected.
    projection: Vec<f32>,
}

/// The version of the encoding (see [`Fde`]). Version 1 (never released) drew its planes
/// through libm and took its products from the SIMD kernels, so it differed between machines.
pub const FDE_VERSION: u32 = 2;
/// Independent partitions.
pub const FDE_REPETITIONS: usize = 8;
/// Hyperplanes per partition: `2^bits` regions.
pub const FDE_BITS: usize = 3;
/// Dimensions a row is projected to (when it has more).
pub const FDE_PROJECTION: usize = 16;
const FDE_SEED: u64 = 0x6d75_7665_7261_0001;

/// A dot product in one fixed order of operations on every machine: eight running sums, one
/// per lane, added up in a fixed order (separate multiplies and adds; Rust never fuses or
/// reorders them). The SIMD kernels' order depends on the instruction set, and an encoding
/// must not: it is stored.
fn fixed_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    let mut tail = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
        + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]))
        + tail
}

/// SplitMix64: the encoding's own generator, fixed forever (see [`Fde`]).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Nearly standard normal: the sum of 12 uniforms on [0, 1) less 6 (Irwin-Hall). Each
    /// uniform is exact in `f32` and the sum rounds the same way everywhere (IEEE addition in
    /// a fixed order), so no platform's `ln` or `cos` enters an encoding.
    fn gaussian(&mut self) -> f32 {
        let mut sum = 0f32;
        for _ in 0..12 {
            sum += (self.next() >> 40) as f32 / (1u32 << 24) as f32;
        }
        sum - 6.0
    }
}

impl Fde {
    /// The encoder of matrices with rows of `dim` values.
    pub fn new(dim: usize) -> Fde {
        let mut rng = SplitMix(FDE_SEED ^ dim as u64);
        let planes = (0..FDE_REPETITIONS * FDE_BITS * dim)
            .map(|_| rng.gaussian())
            .collect();
        let (proj, projection) = if dim > FDE_PROJECTION {
            let scale = 1.0 / (FDE_PROJECTION as f32).sqrt();
            let m = (0..FDE_REPETITIONS * FDE_PROJECTION * dim)
                .map(|_| if rng.next() & 1 == 0 { scale } else { -scale })
                .collect();
            (FDE_PROJECTION, m)
        } else {
            (dim, Vec::new())
        };
        Fde {
            dim,
            proj,
            planes,
            projection,
        }
    }

    /// Values in an encoding.
    pub fn len(&self) -> usize {
        FDE_REPETITIONS * (1 << FDE_BITS) * self.proj
    }

    /// Whether encodings are empty (never: at least one value per region).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The region of `row` in repetition `rep`: its side of each hyperplane, one bit each.
    fn region(&self, rep: usize, row: &[f32]) -> usize {
        (0..FDE_BITS).fold(0, |acc, b| {
            let plane = &self.planes[(rep * FDE_BITS + b) * self.dim..][..self.dim];
            (acc << 1) | usize::from(fixed_dot(plane, row) > 0.0)
        })
    }

    /// `row` projected for repetition `rep`, added into `out` (`proj` values).
    fn add_projected(&self, rep: usize, row: &[f32], out: &mut [f32]) {
        if self.projection.is_empty() {
            out.iter_mut().zip(row).for_each(|(o, x)| *o += x);
            return;
        }
        let block = &self.projection[rep * self.proj * self.dim..][..self.proj * self.dim];
        for (o, p) in out.iter_mut().zip(block.chunks_exact(self.dim)) {
            *o += fixed_dot(p, row);
        }
    }

    /// A query's encoding: per repetition and region, the sum of its projected rows there.
    pub fn encode_query(&self, m: &MultiVector) -> Vec<f32> {
        let regions = 1 << FDE_BITS;
        let mut out = vec![0f32; self.len()];
        for rep in 0..FDE_REPETITIONS {
            for row in m.rows() {
                let r = self.region(rep, row);
                let at = (rep * regions + r) * self.proj;
                self.add_projected(rep, row, &mut out[at..at + self.proj]);
            }
        }
        out
    }

    /// A point's encoding: per repetition and region, the mean of its projected rows there,
    /// or for a region none falls in, the row nearest to it in hyperplane signs.
    pub fn encode_document(&self, m: &MultiVector) -> Vec<f32> {
        let regions = 1 << FDE_BITS;
        let mut out = vec![0f32; self.len()];
        let mut counts = vec![0u32; regions];
        let mut region_of = Vec::with_capacity(m.row_count());
        for rep in 0..FDE_REPETITIONS {
            counts.iter_mut().for_each(|c| *c = 0);
            region_of.clear();
            for row in m.rows() {
                let r = self.region(rep, row);
                region_of.push(r);
                counts[r] += 1;
                let at = (rep * regions + r) * self.proj;
                self.add_projected(rep, row, &mut out[at..at + self.proj]);
            }
            for (r, &count) in counts.iter().enumerate() {
                let at = (rep * regions + r) * self.proj;
                let block = &mut out[at..at + self.proj];
                if count > 1 {
                    let inv = 1.0 / count as f32;
                    block.iter_mut().for_each(|x| *x *= inv);
                } else if count == 0 {
                    // The first row of fewest differing signs (ties to the earlier row).
                    let nearest = region_of
                        .iter()
                        .enumerate()
                        .min_by_key(|(i, &q)| (((q ^ r) as u32).count_ones(), *i))
                        .map(|(i, _)| i)
                        .expect("a multivector has rows");
                    let row = &m.data[nearest * self.dim..][..self.dim];
                    self.add_projected(rep, row, block);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(metric: Metric, q: &MultiVector, d: &MultiVector) -> f32 {
        q.rows()
            .map(|a| {
                d.rows()
                    .map(|b| -metric.distance(kernels(), a, b))
                    .fold(f32::NEG_INFINITY, f32::max)
            })
            .sum()
    }

    fn random(rows: usize, dim: usize, seed: &mut u64) -> MultiVector {
        let mut next = || {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((*seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        MultiVector::from_flat(dim, (0..rows * dim).map(|_| next()).collect()).unwrap()
    }

    #[test]
    fn panel_maxsim_equals_the_pairwise_sum() {
        let mut seed = 7;
        for metric in Metric::ALL {
            // Query rows below, at and past one panel, odd dimensions.
            for (qr, dr, dim) in [(1, 1, 3), (5, 9, 7), (16, 40, 16), (33, 17, 24)] {
                let q = random(qr, dim, &mut seed).prepared(dim, metric).unwrap();
                let d = random(dr, dim, &mut seed).prepared(dim, metric).unwrap();
                let want = naive(metric, &q, &d);
                let got = MaxSimQuery::new(q, metric).similarity(&d);
                assert!(
                    (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                    "{metric:?} {qr}x{dr}x{dim}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn scores_follow_the_metric() {
        let q = MultiVector::new(vec![vec![1.0, 0.0], vec![0.0, 1.0]]).unwrap();
        let d = MultiVector::new(vec![vec![2.0, 0.0], vec![0.0, 3.0], vec![1.0, 1.0]]).unwrap();
        let dot = MaxSimQuery::new(q.clone(), Metric::InnerProduct);
        // Row 1 best matches (2, 0): 2; row 2 best matches (0, 3): 3.
        assert_eq!(dot.similarity(&d), 5.0);
        let l2 = MaxSimQuery::new(q.clone(), Metric::Euclidean);
        // Nearest rows: (1, 1) at squared distance 1 from both query rows.
        let s = l2.similarity(&d);
        assert_eq!(s, -2.0);
        assert_eq!(l2.score(s), 2f32.sqrt());
        let l1 = MaxSimQuery::new(q, Metric::Manhattan);
        assert_eq!(l1.score(l1.similarity(&d)), 2.0);
    }

    #[test]
    fn bad_matrices_are_refused() {
        assert!(MultiVector::new(vec![]).is_err());
        assert!(MultiVector::new(vec![vec![]]).is_err());
        assert!(MultiVector::new(vec![vec![1.0, 2.0], vec![1.0]]).is_err());
        assert!(MultiVector::new(vec![vec![f32::NAN]]).is_err());
        assert!(MultiVector::from_flat(3, vec![0.0; 4]).is_err());
        let m = MultiVector::new(vec![vec![3.0, 4.0]]).unwrap();
        assert!(m.clone().prepared(3, Metric::Cosine).is_err());
        let unit = m.prepared(2, Metric::Cosine).unwrap();
        assert_eq!(unit.as_flat(), &[0.6, 0.8]);
    }

    #[test]
    fn encodings_rank_like_maxsim() {
        // Points made of rows around topic centres; a query drawn from one point's topics
        // must find that point among the encodings' best few.
        let mut seed = 11;
        let dim = 32;
        let centres: Vec<MultiVector> = (0..64).map(|_| random(1, dim, &mut seed)).collect();
        let noisy = |c: &MultiVector, seed: &mut u64| {
            let n = random(1, dim, seed);
            let row: Vec<f32> = c
                .as_flat()
                .iter()
                .zip(n.as_flat())
                .map(|(a, b)| a + 0.3 * b)
                .collect();
            row
        };
        let fde = Fde::new(dim);
        let mut docs = Vec::new();
        for d in 0..300u64 {
            let rows: Vec<Vec<f32>> = (0..12)
                .map(|r| noisy(&centres[((d * 7 + r * 13) % 64) as usize], &mut seed))
                .collect();
            let m = MultiVector::new(rows)
                .unwrap()
                .prepared(dim, Metric::Cosine)
                .unwrap();
            docs.push(m);
        }
        let encoded: Vec<Vec<f32>> = docs.iter().map(|d| fde.encode_document(d)).collect();
        assert_eq!(encoded[0].len(), fde.len());
        let mut found = 0;
        for (t, target) in docs.iter().enumerate().take(50) {
            let rows: Vec<Vec<f32>> = target
                .rows()
                .take(5)
                .map(|r| {
                    let c = MultiVector::from_flat(dim, r.to_vec()).unwrap();
                    noisy(&c, &mut seed)
                })
                .collect();
            let q = MultiVector::new(rows)
                .unwrap()
                .prepared(dim, Metric::Cosine)
                .unwrap();
            let exact = MaxSimQuery::new(q.clone(), Metric::Cosine);
            let best = (0..docs.len())
                .max_by(|&a, &b| {
                    exact
                        .similarity(&docs[a])
                        .total_cmp(&exact.similarity(&docs[b]))
                })
                .unwrap();
            let qe = fde.encode_query(&q);
            let mut by_fde: Vec<(f32, usize)> = encoded
                .iter()
                .enumerate()
                .map(|(i, e)| (-kernels().dot_f32(&qe, e), i))
                .collect();
            by_fde.sort_by(|a, b| a.0.total_cmp(&b.0));
            if by_fde[..30].iter().any(|&(_, i)| i == best) {
                found += 1;
            }
            let _ = t;
        }
        // The exact best among the encodings' best 10% for nearly every query.
        assert!(found >= 45, "{found} of 50");
    }

    #[test]
    fn encodings_are_fixed() {
        // Graph files hold encodings: the same matrix must encode the same way forever.
        let fde = Fde::new(20);
        let m = MultiVector::new(vec![
            vec![0.5; 20],
            (0..20).map(|i| i as f32 / 20.0).collect(),
        ])
        .unwrap();
        let e = fde.encode_document(&m);
        let sum: f32 = e.iter().sum();
        let again = Fde::new(20).encode_document(&m);
        assert_eq!(e, again);
        assert_eq!(fde.len(), FDE_REPETITIONS * 8 * 16);
        assert!(sum.is_finite() && sum != 0.0);
        // Golden values of this version's encoding, the same on every machine (no SIMD
        // kernel, no libm): a change here needs a new FDE_VERSION.
        assert_eq!(&e[..4], &[-0.775, -2.2, 0.750_000_06, 0.725_000_1]);
        assert_eq!(
            e.iter().map(|x| x.to_bits() as u64).sum::<u64>(),
            2_007_524_966_384
        );
    }

    #[test]
    fn average_recommendation_stacks_positive_and_negated_negative_rows() {
        let p = MultiVector::new(vec![vec![1.0, 2.0]]).unwrap();
        let n = MultiVector::new(vec![vec![3.0, -4.0], vec![0.0, 1.0]]).unwrap();
        let avg = MultiVector::recommend_average(&[p], &[n]);
        assert_eq!(
            avg.to_rows(),
            vec![vec![1.0, 2.0], vec![-3.0, 4.0], vec![0.0, -1.0]]
        );
    }
}
