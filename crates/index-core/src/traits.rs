//! The read and write traits every index implements, and the search parameters they take.

use crate::{IndexError, PointFilter, PointOffset, Result, ScoredOffset};
use quant::Metric;

/// The largest `limit` a search accepts, so a request cannot ask for unbounded work.
pub const MAX_LIMIT: usize = 100_000;

/// Parameters of one search. Each index family reads the fields that apply to it and ignores
/// the others, so the shared trait stays free of family-specific calls; names follow Qdrant's
/// `SearchParams`.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchParams {
    /// Number of results, `k`.
    pub limit: usize,
    /// Bypass the index and scan exactly.
    pub exact: bool,
    /// HNSW: size of the dynamic candidate list, `ef` (at least `limit`); `None` uses the
    /// index's default.
    pub hnsw_ef: Option<usize>,
    /// IVF: number of lists probed, `nprobe`; `None` uses the index's default.
    pub ivf_nprobe: Option<usize>,
    /// Quantized storages: rescore candidates with full-precision vectors; `None` uses the
    /// index's default (rescore when full-precision vectors are available).
    pub rescore: Option<bool>,
    /// Quantized storages: fetch `limit · oversampling` candidates before rescoring; at least 1.
    pub oversampling: Option<f32>,
    /// Drop results farther than this internal distance (see [`Metric::distance_from_score`]).
    pub max_distance: Option<f32>,
}

impl SearchParams {
    /// Defaults for the `limit` closest points.
    pub fn top(limit: usize) -> SearchParams {
        SearchParams {
            limit,
            exact: false,
            hnsw_ef: None,
            ivf_nprobe: None,
            rescore: None,
            oversampling: None,
            max_distance: None,
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        let invalid = |name, reason: String| Err(IndexError::InvalidParameter { name, reason });
        if self.limit == 0 || self.limit > MAX_LIMIT {
            return invalid(
                "limit",
                format!("{} is not between 1 and {MAX_LIMIT}", self.limit),
            );
        }
        if let Some(ef) = self.hnsw_ef {
            if ef == 0 || ef > MAX_LIMIT {
                return invalid("hnsw_ef", format!("{ef} is not between 1 and {MAX_LIMIT}"));
            }
        }
        if self.ivf_nprobe == Some(0) {
            return invalid("ivf_nprobe", "must be at least 1".into());
        }
        if let Some(o) = self.oversampling {
            if !(o.is_finite() && o >= 1.0) {
                return invalid("oversampling", format!("{o} is not a number of at least 1"));
            }
        }
        if self.max_distance.is_some_and(f32::is_nan) {
            return invalid("max_distance", "is NaN".into());
        }
        Ok(())
    }
}

/// Memory an index holds, by part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Live points.
    pub points: usize,
    /// Bytes of vectors (or codes) held in RAM.
    pub vector_bytes: usize,
    /// Bytes of vectors held on disk (memory-mapped), not counted in RAM.
    pub vector_bytes_on_disk: usize,
    /// Bytes of the index structure (graph links, lists, centroids).
    pub index_bytes: usize,
    /// Everything else (id maps, deleted sets, locks).
    pub other_bytes: usize,
}

impl MemoryUsage {
    /// Bytes in RAM in all.
    pub fn ram_bytes(&self) -> usize {
        self.vector_bytes + self.index_bytes + self.other_bytes
    }

    /// RAM bytes per live point (0 for an empty index).
    pub fn bytes_per_vector(&self) -> f64 {
        if self.points == 0 {
            0.0
        } else {
            self.ram_bytes() as f64 / self.points as f64
        }
    }
}

/// The read side of an index: search. Indexes are `Sync`, so any number of threads search at
/// once, also while another thread writes through [`VectorIndexWrite`].
pub trait VectorIndex: Send + Sync {
    /// Dimension of the vectors.
    fn dim(&self) -> usize;

    /// The metric the index measures in.
    fn metric(&self) -> Metric;

    /// Number of live (inserted and not deleted) points.
    fn len(&self) -> usize;

    /// Whether no point is live.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `offset` is live.
    fn contains(&self, offset: PointOffset) -> bool;

    /// The `params.limit` closest live points to `query` that pass `filter`, closest first.
    ///
    /// `query` is as the user sent it: the index prepares it for the metric (normalises it for
    /// cosine). Errors: wrong dimension, non-finite query, invalid parameters.
    fn search(
        &self,
        query: &[f32],
        params: &SearchParams,
        filter: Option<&dyn PointFilter>,
    ) -> Result<Vec<ScoredOffset>>;

    /// [`VectorIndex::search`] for several queries; indexes may share work across them.
    fn search_batch(
        &self,
        queries: &[&[f32]],
        params: &SearchParams,
        filter: Option<&dyn PointFilter>,
    ) -> Result<Vec<Vec<ScoredOffset>>> {
        queries
            .iter()
            .map(|q| self.search(q, params, filter))
            .collect()
    }

    /// Memory held, by part.
    fn memory_usage(&self) -> MemoryUsage;
}

/// The write side of an index. Methods take `&self`: indexes lock internally and finely, so a
/// bulk build inserts from all cores while searches go on.
pub trait VectorIndexWrite: VectorIndex {
    /// Inserts the point at `offset`. Whether an offset already used may be given again
    /// depends on the index: [`crate::FlatIndex`] replaces the vector, graph indexes refuse
    /// (their offsets are written once, since searches may be reading the record); storage
    /// gives every new version of a point a fresh offset either way.
    fn insert(&self, offset: PointOffset, vector: &[f32]) -> Result<()>;

    /// Deletes the point at `offset`; returns whether it was live. A deleted point never
    /// appears in results.
    fn delete(&self, offset: PointOffset) -> Result<bool>;
}
