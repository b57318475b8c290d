//! Response bodies, named after Qdrant's schemas, serialised straight from borrowed storage
//! records: a search answer goes from the shard's hits to bytes with no intermediate tree.
//!
//! Floats (scores, vector values) are written as the `f64` of the stored `f32`, as every
//! version of this server has: clients parse them into doubles either way.

use index_core::PointId;
use payload::Payload;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;
use storage::{Record as StoredRecord, ScoredPoint as StoredScoredPoint};

/// A point id as Qdrant writes it: a number, or a hyphenated lowercase UUID string.
#[derive(Debug, Clone, Copy)]
pub struct Id(pub PointId);

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            PointId::Num(n) => s.serialize_u64(n),
            id @ PointId::Uuid(_) => s.collect_str(&id),
        }
    }
}

/// An `f32` written as its `f64` value.
#[derive(Debug, Clone, Copy)]
pub struct Float(pub f32);

impl Serialize for Float {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(f64::from(self.0))
    }
}

/// A dense vector.
pub struct Floats<'a>(pub &'a [f32]);

impl Serialize for Floats<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for x in self.0 {
            seq.serialize_element(&Float(*x))?;
        }
        seq.end()
    }
}

/// A point's vectors (`VectorStructOutput`) in the shape the collection was configured: a
/// list for the unnamed vector, a map for named ones (`{}` for a point stored without its
/// unnamed vector, as Qdrant); `null` when none was asked for.
pub struct Vectors<'a> {
    /// Named vectors (or any sparse vector) configured.
    pub named: bool,
    /// What the record holds.
    pub vectors: Option<&'a [(String, Vec<f32>)]>,
    /// Its sparse vectors (asked for with `vectors`).
    pub sparse: &'a [(String, storage::SparseVector)],
    /// Its multivectors (asked for with `vectors`).
    pub multi: &'a [(String, storage::MultiVector)],
}

impl<'a> Vectors<'a> {
    /// The vectors of a stored record.
    pub fn of(named: bool, r: &'a StoredRecord) -> Vectors<'a> {
        Vectors {
            named,
            vectors: r.vectors.as_deref(),
            sparse: &r.sparse,
            multi: &r.multi,
        }
    }
}

/// A multivector in an answer: a list of rows.
struct Matrix<'a>(&'a storage::MultiVector);

impl Serialize for Matrix<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.row_count()))?;
        for row in self.0.rows() {
            seq.serialize_element(&Floats(row))?;
        }
        seq.end()
    }
}

/// `SparseVector` in an answer.
struct Sparse<'a>(&'a storage::SparseVector);

impl Serialize for Sparse<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("indices", &self.0.indices)?;
        map.serialize_entry("values", &Floats(&self.0.values))?;
        map.end()
    }
}

impl Serialize for Vectors<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Some(vectors) = self.vectors else {
            return s.serialize_none();
        };
        // The unnamed vector alone is a list even beside named ones (a collection given named
        // vectors after its unnamed one), as Qdrant answers.
        let unnamed_only = self.sparse.is_empty()
            && match (vectors, self.multi) {
                ([(n, _)], []) | ([], [(n, _)]) => n.is_empty(),
                _ => false,
            };
        if !self.named || unnamed_only {
            if let Some((_, v)) = vectors.iter().find(|(n, _)| n.is_empty()) {
                return Floats(v).serialize(s);
            }
            return match self.multi.iter().find(|(n, _)| n.is_empty()) {
                Some((_, m)) => Matrix(m).serialize(s),
                None => s.serialize_map(Some(0))?.end(),
            };
        }
        let mut map =
            s.serialize_map(Some(vectors.len() + self.sparse.len() + self.multi.len()))?;
        for (name, v) in vectors {
            map.serialize_entry(name, &Floats(v))?;
        }
        for (name, m) in self.multi {
            map.serialize_entry(name, &Matrix(m))?;
        }
        for (name, v) in self.sparse {
            map.serialize_entry(name, &Sparse(v))?;
        }
        map.end()
    }
}

/// `Record`.
#[derive(Serialize)]
pub struct Record<'a> {
    /// Id.
    pub id: Id,
    /// Payload, or `null` when not asked for.
    pub payload: Option<&'a Payload>,
    /// Vectors, or `null` when not asked for.
    pub vector: Vectors<'a>,
    /// The value a scroll with `order_by` ordered it by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_value: Option<OrderValue>,
}

/// `OrderValue`: an integer or a float.
#[derive(Serialize, Clone, Copy)]
#[serde(untagged)]
pub enum OrderValue {
    /// An integer (a datetime in microseconds).
    Int(i64),
    /// A float.
    Float(f64),
}

impl From<storage::OrderValue> for OrderValue {
    fn from(v: storage::OrderValue) -> OrderValue {
        match v {
            storage::OrderValue::Int(i) => OrderValue::Int(i),
            storage::OrderValue::Float(f) => OrderValue::Float(f),
        }
    }
}

impl<'a> Record<'a> {
    /// The response form of a stored record.
    pub fn of(named: bool, r: &'a StoredRecord) -> Record<'a> {
        Record {
            id: Id(r.id),
            payload: r.payload.as_ref(),
            vector: Vectors::of(named, r),
            order_value: None,
        }
    }
}

/// `ScoredPoint`.
#[derive(Serialize)]
pub struct ScoredPoint<'a> {
    /// Id.
    pub id: Id,
    /// Point version (this server does not version points: 0).
    pub version: u64,
    /// Score.
    pub score: Float,
    /// Payload, or `null` when not asked for.
    pub payload: Option<&'a Payload>,
    /// Vectors, or `null` when not asked for.
    pub vector: Vectors<'a>,
    /// The value an `order_by` query ordered it by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_value: Option<OrderValue>,
}

impl<'a> ScoredPoint<'a> {
    /// The response form of a hit.
    pub fn of(named: bool, p: &'a StoredScoredPoint) -> ScoredPoint<'a> {
        ScoredPoint::scored(named, &p.record, p.score)
    }

    /// A record with a score (queries without a vector score every point 1).
    pub fn scored(named: bool, r: &'a StoredRecord, score: f32) -> ScoredPoint<'a> {
        ScoredPoint {
            id: Id(r.id),
            version: 0,
            score: Float(score),
            payload: r.payload.as_ref(),
            vector: Vectors::of(named, r),
            order_value: None,
        }
    }
}

/// `ScrollResult`.
#[derive(Serialize)]
pub struct ScrollResult<'a> {
    /// The page.
    pub points: Vec<Record<'a>>,
    /// The first id of the next page.
    pub next_page_offset: Option<Id>,
}

/// `CountResult`.
#[derive(Serialize)]
pub struct CountResult {
    /// Points matching.
    pub count: usize,
}

/// `UpdateStatus`.
#[derive(Serialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum UpdateStatus {
    /// Logged, applied later.
    Acknowledged,
    /// Applied.
    Completed,
}

impl UpdateStatus {
    /// `completed` when the client waited.
    pub fn waited(wait: bool) -> UpdateStatus {
        if wait {
            UpdateStatus::Completed
        } else {
            UpdateStatus::Acknowledged
        }
    }
}

/// `UpdateResult`.
#[derive(Clone, Copy, Serialize)]
pub struct UpdateResult {
    /// Sequence number of the operation.
    pub operation_id: u64,
    /// Whether it was applied.
    pub status: UpdateStatus,
}

/// `CollectionDescription`.
#[derive(Serialize)]
pub struct CollectionDescription {
    /// Name.
    pub name: String,
}

/// `CollectionsResponse`.
#[derive(Serialize)]
pub struct CollectionsResponse {
    /// Every collection.
    pub collections: Vec<CollectionDescription>,
}

/// `AliasDescription`.
#[derive(Serialize)]
pub struct AliasDescription {
    /// The alias.
    pub alias_name: String,
    /// Its collection.
    pub collection_name: String,
}

/// `CollectionsAliasesResponse`.
#[derive(Serialize)]
pub struct CollectionsAliasesResponse {
    /// The aliases.
    pub aliases: Vec<AliasDescription>,
}

/// `CollectionExistence`.
#[derive(Serialize)]
pub struct CollectionExistence {
    /// Whether it exists.
    pub exists: bool,
}

/// `CollectionStatus`.
#[derive(Serialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum CollectionStatus {
    /// Every point indexed.
    Green,
    /// Optimizing.
    Yellow,
    /// The optimizer failed.
    Red,
}

/// `OptimizersStatus`: `"ok"` or `{"error": "..."}`.
pub enum OptimizersStatus {
    /// Fine.
    Ok,
    /// The last optimization failed.
    Error(String),
}

impl Serialize for OptimizersStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            OptimizersStatus::Ok => s.serialize_str("ok"),
            OptimizersStatus::Error(e) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("error", e)?;
                m.end()
            }
        }
    }
}

/// `CollectionInfo`.
#[derive(Serialize)]
pub struct CollectionInfo {
    /// Status.
    pub status: CollectionStatus,
    /// Optimizer status.
    pub optimizer_status: OptimizersStatus,
    /// Vectors in indexed segments.
    pub indexed_vectors_count: usize,
    /// Points.
    pub points_count: usize,
    /// Segments.
    pub segments_count: usize,
    /// The configuration, defaults filled in.
    pub config: CollectionConfig,
    /// Payload indexes.
    pub payload_schema: serde_json::Value,
}

/// `CollectionParams`.
#[derive(Serialize)]
pub struct CollectionParams {
    /// Vectors, as configured.
    pub vectors: storage::VectorsConfig,
    /// Sparse vectors, as configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sparse_vectors: Option<std::collections::BTreeMap<String, storage::SparseVectorParams>>,
    /// Shards.
    pub shard_number: u32,
    /// Replicas per shard.
    pub replication_factor: u32,
    /// Replicas acknowledging a write.
    pub write_consistency_factor: u32,
    /// Payloads on disk.
    pub on_disk_payload: bool,
    /// Sharding method, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sharding_method: Option<String>,
}

/// `HnswConfig` (effective values).
#[derive(Serialize)]
pub struct HnswConfig {
    /// Links per node.
    pub m: usize,
    /// Build candidate list size.
    pub ef_construct: usize,
    /// KB of vectors below which a filtered search scans.
    pub full_scan_threshold: usize,
    /// Build threads (0: the optimizer's).
    pub max_indexing_threads: usize,
    /// Graph on disk.
    pub on_disk: bool,
    /// Extra links per indexed payload value, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_m: Option<usize>,
}

/// `OptimizersConfig` (effective values).
#[derive(Serialize)]
pub struct OptimizersConfig {
    /// Deleted fraction that triggers a rebuild.
    pub deleted_threshold: f64,
    /// Fewest deleted points worth a rebuild.
    pub vacuum_min_vector_number: usize,
    /// Target segment count.
    pub default_segment_number: usize,
    /// Largest indexed segment, KB, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_segment_size: Option<usize>,
    /// Memory map threshold, KB, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memmap_threshold: Option<usize>,
    /// Indexing threshold, KB, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub indexing_threshold: Option<usize>,
    /// Seconds between checkpoints.
    pub flush_interval_sec: u64,
    /// Build threads, when set to a number (`"auto"` is reported as absent, as Qdrant
    /// reports it `null`: the response schema has only an integer here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_optimization_threads: Option<u64>,
}

/// `WalConfig` (effective values).
#[derive(Serialize)]
pub struct WalConfig {
    /// One log file, MB.
    pub wal_capacity_mb: u64,
    /// Files created ahead.
    pub wal_segments_ahead: u64,
}

/// `CollectionConfig` as `GET /collections/{name}` answers it.
#[derive(Serialize)]
pub struct CollectionConfig {
    /// Parameters.
    pub params: CollectionParams,
    /// HNSW.
    pub hnsw_config: HnswConfig,
    /// Optimizer.
    pub optimizer_config: OptimizersConfig,
    /// Log.
    pub wal_config: WalConfig,
    /// Quantization, or `null`.
    pub quantization_config: Option<storage::QuantizationConfig>,
    /// Strict mode, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strict_mode_config: Option<serde_json::Value>,
    /// Metadata, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
}

/// `{"status": "accepted", "time": ...}`, the answer to an operation not waited for.
#[derive(Serialize)]
pub struct Accepted {
    /// `accepted`.
    pub status: &'static str,
    /// Seconds.
    pub time: f64,
}
