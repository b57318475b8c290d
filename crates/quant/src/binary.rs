//! Binary quantization: one bit per dimension.
//!
//! Bit `d` of a vector is set when `x_d > center_d`, where the center is zero (sign
//! quantization) or the trained mean of the dimension. Two ways to score:
//!
//! * symmetric: the query is binarized too and the distance is the Hamming distance, a popcount
//!   over 64-bit words ([`crate::Kernels::hamming`]);
//! * asymmetric ([`BinaryQuery`]): the `f32` query against the bits, as the metric's distance to
//!   the reconstruction `x̂_d = center_d ± spread_d` (spread = the trained mean absolute
//!   deviation). Each metric is a sum over dimensions, so with per-dimension terms `A_d` (bit
//!   clear) and `B_d` (bit set) the estimate is `Σ A_d + Σ_{bit set} (B_d − A_d)`: one masked
//!   sum per vector. It ranks candidates before exact rescoring.

use crate::codec::{Decoder, Encoder};
use crate::error::{check_vector, check_vectors};
use crate::kernels::{kernels, Kernels};
use crate::{Error, Metric, Result};

/// Where each dimension is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Centering {
    /// Cut at zero: the bit is the sign (suits centred data, e.g. most embeddings).
    Zero,
    /// Cut at the trained mean of each dimension.
    Mean,
}

/// Training parameters of a [`BinaryQuantizer`].
#[derive(Debug, Clone)]
pub struct BinaryQuantizerConfig {
    /// Where each dimension is cut. Default [`Centering::Mean`].
    pub centering: Centering,
}

impl Default for BinaryQuantizerConfig {
    fn default() -> Self {
        BinaryQuantizerConfig {
            centering: Centering::Mean,
        }
    }
}

/// A trained binary quantizer.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryQuantizer {
    dim: usize,
    center: Vec<f32>,
    spread: Vec<f32>,
}

impl BinaryQuantizer {
    /// Trains the centers and spreads on `data`, a flat buffer of `dim`-dimensional vectors.
    pub fn train(
        data: &[f32],
        dim: usize,
        config: &BinaryQuantizerConfig,
    ) -> Result<BinaryQuantizer> {
        let n = check_vectors(data, dim)?;
        if n == 0 {
            return Err(Error::EmptyTrainingSet);
        }
        let mut center = vec![0f64; dim];
        if config.centering == Centering::Mean {
            for v in data.chunks_exact(dim) {
                center.iter_mut().zip(v).for_each(|(c, &x)| *c += x as f64);
            }
            center.iter_mut().for_each(|c| *c /= n as f64);
        }
        let mut spread = vec![0f64; dim];
        for v in data.chunks_exact(dim) {
            spread
                .iter_mut()
                .zip(v)
                .zip(&center)
                .for_each(|((s, &x), c)| *s += (x as f64 - c).abs());
        }
        let spread = spread.iter().map(|s| (s / n as f64) as f32).collect();
        Ok(BinaryQuantizer {
            dim,
            center: center.iter().map(|&c| c as f32).collect(),
            spread,
        })
    }

    /// Dimension of the vectors.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// 64-bit words per code.
    pub fn words(&self) -> usize {
        self.dim.div_ceil(64)
    }

    /// Encodes one vector into `out` (`ceil(dim / 64)` words; unused high bits stay zero).
    pub fn encode_into(&self, v: &[f32], out: &mut [u64]) -> Result<()> {
        check_vector(v, self.dim)?;
        if out.len() != self.words() {
            return Err(Error::DimensionMismatch {
                expected: self.words(),
                found: out.len(),
            });
        }
        out.fill(0);
        for (d, (&x, &c)) in v.iter().zip(&self.center).enumerate() {
            if x > c {
                out[d / 64] |= 1 << (d % 64);
            }
        }
        Ok(())
    }

    /// Encodes one vector.
    pub fn encode(&self, v: &[f32]) -> Result<Vec<u64>> {
        let mut out = vec![0u64; self.words()];
        self.encode_into(v, &mut out)?;
        Ok(out)
    }

    /// Encodes every vector of a flat buffer.
    pub fn encode_all(&self, data: &[f32]) -> Result<BinaryCodes> {
        let n = check_vectors(data, self.dim)?;
        let words = self.words();
        let mut bits = vec![0u64; n * words];
        for (v, out) in data
            .chunks_exact(self.dim)
            .zip(bits.chunks_exact_mut(words))
        {
            self.encode_into(v, out)?;
        }
        Ok(BinaryCodes { words, bits })
    }

    /// The reconstruction `center ± spread` of a code.
    pub fn decode(&self, bits: &[u64]) -> Result<Vec<f32>> {
        if bits.len() != self.words() {
            return Err(Error::DimensionMismatch {
                expected: self.words(),
                found: bits.len(),
            });
        }
        Ok((0..self.dim)
            .map(|d| {
                let sign = if bits[d / 64] >> (d % 64) & 1 == 1 {
                    1.0
                } else {
                    -1.0
                };
                self.center[d] + sign * self.spread[d]
            })
            .collect())
    }

    /// An asymmetric scorer for `query` (already prepared for the metric).
    pub fn query(&self, query: &[f32], metric: Metric) -> Result<BinaryQuery> {
        check_vector(query, self.dim)?;
        let term = |q: f32, x: f32| match metric {
            Metric::Euclidean => (q - x) * (q - x),
            Metric::InnerProduct | Metric::Cosine => -(q * x),
            Metric::Manhattan => (q - x).abs(),
        };
        let mut base = 0f32;
        let mut weights = Vec::with_capacity(self.dim);
        for ((&q, &c), &s) in query.iter().zip(&self.center).zip(&self.spread) {
            let clear = term(q, c - s);
            let set = term(q, c + s);
            base += clear;
            weights.push(set - clear);
        }
        Ok(BinaryQuery {
            kernels: kernels(),
            base,
            weights,
        })
    }

    fn encode_payload(&self, enc: &mut Encoder) {
        enc.u64(self.dim as u64);
        enc.f32s(&self.center);
        enc.f32s(&self.spread);
    }

    fn decode_payload(dec: &mut Decoder) -> Result<BinaryQuantizer> {
        let dim = dec.usize()?;
        let center = dec.f32s()?;
        let spread = dec.f32s()?;
        if dim == 0 || center.len() != dim || spread.len() != dim {
            return Err(dec.malformed("centers do not match the dimension"));
        }
        if center.iter().chain(&spread).any(|x| !x.is_finite()) {
            return Err(dec.malformed("non-finite center or spread"));
        }
        Ok(BinaryQuantizer {
            dim,
            center,
            spread,
        })
    }
}

crate::codec::impl_persist!(BinaryQuantizer, crate::codec::Kind::BinaryQuantizer);

/// A query bound to a [`BinaryQuantizer`], estimating distances from bits.
#[derive(Debug, Clone)]
pub struct BinaryQuery {
    kernels: &'static Kernels,
    base: f32,
    weights: Vec<f32>,
}

impl BinaryQuery {
    /// The estimated distance (smaller is closer) from the query to one code.
    #[inline]
    pub fn distance(&self, bits: &[u64]) -> f32 {
        self.base + self.kernels.masked_sum(&self.weights, bits)
    }
}

/// An array of binary codes, `ceil(dim / 64)` words per vector.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryCodes {
    words: usize,
    bits: Vec<u64>,
}

impl BinaryCodes {
    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.bits.len() / self.words
    }

    /// Whether the array is empty.
    pub fn is_empty(&self) -> bool {
        self.bits.is_empty()
    }

    /// The code of vector `i`.
    #[inline]
    pub fn code(&self, i: usize) -> &[u64] {
        &self.bits[i * self.words..(i + 1) * self.words]
    }

    /// Hamming distance between vector `i` and `other`.
    #[inline]
    pub fn hamming(&self, i: usize, other: &[u64]) -> u32 {
        kernels().hamming(self.code(i), other)
    }

    /// Heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.bits.capacity() * 8
    }

    fn encode_payload(&self, enc: &mut Encoder) {
        enc.u64(self.words as u64);
        enc.u64s(&self.bits);
    }

    fn decode_payload(dec: &mut Decoder) -> Result<BinaryCodes> {
        let words = dec.usize()?;
        let bits = dec.u64s()?;
        if words == 0 || bits.len() % words != 0 {
            return Err(dec.malformed("words are not a whole number of codes"));
        }
        Ok(BinaryCodes { words, bits })
    }
}

crate::codec::impl_persist!(BinaryCodes, crate::codec::Kind::BinaryCodes);
