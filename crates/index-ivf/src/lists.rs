//! List encodings and the inverted lists that hold them.

use crate::fastscan::{get_code, put_code, Pq4};
use quant::kernels::PANEL_WIDTH;
use quant::{Metric, ProductQuantizer, RabitqQuantizer, ScalarQuantizer};

/// How list entries are encoded: the trained quantizer of a lossy encoding.
#[derive(Debug, Clone)]
pub(crate) enum Codec {
    /// Full vectors, row after row (Euclidean and Manhattan: measured by the exact kernels).
    Flat,
    /// Full vectors in panels of 16, stored transposed (inner product and cosine): one
    /// [`quant::Kernels::dot_panel16`] call measures 16 entries, with no horizontal sums. The
    /// last `n % 16` entries wait row after row until a panel is full, so nothing is padded.
    FlatPanels,
    /// 8-bit codes; `norms` keeps each code's `‖x'‖²`, which only Euclidean distance needs.
    Sq8 {
        sq: ScalarQuantizer,
        norms: bool,
    },
    Pq(ProductQuantizer),
    Pq4(Pq4),
    /// RaBitQ codes of the residual, around a zero centroid (the list's centroid is already
    /// subtracted); three factors an entry in the list's floats.
    Rabitq(RabitqQuantizer),
}

impl Codec {
    /// The full-precision codec for `metric`.
    pub(crate) fn flat(metric: Metric) -> Codec {
        match metric {
            Metric::InnerProduct | Metric::Cosine => Codec::FlatPanels,
            Metric::Euclidean | Metric::Manhattan => Codec::Flat,
        }
    }

    /// `f32` values a list of `n` entries holds.
    pub(crate) fn floats_for(&self, n: usize, dim: usize) -> usize {
        n * self.float_len(dim)
    }

    /// Code bytes a list of `n` entries holds.
    pub(crate) fn codes_for(&self, n: usize, dim: usize) -> usize {
        match self {
            Codec::Pq4(pq) => n.div_ceil(quant::kernels::PQ4_BLOCK) * pq.block_bytes(),
            _ => n * self.code_len(dim),
        }
    }

    /// Bytes of one entry's code as [`Codec::encode`] writes it (before the fast-scan
    /// layout packs two 4-bit codes a byte).
    pub(crate) fn code_len(&self, dim: usize) -> usize {
        match self {
            Codec::Flat | Codec::FlatPanels => 0,
            Codec::Sq8 { .. } => dim,
            Codec::Pq(pq) => pq.m(),
            Codec::Pq4(pq) => pq.m(),
            Codec::Rabitq(rq) => rq.code_bytes(),
        }
    }

    /// `f32` values stored per entry: the vector itself (flat) or the 8-bit code's norm.
    pub(crate) fn float_len(&self, dim: usize) -> usize {
        match self {
            Codec::Flat | Codec::FlatPanels => dim,
            Codec::Sq8 { norms, .. } => usize::from(*norms),
            Codec::Pq(_) | Codec::Pq4(_) => 0,
            Codec::Rabitq(_) => 3,
        }
    }

    /// Whether entries are coded relative to their list's centroid.
    pub(crate) fn is_residual(&self) -> bool {
        !matches!(self, Codec::Flat | Codec::FlatPanels)
    }

    /// Encodes `v` (the prepared vector for flat lists, its residual to the list's centroid
    /// otherwise) into `code` and `floats`.
    pub(crate) fn encode(&self, v: &[f32], code: &mut [u8], floats: &mut [f32]) {
        match self {
            Codec::Flat | Codec::FlatPanels => floats.copy_from_slice(v),
            Codec::Sq8 { sq, norms } => {
                let norm = sq
                    .encode_into(v, code)
                    .expect("the caller checked the dimension and values");
                if *norms {
                    floats[0] = norm;
                }
            }
            Codec::Pq(pq) => pq
                .encode_into(v, code)
                .expect("the caller checked the dimension and values"),
            Codec::Pq4(pq) => pq.encode(v, code),
            Codec::Rabitq(rq) => floats.copy_from_slice(
                &rq.encode_into(v, code)
                    .expect("the caller checked the dimension and values"),
            ),
        }
    }
}

/// One inverted list: the offsets of its entries and their codes, entry `i` at position `i`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct InvertedList {
    pub(crate) ids: Vec<u32>,
    /// Codes: `code_len` bytes an entry, or 32-entry blocks in the fast-scan layout.
    pub(crate) codes: Vec<u8>,
    /// Flat vectors, one norm per 8-bit code, or three factors per RaBitQ code.
    pub(crate) floats: Vec<f32>,
}

impl InvertedList {
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    pub(crate) fn push(&mut self, codec: &Codec, id: u32, code: &[u8], floats: &[f32]) {
        match codec {
            Codec::Pq4(pq) => put_code(&mut self.codes, pq.block_bytes(), self.ids.len(), code),
            _ => self.codes.extend_from_slice(code),
        }
        match codec {
            Codec::FlatPanels => {
                self.floats.extend_from_slice(floats);
                let (n, dim) = (self.ids.len() + 1, floats.len());
                if n.is_multiple_of(PANEL_WIDTH) {
                    // The waiting rows make a full panel: transpose them in place.
                    let start = self.floats.len() - PANEL_WIDTH * dim;
                    let rows = self.floats[start..].to_vec();
                    for (c, row) in rows.chunks_exact(dim).enumerate() {
                        for (j, &x) in row.iter().enumerate() {
                            self.floats[start + j * PANEL_WIDTH + c] = x;
                        }
                    }
                }
            }
            _ => self.floats.extend_from_slice(floats),
        }
        self.ids.push(id);
    }

    /// Drops the entries whose offset `keep` refuses; returns how many went.
    pub(crate) fn retain(
        &mut self,
        codec: &Codec,
        dim: usize,
        keep: impl Fn(u32) -> bool,
    ) -> usize {
        if self.ids.iter().all(|&id| keep(id)) {
            return 0;
        }
        let (code_len, float_len) = (codec.code_len(dim), codec.float_len(dim));
        let mut out = InvertedList::default();
        let mut code = vec![0u8; code_len];
        let mut vector = vec![0f32; float_len];
        for (i, &id) in self.ids.iter().enumerate() {
            if !keep(id) {
                continue;
            }
            match codec {
                Codec::Pq4(pq) => get_code(&self.codes, pq.block_bytes(), i, &mut code),
                _ => code.copy_from_slice(&self.codes[i * code_len..(i + 1) * code_len]),
            }
            let paneled = self.ids.len() / PANEL_WIDTH * PANEL_WIDTH;
            match codec {
                Codec::FlatPanels if i < paneled => {
                    let panel = &self.floats[(i / PANEL_WIDTH) * PANEL_WIDTH * dim..];
                    for (j, x) in vector.iter_mut().enumerate() {
                        *x = panel[j * PANEL_WIDTH + i % PANEL_WIDTH];
                    }
                }
                _ => vector.copy_from_slice(&self.floats[i * float_len..(i + 1) * float_len]),
            }
            out.push(codec, id, &code, &vector);
        }
        let removed = self.ids.len() - out.ids.len();
        *self = out;
        removed
    }
}
