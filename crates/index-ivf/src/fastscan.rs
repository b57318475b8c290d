//! 4-bit product codes in the "fast scan" layout (André, Kermarrec and Le Scouarnec, 2015;
//! FAISS's `PQ4` fast scan).
//!
//! A vector is cut into `M` sub-vectors as in [`quant::ProductQuantizer`], each coded by the
//! nearest of 16 centroids: 4 bits. A query's table of `M × 16` distances is shifted and scaled
//! to bytes, so that one `vpshufb` looks up 32 codes at once from registers
//! ([`quant::Kernels::pq4_block`]); the sums come back in `u16`, are compared with the current
//! top-k threshold in the same kernel, and only the few that pass are converted back to
//! distances.
//!
//! Block layout (one block per 32 vectors of a list; `M` padded to an even `M'` with code 0):
//! for each sub-space `m`, 16 bytes; byte `j` holds the code of vector `j` of the block in its
//! low nibble and of vector `j + 16` in its high nibble. A block takes `16 · M'` bytes.

use quant::kernels::{PQ4_BLOCK, PQ4_KSUB};
use quant::{KMeans, KMeansConfig, Metric};
use rayon::prelude::*;

/// Trained 4-bit codebooks.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pq4 {
    dim: usize,
    /// `M + 1` boundaries: sub-space `m` covers dimensions `bounds[m] .. bounds[m + 1]`.
    bounds: Vec<usize>,
    /// Codebooks, sub-space after sub-space: 16 rows of the sub-space's width.
    codebooks: Vec<f32>,
}

/// A query's byte table and how to turn a sum of its entries back into a distance:
/// `distance ≈ bias + sum / scale`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pq4Table {
    /// `M' · 16` bytes.
    pub(crate) bytes: Vec<u8>,
    pub(crate) bias: f32,
    pub(crate) scale: f32,
}

/// Boundaries of `m` sub-spaces over `dim` dimensions; the first `dim % m` get one more
/// (as `quant`'s product quantizer splits them).
pub(crate) fn split(dim: usize, m: usize) -> Vec<usize> {
    let (base, extra) = (dim / m, dim % m);
    let mut bounds = vec![0];
    let mut at = 0;
    for i in 0..m {
        at += base + usize::from(i < extra);
        bounds.push(at);
    }
    bounds
}

impl Pq4 {
    /// Trains 16 centroids per sub-space on `data` (flat residuals), in parallel over
    /// sub-spaces.
    pub(crate) fn train(
        data: &[f32],
        dim: usize,
        m: usize,
        iterations: usize,
        seed: u64,
    ) -> quant::Result<Pq4> {
        let n = data.len() / dim;
        let bounds = split(dim, m);
        let books: Vec<quant::Result<Vec<f32>>> = (0..m)
            .into_par_iter()
            .map(|s| {
                let (start, end) = (bounds[s], bounds[s + 1]);
                let sub: Vec<f32> = (0..n)
                    .flat_map(|r| data[r * dim + start..r * dim + end].iter().copied())
                    .collect();
                // The default sample rule (256 points a centroid, 4,096 a sub-space), as FAISS
                // trains its product quantizers: 16 centroids need no more.
                let mut config = KMeansConfig::new(PQ4_KSUB);
                config.max_iterations = iterations;
                config.seed = seed.wrapping_add(s as u64);
                Ok(KMeans::train(&sub, end - start, &config)?
                    .centroids()
                    .to_vec())
            })
            .collect();
        let mut codebooks = Vec::with_capacity(dim * PQ4_KSUB);
        for book in books {
            codebooks.extend(book?);
        }
        Ok(Pq4 {
            dim,
            bounds,
            codebooks,
        })
    }

    /// Rebuilds trained codebooks (from a file); `None` when the sizes disagree.
    pub(crate) fn from_parts(dim: usize, m: usize, codebooks: Vec<f32>) -> Option<Pq4> {
        (m >= 1 && m <= dim && codebooks.len() == dim * PQ4_KSUB).then(|| Pq4 {
            dim,
            bounds: split(dim, m),
            codebooks,
        })
    }

    pub(crate) fn m(&self) -> usize {
        self.bounds.len() - 1
    }

    /// `M` rounded up to even: the sub-spaces a block stores.
    pub(crate) fn m_padded(&self) -> usize {
        self.m().next_multiple_of(2)
    }

    /// Bytes per block of 32 vectors.
    pub(crate) fn block_bytes(&self) -> usize {
        self.m_padded() * PQ4_KSUB
    }

    pub(crate) fn codebooks(&self) -> &[f32] {
        &self.codebooks
    }

    fn book(&self, s: usize) -> (&[f32], usize) {
        let (start, end) = (self.bounds[s], self.bounds[s + 1]);
        (
            &self.codebooks[PQ4_KSUB * start..PQ4_KSUB * end],
            end - start,
        )
    }

    /// The code of `v` (one byte per sub-space, each below 16).
    ///
    /// Sub-spaces are a few dimensions wide, where a kernel call per centroid costs more than
    /// the arithmetic: a plain loop the compiler unrolls.
    pub(crate) fn encode(&self, v: &[f32], out: &mut [u8]) {
        for (s, code) in out.iter_mut().enumerate().take(self.m()) {
            let (book, width) = self.book(s);
            let x = &v[self.bounds[s]..self.bounds[s + 1]];
            let mut best = (0u8, f32::INFINITY);
            for (k, c) in book.chunks_exact(width).enumerate() {
                let d: f32 = x.iter().zip(c).map(|(a, b)| (a - b) * (a - b)).sum();
                if d < best.1 {
                    best = (k as u8, d);
                }
            }
            *code = best.0;
        }
    }

    /// The float table of `x` (a query, or a query's residual to a centroid): entry
    /// `[m][k]` is the metric's distance between `x`'s sub-vector `m` and centroid `k`.
    ///
    /// Sub-spaces are narrow: plain loops, not a kernel call per entry.
    fn float_table(&self, x: &[f32], metric: Metric, out: &mut Vec<f32>) {
        out.clear();
        for s in 0..self.m() {
            let (book, width) = self.book(s);
            let q = &x[self.bounds[s]..self.bounds[s + 1]];
            out.extend(book.chunks_exact(width).map(|c| {
                let pairs = q.iter().zip(c);
                match metric {
                    Metric::Euclidean => pairs.map(|(a, b)| (a - b) * (a - b)).sum::<f32>(),
                    Metric::InnerProduct | Metric::Cosine => {
                        -pairs.map(|(a, b)| a * b).sum::<f32>()
                    }
                    Metric::Manhattan => pairs.map(|(a, b)| (a - b).abs()).sum::<f32>(),
                }
            }));
        }
    }

    /// The byte table of `x` for `metric`, into `table` (reusing its buffers).
    ///
    /// Each sub-space's row is shifted by its minimum (the shifts add up to `bias`), then all
    /// rows are scaled by one factor so that the largest entry is `min(255, 65534 / M')`: a
    /// sum of `M'` entries then stays below `u16::MAX`, which the kernel's threshold test
    /// needs to tell "no threshold yet" apart from any real sum.
    pub(crate) fn table(
        &self,
        x: &[f32],
        metric: Metric,
        floats: &mut Vec<f32>,
        table: &mut Pq4Table,
    ) {
        self.float_table(x, metric, floats);
        let mut bias = 0.0f32;
        let mut span = 0.0f32;
        for row in floats.chunks_exact_mut(PQ4_KSUB) {
            let lo = row.iter().copied().fold(f32::INFINITY, f32::min);
            bias += lo;
            for v in row.iter_mut() {
                *v -= lo;
                span = span.max(*v);
            }
        }
        let top = (65_534 / self.m_padded()).min(255) as f32;
        let scale = if span > 0.0 { top / span } else { 1.0 };
        // `v · scale ≥ 0`: adding one half and truncating rounds it, without a libm call.
        table.bytes.clear();
        table
            .bytes
            .extend(floats.iter().map(|&v| (v * scale + 0.5).min(top) as u8));
        table.bytes.resize(self.block_bytes(), 0);
        table.bias = bias;
        table.scale = scale;
    }
}

/// Writes the code of entry `index` (one byte per sub-space) into the blocks of a list.
pub(crate) fn put_code(blocks: &mut Vec<u8>, block_bytes: usize, index: usize, code: &[u8]) {
    let (block, slot) = (index / PQ4_BLOCK, index % PQ4_BLOCK);
    if blocks.len() < (block + 1) * block_bytes {
        blocks.resize((block + 1) * block_bytes, 0);
    }
    let base = block * block_bytes;
    let half = PQ4_BLOCK / 2;
    for (m, &c) in code.iter().enumerate() {
        let byte = &mut blocks[base + m * half + slot % half];
        if slot < half {
            *byte = (*byte & 0xf0) | (c & 0x0f);
        } else {
            *byte = (*byte & 0x0f) | (c << 4);
        }
    }
}

/// Reads back the code of entry `index` (`out` holds one byte per sub-space).
pub(crate) fn get_code(blocks: &[u8], block_bytes: usize, index: usize, out: &mut [u8]) {
    let (block, slot) = (index / PQ4_BLOCK, index % PQ4_BLOCK);
    let base = block * block_bytes;
    let half = PQ4_BLOCK / 2;
    for (m, c) in out.iter_mut().enumerate() {
        let byte = blocks[base + m * half + slot % half];
        *c = if slot < half { byte & 0x0f } else { byte >> 4 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_the_block_layout() {
        let (m, block_bytes) = (5, 6 * PQ4_KSUB);
        let mut blocks = Vec::new();
        let codes: Vec<Vec<u8>> = (0..70)
            .map(|i| (0..m).map(|s| ((i * 7 + s * 3) % 16) as u8).collect())
            .collect();
        for (i, c) in codes.iter().enumerate() {
            put_code(&mut blocks, block_bytes, i, c);
        }
        assert_eq!(blocks.len(), 3 * block_bytes);
        let mut out = vec![0u8; m];
        for (i, c) in codes.iter().enumerate() {
            get_code(&blocks, block_bytes, i, &mut out);
            assert_eq!(&out, c, "entry {i}");
        }
    }

    #[test]
    fn split_covers_every_dimension() {
        assert_eq!(split(10, 4), vec![0, 3, 6, 8, 10]);
        assert_eq!(split(50, 50).len(), 51);
    }
}
