//! Where vectors live, and the scorer that measures them against one query.

use crate::PointOffset;
use quant::{kernels, Kernels, Metric};

/// A distance function bound to one query.
///
/// Indexes measure through it, so one graph or list walk serves every storage (full precision,
/// `f16`, 8-bit, bits): the storage decides how a distance is computed.
pub trait QueryScorer {
    /// The distance (smaller is closer) from the query to the point at `offset`.
    fn distance(&self, offset: PointOffset) -> f32;

    /// Distances to many points at once, written to `out` (same length as `offsets`).
    /// Storages override it where a batch is cheaper (prefetching, SIMD across vectors).
    fn distances(&self, offsets: &[PointOffset], out: &mut [f32]) {
        for (o, &offset) in out.iter_mut().zip(offsets) {
            *o = self.distance(offset);
        }
    }
}

/// A store of vectors addressed by offset, handing out [`QueryScorer`]s.
pub trait VectorStorage: Send + Sync {
    /// The scorer type, borrowing the storage and the query.
    type Scorer<'a>: QueryScorer
    where
        Self: 'a;

    /// Dimension of the vectors.
    fn dim(&self) -> usize;

    /// The metric distances are measured in.
    fn metric(&self) -> Metric;

    /// Number of offsets addressable (`0 .. len`).
    fn len(&self) -> usize;

    /// Whether no offset is addressable.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A scorer for `query`, which must already be prepared for the metric
    /// ([`Metric::prepare`]) and have the storage's dimension.
    fn scorer<'a>(&'a self, query: &'a [f32]) -> Self::Scorer<'a>;

    /// Heap bytes held by the vectors.
    fn memory_bytes(&self) -> usize;
}

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
}

impl VectorStorage for DenseVectors {
    type Scorer<'a> = DenseScorer<'a>;

    fn dim(&self) -> usize {
        self.dim
    }

    fn metric(&self) -> Metric {
        self.metric
    }

    fn len(&self) -> usize {
        self.data.len() / self.dim
    }

    fn scorer<'a>(&'a self, query: &'a [f32]) -> DenseScorer<'a> {
        assert_eq!(query.len(), self.dim, "query of the wrong dimension");
        DenseScorer {
            data: &self.data,
            dim: self.dim,
            query,
            metric: self.metric,
            kernels: kernels(),
        }
    }

    fn memory_bytes(&self) -> usize {
        self.data.capacity() * std::mem::size_of::<f32>()
    }
}

/// A [`QueryScorer`] over [`DenseVectors`].
#[derive(Debug, Clone, Copy)]
pub struct DenseScorer<'a> {
    data: &'a [f32],
    dim: usize,
    query: &'a [f32],
    metric: Metric,
    kernels: &'static Kernels,
}

impl QueryScorer for DenseScorer<'_> {
    #[inline]
    fn distance(&self, offset: PointOffset) -> f32 {
        let start = offset as usize * self.dim;
        self.metric.distance(
            self.kernels,
            self.query,
            &self.data[start..start + self.dim],
        )
    }
}
