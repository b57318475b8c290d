//! Build and search parameters.

use index_core::{IndexError, Result};

/// How vectors are stored for the graph walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    /// Full precision, 4 bytes a dimension.
    F32,
    /// Half precision, 2 bytes a dimension; distances in `f32`.
    F16,
    /// 8-bit scalar codes (1 byte a dimension plus 4), walked with the integer kernel; full
    /// vectors kept for rescoring.
    Sq8,
    /// One bit a dimension, walked with the asymmetric estimate; full vectors kept for
    /// rescoring.
    Binary,
    /// Product-quantized codes (one byte per sub-space, [`HnswConfig::pq_subspaces`]), walked
    /// with a per-query lookup table; full vectors kept for rescoring.
    Pq,
    /// RaBitQ codes of [`HnswConfig::rabitq_bits`] bits a dimension (of the dimension padded
    /// to a power of two, at least 64) and 12 bytes of factors, walked with the unbiased
    /// estimate; full vectors kept for rescoring, which re-ranks only the candidates whose
    /// error bound reaches below the `limit`-th exact distance (unless a search asks for a
    /// fixed oversampling). Not for the Manhattan metric.
    Rabitq,
}

impl StorageKind {
    /// Whether full-precision vectors are kept beside the walked codes for rescoring.
    pub fn is_quantized(self) -> bool {
        matches!(
            self,
            StorageKind::Sq8 | StorageKind::Binary | StorageKind::Pq | StorageKind::Rabitq
        )
    }

    /// The fewest training vectors the storage's quantizer needs (product quantization
    /// trains 256 centroids per sub-space).
    pub fn min_training_vectors(self) -> usize {
        match self {
            StorageKind::Pq => quant::PQ_KSUB,
            _ => 1,
        }
    }

    pub(crate) fn tag(self) -> u32 {
        match self {
            StorageKind::F32 => 1,
            StorageKind::F16 => 2,
            StorageKind::Sq8 => 3,
            StorageKind::Binary => 4,
            StorageKind::Pq => 5,
            StorageKind::Rabitq => 6,
        }
    }

    pub(crate) fn from_tag(tag: u32) -> Option<StorageKind> {
        [
            StorageKind::F32,
            StorageKind::F16,
            StorageKind::Sq8,
            StorageKind::Binary,
            StorageKind::Pq,
            StorageKind::Rabitq,
        ]
        .into_iter()
        .find(|k| k.tag() == tag)
    }
}

/// The links per node (`m`) an index with a graph may have; `m` 0 is an index without one
/// ([`HnswConfig::has_graph`]).
pub const M_RANGE: std::ops::RangeInclusive<usize> = 2..=256;
/// The build candidate list sizes (`ef_construct`) an index may have (Qdrant's bounds).
pub const EF_CONSTRUCT_RANGE: std::ops::RangeInclusive<usize> = 4..=10_000;

/// Parameters of an HNSW index (Malkov and Yashunin, 2018). Names follow Qdrant's
/// `hnsw_config` where it has them.
#[derive(Debug, Clone, PartialEq)]
pub struct HnswConfig {
    /// `M`: links per node on the upper layers; layer 0 keeps up to `2·M` (a new node chooses
    /// `M`, backlinks from later nodes fill the rest). Default 16. 0 builds no
    /// graph: the vectors are stored and every search scans them exactly (Qdrant's `m: 0`,
    /// which multi-tenant collections set when each tenant's points are few and filtered
    /// searches by tenant should not pay for a graph).
    pub m: usize,
    /// `efConstruction`: candidate list size while inserting. Default 200.
    pub ef_construct: usize,
    /// `ef` used when a search does not give one. Default 64.
    pub ef_search: usize,
    /// Below this many allowed points a filtered search scans them exactly instead of walking
    /// the graph (Qdrant's `full_scan_threshold`, here in points). Default 10,000. Above it
    /// the planner still scans where its cost model finds the scan cheaper than the walk at
    /// the asked `ef`, or the allowed points too sparse for the walk to keep its recall.
    pub full_scan_threshold: usize,
    /// How vectors are stored for the walk. Default [`StorageKind::F32`].
    pub storage: StorageKind,
    /// Candidates rescored with full vectors, as a multiple of `limit`, when a search does not
    /// say (quantized storages only). Default 3.
    pub oversampling: f32,
    /// [`StorageKind::Sq8`]: the central fraction of each dimension's values the 8-bit bounds
    /// keep (Qdrant's `quantile`). Default 1.0, the full range: on real embeddings (GloVe)
    /// clipping even 1% per dimension cost 6 points of recall before rescoring, see
    /// `docs/benchmarks.md`.
    pub quantile: f32,
    /// [`StorageKind::Pq`]: sub-spaces (code bytes) per vector, between 1 and the dimension;
    /// 0 picks a quarter of the dimension (16× smaller than `f32`). A loaded index takes it
    /// from its quantizer.
    pub pq_subspaces: usize,
    /// [`StorageKind::Rabitq`]: bits a dimension, 1 (the original RaBitQ: sign bits, estimated
    /// with AND-popcounts against a 4-bit query) to 8 (extended codes, a byte a dimension).
    /// Default 1. A loaded index takes it from its quantizer.
    pub rabitq_bits: u8,
    /// Seed of the level generator; a node's level depends only on the seed and its offset,
    /// so the same inserts give the same graph shape whatever the thread schedule.
    pub seed: u64,
}

impl Default for HnswConfig {
    fn default() -> Self {
        HnswConfig {
            m: 16,
            ef_construct: 200,
            ef_search: 64,
            full_scan_threshold: 10_000,
            storage: StorageKind::F32,
            oversampling: 3.0,
            quantile: 1.0,
            pq_subspaces: 0,
            rabitq_bits: 1,
            seed: 0x5eed,
        }
    }
}

impl HnswConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        let invalid = |name, reason: String| Err(IndexError::InvalidParameter { name, reason });
        if self.m != 0 && !M_RANGE.contains(&self.m) {
            return invalid(
                "m",
                format!(
                    "{} is not 0 (no graph) or between {} and {}",
                    self.m,
                    M_RANGE.start(),
                    M_RANGE.end()
                ),
            );
        }
        // Without a graph nothing is constructed: any `ef_construct` stands, as storage accepts.
        if self.has_graph() && !EF_CONSTRUCT_RANGE.contains(&self.ef_construct) {
            return invalid(
                "ef_construct",
                format!(
                    "{} is not between {} and {}",
                    self.ef_construct,
                    EF_CONSTRUCT_RANGE.start(),
                    EF_CONSTRUCT_RANGE.end()
                ),
            );
        }
        if self.ef_search == 0 || self.ef_search > 100_000 {
            return invalid(
                "ef_search",
                format!("{} is not between 1 and 100000", self.ef_search),
            );
        }
        if !(self.oversampling.is_finite() && self.oversampling >= 1.0) {
            return invalid(
                "oversampling",
                format!("{} is not a number of at least 1", self.oversampling),
            );
        }
        if !(self.quantile > 0.0 && self.quantile <= 1.0) {
            return invalid("quantile", format!("{} is not in (0, 1]", self.quantile));
        }
        if !(1..=8).contains(&self.rabitq_bits) {
            return invalid(
                "rabitq_bits",
                format!("{} is not between 1 and 8", self.rabitq_bits),
            );
        }
        Ok(())
    }

    /// The product quantizer's sub-spaces for vectors of `dim` dimensions.
    pub fn pq_subspaces_for(&self, dim: usize) -> usize {
        match self.pq_subspaces {
            0 => (dim / 4).max(1),
            m => m.min(dim),
        }
    }

    /// Links kept per node on layer 0.
    pub fn m0(&self) -> usize {
        2 * self.m
    }

    /// Whether the index builds a graph (`m` is not 0); without one every search is an exact
    /// scan.
    pub fn has_graph(&self) -> bool {
        self.m > 0
    }
}
