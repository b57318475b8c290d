//! Durable collections: what turns the index crates into a database.
//!
//! A [`Storage`] holds named [`Collection`]s under one directory. Each collection has a
//! config (Qdrant's `CreateCollection` body, [`CollectionConfig`]), one write-ahead log
//! ([`wal`]) and one or more [`LocalShard`]s. A shard keeps its points in segments: new
//! points go to an appendable segment searched exactly; past the indexing threshold the
//! segment is sealed and a background optimizer moves its points into an HNSW-indexed
//! segment, while searches go on over all segments at once. Payloads, filters and payload
//! indexes come from the `payload` crate. Shards checkpoint their state beside the log,
//! which is then truncated; start-up loads the checkpoints and replays the log after them.
//! Snapshots ([`Storage::create_snapshot`]) are single checksummed archives ([`archive`]).
//!
//! ```
//! use storage::{CollectionConfig, PointSelector, Storage, Update, PointWrite};
//! use index_core::{PointId, SearchParams};
//! use payload::PayloadSelector;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = Storage::open(&dir.path().join("storage"), &dir.path().join("snapshots")).unwrap();
//! let config = CollectionConfig::from_json(&serde_json::json!({
//!     "vectors": {"size": 2, "distance": "Euclid"}
//! })).unwrap();
//! let c = store.create("points", config).unwrap();
//! let point = |id: u64, v: Vec<f32>| PointWrite {
//!     id: PointId::Num(id), vectors: vec![(String::new(), v)], payload: Default::default(),
//!     sparse: Vec::new(), multi: Vec::new() };
//! c.update(Update::Upsert(vec![point(1, vec![0.0, 0.0]), point(2, vec![3.0, 4.0])]), true).unwrap();
//! let hits = c.search(&storage::SearchRequest {
//!     vector_name: String::new(),
//!     query: storage::Query::Nearest(vec![3.0, 3.0]),
//!     filter: None,
//!     params: SearchParams::top(1),
//!     with_payload: PayloadSelector::Nothing,
//!     with_vector: storage::VectorSelector::Nothing,
//!     candidates: None,
//! }).unwrap();
//! assert_eq!(hits[0].record.id, PointId::Num(2));
//! assert_eq!(hits[0].score, 1.0); // Euclid scores are distances, not squared
//! c.update(Update::Delete(PointSelector::Ids(vec![PointId::Num(2)])), true).unwrap();
//! assert_eq!(c.count(None), 1);
//! store.close().unwrap();
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod aliases;
pub mod archive;
mod cagra;
mod collection;
mod config;
mod error;
mod filter_cache;
pub mod matrix;
pub mod multi;
mod ops;
mod order;
#[allow(unsafe_code)] // The crate's only `unsafe`: three system calls, see their SAFETY arguments.
pub mod priority;
mod query;
mod segment;
mod shard;
pub mod sparse;
mod store;
pub mod wal;

pub use aliases::{AliasChange, MAX_ALIASES};
pub use collection::{
    merge_scroll_pages, shard_of, Collection, CollectionStats, PointSelector, Update, UpsertMode,
    MAX_BATCH_OPERATIONS, MAX_PAYLOAD_BYTES,
};
pub use config::{
    BinaryQuantization, CollectionConfig, Distance, EffectiveVector, HnswConfigDiff,
    MultiVectorComparator, MultiVectorConfig, OptimizersConfigDiff, ProductQuantization,
    QuantizationConfig, ScalarQuantization, SparseIndexParams, SparseModifier, SparseVectorParams,
    VectorParams, VectorsConfig, WalConfigDiff, DEFAULT_DELETED_THRESHOLD,
    DEFAULT_FLUSH_INTERVAL_SEC, DEFAULT_FULL_SCAN_THRESHOLD_KB, DEFAULT_VACUUM_MIN_VECTOR_NUMBER,
    DEFAULT_WAL_CAPACITY_MB, MAX_NAMED_VECTORS, MAX_SHARDS, MAX_VECTOR_SIZE,
};
pub use error::{Result, StorageError, StorageErrorKind};
pub use multi::MultiVector;
pub use ops::{Operation, PointWrite, MAX_POINTS_PER_OPERATION};
pub use order::{OrderBy, OrderValue};
pub use query::{
    ContextPair, ExampleQuery, Examples, MultiExamples, Pair, PreparedExamples, Query,
    RecommendStrategy, SparseExamples,
};
pub use shard::{
    LocalShard, MultiColumn, Record, ScoredPoint, ScrollPage, SearchRequest, ShardSettings,
    VectorSelector, VectorsChange,
};
pub use sparse::SparseVector;
pub use store::{validate_collection_name, SnapshotDescription, Storage, MAX_COLLECTIONS};
