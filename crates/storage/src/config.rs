//! Collection configuration, with Qdrant's names and defaults.
//!
//! The structs mirror Qdrant's `CreateCollection` body field for field, with every optional
//! field kept optional: `GET /collections/{name}` must echo exactly what was set, and clients
//! compare it for equality. The effective values (defaults filled in, units converted) come
//! from methods, never from rewriting the stored fields.

use crate::{Result, StorageError};
use index_hnsw::{HnswConfig, StorageKind};
use quant::Metric;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The largest dimension a vector may have.
pub const MAX_VECTOR_SIZE: usize = 65_536;
/// The most named vectors a collection may have.
pub const MAX_NAMED_VECTORS: usize = 64;
/// The most shards a collection may have.
pub const MAX_SHARDS: u32 = 64;
/// Points indexed per shard by default: below this a shard is searched exactly.
pub const DEFAULT_INDEXING_THRESHOLD_POINTS: usize = 20_000;
/// `optimizers_config.deleted_threshold` when unset.
pub const DEFAULT_DELETED_THRESHOLD: f64 = 0.2;
/// `optimizers_config.vacuum_min_vector_number` when unset.
pub const DEFAULT_VACUUM_MIN_VECTOR_NUMBER: usize = 1000;
/// `optimizers_config.flush_interval_sec` when unset.
pub const DEFAULT_FLUSH_INTERVAL_SEC: u64 = 5;
/// `wal_config.wal_capacity_mb` when unset.
pub const DEFAULT_WAL_CAPACITY_MB: u64 = 32;
/// `hnsw_config.full_scan_threshold` reported when unset (Qdrant's default, in KB). The
/// filtered search's effective threshold when unset is `index_hnsw::HnswConfig`'s, in points.
pub const DEFAULT_FULL_SCAN_THRESHOLD_KB: usize = 10_000;

/// Qdrant's distance names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Distance {
    /// Cosine similarity; vectors are normalised when stored.
    Cosine,
    /// Euclidean distance (the score is the distance itself, not squared).
    Euclid,
    /// Dot product.
    Dot,
    /// Manhattan (L1) distance.
    Manhattan,
}

impl Distance {
    /// The internal metric.
    pub fn metric(self) -> Metric {
        match self {
            Distance::Cosine => Metric::Cosine,
            Distance::Euclid => Metric::Euclidean,
            Distance::Dot => Metric::InnerProduct,
            Distance::Manhattan => Metric::Manhattan,
        }
    }
}

/// Qdrant's `HnswConfigDiff`: every field optional, unset fields take the collection's value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HnswConfigDiff {
    /// Links per node, `M` (default 16); 0 builds no graph, and the vector's searches scan
    /// exactly (a multivector's: by MaxSim only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub m: Option<usize>,
    /// Candidate list size while building, `efConstruction` (default 100 in Qdrant, 200 here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ef_construct: Option<usize>,
    /// In KB of vectors: filtered searches expected to match fewer points scan exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_scan_threshold: Option<usize>,
    /// Threads used to build (0 or unset: the optimizer's own count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_indexing_threads: Option<usize>,
    /// Keep the graph on disk (accepted; graphs stay in memory here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_disk: Option<bool>,
    /// Links per node for payload-aware subgraphs (accepted and echoed; no such links are
    /// built: with `m` 0 a filtered search scans the points its filter passes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_m: Option<usize>,
    /// Qdrant 1.19's memory tier (accepted, not used).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<serde_json::Value>,
    /// Qdrant 1.16's inline storage (accepted, not used).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inline_storage: Option<bool>,
}

impl HnswConfigDiff {
    /// `self` with unset fields taken from `base`.
    pub fn over(&self, base: &HnswConfigDiff) -> HnswConfigDiff {
        HnswConfigDiff {
            m: self.m.or(base.m),
            ef_construct: self.ef_construct.or(base.ef_construct),
            full_scan_threshold: self.full_scan_threshold.or(base.full_scan_threshold),
            max_indexing_threads: self.max_indexing_threads.or(base.max_indexing_threads),
            on_disk: self.on_disk.or(base.on_disk),
            payload_m: self.payload_m.or(base.payload_m),
            memory: self.memory.clone().or(base.memory.clone()),
            inline_storage: self.inline_storage.or(base.inline_storage),
        }
    }

    fn validate(&self) -> Result<()> {
        if let Some(m) = self.m {
            if m != 0 && !index_hnsw::M_RANGE.contains(&m) {
                return Err(invalid(format!(
                    "hnsw_config.m: {m} is not 0 (no graph) or between {} and {}",
                    index_hnsw::M_RANGE.start(),
                    index_hnsw::M_RANGE.end()
                )));
            }
        }
        // Without a graph `ef_construct` is unused; a multivector's `m: 0` was stored with any
        // value before dense vectors could have it.
        if let Some(ef) = self.ef_construct.filter(|_| self.m != Some(0)) {
            if !index_hnsw::EF_CONSTRUCT_RANGE.contains(&ef) {
                return Err(invalid(format!(
                    "hnsw_config.ef_construct: {ef} is not between {} and {}",
                    index_hnsw::EF_CONSTRUCT_RANGE.start(),
                    index_hnsw::EF_CONSTRUCT_RANGE.end()
                )));
            }
        }
        Ok(())
    }
}

/// Which index indexed segments build: an extension of Qdrant's API (Qdrant always builds
/// HNSW), set collection-wide or per vector as `"index": {"type": "hnsw"}`,
/// `"index": {"type": "ivf", "encoding": {"kind": "sq8"}, "nprobe": 32, ...}` (the fields of
/// `index_ivf::IvfConfig`, FAISS's names) or `"index": {"type": "cagra", "graph_degree": 32,
/// ...}` (the fields of `gpu_cagra::CagraConfig`, cuVS's names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum IndexConfig {
    /// HNSW graphs, set up by `hnsw_config` and `quantization_config`.
    Hnsw,
    /// Inverted lists.
    Ivf(index_ivf::IvfConfig),
    /// CAGRA graphs, rebuilt whole as segments grow.
    Cagra(gpu_cagra::CagraConfig),
}

/// Qdrant's scalar quantization settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalarQuantization {
    /// Only `int8` exists.
    #[serde(rename = "type")]
    pub kind: String,
    /// Fraction of values inside the quantization bounds. Kept as the f64 the client sent,
    /// so `GET /collections/{name}` echoes `0.99`, not `0.9900000095367432`: clients compare
    /// the config they read with the one they sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantile: Option<f64>,
    /// Keep codes in RAM (they always are here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub always_ram: Option<bool>,
}

/// Qdrant's binary quantization settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BinaryQuantization {
    /// Keep codes in RAM (they always are here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub always_ram: Option<bool>,
    /// Qdrant's encoding: `one_bit` (the default) is walked as sign bits; `two_bits` and
    /// `one_and_half_bits` map onto the closest code here, 2-bit RaBitQ codes
    /// ([`BinaryQuantization::rabitq_bits`]). A JSON value, not a string, because configs
    /// stored before the names were checked may hold anything
    /// ([`CollectionConfig::drop_unknown_binary_encodings`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<serde_json::Value>,
    /// Qdrant's query encoding (`default`, `binary`, `scalar4bits`, `scalar8bits`): accepted
    /// and echoed; the query is never coarser than Qdrant's `scalar8bits` here (full
    /// precision against sign bits, 4-bit planes against 1-bit RaBitQ codes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_encoding: Option<serde_json::Value>,
}

impl BinaryQuantization {
    /// The encodings Qdrant defines.
    pub const ENCODINGS: [&'static str; 3] = ["one_bit", "two_bits", "one_and_half_bits"];
    /// The query encodings Qdrant defines.
    pub const QUERY_ENCODINGS: [&'static str; 4] =
        ["default", "binary", "scalar4bits", "scalar8bits"];

    /// Bits a dimension of the RaBitQ codes an encoding of more than one bit maps onto, for
    /// vectors of `distance`; `None` for sign bits: one bit, or Manhattan distance, which
    /// RaBitQ's inner-product estimates cannot serve (Qdrant accepts a wider encoding there,
    /// so it stays accepted, as sign bits).
    pub fn rabitq_bits(&self, distance: Distance) -> Option<u8> {
        match self.encoding.as_ref().and_then(serde_json::Value::as_str) {
            Some("two_bits" | "one_and_half_bits") if distance != Distance::Manhattan => Some(2),
            _ => None,
        }
    }

    /// The encoding, then the query encoding, each when it is not one of Qdrant's names.
    fn unknown_encodings(&self) -> [Option<(&'static str, &serde_json::Value)>; 2] {
        fn unknown<'a>(
            v: &'a Option<serde_json::Value>,
            names: &[&str],
        ) -> Option<&'a serde_json::Value> {
            v.as_ref()
                .filter(|v| v.as_str().is_none_or(|s| !names.contains(&s)))
        }
        [
            unknown(&self.encoding, &Self::ENCODINGS).map(|v| ("encoding", v)),
            unknown(&self.query_encoding, &Self::QUERY_ENCODINGS).map(|v| ("query_encoding", v)),
        ]
    }
}

/// RaBitQ codes (an extension of Qdrant's API): `{"rabitq": {"bits": 1}}`, 1 to 8 bits a
/// dimension, walked with unbiased estimates and re-ranked with full vectors only where the
/// estimate's error bound says a candidate may still enter the result (unless the search sets
/// `quantization.oversampling`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RabitqQuantization {
    /// Bits a dimension, 1 to 8. Default 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bits: Option<u8>,
    /// Keep codes in RAM (they always are here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub always_ram: Option<bool>,
}

/// Qdrant's product quantization settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductQuantization {
    /// How much smaller than `f32` the codes are: `x4`, `x8`, `x16`, `x32` or `x64` (one
    /// byte per 1, 2, 4, 8 or 16 dimensions).
    pub compression: String,
    /// Keep codes in RAM (they always are here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub always_ram: Option<bool>,
}

impl ProductQuantization {
    /// Dimensions per code byte.
    fn dims_per_byte(&self) -> Option<usize> {
        match self.compression.as_str() {
            "x4" => Some(1),
            "x8" => Some(2),
            "x16" => Some(4),
            "x32" => Some(8),
            "x64" => Some(16),
            _ => None,
        }
    }

    /// Sub-spaces (code bytes) for vectors of `dim` dimensions.
    pub fn subspaces(&self, dim: usize) -> usize {
        (dim / self.dims_per_byte().unwrap_or(4)).max(1)
    }
}

/// Qdrant's quantization config: one of scalar, product or binary, or RaBitQ (an extension).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum QuantizationConfig {
    /// 8-bit scalar quantization.
    Scalar(ScalarQuantization),
    /// Product quantization: codes walked through a per-query table, rescored with the full
    /// vectors.
    Product(ProductQuantization),
    /// One bit per dimension (or RaBitQ codes of two, for Qdrant's wider encodings).
    Binary(BinaryQuantization),
    /// RaBitQ codes (an extension).
    Rabitq(RabitqQuantization),
}

impl QuantizationConfig {
    fn validate(&self) -> Result<()> {
        match self {
            QuantizationConfig::Scalar(s) => {
                if s.kind != "int8" {
                    return Err(invalid(format!(
                        "quantization_config.scalar.type: `{}` is not `int8`",
                        s.kind
                    )));
                }
                if let Some(q) = s.quantile {
                    if !(0.5..=1.0).contains(&q) {
                        return Err(invalid(format!(
                            "quantization_config.scalar.quantile: {q} is not between 0.5 and 1"
                        )));
                    }
                }
                Ok(())
            }
            QuantizationConfig::Product(p) => match p.dims_per_byte() {
                Some(_) => Ok(()),
                None => Err(invalid(format!(
                    "quantization_config.product.compression: `{}` is not one of x4, x8, x16, x32, x64",
                    p.compression
                ))),
            },
            QuantizationConfig::Binary(b) => {
                if let Some((field, v)) = b.unknown_encodings().into_iter().flatten().next() {
                    let names = if field == "encoding" {
                        &BinaryQuantization::ENCODINGS[..]
                    } else {
                        &BinaryQuantization::QUERY_ENCODINGS[..]
                    };
                    return Err(invalid(format!(
                        "quantization_config.binary.{field}: {v} is not one of {}",
                        names.join(", ")
                    )));
                }
                Ok(())
            }
            QuantizationConfig::Rabitq(r) => match r.bits {
                Some(b) if !(1..=8).contains(&b) => Err(invalid(format!(
                    "quantization_config.rabitq.bits: {b} is not between 1 and 8"
                ))),
                _ => Ok(()),
            },
        }
    }
}

/// One vector's parameters (Qdrant's `VectorParams`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorParams {
    /// Dimension.
    pub size: usize,
    /// Distance function.
    pub distance: Distance,
    /// Keep full-precision vectors on disk (memory-mapped) once indexed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_disk: Option<bool>,
    /// Per-vector HNSW settings over the collection's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hnsw_config: Option<HnswConfigDiff>,
    /// Per-vector quantization over the collection's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantization_config: Option<QuantizationConfig>,
    /// Element type: `float32` (default) or `float16` (stored at half width).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datatype: Option<String>,
    /// Set: each point holds a matrix of vectors of `size`, scored by `comparator`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multivector_config: Option<MultiVectorConfig>,
    /// Qdrant 1.19's memory tier (accepted, not used).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<serde_json::Value>,
    /// Extension: this vector's index kind over the collection's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexConfig>,
}

impl VectorParams {
    fn validate(&self, name: &str) -> Result<()> {
        let label = if name.is_empty() {
            "vectors".to_string()
        } else {
            format!("vectors.{name}")
        };
        if self.size == 0 || self.size > MAX_VECTOR_SIZE {
            return Err(invalid(format!(
                "{label}.size: {} is not between 1 and {MAX_VECTOR_SIZE}",
                self.size
            )));
        }
        if let Some(h) = &self.hnsw_config {
            h.validate()?;
        }
        if let Some(q) = &self.quantization_config {
            q.validate()?;
        }
        match self.datatype.as_deref() {
            None | Some("float32") | Some("float16") => {}
            Some(other) => {
                return Err(invalid(format!(
                    "{label}.datatype: `{other}` is not supported (float32 or float16)"
                )))
            }
        }
        if let Some(IndexConfig::Ivf(c)) = &self.index {
            c.validate(self.size)
                .map_err(|e| invalid(format!("{label}.index: {e}")))?;
        }
        if let Some(IndexConfig::Cagra(c)) = &self.index {
            c.validate()
                .map_err(|e| invalid(format!("{label}.index: {e}")))?;
        }
        if self.multivector_config.is_some() && self.index.is_some() {
            return Err(invalid(format!(
                "{label}.index: a multivector is searched by MaxSim; it takes no index kind"
            )));
        }
        Ok(())
    }

    /// Whether points hold a matrix of this vector.
    pub fn is_multi(&self) -> bool {
        self.multivector_config.is_some()
    }
}

/// Qdrant's `MultiVectorConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiVectorConfig {
    /// How a query matrix scores against a point's.
    pub comparator: MultiVectorComparator,
}

/// Qdrant's `MultiVectorComparator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MultiVectorComparator {
    /// For each query row the best similarity to a point's row, summed.
    MaxSim,
}

/// One sparse vector's parameters (Qdrant's `SparseVectorParams`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SparseVectorParams {
    /// Its index settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<SparseIndexParams>,
    /// `idf`: query weights scaled by each index's inverse document frequency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub modifier: Option<SparseModifier>,
}

/// `Modifier` of a sparse vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SparseModifier {
    /// Weights as stored.
    None,
    /// Query weights scaled by the inverse document frequency of their index.
    Idf,
}

/// `SparseIndexParams`: accepted and echoed. The inverted index is in memory and exact
/// whatever they say (`full_scan_threshold` has no scan to switch to, `on_disk` keeps
/// nothing on disk but the checkpoint, `datatype` stores `float32` values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SparseIndexParams {
    /// Below this many points Qdrant scans instead of using the index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_scan_threshold: Option<u64>,
    /// Keep the index on disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_disk: Option<bool>,
    /// `float32`, `float16` or `uint8`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datatype: Option<String>,
}

/// Qdrant's `vectors` field: one unnamed vector, or named ones.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum VectorsConfig {
    /// One vector per point, addressed as `""`.
    Single(Box<VectorParams>),
    /// Named vectors.
    Multi(BTreeMap<String, VectorParams>),
}

/// Read by shape rather than by trying each variant, so that a bad field of one vector is
/// named in the error instead of "did not match any variant".
impl<'de> Deserialize<'de> for VectorsConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        let v = serde_json::Value::deserialize(d)?;
        // A vector's `size` is a number and its `distance` a string; a named vector called
        // `size` or `distance` is an object.
        let single = v.as_object().is_some_and(|m| {
            m.get("size").is_some_and(serde_json::Value::is_number)
                || m.get("distance").is_some_and(serde_json::Value::is_string)
        });
        if single {
            serde_json::from_value::<VectorParams>(v)
                .map(|p| VectorsConfig::Single(Box::new(p)))
                .map_err(D::Error::custom)
        } else {
            let named = serde_json::from_value::<BTreeMap<String, serde_json::Value>>(v)
                .map_err(D::Error::custom)?;
            named
                .into_iter()
                .map(|(name, p)| {
                    serde_json::from_value::<VectorParams>(p)
                        .map(|p| (name.clone(), p))
                        .map_err(|e| D::Error::custom(format!("{name}: {e}")))
                })
                .collect::<std::result::Result<_, _>>()
                .map(VectorsConfig::Multi)
        }
    }
}

impl VectorsConfig {
    /// Every vector's name (`""` for the unnamed one) and parameters, by name.
    pub fn params(&self) -> Vec<(String, &VectorParams)> {
        match self {
            VectorsConfig::Single(p) => vec![(String::new(), p)],
            VectorsConfig::Multi(m) => m.iter().map(|(k, v)| (k.clone(), v)).collect(),
        }
    }

    /// Calls `f` with every vector's name and mutable parameters.
    fn for_each_params_mut(&mut self, mut f: impl FnMut(&str, &mut VectorParams)) {
        match self {
            VectorsConfig::Single(p) => f("", p),
            VectorsConfig::Multi(m) => m.iter_mut().for_each(|(k, v)| f(k, v)),
        }
    }

    /// The parameters of the vector called `name`.
    pub fn get(&self, name: &str) -> Option<&VectorParams> {
        match self {
            VectorsConfig::Single(p) => name.is_empty().then_some(p),
            VectorsConfig::Multi(m) => m.get(name),
        }
    }

    /// The parameters of the vector called `name`, to change (a PATCH).
    pub fn get_mut(&mut self, name: &str) -> Option<&mut VectorParams> {
        match self {
            VectorsConfig::Single(p) => name.is_empty().then_some(&mut **p),
            VectorsConfig::Multi(m) => m.get_mut(name),
        }
    }

    /// Whether vectors are named.
    pub fn is_named(&self) -> bool {
        matches!(self, VectorsConfig::Multi(_))
    }
}

/// Qdrant's `OptimizersConfigDiff`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizersConfigDiff {
    /// Fraction of deleted points in an indexed segment that triggers its rebuild (0.2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_threshold: Option<f64>,
    /// Fewest deleted points worth a rebuild (1000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vacuum_min_vector_number: Option<usize>,
    /// Indexed segments per shard past which the optimizer merges the smallest (unset or 0:
    /// one, the shard's growing graph).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_segment_number: Option<usize>,
    /// In KB of vectors: an indexed segment past this starts a new one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_segment_size: Option<usize>,
    /// Accepted for compatibility (memory maps follow `on_disk`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memmap_threshold: Option<usize>,
    /// In KB of vectors (as Qdrant): an appendable segment past this is sealed and indexed;
    /// 0 disables indexing. Unset: 20,000 points.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub indexing_threshold: Option<usize>,
    /// Seconds between checkpoints of changed shards (5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flush_interval_sec: Option<u64>,
    /// Threads the optimizer builds with: a number or `"auto"` (all cores).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_optimization_threads: Option<serde_json::Value>,
    /// Qdrant 1.19 flag (accepted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prevent_unoptimized: Option<bool>,
}

impl OptimizersConfigDiff {
    /// `self` with unset fields taken from `base`.
    pub fn over(&self, base: &OptimizersConfigDiff) -> OptimizersConfigDiff {
        OptimizersConfigDiff {
            deleted_threshold: self.deleted_threshold.or(base.deleted_threshold),
            vacuum_min_vector_number: self
                .vacuum_min_vector_number
                .or(base.vacuum_min_vector_number),
            default_segment_number: self.default_segment_number.or(base.default_segment_number),
            max_segment_size: self.max_segment_size.or(base.max_segment_size),
            memmap_threshold: self.memmap_threshold.or(base.memmap_threshold),
            indexing_threshold: self.indexing_threshold.or(base.indexing_threshold),
            flush_interval_sec: self.flush_interval_sec.or(base.flush_interval_sec),
            max_optimization_threads: self
                .max_optimization_threads
                .clone()
                .or_else(|| base.max_optimization_threads.clone()),
            prevent_unoptimized: self.prevent_unoptimized.or(base.prevent_unoptimized),
        }
    }
}

/// Qdrant's `WalConfigDiff`, plus our fsync policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalConfigDiff {
    /// Size of one log file in MB (32).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_capacity_mb: Option<u64>,
    /// Accepted for compatibility.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_segments_ahead: Option<u64>,
    /// Accepted for compatibility.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_retain_closed: Option<u64>,
    /// Extension: fsync on this interval instead of before every acknowledgement (unset or 0:
    /// before every acknowledgement, concurrent writers sharing one fsync).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fsync_interval_ms: Option<u64>,
}

/// Qdrant's `CreateCollection` body: what a collection is made with, kept as sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionConfig {
    /// Vectors.
    pub vectors: VectorsConfig,
    /// Local shards (1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard_number: Option<u32>,
    /// Accepted and echoed (one node: one replica).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<u32>,
    /// Accepted and echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_consistency_factor: Option<u32>,
    /// Accepted and echoed (payloads stay in memory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_disk_payload: Option<bool>,
    /// Collection-wide HNSW settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hnsw_config: Option<HnswConfigDiff>,
    /// Optimizer settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optimizers_config: Option<OptimizersConfigDiff>,
    /// Log settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_config: Option<WalConfigDiff>,
    /// Collection-wide quantization.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantization_config: Option<QuantizationConfig>,
    /// Sparse vectors by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sparse_vectors: Option<BTreeMap<String, SparseVectorParams>>,
    /// `auto` (by hash of the id) or `custom` (by shard key, in cluster mode only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sharding_method: Option<String>,
    /// Extension, with `custom` sharding: the top-level payload field whose value (a
    /// string or an unsigned integer) is each point's shard key, so that an upsert needs no
    /// `shard_key` and a read whose filter pins the field reaches only its keys' shards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard_key_field: Option<String>,
    /// Extension, with `custom` sharding: the top-level payload field whose geo point is
    /// each point's location, placing it under the shard key whose region holds it, so
    /// that a read whose filter pins the field to a shape reaches only the keys whose
    /// regions meet it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard_region_field: Option<String>,
    /// Accepted and echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict_mode_config: Option<serde_json::Value>,
    /// Free-form metadata, echoed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    /// Qdrant 1.19 payload storage options (accepted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    /// Extension: the index kind of every vector (HNSW when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<IndexConfig>,
    /// Creation-time `init_from` (not supported: refused when present).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_from: Option<serde_json::Value>,
}

/// The effective settings of one named vector, after defaults.
#[derive(Debug, Clone)]
pub struct EffectiveVector {
    /// Name (`""` for the unnamed one).
    pub name: String,
    /// Dimension.
    pub dim: usize,
    /// Distance.
    pub distance: Distance,
    /// Index settings.
    pub hnsw: HnswConfig,
    /// Keep full vectors in the file map after load.
    pub on_disk: bool,
    /// IVF instead of HNSW, with this configuration (full vectors always kept).
    pub ivf: Option<index_ivf::IvfConfig>,
    /// CAGRA instead of HNSW, with this configuration.
    pub cagra: Option<gpu_cagra::CagraConfig>,
}

impl CollectionConfig {
    /// Removes binary quantization encodings that are not Qdrant's names, returning a line for
    /// each: configs stored before the names were checked (any JSON was kept) still open, as
    /// the one-bit codes they always had.
    pub fn drop_unknown_binary_encodings(&mut self) -> Vec<String> {
        let mut dropped = Vec::new();
        let mut clean = |label: String, q: &mut Option<QuantizationConfig>| {
            let Some(QuantizationConfig::Binary(b)) = q else {
                return;
            };
            let [encoding, query] = b.unknown_encodings().map(|u| u.map(|(_, v)| v.to_string()));
            if let Some(v) = encoding {
                dropped.push(format!("{label}.binary.encoding {v}"));
                b.encoding = None;
            }
            if let Some(v) = query {
                dropped.push(format!("{label}.binary.query_encoding {v}"));
                b.query_encoding = None;
            }
        };
        clean("quantization_config".into(), &mut self.quantization_config);
        self.vectors.for_each_params_mut(|name, p| {
            clean(
                format!("vectors.{name}.quantization_config"),
                &mut p.quantization_config,
            )
        });
        dropped
    }

    /// Parses a `CreateCollection` body.
    pub fn from_json(v: &serde_json::Value) -> Result<CollectionConfig> {
        let c: CollectionConfig = serde_json::from_value(v.clone())
            .map_err(|e| invalid(format!("collection config: {e}")))?;
        c.validate()?;
        Ok(c)
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        let params = self.vectors.params();
        let sparse = self.sparse_vectors.as_ref();
        if params.is_empty() && sparse.is_none_or(|s| s.is_empty()) {
            return Err(invalid(
                "vectors: at least one dense or sparse vector is needed".into(),
            ));
        }
        if params.len() + sparse.map_or(0, |s| s.len()) > MAX_NAMED_VECTORS {
            return Err(invalid(format!(
                "vectors: more than {MAX_NAMED_VECTORS} named vectors"
            )));
        }
        for (name, p) in &params {
            // The empty name is the unnamed vector, which may sit beside named ones once a
            // named vector is created on a collection of one unnamed vector (as in Qdrant).
            if name.len() > 256 {
                return Err(invalid(format!(
                    "vectors: name `{name}` must be at most 256 bytes"
                )));
            }
            // Names beginning with NUL are the hidden columns' (`fde_column`).
            if name.contains('\0') {
                return Err(invalid(format!(
                    "vectors: name {name:?} must not contain a NUL character"
                )));
            }
            p.validate(name)?;
            let rabitq = matches!(
                p.quantization_config
                    .as_ref()
                    .or(self.quantization_config.as_ref()),
                Some(QuantizationConfig::Rabitq(_))
            );
            if rabitq && p.distance == Distance::Manhattan {
                return Err(invalid(format!(
                    "quantization_config.rabitq: RaBitQ codes estimate inner products; {} uses Manhattan distance",
                    if name.is_empty() { "the vector".to_string() } else { format!("vector `{name}`") }
                )));
            }
            if let Some(IndexConfig::Ivf(c)) = p.index.as_ref().or(self.index.as_ref()) {
                c.validate(p.size)
                    .and_then(|()| c.check_metric(p.distance.metric()))
                    .map_err(|e| invalid(format!("index: {e}")))?;
                if p.quantization_config.is_some() || self.quantization_config.is_some() {
                    return Err(invalid(
                        "quantization_config applies to HNSW; an IVF index sets its own list encoding"
                            .into(),
                    ));
                }
            }
            if let Some(IndexConfig::Cagra(c)) = p.index.as_ref().or(self.index.as_ref()) {
                c.validate().map_err(|e| invalid(format!("index: {e}")))?;
                if p.quantization_config.is_some() || self.quantization_config.is_some() {
                    return Err(invalid(
                        "quantization_config applies to HNSW; a CAGRA index sets its own `storage`"
                            .into(),
                    ));
                }
            }
        }
        let shards = self.shard_number.unwrap_or(1);
        if shards == 0 || shards > MAX_SHARDS {
            return Err(invalid(format!(
                "shard_number: {shards} is not between 1 and {MAX_SHARDS}"
            )));
        }
        if let Some(h) = &self.hnsw_config {
            h.validate()?;
        }
        if let Some(q) = &self.quantization_config {
            q.validate()?;
        }
        if let Some(o) = &self.optimizers_config {
            if let Some(t) = o.deleted_threshold {
                if !(0.0..=1.0).contains(&t) {
                    return Err(invalid(format!(
                        "optimizers_config.deleted_threshold: {t} is not between 0 and 1"
                    )));
                }
            }
            if let Some(t) = &o.max_optimization_threads {
                if !(t.is_u64() || t.as_str() == Some("auto") || t.is_null()) {
                    return Err(invalid(
                        "optimizers_config.max_optimization_threads: a number or \"auto\"".into(),
                    ));
                }
            }
        }
        if let Some(w) = &self.wal_config {
            if w.wal_capacity_mb == Some(0) {
                return Err(invalid(
                    "wal_config.wal_capacity_mb: must be at least 1".into(),
                ));
            }
        }
        for (name, p) in sparse.into_iter().flatten() {
            if name.is_empty() || name.len() > 256 {
                return Err(invalid(format!(
                    "sparse_vectors: name `{name}` must be 1 to 256 bytes"
                )));
            }
            if name.contains('\0') {
                return Err(invalid(format!(
                    "sparse_vectors: name {name:?} must not contain a NUL character"
                )));
            }
            if self.vectors.get(name).is_some() {
                return Err(invalid(format!(
                    "sparse_vectors.{name}: a dense vector has this name"
                )));
            }
            if let Some(d) = p.index.as_ref().and_then(|i| i.datatype.as_deref()) {
                if !matches!(d, "float32" | "float16" | "uint8") {
                    return Err(invalid(format!(
                        "sparse_vectors.{name}.index.datatype: `{d}` is not float32, float16 \
                         or uint8"
                    )));
                }
            }
        }
        if let Some(m) = &self.sharding_method {
            // `custom` is valid: a cluster router serves it (its keys' groups of nodes hold
            // the points); a collection of this crate alone places by hash, and its server
            // refuses `custom` there.
            if m != "auto" && m != "custom" {
                return Err(invalid(format!(
                    "sharding_method: `{m}` is not one of auto, custom"
                )));
            }
        }
        if self.init_from.is_some() {
            return Err(invalid("init_from: not supported".into()));
        }
        if self.shard_key_field.is_some() && self.shard_region_field.is_some() {
            return Err(invalid(
                "shard_key_field and shard_region_field: a collection places its points by \
                 one of them"
                    .into(),
            ));
        }
        for (name, field) in [
            ("shard_key_field", &self.shard_key_field),
            ("shard_region_field", &self.shard_region_field),
        ] {
            let Some(f) = field else { continue };
            if self.sharding_method.as_deref() != Some("custom") {
                return Err(invalid(format!(
                    "{name}: places points by shard key, so it needs sharding_method `custom`"
                )));
            }
            let plain = !f.is_empty()
                && f.len() <= 64
                && f.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !plain {
                return Err(invalid(format!(
                    "{name}: `{f}` is not a top-level payload key of 1 to 64 letters, \
                     digits, `_` or `-`"
                )));
            }
        }
        Ok(())
    }

    /// The sparse vectors' names, in name order.
    pub fn sparse_names(&self) -> Vec<String> {
        self.sparse_vectors
            .iter()
            .flat_map(|s| s.keys().cloned())
            .collect()
    }

    /// The parameters of sparse vector `name`, if there is one.
    pub fn sparse(&self, name: &str) -> Option<&SparseVectorParams> {
        self.sparse_vectors.as_ref()?.get(name)
    }

    /// Whether a point's vectors are answered as a map by name (named dense vectors, or any
    /// sparse vector) rather than as the unnamed vector's list.
    pub fn is_named_output(&self) -> bool {
        self.vectors.is_named() || self.sparse_vectors.as_ref().is_some_and(|s| !s.is_empty())
    }

    /// Number of local shards.
    pub fn shards(&self) -> u32 {
        self.shard_number.unwrap_or(1)
    }

    /// The multivectors: name and parameters, and whether each is indexed (see
    /// [`Self::effective_vectors`]), in name order.
    pub fn multivectors(&self) -> Vec<(String, &VectorParams, bool)> {
        self.vectors
            .params()
            .into_iter()
            .filter(|(_, p)| p.is_multi())
            .map(|(name, p)| {
                let indexed = self.multi_indexed(p);
                (name, p, indexed)
            })
            .collect()
    }

    /// The parameters of vector `name` if it is a multivector.
    pub fn multivector(&self, name: &str) -> Option<&VectorParams> {
        self.vectors.get(name).filter(|p| p.is_multi())
    }

    /// The parameters of vector `name` if it is a dense vector of one row per point.
    pub fn dense(&self, name: &str) -> Option<&VectorParams> {
        self.vectors.get(name).filter(|p| !p.is_multi())
    }

    /// Whether multivector `name` (of parameters `p`) is indexed: by its fixed-dimensional
    /// encodings in a graph (see [`crate::multi::Fde`]), which approximate MaxSim under the
    /// inner product only, so under dot and cosine, and unless its graph is off (`m: 0`).
    fn multi_indexed(&self, p: &VectorParams) -> bool {
        let m = p
            .hnsw_config
            .as_ref()
            .and_then(|h| h.m)
            .or(self.hnsw_config.as_ref().and_then(|h| h.m));
        p.is_multi() && matches!(p.distance, Distance::Dot | Distance::Cosine) && m != Some(0)
    }

    /// The effective settings of every column segments hold: each dense vector of one row
    /// per point, then for each indexed multivector a hidden column of its encodings
    /// ([`fde_column`]; the matrices themselves live beside the segments, see `multi`).
    pub fn effective_vectors(&self) -> Vec<EffectiveVector> {
        let base = self.hnsw_config.clone().unwrap_or_default();
        let params = self.vectors.params();
        let hidden = params
            .iter()
            .filter(|(_, p)| self.multi_indexed(p))
            .map(|(name, p)| {
                let fde = crate::multi::Fde::new(p.size);
                let params = VectorParams {
                    size: fde.len(),
                    distance: Distance::Dot,
                    multivector_config: None,
                    ..(*p).clone()
                };
                (fde_column(name), params)
            })
            .collect::<Vec<_>>();
        params
            .into_iter()
            .filter(|(_, p)| !p.is_multi())
            .map(|(name, p)| (name, p.clone()))
            .chain(hidden)
            .map(|(name, p)| {
                let p = &p;
                let h = p.hnsw_config.clone().unwrap_or_default().over(&base);
                let quant = p
                    .quantization_config
                    .as_ref()
                    .or(self.quantization_config.as_ref());
                let defaults = HnswConfig::default();
                let storage = match quant {
                    Some(QuantizationConfig::Scalar(_)) => StorageKind::Sq8,
                    Some(QuantizationConfig::Binary(b)) if b.rabitq_bits(p.distance).is_some() => {
                        StorageKind::Rabitq
                    }
                    Some(QuantizationConfig::Binary(_)) => StorageKind::Binary,
                    Some(QuantizationConfig::Rabitq(_)) => StorageKind::Rabitq,
                    Some(QuantizationConfig::Product(_)) => StorageKind::Pq,
                    _ if p.datatype.as_deref() == Some("float16") => StorageKind::F16,
                    _ => StorageKind::F32,
                };
                let quantile = match quant {
                    Some(QuantizationConfig::Scalar(s)) => {
                        s.quantile.map_or(defaults.quantile, |q| q as f32)
                    }
                    _ => defaults.quantile,
                };
                let rabitq_bits = match quant {
                    Some(QuantizationConfig::Rabitq(r)) => r.bits.unwrap_or(1),
                    Some(QuantizationConfig::Binary(b)) => b.rabitq_bits(p.distance).unwrap_or(1),
                    _ => defaults.rabitq_bits,
                };
                let pq_subspaces = match quant {
                    Some(QuantizationConfig::Product(pq)) => pq.subspaces(p.size),
                    _ => 0,
                };
                let full_scan_points = h
                    .full_scan_threshold
                    .map(|kb| kb_to_points(kb, p.size))
                    .unwrap_or(defaults.full_scan_threshold);
                let ivf = match p.index.as_ref().or(self.index.as_ref()) {
                    Some(IndexConfig::Ivf(c)) => Some(index_ivf::IvfConfig {
                        keep_vectors: true,
                        ..c.clone()
                    }),
                    _ => None,
                };
                let cagra = match p.index.as_ref().or(self.index.as_ref()) {
                    Some(IndexConfig::Cagra(c)) => Some(c.clone()),
                    _ => None,
                };
                EffectiveVector {
                    ivf,
                    cagra,
                    dim: p.size,
                    distance: p.distance,
                    on_disk: p.on_disk.unwrap_or(false),
                    hnsw: HnswConfig {
                        m: h.m.unwrap_or(defaults.m),
                        ef_construct: h.ef_construct.unwrap_or(defaults.ef_construct),
                        full_scan_threshold: full_scan_points,
                        storage,
                        quantile,
                        pq_subspaces,
                        rabitq_bits,
                        ..defaults
                    },
                    name,
                }
            })
            .collect()
    }

    /// Bytes of full vectors per point, summed over named vectors.
    pub fn vector_bytes_per_point(&self) -> usize {
        self.vectors.params().iter().map(|(_, p)| p.size * 4).sum()
    }

    /// Points per shard past which an appendable segment is sealed and indexed; `None`
    /// when indexing is disabled.
    pub fn indexing_threshold_points(&self) -> Option<usize> {
        match self
            .optimizers_config
            .as_ref()
            .and_then(|o| o.indexing_threshold)
        {
            None => Some(DEFAULT_INDEXING_THRESHOLD_POINTS),
            Some(0) => None,
            Some(kb) => Some((kb * 1024 / self.vector_bytes_per_point().max(1)).max(1)),
        }
    }

    /// Points past which an indexed segment stops growing and a new one starts.
    pub fn max_segment_points(&self) -> usize {
        match self
            .optimizers_config
            .as_ref()
            .and_then(|o| o.max_segment_size)
        {
            None => 50_000_000,
            Some(kb) => (kb.saturating_mul(1024) / self.vector_bytes_per_point().max(1)).max(1),
        }
    }

    /// Indexed segments a shard keeps before merging (`default_segment_number`; 0 or unset: 1).
    pub fn segment_target(&self) -> usize {
        self.optimizers_config
            .as_ref()
            .and_then(|o| o.default_segment_number)
            .unwrap_or(0)
            .max(1)
    }

    /// Threads the optimizer builds with.
    pub fn optimizer_threads(&self) -> usize {
        let auto = std::thread::available_parallelism().map_or(1, |n| n.get());
        match self
            .optimizers_config
            .as_ref()
            .and_then(|o| o.max_optimization_threads.as_ref())
            .and_then(|t| t.as_u64())
        {
            Some(n) if n > 0 => (n as usize).min(auto.max(1) * 4),
            _ => auto,
        }
    }

    /// Fraction of deleted points that triggers a rebuild, and the fewest worth one.
    pub fn vacuum_thresholds(&self) -> (f64, usize) {
        let o = self.optimizers_config.clone().unwrap_or_default();
        (
            o.deleted_threshold.unwrap_or(DEFAULT_DELETED_THRESHOLD),
            o.vacuum_min_vector_number
                .unwrap_or(DEFAULT_VACUUM_MIN_VECTOR_NUMBER),
        )
    }

    /// `optimizers_config.flush_interval_sec` as set, or its default (what the collection
    /// info reports; [`Self::flush_interval`] is the clamped interval in use).
    pub fn flush_interval_sec(&self) -> u64 {
        self.optimizers_config
            .as_ref()
            .and_then(|o| o.flush_interval_sec)
            .unwrap_or(DEFAULT_FLUSH_INTERVAL_SEC)
    }

    /// `wal_config.wal_capacity_mb` as set, or its default (what the collection info
    /// reports; [`Self::wal_segment_bytes`] is the clamped size in use).
    pub fn wal_capacity_mb(&self) -> u64 {
        self.wal_config
            .as_ref()
            .and_then(|w| w.wal_capacity_mb)
            .unwrap_or(DEFAULT_WAL_CAPACITY_MB)
    }

    /// Seconds between checkpoints.
    pub fn flush_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.flush_interval_sec().clamp(1, 3600))
    }

    /// The fsync interval, when writes are not synced before acknowledgement.
    pub fn fsync_interval(&self) -> Option<std::time::Duration> {
        match self.wal_config.as_ref().and_then(|w| w.fsync_interval_ms) {
            None | Some(0) => None,
            Some(ms) => Some(std::time::Duration::from_millis(ms.min(60_000))),
        }
    }

    /// Bytes of one log file.
    pub fn wal_segment_bytes(&self) -> u64 {
        self.wal_capacity_mb().clamp(1, 1024) << 20
    }
}

/// Converts Qdrant's KB-of-vectors thresholds into points of dimension `dim`.
fn kb_to_points(kb: usize, dim: usize) -> usize {
    kb.saturating_mul(1024) / (dim * 4).max(1)
}

/// The name of the hidden column holding multivector `name`'s encodings. It begins with NUL,
/// which no vector's name may hold, and carries the encoding's version: a new version is a
/// new, empty column.
pub fn fde_column(name: &str) -> String {
    format!("\0fde{}:{name}", crate::multi::FDE_VERSION)
}

/// Whether a column is hidden (see [`fde_column`]): never returned as a point's vector.
pub fn is_hidden_column(name: &str) -> bool {
    name.starts_with('\0')
}

fn invalid(msg: String) -> StorageError {
    StorageError::InvalidConfig(msg)
}
