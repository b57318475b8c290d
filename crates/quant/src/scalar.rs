//! Scalar quantization to 8 bits.
//!
//! Each component `x` of dimension `d` is mapped to `c = round((x − lo_d) / s_d)`, clamped to
//! `0..=255`, and decoded as `x' = lo_d + s_d · c`. The bounds `[lo_d, lo_d + 255·s_d]` are
//! trained as the central `quantile` (default 0.99) of a sample, per dimension or over all
//! dimensions at once ("global", as Qdrant does); outliers are clamped.
//!
//! Two ways to score a query against codes, both returning the project's distance
//! (smaller is closer, see [`crate::metric`]):
//!
//! * [`ScalarQuery`], asymmetric: the `f32` query against the codes. With `w = q ⊙ s`,
//!   `q·x' = Σ q_d lo_d + Σ w_d c_d`, one `f32 × u8` dot product plus a per-query constant.
//!   Euclidean uses `‖q − x'‖² = ‖q‖² − 2 q·x' + ‖x'‖²`, with `‖x'‖²` stored per vector (the
//!   "correction" in [`ScalarCodes`]); Manhattan uses `Σ |(q_d − lo_d) − s_d c_d|`.
//! * [`ScalarQueryInt`], integer: `w` is itself quantized to signed 8 bits with one scale `α`,
//!   and `Σ w_d c_d ≈ α · Σ w'_d c_d` is an exact integer dot product (VNNI where the CPU has
//!   it), corrected by the same offsets. Manhattan with global bounds quantizes the query like a
//!   stored vector and sums absolute byte differences.

use crate::codec::{Decoder, Encoder};
use crate::error::{check_vector, check_vectors};
use crate::kernels::{kernels, Kernels};
use crate::{Error, Metric, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Training parameters of a [`ScalarQuantizer`].
#[derive(Debug, Clone)]
pub struct ScalarQuantizerConfig {
    /// The central fraction of values the bounds keep; the rest is clamped. In `(0, 1]`,
    /// default 0.99 (Qdrant's `quantile`).
    pub quantile: f32,
    /// Bounds per dimension (default, more accurate on anisotropic data) or one pair for all.
    pub per_dimension: bool,
    /// Vectors sampled for training. Default 100,000.
    pub sample_size: usize,
    /// Seed of the sample.
    pub seed: u64,
}

impl Default for ScalarQuantizerConfig {
    fn default() -> Self {
        ScalarQuantizerConfig {
            quantile: 0.99,
            per_dimension: true,
            sample_size: 100_000,
            seed: 0x5eed,
        }
    }
}

impl ScalarQuantizerConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if !(self.quantile > 0.0 && self.quantile <= 1.0) {
            return Err(Error::InvalidParameter {
                name: "quantile",
                reason: format!("{} is not in (0, 1]", self.quantile),
            });
        }
        if self.sample_size == 0 {
            return Err(Error::InvalidParameter {
                name: "sample_size",
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// Trained bounds: the offset `lo` and step `scale` of each dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounds {
    lo: Vec<f32>,
    scale: Vec<f32>,
    global: bool,
}

impl Bounds {
    /// Lower bound per dimension.
    pub fn lo(&self) -> &[f32] {
        &self.lo
    }
    /// Step per code value, per dimension.
    pub fn scale(&self) -> &[f32] {
        &self.scale
    }
    /// Whether one pair of bounds serves every dimension.
    pub fn is_global(&self) -> bool {
        self.global
    }
}

/// An 8-bit scalar quantizer.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarQuantizer {
    dim: usize,
    bounds: Bounds,
}

impl ScalarQuantizer {
    /// Trains the bounds on `data`, a flat buffer of `dim`-dimensional vectors.
    pub fn train(
        data: &[f32],
        dim: usize,
        config: &ScalarQuantizerConfig,
    ) -> Result<ScalarQuantizer> {
        config.validate()?;
        let n = check_vectors(data, dim)?;
        if n == 0 {
            return Err(Error::EmptyTrainingSet);
        }
        let mut rng = StdRng::seed_from_u64(config.seed);
        let rows: Vec<usize> = if n <= config.sample_size {
            (0..n).collect()
        } else {
            let mut r = rand::seq::index::sample(&mut rng, n, config.sample_size).into_vec();
            r.sort_unstable();
            r
        };
        let tail = (1.0 - config.quantile as f64) / 2.0;
        let (lo, hi): (Vec<f32>, Vec<f32>) = if config.per_dimension {
            let mut column = Vec::with_capacity(rows.len());
            (0..dim)
                .map(|d| {
                    column.clear();
                    column.extend(rows.iter().map(|&r| data[r * dim + d]));
                    quantile_range(&mut column, tail)
                })
                .unzip()
        } else {
            let mut all: Vec<f32> = rows
                .iter()
                .flat_map(|&r| data[r * dim..(r + 1) * dim].iter().copied())
                .collect();
            let (lo, hi) = quantile_range(&mut all, tail);
            (vec![lo; dim], vec![hi; dim])
        };
        let scale = lo.iter().zip(&hi).map(|(l, h)| step(*l, *h)).collect();
        Ok(ScalarQuantizer {
            dim,
            bounds: Bounds {
                lo,
                scale,
                global: !config.per_dimension,
            },
        })
    }

    /// Builds a quantizer from explicit bounds `[lo_d, hi_d]` per dimension.
    pub fn from_bounds(lo: Vec<f32>, hi: Vec<f32>) -> Result<ScalarQuantizer> {
        if lo.len() != hi.len() {
            return Err(Error::DimensionMismatch {
                expected: lo.len(),
                found: hi.len(),
            });
        }
        check_vectors(&lo, lo.len().max(1))?;
        check_vectors(&hi, hi.len().max(1))?;
        if let Some(d) = lo.iter().zip(&hi).position(|(l, h)| l > h) {
            return Err(Error::InvalidParameter {
                name: "bounds",
                reason: format!("lower bound above upper bound in dimension {d}"),
            });
        }
        let dim = lo.len();
        if dim == 0 {
            return Err(Error::InvalidDimension {
                dim,
                max: crate::MAX_DIMENSION,
            });
        }
        let global = lo.iter().all(|&l| l == lo[0]) && hi.iter().all(|&h| h == hi[0]);
        let scale = lo.iter().zip(&hi).map(|(l, h)| step(*l, *h)).collect();
        Ok(ScalarQuantizer {
            dim,
            bounds: Bounds { lo, scale, global },
        })
    }

    /// Dimension of the vectors.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The trained bounds.
    pub fn bounds(&self) -> &Bounds {
        &self.bounds
    }

    /// Bytes one encoded vector takes in a [`ScalarCodes`] array (codes plus correction).
    pub fn bytes_per_vector(&self) -> usize {
        self.dim + 4
    }

    /// Encodes one vector into `out` and returns its correction `‖x'‖²`.
    pub fn encode_into(&self, v: &[f32], out: &mut [u8]) -> Result<f32> {
        check_vector(v, self.dim)?;
        if out.len() != self.dim {
            return Err(Error::DimensionMismatch {
                expected: self.dim,
                found: out.len(),
            });
        }
        let mut norm_sq = 0f32;
        for (((&x, &lo), &s), c) in v
            .iter()
            .zip(&self.bounds.lo)
            .zip(&self.bounds.scale)
            .zip(out.iter_mut())
        {
            // Clamp before the cast: `as u8` would saturate too, but NaN-free clamping first
            // makes the rounding explicit and cannot overflow.
            let code = ((x - lo) / s).round().clamp(0.0, 255.0) as u8;
            *c = code;
            let decoded = lo + s * code as f32;
            norm_sq += decoded * decoded;
        }
        Ok(norm_sq)
    }

    /// Encodes one vector.
    pub fn encode(&self, v: &[f32]) -> Result<(Vec<u8>, f32)> {
        let mut out = vec![0u8; self.dim];
        let corr = self.encode_into(v, &mut out)?;
        Ok((out, corr))
    }

    /// Encodes every vector of a flat buffer into a new code array.
    pub fn encode_all(&self, data: &[f32]) -> Result<ScalarCodes> {
        let mut codes = ScalarCodes::new(self.dim);
        codes.extend(self, data)?;
        Ok(codes)
    }

    /// Decodes codes back to `f32`.
    pub fn decode(&self, code: &[u8]) -> Result<Vec<f32>> {
        if code.len() != self.dim {
            return Err(Error::DimensionMismatch {
                expected: self.dim,
                found: code.len(),
            });
        }
        Ok(code
            .iter()
            .zip(&self.bounds.lo)
            .zip(&self.bounds.scale)
            .map(|((&c, &lo), &s)| lo + s * c as f32)
            .collect())
    }

    /// A scorer for `query` (already prepared for the metric) against codes, in `f32`.
    pub fn query(&self, query: &[f32], metric: Metric) -> Result<ScalarQuery<'_>> {
        check_vector(query, self.dim)?;
        let kern = kernels();
        let b = &self.bounds;
        Ok(match metric {
            Metric::Manhattan => ScalarQuery {
                kernels: kern,
                metric,
                weights: query.iter().zip(&b.lo).map(|(q, lo)| q - lo).collect(),
                scale: &b.scale,
                offset: 0.0,
                query_norm_sq: 0.0,
            },
            _ => ScalarQuery {
                kernels: kern,
                metric,
                weights: query.iter().zip(&b.scale).map(|(q, s)| q * s).collect(),
                scale: &[],
                offset: kern.dot_f32(query, &b.lo),
                query_norm_sq: kern.dot_f32(query, query),
            },
        })
    }

    /// A scorer for `query` on the integer path (8-bit query, integer dot product).
    ///
    /// Manhattan needs global bounds here ([`ScalarQuantizerConfig::per_dimension`] false):
    /// with per-dimension steps the byte differences would need a weight each.
    pub fn query_int(&self, query: &[f32], metric: Metric) -> Result<ScalarQueryInt> {
        check_vector(query, self.dim)?;
        let kern = kernels();
        let b = &self.bounds;
        if metric == Metric::Manhattan {
            if !b.global {
                return Err(Error::Unsupported {
                    what: "the integer path with per-dimension bounds",
                    metric,
                });
            }
            let mut codes = vec![0u8; self.dim];
            self.encode_into(query, &mut codes)?;
            return Ok(ScalarQueryInt {
                kernels: kern,
                metric,
                signed: Vec::new(),
                unsigned: codes,
                alpha: b.scale[0],
                offset: 0.0,
                query_norm_sq: 0.0,
            });
        }
        let weights: Vec<f32> = query.iter().zip(&b.scale).map(|(q, s)| q * s).collect();
        let max = weights.iter().fold(0f32, |m, w| m.max(w.abs()));
        // α maps the largest weight to ±127; a zero query keeps α = 1 and all-zero codes.
        let alpha = if max > 0.0 { max / 127.0 } else { 1.0 };
        let signed = weights
            .iter()
            .map(|w| (w / alpha).round().clamp(-127.0, 127.0) as i8)
            .collect();
        Ok(ScalarQueryInt {
            kernels: kern,
            metric,
            signed,
            unsigned: Vec::new(),
            alpha,
            offset: kern.dot_f32(query, &b.lo),
            query_norm_sq: kern.dot_f32(query, query),
        })
    }

    fn encode_payload(&self, enc: &mut Encoder) {
        enc.u64(self.dim as u64);
        enc.u32(self.bounds.global as u32);
        enc.f32s(&self.bounds.lo);
        enc.f32s(&self.bounds.scale);
    }

    fn decode_payload(dec: &mut Decoder) -> Result<ScalarQuantizer> {
        let dim = dec.usize()?;
        let global = dec.u32()? != 0;
        let lo = dec.f32s()?;
        let scale = dec.f32s()?;
        if dim == 0 || lo.len() != dim || scale.len() != dim {
            return Err(dec.malformed("bounds do not match the dimension"));
        }
        if lo.iter().any(|x| !x.is_finite()) || scale.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(dec.malformed("non-finite or non-positive bounds"));
        }
        Ok(ScalarQuantizer {
            dim,
            bounds: Bounds { lo, scale, global },
        })
    }
}

crate::codec::impl_persist!(ScalarQuantizer, crate::codec::Kind::ScalarQuantizer);

/// The step between code values for bounds `[lo, hi]`; a degenerate range gets step 1 so every
/// value encodes to 0 and decodes to `lo` exactly.
fn step(lo: f32, hi: f32) -> f32 {
    let s = (hi - lo) / 255.0;
    if s > 0.0 && s.is_finite() {
        s
    } else {
        1.0
    }
}

/// The values at quantiles `tail` and `1 − tail` of `values` (which it reorders).
fn quantile_range(values: &mut [f32], tail: f64) -> (f32, f32) {
    let n = values.len();
    let lo_idx = ((tail * (n - 1) as f64).floor() as usize).min(n - 1);
    let hi_idx = (((1.0 - tail) * (n - 1) as f64).ceil() as usize).min(n - 1);
    let cmp = |a: &f32, b: &f32| a.total_cmp(b);
    let lo = *values.select_nth_unstable_by(lo_idx, cmp).1;
    let hi = *values.select_nth_unstable_by(hi_idx, cmp).1;
    (lo, hi)
}

/// A query bound to a [`ScalarQuantizer`], scoring codes in `f32` (asymmetric distance).
#[derive(Debug, Clone)]
pub struct ScalarQuery<'a> {
    kernels: &'static Kernels,
    metric: Metric,
    /// `q ⊙ s` for dot-based metrics; `q − lo` for Manhattan.
    weights: Vec<f32>,
    /// The step per dimension (Manhattan only), borrowed from the quantizer.
    scale: &'a [f32],
    /// `q · lo`.
    offset: f32,
    /// `‖q‖²`.
    query_norm_sq: f32,
}

impl ScalarQuery<'_> {
    /// The distance (smaller is closer) from the query to one encoded vector.
    #[inline]
    pub fn distance(&self, code: &[u8], correction: f32) -> f32 {
        match self.metric {
            Metric::Manhattan => self
                .kernels
                .l1_f32_u8_affine(&self.weights, self.scale, code),
            Metric::InnerProduct | Metric::Cosine => {
                -(self.offset + self.kernels.dot_f32_u8(&self.weights, code))
            }
            Metric::Euclidean => {
                let dot = self.offset + self.kernels.dot_f32_u8(&self.weights, code);
                (self.query_norm_sq - 2.0 * dot + correction).max(0.0)
            }
        }
    }

    /// Distances to the vectors `ids` of `codes`, written to `out`.
    pub fn distances(&self, codes: &ScalarCodes, ids: &[u32], out: &mut [f32]) {
        for (o, &id) in out.iter_mut().zip(ids) {
            *o = self.distance(codes.code(id as usize), codes.correction(id as usize));
        }
    }
}

/// A query bound to a [`ScalarQuantizer`] on the integer path.
#[derive(Debug, Clone)]
pub struct ScalarQueryInt {
    kernels: &'static Kernels,
    metric: Metric,
    signed: Vec<i8>,
    unsigned: Vec<u8>,
    alpha: f32,
    offset: f32,
    query_norm_sq: f32,
}

impl ScalarQueryInt {
    /// The distance (smaller is closer) from the query to one encoded vector.
    #[inline]
    pub fn distance(&self, code: &[u8], correction: f32) -> f32 {
        match self.metric {
            Metric::Manhattan => self.alpha * self.kernels.sad_u8(&self.unsigned, code) as f32,
            Metric::InnerProduct | Metric::Cosine => {
                -(self.offset + self.alpha * self.kernels.dot_i8_u8(&self.signed, code) as f32)
            }
            Metric::Euclidean => {
                let dot =
                    self.offset + self.alpha * self.kernels.dot_i8_u8(&self.signed, code) as f32;
                (self.query_norm_sq - 2.0 * dot + correction).max(0.0)
            }
        }
    }
}

/// An array of 8-bit codes with one `f32` correction (`‖x'‖²`) per vector.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarCodes {
    dim: usize,
    codes: Vec<u8>,
    corrections: Vec<f32>,
}

impl ScalarCodes {
    /// An empty array for `dim`-dimensional vectors.
    pub fn new(dim: usize) -> ScalarCodes {
        ScalarCodes {
            dim,
            codes: Vec::new(),
            corrections: Vec::new(),
        }
    }

    /// Appends the codes of every vector of `data` (all or nothing: on an error nothing is added).
    pub fn extend(&mut self, sq: &ScalarQuantizer, data: &[f32]) -> Result<()> {
        if sq.dim != self.dim {
            return Err(Error::DimensionMismatch {
                expected: self.dim,
                found: sq.dim,
            });
        }
        let n = check_vectors(data, self.dim)?;
        let start = self.codes.len();
        self.codes.resize(start + n * self.dim, 0);
        self.corrections.reserve(n);
        for (v, out) in data
            .chunks_exact(self.dim)
            .zip(self.codes[start..].chunks_exact_mut(self.dim))
        {
            let corr = sq.encode_into(v, out).expect("validated above");
            self.corrections.push(corr);
        }
        Ok(())
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.corrections.len()
    }

    /// Whether the array is empty.
    pub fn is_empty(&self) -> bool {
        self.corrections.is_empty()
    }

    /// Dimension of the vectors.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The codes of vector `i`.
    #[inline]
    pub fn code(&self, i: usize) -> &[u8] {
        &self.codes[i * self.dim..(i + 1) * self.dim]
    }

    /// The correction `‖x'‖²` of vector `i`.
    #[inline]
    pub fn correction(&self, i: usize) -> f32 {
        self.corrections[i]
    }

    /// Heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.codes.capacity() + self.corrections.capacity() * 4
    }

    fn encode_payload(&self, enc: &mut Encoder) {
        enc.u64(self.dim as u64);
        enc.bytes(&self.codes);
        enc.f32s(&self.corrections);
    }

    fn decode_payload(dec: &mut Decoder) -> Result<ScalarCodes> {
        let dim = dec.usize()?;
        let codes = dec.bytes()?;
        let corrections = dec.f32s()?;
        if dim == 0 || codes.len() != corrections.len().saturating_mul(dim) {
            return Err(dec.malformed("code count does not match the vector count"));
        }
        Ok(ScalarCodes {
            dim,
            codes,
            corrections,
        })
    }
}

crate::codec::impl_persist!(ScalarCodes, crate::codec::Kind::ScalarCodes);
