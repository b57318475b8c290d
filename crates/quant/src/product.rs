//! Product quantization (Jégou, Douze and Schmid, 2011).
//!
//! A vector is cut into `M` contiguous sub-vectors; each sub-space has a codebook of 256
//! centroids trained by [`crate::kmeans`], and a vector is stored as `M` bytes, the index of the
//! nearest centroid in each sub-space. A dimension that `M` does not divide is handled by
//! giving the first `dim % M` sub-spaces one dimension more.
//!
//! A query is scored by asymmetric distance computation (ADC): a lookup table of `M × 256`
//! partial distances from the query's sub-vectors to every centroid ([`PqTable`]), after which
//! the distance to any code is `Σₘ table[m][codeₘ]`. Every metric of the project decomposes
//! over sub-spaces, so the table-driven distance equals the metric's distance between the
//! query and the decoded vector (up to rounding).

use crate::codec::{Decoder, Encoder};
use crate::error::{check_vector, check_vectors};
use crate::kernels::{kernels, Kernels, PQ_KSUB};
use crate::kmeans::{KMeans, KMeansConfig};
use crate::{Error, Metric, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rayon::prelude::*;

/// Training parameters of a [`ProductQuantizer`].
#[derive(Debug, Clone)]
pub struct ProductQuantizerConfig {
    /// Number of sub-spaces, `M` (bytes per code). Between 1 and the dimension.
    pub m: usize,
    /// Lloyd iterations per sub-space codebook. Default 25.
    pub kmeans_iterations: usize,
    /// Vectors sampled for training. Default 65,536 (256 per centroid, as FAISS).
    pub max_training_points: usize,
    /// Seed of the sample and of k-means.
    pub seed: u64,
}

impl ProductQuantizerConfig {
    /// The defaults, for `m` sub-spaces.
    pub fn new(m: usize) -> ProductQuantizerConfig {
        ProductQuantizerConfig {
            m,
            kmeans_iterations: 25,
            max_training_points: 256 * PQ_KSUB,
            seed: 0x5eed,
        }
    }

    /// Checks the fields against the dimension of the data.
    pub fn validate(&self, dim: usize) -> Result<()> {
        if self.m == 0 || self.m > dim {
            return Err(Error::InvalidParameter {
                name: "m",
                reason: format!(
                    "{} sub-spaces for dimension {dim}: must be between 1 and the dimension",
                    self.m
                ),
            });
        }
        if self.kmeans_iterations == 0 {
            return Err(Error::InvalidParameter {
                name: "kmeans_iterations",
                reason: "must be at least 1".into(),
            });
        }
        if self.max_training_points < PQ_KSUB {
            return Err(Error::InvalidParameter {
                name: "max_training_points",
                reason: format!("must be at least {PQ_KSUB}"),
            });
        }
        Ok(())
    }
}

/// A trained product quantizer with 8-bit codes.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductQuantizer {
    dim: usize,
    /// `M + 1` boundaries: sub-space `m` covers dimensions `bounds[m] .. bounds[m + 1]`.
    bounds: Vec<usize>,
    /// Codebooks, sub-space after sub-space; sub-space `m` is 256 rows of its width, starting
    /// at `256 · bounds[m]`.
    codebooks: Vec<f32>,
}

impl ProductQuantizer {
    /// Trains the codebooks on `data`, a flat buffer of `dim`-dimensional vectors.
    ///
    /// Needs at least 256 training vectors (one per centroid).
    pub fn train(
        data: &[f32],
        dim: usize,
        config: &ProductQuantizerConfig,
    ) -> Result<ProductQuantizer> {
        let n = check_vectors(data, dim)?;
        config.validate(dim)?;
        if n == 0 {
            return Err(Error::EmptyTrainingSet);
        }
        if n < PQ_KSUB {
            return Err(Error::TooFewPoints { k: PQ_KSUB, n });
        }
        let bounds = split(dim, config.m);
        let mut rng = StdRng::seed_from_u64(config.seed);
        let rows: Vec<usize> = if n <= config.max_training_points {
            (0..n).collect()
        } else {
            let mut r =
                rand::seq::index::sample(&mut rng, n, config.max_training_points).into_vec();
            r.sort_unstable();
            r
        };
        let books: Vec<Result<Vec<f32>>> = (0..config.m)
            .into_par_iter()
            .map(|m| {
                let (start, end) = (bounds[m], bounds[m + 1]);
                let sub: Vec<f32> = rows
                    .iter()
                    .flat_map(|&r| data[r * dim + start..r * dim + end].iter().copied())
                    .collect();
                let mut km = KMeansConfig::new(PQ_KSUB);
                km.max_iterations = config.kmeans_iterations;
                km.max_points_per_centroid = usize::MAX / PQ_KSUB;
                km.seed = config.seed.wrapping_add(m as u64);
                Ok(KMeans::train(&sub, end - start, &km)?.centroids().to_vec())
            })
            .collect();
        let mut codebooks = Vec::with_capacity(dim * PQ_KSUB);
        for book in books {
            codebooks.extend(book?);
        }
        Ok(ProductQuantizer {
            dim,
            bounds,
            codebooks,
        })
    }

    /// Dimension of the vectors.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of sub-spaces, `M`: bytes per code.
    pub fn m(&self) -> usize {
        self.bounds.len() - 1
    }

    /// The dimensions `start .. end` of sub-space `m`.
    pub fn subspace(&self, m: usize) -> std::ops::Range<usize> {
        self.bounds[m]..self.bounds[m + 1]
    }

    /// Centroid `k` of sub-space `m`.
    pub fn centroid(&self, m: usize, k: usize) -> &[f32] {
        let width = self.bounds[m + 1] - self.bounds[m];
        let base = PQ_KSUB * self.bounds[m] + k * width;
        &self.codebooks[base..base + width]
    }

    /// Encodes one vector into `out` (`M` bytes).
    pub fn encode_into(&self, v: &[f32], out: &mut [u8]) -> Result<()> {
        check_vector(v, self.dim)?;
        if out.len() != self.m() {
            return Err(Error::DimensionMismatch {
                expected: self.m(),
                found: out.len(),
            });
        }
        let kern = kernels();
        for (m, code) in out.iter_mut().enumerate() {
            let range = self.subspace(m);
            let width = range.len();
            let book = &self.codebooks[PQ_KSUB * range.start..PQ_KSUB * (range.start + width)];
            *code = crate::kmeans::nearest(kern, book, width, &v[range]).0 as u8;
        }
        Ok(())
    }

    /// Encodes every vector of a flat buffer, in parallel.
    pub fn encode_all(&self, data: &[f32]) -> Result<PqCodes> {
        let n = check_vectors(data, self.dim)?;
        let m = self.m();
        let mut codes = vec![0u8; n * m];
        codes
            .par_chunks_exact_mut(m)
            .zip(data.par_chunks_exact(self.dim))
            .try_for_each(|(out, v)| self.encode_into(v, out))?;
        Ok(PqCodes { m, codes })
    }

    /// Decodes one code back to a vector (the concatenated centroids).
    pub fn decode(&self, code: &[u8]) -> Result<Vec<f32>> {
        if code.len() != self.m() {
            return Err(Error::DimensionMismatch {
                expected: self.m(),
                found: code.len(),
            });
        }
        let mut out = Vec::with_capacity(self.dim);
        for (m, &c) in code.iter().enumerate() {
            out.extend_from_slice(self.centroid(m, c as usize));
        }
        Ok(out)
    }

    /// The lookup table of `query` (already prepared for the metric).
    pub fn table(&self, query: &[f32], metric: Metric) -> Result<PqTable> {
        check_vector(query, self.dim)?;
        let kern = kernels();
        let mut table = Vec::with_capacity(self.m() * PQ_KSUB);
        for m in 0..self.m() {
            let q = &query[self.subspace(m)];
            for k in 0..PQ_KSUB {
                let c = self.centroid(m, k);
                table.push(match metric {
                    Metric::Euclidean => kern.l2sq_f32(q, c),
                    Metric::InnerProduct | Metric::Cosine => -kern.dot_f32(q, c),
                    Metric::Manhattan => kern.l1_f32(q, c),
                });
            }
        }
        Ok(PqTable {
            kernels: kern,
            table,
        })
    }

    fn encode_payload(&self, enc: &mut Encoder) {
        enc.u64(self.dim as u64);
        enc.u64(self.m() as u64);
        enc.f32s(&self.codebooks);
    }

    fn decode_payload(dec: &mut Decoder) -> Result<ProductQuantizer> {
        let dim = dec.usize()?;
        let m = dec.usize()?;
        let codebooks = dec.f32s()?;
        if dim == 0
            || dim > crate::MAX_DIMENSION
            || m == 0
            || m > dim
            || codebooks.len() != dim * PQ_KSUB
        {
            return Err(dec.malformed("codebook size does not match the dimension"));
        }
        if codebooks.iter().any(|x| !x.is_finite()) {
            return Err(dec.malformed("non-finite centroid"));
        }
        Ok(ProductQuantizer {
            dim,
            bounds: split(dim, m),
            codebooks,
        })
    }
}

crate::codec::impl_persist!(ProductQuantizer, crate::codec::Kind::ProductQuantizer);

/// Boundaries of `m` sub-spaces over `dim` dimensions; the first `dim % m` get one more.
fn split(dim: usize, m: usize) -> Vec<usize> {
    let (base, extra) = (dim / m, dim % m);
    let mut bounds = Vec::with_capacity(m + 1);
    let mut at = 0;
    bounds.push(0);
    for i in 0..m {
        at += base + usize::from(i < extra);
        bounds.push(at);
    }
    bounds
}

/// A per-query lookup table: `M × 256` partial distances.
#[derive(Debug, Clone)]
pub struct PqTable {
    kernels: &'static Kernels,
    table: Vec<f32>,
}

impl PqTable {
    /// The distance (smaller is closer) from the query to one code.
    #[inline]
    pub fn distance(&self, code: &[u8]) -> f32 {
        self.kernels.pq_adc(&self.table, code)
    }

    /// Distances to the vectors `ids` of `codes`, written to `out`.
    pub fn distances(&self, codes: &PqCodes, ids: &[u32], out: &mut [f32]) {
        for (o, &id) in out.iter_mut().zip(ids) {
            *o = self.distance(codes.code(id as usize));
        }
    }

    /// The raw table, row `m` at `m · 256`.
    pub fn as_slice(&self) -> &[f32] {
        &self.table
    }
}

/// An array of product codes, `M` bytes per vector.
#[derive(Debug, Clone, PartialEq)]
pub struct PqCodes {
    m: usize,
    codes: Vec<u8>,
}

impl PqCodes {
    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.codes.len() / self.m
    }

    /// Whether the array is empty.
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// Bytes per code.
    pub fn m(&self) -> usize {
        self.m
    }

    /// The code of vector `i`.
    #[inline]
    pub fn code(&self, i: usize) -> &[u8] {
        &self.codes[i * self.m..(i + 1) * self.m]
    }

    /// Heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.codes.capacity()
    }

    fn encode_payload(&self, enc: &mut Encoder) {
        enc.u64(self.m as u64);
        enc.bytes(&self.codes);
    }

    fn decode_payload(dec: &mut Decoder) -> Result<PqCodes> {
        let m = dec.usize()?;
        let codes = dec.bytes()?;
        if m == 0 || codes.len() % m != 0 {
            return Err(dec.malformed("code bytes are not a whole number of codes"));
        }
        Ok(PqCodes { m, codes })
    }
}

crate::codec::impl_persist!(PqCodes, crate::codec::Kind::PqCodes);
