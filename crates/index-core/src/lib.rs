//! The vocabulary every index family of vector-router shares.
//!
//! HNSW, IVF and later CAGRA implement the same traits from here, and never depend on one
//! another: what they share lives in this crate.
//!
//! * Ids: an index addresses points by a dense [`PointOffset`] it is given; storage maps the
//!   user's [`PointId`] (integer or UUID, as Qdrant) onto offsets.
//! * Results: [`ScoredOffset`], ordered by distance (smaller is closer, see
//!   [`quant::metric`]) then offset; [`TopK`] keeps the best `k`; [`merge_top_k`] merges
//!   sorted lists (shards, segments).
//! * Filters: [`PointFilter`], a predicate over offsets with a cardinality hint, and
//!   [`AllowedSet`], the bitset that payload filters produce.
//! * Traits: [`VectorIndex`] (read) and [`VectorIndexWrite`] (insert and delete, from many
//!   threads at once).
//! * [`FlatIndex`]: exact search over [`DenseVectors`]: the reference every index is tested
//!   against, and the exact path for small or heavily filtered collections.
//!
//! ```
//! use index_core::{FlatIndex, SearchParams, VectorIndex, VectorIndexWrite};
//! use quant::Metric;
//!
//! let index = FlatIndex::new(2, Metric::Euclidean);
//! index.insert(0, &[0.0, 0.0]).unwrap();
//! index.insert(1, &[1.0, 1.0]).unwrap();
//! index.insert(2, &[5.0, 5.0]).unwrap();
//! let hits = index.search(&[0.9, 0.9], &SearchParams::top(2), None).unwrap();
//! assert_eq!(hits.iter().map(|h| h.offset).collect::<Vec<_>>(), vec![1, 0]);
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod filter;
mod flat;
mod ids;
mod result;
mod storage;
mod traits;

pub use error::{check_vector, prepared_vector, IndexError, IndexErrorKind, Result};
pub use filter::{AllowedIter, AllowedSet, PointFilter};
pub use flat::FlatIndex;
pub use ids::{PointId, PointOffset};
pub use result::{merge_top_k, ScoredOffset, TopK};
pub use storage::DenseVectors;
pub use traits::{MemoryUsage, SearchParams, VectorIndex, VectorIndexWrite, MAX_LIMIT};
