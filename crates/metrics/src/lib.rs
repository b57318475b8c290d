//! Prometheus metric families for the router, built from plain stats at
//! scrape time.
//!
//! The crate knows nothing of vectors, shards or caches beyond plain
//! numbers. [`Metrics`] records request counts and latencies as they
//! happen; everything else (collection sizes, cache counters, process
//! figures) is handed to [`Metrics::render`] as a [`Snapshot`] when
//! Prometheus scrapes, so no gauge can go stale and a deleted collection's
//! figures disappear with it. Label cardinality is bounded (see
//! [`Metrics`]): endpoints are route templates, and collections, shards and
//! endpoints past their limits fold into [`OVERFLOW_LABEL`].
//!
//! ```
//! use metrics::{CacheCounters, CollectionStats, Metrics, Snapshot};
//!
//! let metrics = Metrics::new();
//! metrics.observe_request("/collections/{name}/points/query", "POST", 200, 0.004);
//! metrics.observe_search("books", 0.003);
//! metrics.observe_shard_search("books", 0, 0.002);
//!
//! let snapshot = Snapshot {
//!     collections: vec![CollectionStats { name: "books".into(), points: 1_000, ..Default::default() }],
//!     cache: Some(CacheCounters { hits: 5, misses: 2, ..Default::default() }),
//!     process: None,
//!     nodes: Vec::new(),
//!     reshardings: Vec::new(),
//!     filesystems: Vec::new(),
//! };
//! let text = metrics.render(&snapshot);
//! assert!(text.contains("# TYPE vector_router_http_requests_total counter"));
//! assert!(text.contains(
//!     r#"vector_router_http_requests_total{endpoint="/collections/{name}/points/query",method="POST",status="200"} 1"#
//! ));
//! assert!(text.contains(r#"vector_router_collection_points{collection="books"} 1000"#));
//! assert!(text.contains("vector_router_cache_hits_total 5"));
//!
//! // The collection is deleted: its series go.
//! metrics.forget_collection("books");
//! assert!(!metrics.render(&Snapshot::default()).contains("books"));
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod error;
mod family;
mod labels;
mod registry;
mod scrape;
mod snapshot;

pub use config::MetricsConfig;
pub use error::{ErrorKind, MetricsError};
pub use labels::OVERFLOW_LABEL;
pub use registry::{Metrics, LATENCY_BUCKETS_SECONDS};
pub use snapshot::{
    CacheCounters, CollectionStats, FilesystemStats, NodeStatus, ProcessStats, ReplicaStatus,
    ReshardingStatus, Snapshot,
};

/// The prefix of every metric name, before its `_`.
pub const NAMESPACE: &str = "vector_router";

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;
