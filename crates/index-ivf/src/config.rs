//! Build and search parameters.

use index_core::{IndexError, Result};
use serde::{Deserialize, Serialize};

/// How the vectors of an inverted list are stored. Names follow FAISS's index factory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ListEncoding {
    /// Full-precision vectors, 4 bytes a dimension (`IVF…,Flat`): exact distances.
    Flat,
    /// 8-bit scalar codes of the residual to the list's centroid, 1 byte a dimension plus a
    /// 4-byte norm (`IVF…,SQ8`).
    Sq8,
    /// Product codes of the residual, `m` sub-spaces of 256 centroids: `m` bytes (`IVF…,PQm`).
    Pq {
        /// Number of sub-spaces, `M`.
        m: usize,
    },
    /// 4-bit product codes of the residual, `m` sub-spaces of 16 centroids, laid out in
    /// blocks of 32 for in-register table lookup: `m / 2` bytes (`IVF…,PQmx4fs`).
    PqFastScan {
        /// Number of sub-spaces, `M`.
        m: usize,
    },
    /// RaBitQ codes of the residual (`quant::rabitq`): `bits` a dimension (1 to 8) of the
    /// dimension padded to a power of two, plus three factors. With kept vectors, a search
    /// re-ranks exactly only the entries whose error bound reaches below its current k-th
    /// exact distance (unless it asks for a fixed oversampling).
    Rabitq {
        /// Bits a dimension: 1 (the original RaBitQ) to 8 (extended codes).
        bits: u8,
    },
}

impl ListEncoding {
    pub(crate) fn tag(self) -> u32 {
        match self {
            ListEncoding::Flat => 1,
            ListEncoding::Sq8 => 2,
            ListEncoding::Pq { .. } => 3,
            ListEncoding::PqFastScan { .. } => 4,
            ListEncoding::Rabitq { .. } => 5,
        }
    }

    /// Whether the codes lose precision (everything but [`ListEncoding::Flat`]).
    pub fn is_lossy(self) -> bool {
        self != ListEncoding::Flat
    }
}

/// Parameters of an IVF index. Each field's doc gives FAISS's name where it has one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IvfConfig {
    /// `nlist`: number of inverted lists (coarse centroids). `None` derives it from the
    /// number of training vectors `n` as `round(4·√n)`, at most `n`. Default `None`.
    pub nlist: Option<usize>,
    /// How list entries are encoded. Default [`ListEncoding::Flat`].
    pub encoding: ListEncoding,
    /// Keep the full-precision vectors beside lossy codes and re-rank candidates with them
    /// (FAISS's `RFlat` refine). Ignored for [`ListEncoding::Flat`]. Default `true`.
    pub refine: bool,
    /// Keep every full-precision vector by offset, whatever the encoding, so that
    /// [`crate::IvfIndex::stored_vector`] can read it back (a database returns stored vectors;
    /// IVF-Flat lists alone cannot be read by offset). Costs 4 bytes a dimension. Default
    /// `false`.
    pub keep_vectors: bool,
    /// `nprobe` used when a search does not give one (at most `nlist`). Default 32.
    pub nprobe: usize,
    /// Candidates re-ranked exactly, as a multiple of the search `limit`, when a search does
    /// not say (FAISS's `k_factor`). Default 4.
    pub oversampling: f32,
    /// `niter` of the coarse k-means. Default 10, FAISS's choice for IVF: its centroids only
    /// need to partition the data, and every iteration costs a pass over the sample.
    pub kmeans_iterations: usize,
    /// The coarse k-means trains on at most `nlist ·` this many vectors, drawn uniformly
    /// (FAISS's `max_points_per_centroid`). Default 256.
    pub max_points_per_list: usize,
    /// Lloyd iterations of each product-quantization sub-space codebook. Default 25.
    pub pq_iterations: usize,
    /// Residuals the product and scalar quantizers train on, at most. Default 65,536.
    pub max_codec_training_points: usize,
    /// Below this many allowed points (by the filter's estimate) a filtered search scans the
    /// allowed points exactly instead of probing lists (Qdrant's `full_scan_threshold`, in
    /// points). Default 10,000.
    pub full_scan_threshold: usize,
    /// Seed of every random choice of training.
    pub seed: u64,
}

impl Default for IvfConfig {
    fn default() -> Self {
        IvfConfig {
            nlist: None,
            encoding: ListEncoding::Flat,
            refine: true,
            keep_vectors: false,
            nprobe: 32,
            oversampling: 4.0,
            kmeans_iterations: 10,
            max_points_per_list: 256,
            pq_iterations: 25,
            max_codec_training_points: 65_536,
            full_scan_threshold: 10_000,
            seed: 0x5eed,
        }
    }
}

/// The largest `nlist` accepted (list ids are `u32`, and a coarse quantizer this large is
/// already past what one index serves well).
pub const MAX_NLIST: usize = 1 << 22;

impl IvfConfig {
    /// Checks every field that does not depend on the data (the dimension is checked against
    /// `m` here too).
    pub fn validate(&self, dim: usize) -> Result<()> {
        let invalid = |name, reason: String| Err(IndexError::InvalidParameter { name, reason });
        if let Some(nlist) = self.nlist {
            if nlist == 0 || nlist > MAX_NLIST {
                return invalid("nlist", format!("{nlist} is not between 1 and {MAX_NLIST}"));
            }
        }
        match self.encoding {
            ListEncoding::Pq { m } | ListEncoding::PqFastScan { m } if m == 0 || m > dim => {
                return invalid(
                    "encoding.m",
                    format!("{m} sub-spaces for dimension {dim}: must be between 1 and {dim}"),
                );
            }
            ListEncoding::Rabitq { bits } if !(1..=8).contains(&bits) => {
                return invalid(
                    "encoding.bits",
                    format!("{bits} bits a dimension: must be between 1 and 8"),
                );
            }
            _ => {}
        }
        if self.nprobe == 0 {
            return invalid("nprobe", "must be at least 1".into());
        }
        if !(self.oversampling.is_finite() && self.oversampling >= 1.0) {
            return invalid(
                "oversampling",
                format!("{} is not a number of at least 1", self.oversampling),
            );
        }
        if self.kmeans_iterations == 0 || self.pq_iterations == 0 {
            return invalid("kmeans_iterations", "must be at least 1".into());
        }
        if self.max_points_per_list == 0 {
            return invalid("max_points_per_list", "must be at least 1".into());
        }
        if self.max_codec_training_points < 256 {
            return invalid(
                "max_codec_training_points",
                "must be at least 256 (one per product centroid)".into(),
            );
        }
        Ok(())
    }

    /// Checks that the encoding serves `metric`: RaBitQ estimates inner products, and
    /// Manhattan distance has none.
    pub fn check_metric(&self, metric: quant::Metric) -> Result<()> {
        if matches!(self.encoding, ListEncoding::Rabitq { .. })
            && metric == quant::Metric::Manhattan
        {
            return Err(IndexError::InvalidParameter {
                name: "encoding",
                reason: "RaBitQ estimates inner products, and Manhattan distance has none: use \
                         another encoding"
                    .into(),
            });
        }
        Ok(())
    }

    /// The number of lists for `n` training vectors: `nlist` when set, else `round(4·√n)`,
    /// between 1 and `n`.
    pub fn nlist_for(&self, n: usize) -> usize {
        self.nlist
            .unwrap_or_else(|| ((4.0 * (n as f64).sqrt()).round() as usize).clamp(1, n.max(1)))
    }

    /// Whether full-precision vectors are kept beside the lists: for re-ranking lossy codes,
    /// or because [`IvfConfig::keep_vectors`] asks for them.
    pub fn keeps_full_vectors(&self) -> bool {
        (self.refine && self.encoding.is_lossy()) || self.keep_vectors
    }
}
