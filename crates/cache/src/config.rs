//! The cache's configuration.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::CacheError;

/// The longest time-to-live [`CacheConfig::validate`] accepts: one day.
///
/// Answers are invalidated by writes, not by time, so the TTL only bounds how
/// long an unused answer holds memory and how long a write that bypassed the
/// router could go unnoticed. Beyond a day neither is useful, and the bound
/// keeps far larger values away from moka, which rejects a TTL over 1,000
/// years by panicking.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// How the result cache behaves. Serialised with serde (unknown fields are
/// rejected); every field has a default.
///
/// ```
/// let config: cache::CacheConfig = serde_json::from_str(r#"{"ttl": 2.5}"#).unwrap();
/// assert_eq!(config.ttl, std::time::Duration::from_millis(2500));
/// assert!(config.enabled);
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Whether answers are cached at all. A disabled cache stores nothing
    /// and every lookup misses. Default `true`.
    pub enabled: bool,

    /// How long an answer may be served after it was stored, written in
    /// seconds in config files (fractions allowed). Writes make answers
    /// unreachable at once regardless of this. Default 60 s, at most
    /// [`MAX_TTL`].
    #[serde(with = "seconds")]
    pub ttl: Duration,

    /// Budget for the summed weight of the entries: the answer size the
    /// caller declares plus the key's own bytes. When it is exceeded, the
    /// least valuable entries are evicted. Default 64 MiB.
    pub max_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            ttl: Duration::from_secs(60),
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

impl CacheConfig {
    /// A configuration whose cache stores nothing.
    pub fn disabled() -> Self {
        CacheConfig {
            enabled: false,
            ..CacheConfig::default()
        }
    }

    /// Checks the configuration: a TTL at most [`MAX_TTL`], and, when the
    /// cache is enabled, a positive TTL and a positive byte budget (a
    /// disabled cache may leave them at zero).
    pub fn validate(&self) -> Result<(), CacheError> {
        if self.ttl > MAX_TTL {
            return Err(CacheError::TtlTooLong {
                ttl: self.ttl,
                max: MAX_TTL,
            });
        }
        if self.enabled {
            if self.ttl.is_zero() {
                return Err(CacheError::ZeroTtl);
            }
            if self.max_bytes == 0 {
                return Err(CacheError::ZeroCapacity);
            }
        }
        Ok(())
    }
}

/// A [`Duration`] as a number of seconds, so config files say `ttl = 60` or
/// `ttl = 0.25` rather than serde's default `{secs, nanos}` pair.
mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(value.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        // serde's f64 accepts integers too, so `ttl = 60` reads as well as `ttl = 60.0`.
        let secs = f64::deserialize(deserializer)?;
        Duration::try_from_secs_f64(secs).map_err(|_| {
            serde::de::Error::custom(format!(
                "ttl must be a finite, non-negative number of seconds, got {secs}"
            ))
        })
    }
}
