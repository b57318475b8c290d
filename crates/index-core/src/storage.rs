//! Full-precision vectors of the exact index, in one buffer.
//!
//! The graph and list indexes keep their own stores (memory-mapped records, codes, lists),
//! laid out for their walks; a common scorer trait over them was not used by either and is
//! gone: each index measures through `quant`'s kernels where its data is.

use crate::PointOffset;
use quant::{kernels, Metric};

/// Full-precision vectors in one contiguous buffer, prepared for the metric on insert.
#[derive(Debug, Clone)]
pub struct DenseVectors {
    dim: usize,
    metric: Metric,
    data: Vec<f32>,
}

impl DenseVectors {
    /// An empty store.
    pub fn new(dim: usize, metric: Metric) -> DenseVectors {
        DenseVectors {
            dim,
            metric,
            data: Vec::new(),
        }
    }

    /// Stores `vector` at `offset` (prepared for the metric), growing the store with zero
    /// vectors when `offset` is past the end. The caller checks the dimension and values.
    pub fn set(&mut self, offset: PointOffset, vector: &[f32]) {
        debug_assert_eq!(vector.len(), self.dim);
        let start = offset as usize * self.dim;
        if self.data.len() < start + self.dim {
            self.data.resize(start + self.dim, 0.0);
        }
        let slot = &mut self.data[start..start + self.dim];
        slot.copy_from_slice(vector);
        self.metric.prepare(slot);
    }

    /// The stored (prepared) vector at `offset`.
    #[inline]
    pub fn get(&self, offset: PointOffset) -> &[f32] {
        let start = offset as usize * self.dim;
        &self.data[start..start + self.dim]
    }

    /// All vectors, row after row.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// Dimension of the vectors.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The metric distances are measured in.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// Number of offsets addressable (`0 .. len`).
    pub fn len(&self) -> usize {
        self.data.len() / self.dim
    }

    /// Whether no offset is addressable.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The distance (smaller is closer) from `query`, prepared for the metric and of the
    /// store's dimension, to the vector at `offset`.
    #[inline]
    pub fn distance(&self, query: &[f32], offset: PointOffset) -> f32 {
        self.metric.distance(kernels(), query, self.get(offset))
    }

    /// Heap bytes held by the vectors.
    pub fn memory_bytes(&self) -> usize {
        self.data.capacity() * std::mem::size_of::<f32>()
    }
}
