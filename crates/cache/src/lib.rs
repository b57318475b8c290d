//! A TTL result cache on [moka] that never serves an answer older than the
//! last write to its collection.
//!
//! The crate knows nothing of vectors: an answer is any `V`, a request is
//! bytes. [`ResultCache`] keys every entry by (collection, collection
//! epoch, full request bytes). A write bumps the collection's epoch with
//! [`ResultCache::invalidate`], which makes all of its earlier answers
//! unreachable in one step, including answers still being computed that
//! will be stored after the write. [`KeyBuilder`] builds canonical request
//! bytes (length-prefixed parts, JSON with sorted keys).
//!
//! ```
//! use std::sync::Arc;
//! use cache::{CacheConfig, KeyBuilder, ResultCache};
//!
//! let cache: ResultCache<Vec<u64>> = ResultCache::new(&CacheConfig::default());
//!
//! let mut key = KeyBuilder::new();
//! key.push_str("/collections/{name}/points/query").push_f32s(&[0.1, 0.2]).push_u64(10);
//! let key = key.finish();
//!
//! // A reader: epoch first, then compute, then insert.
//! let epoch = cache.epoch("books");
//! let answer = Arc::new(vec![7, 3, 9]);
//! cache.insert("books", epoch, key.clone(), Arc::clone(&answer), 24);
//! assert_eq!(cache.get("books", &key), Some(answer));
//!
//! // A write is acknowledged: the answer is gone.
//! cache.invalidate("books");
//! assert_eq!(cache.get("books", &key), None);
//!
//! // A reader that read the epoch before the write cannot store a stale answer.
//! cache.insert("books", epoch, key.clone(), Arc::new(vec![7, 3]), 16);
//! assert_eq!(cache.get("books", &key), None);
//!
//! let stats = cache.stats();
//! assert_eq!((stats.hits, stats.misses, stats.stale_inserts), (1, 2, 1));
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod epochs;
mod error;
mod key;
mod result_cache;

pub use config::{CacheConfig, MAX_TTL};
pub use error::{CacheError, ErrorKind};
pub use key::KeyBuilder;
pub use result_cache::{CacheStats, Evictions, ResultCache, DEFAULT_MAX_TRACKED_COLLECTIONS};
