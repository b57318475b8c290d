//! Label-cardinality limits.

use serde::{Deserialize, Serialize};

use crate::MetricsError;

/// Bounds on the number of distinct label values, so a tenant creating
/// collections in a loop, or a client sending odd paths, cannot grow the
/// scrape without limit. Values past a bound fold into
/// [`OVERFLOW_LABEL`](crate::OVERFLOW_LABEL). Serialised with serde
/// (unknown fields are rejected); every field has a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Most distinct `collection` label values. Default 1,000.
    pub max_collections: usize,
    /// Most distinct `shard` label values per collection label. Default 256.
    pub max_shards_per_collection: usize,
    /// Most distinct `endpoint` label values (route templates). Default 128,
    /// far above the number of routes the router serves.
    pub max_endpoints: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            max_collections: 1_000,
            max_shards_per_collection: 256,
            max_endpoints: 128,
        }
    }
}

impl MetricsConfig {
    /// Checks that every limit is at least 1.
    pub fn validate(&self) -> Result<(), MetricsError> {
        for (field, value) in [
            ("max_collections", self.max_collections),
            ("max_shards_per_collection", self.max_shards_per_collection),
            ("max_endpoints", self.max_endpoints),
        ] {
            if value == 0 {
                return Err(MetricsError::ZeroLimit { field, value });
            }
        }
        Ok(())
    }
}
