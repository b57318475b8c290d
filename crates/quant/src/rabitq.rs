//! RaBitQ: codes of 1 to 8 bits a dimension whose distance estimates are unbiased and carry
//! an error bound (Gao and Long, SIGMOD 2024, arXiv 2405.12497; the extended codes of B bits
//! a dimension, SIGMOD 2025, arXiv 2409.09913).
//!
//! # The code
//! Every vector is taken relative to a centroid `c` (the mean of the training set; IVF passes
//! each list's own) and rotated by a random orthogonal matrix `P`, here three rounds of random
//! sign flips and a normalised fast Walsh–Hadamard transform over the dimension padded to a
//! power of two `D` (at least 64): `o' = P (o − c)`, in `O(D log D)`, with the norm kept.
//!
//! * 1 bit: bit `i` is the sign of `o'ᵢ`, i.e. the code is the vertex `x̄ = ±1/√D` of the
//!   hypercube nearest the direction of `o'`.
//! * B bits (extended): each `o'ᵢ` becomes the half-integer `ȳᵢ = ±(kᵢ + ½)`, `kᵢ < 2^(B−1)`,
//!   for the scale that makes `ȳ` closest in angle to `o'` (found exactly by walking the scales
//!   at which some `kᵢ` steps, as the extended paper does); stored as `xᵢ = ȳᵢ + (2^B − 1)/2`
//!   in a byte.
//!
//! Beside the code each vector keeps three factors: `‖o − c‖`, and `⟨ȳ/‖ȳ‖, o'/‖o'‖⟩` (how
//! well the code points along the vector), folded into the scale of the estimate.
//!
//! # The estimate and its bound
//! For a query-side vector `v` (the query minus the centroid under the Euclidean metric, the
//! query itself under inner product), `⟨o − c, v⟩ ≈ ‖o − c‖ · ⟨ȳ, P v⟩ / (‖ȳ‖ · ⟨ȳ/‖ȳ‖, o'/‖o'‖⟩)`,
//! unbiased over the rotation. Its error is close to normal, with standard deviation
//! `‖o − c‖ · ‖v‖ · √((1 − ip²) / (ip² (D − 1)))` where `ip` is the second factor; the bound is
//! `ε₀ = 1.9` of them (the papers' choice), which holds for about 94% of pairs (measured: 94.1
//! to 94.7% for 2 to 8 bits), plus, for 1-bit codes, what quantising the query to 4 bits can
//! add at worst (`ε₀ · Δ / ip` in the same units, `Δ` the query's step; 99.5% of pairs then).
//! [`RabitqQuery::estimate`] returns both, the distance and the bound, so that a search
//! re-ranks with full vectors only the candidates whose interval reaches below its current
//! k-th distance.
//!
//! 1-bit estimates are SIMD bit arithmetic: the rotated query is quantised to 4 bits and
//! stored as bit planes, and `⟨x̄, q⟩` is four AND-popcounts ([`Kernels::bitplane_dot`]).
//! A 1-bit code is `D/8` bytes, bit `d` in bit `d % 8` of byte `d / 8` (the little-endian
//! words the kernel reads); an extended code is `D` bytes.
//! Extended codes take the `f32` query against bytes ([`Kernels::dot_f32_u8`]).
//!
//! Metrics: Euclidean (squared), inner product, cosine (vectors normalised first). Manhattan
//! is not an inner-product metric and is refused.
//!
//! ```
//! use quant::{Metric, RabitqConfig, RabitqQuantizer};
//!
//! let dim = 32;
//! let data: Vec<f32> = (0..dim * 500).map(|i| ((i * 7919) % 1013) as f32 / 1013.0).collect();
//! let rq = RabitqQuantizer::train(&data, dim, &RabitqConfig { bits: 4, ..Default::default() }).unwrap();
//! let codes = rq.encode_all(&data).unwrap();
//! let query = &data[..dim];
//! let q = rq.query(query, Metric::Euclidean).unwrap();
//! let est = q.estimate(&codes, 3);
//! let exact = Metric::Euclidean.distance(quant::kernels(), query, &data[3 * dim..4 * dim]);
//! assert!((est.distance - exact).abs() <= est.bound);
//! ```

use crate::codec::{Decoder, Encoder};
use crate::error::{check_vector, check_vectors};
use crate::kernels::{kernels, Kernels};
use crate::metric::normalize;
use crate::{Error, Metric, Result};

/// `ε₀` of the papers: the bound is this many standard deviations of the estimate's error,
/// which is close to normal (about 94% of pairs inside; the tests measure it).
pub const EPSILON0: f32 = 1.9;

/// Bits of the query in 1-bit estimates: four, as in the paper (the error they add is below
/// the code's own).
const QUERY_BITS: usize = 4;

/// Training parameters of a [`RabitqQuantizer`].
#[derive(Debug, Clone)]
pub struct RabitqConfig {
    /// Bits a dimension: 1 (the original RaBitQ) to 8 (extended). Default 1.
    pub bits: u8,
    /// Seed of the random rotation.
    pub seed: u64,
}

impl Default for RabitqConfig {
    fn default() -> Self {
        RabitqConfig {
            bits: 1,
            seed: 0x5EED_4AB1_7C0D,
        }
    }
}

/// A trained RaBitQ model: the centroid and the rotation.
#[derive(Debug, Clone, PartialEq)]
pub struct RabitqQuantizer {
    dim: usize,
    padded: usize,
    bits: u8,
    centroid: Vec<f32>,
    /// Three rounds of `padded` random signs, one bit each (set: −1).
    signs: Vec<u64>,
}

/// A distance estimate and its error bound: the true distance lies in
/// `distance ± bound` for all but a small share of pairs (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// The estimated distance (the metric's convention: smaller is closer).
    pub distance: f32,
    /// Half the width of the interval.
    pub bound: f32,
}

impl Estimate {
    /// The smallest distance the interval allows.
    #[inline]
    pub fn lower(&self) -> f32 {
        self.distance - self.bound
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// In-place fast Walsh–Hadamard transform of a power-of-two length, scaled by `1/√n` so that
/// it is orthogonal.
fn fwht(v: &mut [f32]) {
    let n = v.len();
    // The first two stages (`h` 1 and 2) in one pass over groups of four: their loops are a
    // butterfly or two long, and cost more in loop overhead than in arithmetic. The sums
    // are the same operations in the same order, so the result is the same to the bit.
    let mut h = 1;
    if n >= 4 {
        for g in v.chunks_exact_mut(4) {
            let (s0, d0) = (g[0] + g[1], g[0] - g[1]);
            let (s1, d1) = (g[2] + g[3], g[2] - g[3]);
            g[0] = s0 + s1;
            g[2] = s0 - s1;
            g[1] = d0 + d1;
            g[3] = d0 - d1;
        }
        h = 4;
    }
    while h < n {
        for block in v.chunks_exact_mut(2 * h) {
            let (a, b) = block.split_at_mut(h);
            for (x, y) in a.iter_mut().zip(b.iter_mut()) {
                let (s, d) = (*x + *y, *x - *y);
                *x = s;
                *y = d;
            }
        }
        h *= 2;
    }
    let scale = 1.0 / (n as f32).sqrt();
    v.iter_mut().for_each(|x| *x *= scale);
}

impl RabitqQuantizer {
    /// Trains on `data`, a flat buffer of `dim`-dimensional vectors: the centroid is their
    /// mean, the rotation is drawn from `config.seed`.
    pub fn train(data: &[f32], dim: usize, config: &RabitqConfig) -> Result<RabitqQuantizer> {
        let n = check_vectors(data, dim)?;
        if n == 0 {
            return Err(Error::EmptyTrainingSet);
        }
        let mut centroid = vec![0f64; dim];
        for v in data.chunks_exact(dim) {
            centroid
                .iter_mut()
                .zip(v)
                .for_each(|(c, &x)| *c += x as f64);
        }
        let centroid: Vec<f32> = centroid.iter().map(|c| (c / n as f64) as f32).collect();
        Self::with_centroid(centroid, config)
    }

    /// A model around a given centroid (an IVF list's), with the rotation drawn from
    /// `config.seed`.
    pub fn with_centroid(centroid: Vec<f32>, config: &RabitqConfig) -> Result<RabitqQuantizer> {
        let dim = centroid.len();
        check_vectors(&centroid, dim)?;
        if !(1..=8).contains(&config.bits) {
            return Err(Error::InvalidParameter {
                name: "bits",
                reason: format!("{} is not between 1 and 8", config.bits),
            });
        }
        let padded = dim.next_power_of_two().max(64);
        let mut state = config.seed;
        let signs = (0..3 * padded / 64)
            .map(|_| splitmix64(&mut state))
            .collect();
        Ok(RabitqQuantizer {
            dim,
            padded,
            bits: config.bits,
            centroid,
            signs,
        })
    }

    /// The input dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The rotated (padded) dimension `D`: a power of two, at least 64.
    pub fn padded_dim(&self) -> usize {
        self.padded
    }

    /// Bits a dimension.
    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// The centroid codes are taken around.
    pub fn centroid(&self) -> &[f32] {
        &self.centroid
    }

    /// Bytes of one code (factors not counted): `D/8` for 1 bit, `D` for more.
    pub fn code_bytes(&self) -> usize {
        if self.bits == 1 {
            self.padded / 8
        } else {
            self.padded
        }
    }

    /// `P v` for a `dim`-long `v`: padded with zeros, then three rounds of signs and the
    /// transform.
    fn rotate(&self, v: &[f32]) -> Vec<f32> {
        let mut out = vec![0f32; self.padded];
        out[..v.len()].copy_from_slice(v);
        for round in 0..3 {
            let signs = &self.signs[round * self.padded / 64..(round + 1) * self.padded / 64];
            // The sign bit flipped by the mask's bit, without a branch: the bits are random,
            // so a branch would be mispredicted half the time.
            for (chunk, &word) in out.chunks_exact_mut(64).zip(signs) {
                for (j, x) in chunk.iter_mut().enumerate() {
                    let flip = ((word >> j) as u32 & 1) << 31;
                    *x = f32::from_bits(x.to_bits() ^ flip);
                }
            }
            fwht(&mut out);
        }
        out
    }

    /// Encodes every vector of `data` (a flat buffer). Vectors for the cosine metric must be
    /// normalised first ([`Metric::prepare`]), as the centroid was trained on them.
    pub fn encode_all(&self, data: &[f32]) -> Result<RabitqCodes> {
        check_vectors(data, self.dim)?;
        let n = data.len() / self.dim;
        let stride = self.code_bytes();
        let mut codes = vec![0u8; n * stride];
        let mut factors = vec![0f32; n * 3];
        for (i, v) in data.chunks_exact(self.dim).enumerate() {
            let out = &mut codes[i * stride..(i + 1) * stride];
            let f = self.encode_unchecked(v, out);
            factors[i * 3..i * 3 + 3].copy_from_slice(&f);
        }
        Ok(RabitqCodes {
            bits: self.bits,
            padded: self.padded,
            codes,
            factors,
        })
    }

    /// Encodes one vector (checked: its dimension and values) into `out`, its
    /// [`Self::code_bytes`] bytes; returns its three factors `[‖o − c‖, scale, ip]` (`scale =
    /// ‖o − c‖ / (‖ȳ‖ · ip)`), which every estimate needs beside the code. For callers that lay
    /// codes out themselves (IVF lists).
    pub fn encode_into(&self, v: &[f32], out: &mut [u8]) -> Result<[f32; 3]> {
        check_vector(v, self.dim)?;
        if out.len() != self.code_bytes() {
            return Err(Error::DimensionMismatch {
                expected: self.code_bytes(),
                found: out.len(),
            });
        }
        out.fill(0);
        Ok(self.encode_unchecked(v, out))
    }

    fn encode_unchecked(&self, v: &[f32], out: &mut [u8]) -> [f32; 3] {
        let centred: Vec<f32> = v.iter().zip(&self.centroid).map(|(x, c)| x - c).collect();
        let o = self.rotate(&centred);
        let norm = o
            .iter()
            .map(|x| (*x as f64) * (*x as f64))
            .sum::<f64>()
            .sqrt();
        if norm == 0.0 {
            // The centroid itself: every estimate of `⟨o − c, v⟩` is zero, exactly.
            out.fill(0);
            return [0.0, 0.0, 1.0];
        }
        if self.bits == 1 {
            let mut abs_sum = 0f64;
            for (i, &x) in o.iter().enumerate() {
                if x > 0.0 {
                    out[i / 8] |= 1 << (i % 8);
                }
                abs_sum += x.abs() as f64;
            }
            // ȳ = ±1 in every dimension: ‖ȳ‖ = √D, ⟨ȳ/‖ȳ‖, o'/‖o'‖⟩ = Σ|o'ᵢ| / (√D ‖o'‖).
            let ip = abs_sum / ((self.padded as f64).sqrt() * norm);
            let scale = norm / ((self.padded as f64).sqrt() * ip);
            return [norm as f32, scale as f32, ip as f32];
        }
        let (k, ip, y_norm) = extended_levels(&o, norm, self.bits);
        let half = 1u32 << (self.bits - 1);
        for ((byte, &x), &k) in out.iter_mut().zip(&o).zip(&k) {
            *byte = if x >= 0.0 {
                (half + k) as u8
            } else {
                (half - 1 - k) as u8
            };
        }
        let scale = norm / (y_norm * ip);
        [norm as f32, scale as f32, ip as f32]
    }

    /// Binds a query: rotates it (relative to the centroid under the Euclidean metric), and for
    /// 1-bit codes quantises it to 4-bit planes with randomised rounding seeded from the query.
    pub fn query(&self, query: &[f32], metric: Metric) -> Result<RabitqQuery> {
        check_vector(query, self.dim)?;
        let mut q = query.to_vec();
        let (v, base_ip) = match metric {
            Metric::Euclidean => {
                let v: Vec<f32> = q.iter().zip(&self.centroid).map(|(x, c)| x - c).collect();
                (v, 0.0)
            }
            Metric::InnerProduct | Metric::Cosine => {
                if metric == Metric::Cosine {
                    normalize(&mut q);
                }
                let base = q
                    .iter()
                    .zip(&self.centroid)
                    .map(|(a, b)| (*a as f64) * (*b as f64))
                    .sum::<f64>();
                (q, base as f32)
            }
            Metric::Manhattan => {
                return Err(Error::InvalidParameter {
                    name: "metric",
                    reason: "RaBitQ estimates inner products: Manhattan distance has none".into(),
                })
            }
        };
        let rotated = self.rotate(&v);
        let v_norm = rotated
            .iter()
            .map(|x| (*x as f64) * (*x as f64))
            .sum::<f64>()
            .sqrt() as f32;
        let sum: f64 = rotated.iter().map(|&x| x as f64).sum();
        let code_bound = EPSILON0 * v_norm / ((self.padded - 1) as f32).sqrt();
        let mut query_bound = 0.0;
        let form = if self.bits == 1 {
            let (lo, hi) = rotated
                .iter()
                .fold((f32::MAX, f32::MIN), |(l, h), &x| (l.min(x), h.max(x)));
            let levels = ((1 << QUERY_BITS) - 1) as f32;
            let step = if hi > lo { (hi - lo) / levels } else { 0.0 };
            let words = self.padded / 64;
            let mut planes = vec![0u64; QUERY_BITS * words];
            // Randomised rounding, seeded by the query's bits: unbiased, and the same query
            // always gets the same planes.
            let mut state = rotated.iter().fold(0x243F_6A88_85A3_08D3u64, |s, x| {
                s.rotate_left(5) ^ x.to_bits() as u64
            });
            for (i, &x) in rotated.iter().enumerate() {
                let u = if step > 0.0 {
                    let r = (splitmix64(&mut state) >> 40) as f32 / (1u64 << 24) as f32;
                    // `x − lo` and `r` are not negative, so truncation is the floor (and a
                    // cast, where `floor` is a library call on baseline x86-64); a cast
                    // saturates, and the level is capped as the clamp did.
                    (((x - lo) / step + r) as u32).min(levels as u32)
                } else {
                    0
                };
                // Each plane takes its bit of the level without a branch (the bits are random).
                for (j, word) in planes[i / 64..].iter_mut().step_by(words).enumerate() {
                    *word |= u64::from(u >> j & 1) << (i % 64);
                }
            }
            query_bound = EPSILON0 * step;
            QueryForm::Planes {
                planes,
                lo,
                step,
                sum: sum as f32,
            }
        } else {
            QueryForm::Floats {
                rotated,
                offset: ((1u32 << self.bits) - 1) as f32 / 2.0 * sum as f32,
            }
        };
        Ok(RabitqQuery {
            kernels: kernels(),
            metric,
            v_norm_sq: v_norm * v_norm,
            base_ip,
            code_bound,
            query_bound,
            form,
        })
    }

    fn encode_payload(&self, enc: &mut Encoder) {
        enc.u64(self.dim as u64);
        enc.u32(u32::from(self.bits));
        enc.f32s(&self.centroid);
        enc.u64s(&self.signs);
    }

    fn decode_payload(dec: &mut Decoder) -> Result<RabitqQuantizer> {
        let dim = dec.usize()?;
        let bits = dec.u32()?;
        let centroid = dec.f32s()?;
        let signs = dec.u64s()?;
        if dim == 0 || dim > crate::MAX_DIMENSION || centroid.len() != dim {
            return Err(dec.malformed("centroid does not match the dimension"));
        }
        if !(1..=8).contains(&bits) {
            return Err(dec.malformed("bits a dimension not between 1 and 8"));
        }
        let padded = dim.next_power_of_two().max(64);
        if signs.len() != 3 * padded / 64 {
            return Err(dec.malformed("rotation does not match the dimension"));
        }
        if centroid.iter().any(|x| !x.is_finite()) {
            return Err(dec.malformed("non-finite centroid"));
        }
        Ok(RabitqQuantizer {
            dim,
            padded,
            bits: bits as u8,
            centroid,
            signs,
        })
    }
}

crate::codec::impl_persist!(RabitqQuantizer, crate::codec::Kind::RabitqQuantizer);

/// The extended code's levels for a rotated vector `o` of norm `norm`: `kᵢ` with
/// `ȳᵢ = sign(oᵢ)(kᵢ + ½)` closest in angle to `o`, and `(⟨ȳ/‖ȳ‖, o/‖o‖⟩, ‖ȳ‖)`.
///
/// `kᵢ(t) = min(⌊t|oᵢ|⌋, 2^(B−1) − 1)` steps up at the scales `t = (k + 1)/|oᵢ|`; between two
/// steps the angle is constant, so the best scale is among them: walk them in order keeping
/// `⟨ȳ, |o|⟩` and `‖ȳ‖²` current (each step adds `|oᵢ|` and `2kᵢ + 2`). The walk takes the
/// steps from a heap holding each dimension's next one (`O(D)` memory, not the `D · 2^(B−1)`
/// of sorting them all), once to find the best count of steps and once to take that many.
fn extended_levels(o: &[f32], norm: f64, bits: u8) -> (Vec<u32>, f64, f64) {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    /// A dimension's next step: at scale `t`, dimension `i` (ties by dimension).
    #[derive(PartialEq)]
    struct Step(f64, u32);
    impl Eq for Step {}
    impl PartialOrd for Step {
        fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
            Some(self.cmp(other))
        }
    }
    impl Ord for Step {
        fn cmp(&self, other: &Self) -> std::cmp::Ordering {
            self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
        }
    }

    let top = (1u32 << (bits - 1)) - 1;
    let abs: Vec<f64> = o.iter().map(|x| x.abs() as f64).collect();
    // Takes `limit` steps (all of them with `usize::MAX`); returns the levels and the best
    // count of steps seen.
    let walk = |limit: usize| {
        let mut k = vec![0u32; o.len()];
        let mut ip: f64 = abs.iter().sum::<f64>() * 0.5;
        let mut sq = 0.25 * o.len() as f64;
        let mut best = (ip / sq.sqrt(), 0usize);
        let mut heap: BinaryHeap<Reverse<Step>> = abs
            .iter()
            .enumerate()
            .filter(|&(_, &a)| a > 0.0 && top > 0)
            .map(|(i, &a)| Reverse(Step(1.0 / a, i as u32)))
            .collect();
        let mut taken = 0;
        while taken < limit {
            let Some(Reverse(Step(_, i))) = heap.pop() else {
                break;
            };
            let i = i as usize;
            sq += 2.0 * k[i] as f64 + 2.0;
            k[i] += 1;
            ip += abs[i];
            taken += 1;
            let cos = ip / sq.sqrt();
            if cos > best.0 {
                best = (cos, taken);
            }
            if k[i] < top {
                heap.push(Reverse(Step((k[i] + 1) as f64 / abs[i], i as u32)));
            }
        }
        (k, best.1)
    };
    let (_, best) = walk(usize::MAX);
    let (k, _) = walk(best);
    let y_sq: f64 = k.iter().map(|&k| (k as f64 + 0.5).powi(2)).sum();
    let y_ip: f64 = k.iter().zip(&abs).map(|(&k, a)| (k as f64 + 0.5) * a).sum();
    let y_norm = y_sq.sqrt();
    (k, y_ip / (y_norm * norm), y_norm)
}

#[derive(Debug, Clone)]
enum QueryForm {
    /// 1-bit codes: the rotated query in 4-bit planes, `q'ᵢ ≈ lo + step · uᵢ`; `sum` is the
    /// exact `Σ q'ᵢ`.
    Planes {
        planes: Vec<u64>,
        lo: f32,
        step: f32,
        sum: f32,
    },
    /// Extended codes: the rotated query itself; `offset = (2^B − 1)/2 · Σ q'ᵢ`.
    Floats { rotated: Vec<f32>, offset: f32 },
}

/// A query bound to a [`RabitqQuantizer`].
#[derive(Debug, Clone)]
pub struct RabitqQuery {
    kernels: &'static Kernels,
    metric: Metric,
    /// `‖v‖²` (Euclidean: the squared distance of the query to the centroid).
    v_norm_sq: f32,
    /// Inner product metrics: `⟨c, q⟩`.
    base_ip: f32,
    /// The code's part of the bound on `⟨o'/‖o'‖, P v⟩`, before a vector's
    /// `√(1 − ip²)/ip`: `ε₀ ‖v‖ / √(D − 1)`.
    code_bound: f32,
    /// The query quantisation's part (1-bit codes), before a vector's `1/ip`: `ε₀ Δ`.
    query_bound: f32,
    form: QueryForm,
}

impl RabitqQuery {
    /// The estimated distance from the query to vector `i` of `codes`, and its bound.
    #[inline]
    pub fn estimate(&self, codes: &RabitqCodes, i: usize) -> Estimate {
        self.estimate_code(codes.code(i), codes.factors(i))
    }

    /// The estimate for one code and its factors (as [`RabitqCodes::code`] and
    /// [`RabitqCodes::factors`] return them), for callers that lay codes out themselves.
    #[inline]
    pub fn estimate_code(&self, code: &[u8], factors: &[f32]) -> Estimate {
        let (norm, scale, ip) = (factors[0], factors[1], factors[2]);
        // ⟨ȳ, P v⟩ for the stored code.
        let y_dot = match &self.form {
            QueryForm::Planes {
                planes,
                lo,
                step,
                sum,
            } => {
                let ones = code
                    .chunks_exact(8)
                    .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")).count_ones())
                    .sum::<u32>() as f32;
                let dot = self.kernels.bitplane_dot(code, planes) as f32;
                // ȳᵢ = 2bᵢ − 1: Σ ȳᵢ q'ᵢ = 2 Σ_{bᵢ=1} q'ᵢ − Σ q'ᵢ.
                2.0 * (lo * ones + step * dot) - sum
            }
            QueryForm::Floats { rotated, offset } => {
                self.kernels.dot_f32_u8(rotated, code) - offset
            }
        };
        let ov = scale * y_dot; // ≈ ⟨o − c, v⟩
        let err =
            norm * (self.code_bound * (1.0 - ip * ip).max(0.0).sqrt() + self.query_bound) / ip;
        match self.metric {
            Metric::Euclidean => Estimate {
                distance: norm * norm + self.v_norm_sq - 2.0 * ov,
                bound: 2.0 * err,
            },
            _ => Estimate {
                distance: -(ov + self.base_ip),
                bound: err,
            },
        }
    }
}

/// An array of RaBitQ codes with their factors.
#[derive(Debug, Clone, PartialEq)]
pub struct RabitqCodes {
    bits: u8,
    padded: usize,
    codes: Vec<u8>,
    /// Three per vector: `‖o − c‖`, the estimate's scale, and `ip`.
    factors: Vec<f32>,
}

impl RabitqCodes {
    fn stride(&self) -> usize {
        if self.bits == 1 {
            self.padded / 8
        } else {
            self.padded
        }
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.factors.len() / 3
    }

    /// Whether the array is empty.
    pub fn is_empty(&self) -> bool {
        self.factors.is_empty()
    }

    /// Bits a dimension.
    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// The code of vector `i` (1 bit: bit `d` of the code is bit `d % 8` of byte `d / 8`;
    /// more: byte `d` is dimension `d`).
    #[inline]
    pub fn code(&self, i: usize) -> &[u8] {
        let s = self.stride();
        &self.codes[i * s..(i + 1) * s]
    }

    /// The factors of vector `i`.
    #[inline]
    pub fn factors(&self, i: usize) -> &[f32] {
        &self.factors[i * 3..i * 3 + 3]
    }

    /// Bytes a vector takes: its code and its three factors.
    pub fn bytes_per_vector(&self) -> usize {
        self.stride() + 12
    }

    /// Heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.codes.capacity() + self.factors.capacity() * 4
    }

    fn encode_payload(&self, enc: &mut Encoder) {
        enc.u32(u32::from(self.bits));
        enc.u64(self.padded as u64);
        enc.bytes(&self.codes);
        enc.f32s(&self.factors);
    }

    fn decode_payload(dec: &mut Decoder) -> Result<RabitqCodes> {
        let bits = dec.u32()?;
        let padded = dec.usize()?;
        let codes = dec.bytes()?;
        let factors = dec.f32s()?;
        if !(1..=8).contains(&bits) {
            return Err(dec.malformed("bits a dimension not between 1 and 8"));
        }
        if padded < 64 || !padded.is_power_of_two() || padded > 2 * crate::MAX_DIMENSION {
            return Err(dec.malformed("padded dimension is not a power of two from 64"));
        }
        let out = RabitqCodes {
            bits: bits as u8,
            padded,
            codes,
            factors,
        };
        if !out.factors.len().is_multiple_of(3) || out.codes.len() != out.len() * out.stride() {
            return Err(dec.malformed("codes and factors do not agree"));
        }
        if out.factors.iter().any(|x| !x.is_finite()) {
            return Err(dec.malformed("non-finite factor"));
        }
        Ok(out)
    }
}

crate::codec::impl_persist!(RabitqCodes, crate::codec::Kind::RabitqCodes);

#[cfg(test)]
mod tests {
    use super::fwht;

    /// The transform against its definition, `H[i][j] = (−1)^popcount(i & j) / √n`, at every
    /// length it is given (64 up, the padded dimensions) and the short ones its fused first
    /// pass skips; and to the bit against the stage-by-stage loop it replaced, so that codes
    /// encoded before still match the queries rotated now.
    #[test]
    fn fwht_is_the_scaled_hadamard_transform() {
        for n in [1usize, 2, 4, 8, 64, 128, 1024] {
            let v: Vec<f32> = (0..n)
                .map(|i| ((i * 7919) % 13) as f32 * 0.37 - 2.1)
                .collect();
            let mut fast = v.clone();
            fwht(&mut fast);
            let mut staged = v.clone();
            let mut h = 1;
            while h < n {
                for block in staged.chunks_exact_mut(2 * h) {
                    let (a, b) = block.split_at_mut(h);
                    for (x, y) in a.iter_mut().zip(b.iter_mut()) {
                        let (s, d) = (*x + *y, *x - *y);
                        *x = s;
                        *y = d;
                    }
                }
                h *= 2;
            }
            let scale = 1.0 / (n as f32).sqrt();
            staged.iter_mut().for_each(|x| *x *= scale);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&fast),
                bits(&staged),
                "n {n}: not the staged loop's bits"
            );
            let scale = 1.0 / (n as f64).sqrt();
            for (i, &got) in fast.iter().enumerate() {
                let want: f64 = v
                    .iter()
                    .enumerate()
                    .map(|(j, &x)| {
                        let sign = if (i & j).count_ones() % 2 == 0 {
                            1.0
                        } else {
                            -1.0
                        };
                        sign * x as f64
                    })
                    .sum::<f64>()
                    * scale;
                assert!(
                    (got as f64 - want).abs() <= 1e-4 * want.abs().max(1.0),
                    "n {n}, row {i}: {got} against {want}"
                );
            }
        }
    }
}
