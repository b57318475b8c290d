//! The crate's one error type.

use std::time::Duration;

/// Everything that can be wrong with a [`CacheConfig`](crate::CacheConfig).
///
/// The cache itself has no failure paths at run time: a lookup either hits or
/// misses, and an insert that cannot be kept is dropped. Only configuration
/// can be rejected, before the cache is built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The cache is enabled with a time-to-live of zero, so nothing could
    /// ever be served from it.
    #[error("cache ttl must be positive when the cache is enabled")]
    ZeroTtl,

    /// The time-to-live is longer than the crate allows.
    #[error("cache ttl {ttl:?} is longer than the maximum {max:?}")]
    TtlTooLong {
        /// The configured time-to-live.
        ttl: Duration,
        /// The largest time-to-live accepted ([`MAX_TTL`](crate::MAX_TTL)).
        max: Duration,
    },

    /// The cache is enabled with a byte budget of zero, so nothing could
    /// ever be stored in it.
    #[error("cache max_bytes must be positive when the cache is enabled")]
    ZeroCapacity,
}

/// The few kinds every [`CacheError`] folds into, for the router to map to
/// a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The caller (here: the operator's configuration) asked for something
    /// invalid.
    InvalidInput,
}

impl CacheError {
    /// The kind this error folds into.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CacheError::ZeroTtl | CacheError::TtlTooLong { .. } | CacheError::ZeroCapacity => {
                ErrorKind::InvalidInput
            }
        }
    }
}
