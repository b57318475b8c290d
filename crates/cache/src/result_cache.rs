//! The result cache itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use moka::notification::RemovalCause;
use moka::sync::Cache;

use crate::epochs::EpochTable;
use crate::{CacheConfig, CacheError, MAX_TTL};

/// How many collections [`ResultCache::new`] keeps an epoch for before it
/// resets them all (see [`ResultCache::with_epoch_capacity`]).
pub const DEFAULT_MAX_TRACKED_COLLECTIONS: usize = 65_536;

/// Bytes [`stored_key`] appends after the request: collection length and epoch.
const KEY_SUFFIX_FIXED: usize = 8 + 8;

/// A TTL cache of answers, keyed by collection, collection epoch and the
/// full request bytes, weighted by a size the caller gives.
///
/// # Protocol
///
/// A reader calls [`epoch`](Self::epoch) *before* it computes an answer and
/// passes that epoch to [`insert`](Self::insert). A writer calls
/// [`invalidate`](Self::invalidate) after each acknowledged write. Because
/// the epoch is part of the key and lookups use the current epoch, an answer
/// computed before a write can never be returned after that write's
/// `invalidate` has returned, even when the reader stores it afterwards.
///
/// # Keys
///
/// The stored key is the request bytes followed by the collection name, the
/// name's length and the epoch. Nothing is hashed away: two different
/// requests never share an entry, whatever their hashes. Build the request
/// bytes with [`KeyBuilder`](crate::KeyBuilder).
///
/// # Weights
///
/// An entry weighs the caller's `weight_bytes` plus its key's length, so a
/// large query vector counts against [`CacheConfig::max_bytes`] too.
pub struct ResultCache<V: Send + Sync + 'static> {
    /// `None` when the cache is disabled.
    entries: Option<Cache<Box<[u8]>, StoredAnswer<V>>>,
    epochs: EpochTable,
    counters: Arc<Counters>,
}

/// What one entry holds: the shared answer and the weight its caller gave.
struct StoredAnswer<V> {
    value: Arc<V>,
    weight_bytes: u32,
}

// Derived `Clone` would require `V: Clone`; only the `Arc` is cloned.
impl<V> Clone for StoredAnswer<V> {
    fn clone(&self) -> Self {
        StoredAnswer {
            value: Arc::clone(&self.value),
            weight_bytes: self.weight_bytes,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    stale_inserts: AtomicU64,
    evicted_size: AtomicU64,
    evicted_ttl: AtomicU64,
    evicted_explicit: AtomicU64,
}

/// A point-in-time view of the cache's counters, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups that returned an answer.
    pub hits: u64,
    /// Lookups that found nothing (including entries of an older epoch).
    pub misses: u64,
    /// Inserts dropped because the collection's epoch had moved on since
    /// the answer was computed.
    pub stale_inserts: u64,
    /// Entries removed, by cause.
    pub evictions: Evictions,
    /// Entries held now.
    pub entries: u64,
    /// Summed weight of the entries held now (caller weights plus key bytes).
    pub weighted_size: u64,
}

/// Entries removed from the cache, by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evictions {
    /// Removed to stay within [`CacheConfig::max_bytes`], including entries
    /// refused on arrival because they were worth less than what they would
    /// have displaced.
    pub size: u64,
    /// Removed because their time-to-live passed.
    pub ttl: u64,
    /// Removed on request ([`ResultCache::forget`]).
    pub explicit: u64,
}

impl Evictions {
    /// All removals together.
    pub fn total(&self) -> u64 {
        self.size + self.ttl + self.explicit
    }
}

impl<V: Send + Sync + 'static> ResultCache<V> {
    /// A cache as `config` describes.
    ///
    /// Never fails: call [`CacheConfig::validate`] first (or use
    /// [`try_new`](Self::try_new)) to reject bad values. Here a TTL over
    /// [`MAX_TTL`] is cut to `MAX_TTL`, and an enabled cache with a zero TTL
    /// or a zero byte budget behaves as a disabled one, since it could
    /// serve nothing anyway.
    pub fn new(config: &CacheConfig) -> Self {
        Self::with_epoch_capacity(config, DEFAULT_MAX_TRACKED_COLLECTIONS)
    }

    /// [`new`](Self::new) after [`CacheConfig::validate`].
    pub fn try_new(config: &CacheConfig) -> Result<Self, CacheError> {
        config.validate()?;
        Ok(Self::new(config))
    }

    /// A cache that keeps an epoch for at most `max_tracked_collections`
    /// collections (at least one). When one more collection is written, all
    /// collections start afresh with one new epoch: every cached answer
    /// becomes unreachable, and memory for epochs stays bounded however many
    /// collections come and go without [`forget`](Self::forget).
    pub fn with_epoch_capacity(config: &CacheConfig, max_tracked_collections: usize) -> Self {
        let counters = Arc::new(Counters::default());
        let usable = config.enabled && !config.ttl.is_zero() && config.max_bytes > 0;
        let entries = usable.then(|| {
            let listener_counters = Arc::clone(&counters);
            Cache::<Box<[u8]>, StoredAnswer<V>>::builder()
                .max_capacity(config.max_bytes)
                .time_to_live(config.ttl.min(MAX_TTL))
                .weigher(|key, answer| {
                    let key_bytes = u32::try_from(key.len()).unwrap_or(u32::MAX);
                    answer.weight_bytes.saturating_add(key_bytes)
                })
                .eviction_listener(move |_key, _answer, cause| {
                    let counter = match cause {
                        RemovalCause::Size => &listener_counters.evicted_size,
                        RemovalCause::Expired => &listener_counters.evicted_ttl,
                        RemovalCause::Explicit => &listener_counters.evicted_explicit,
                        // The same request stored twice (two readers raced on
                        // a miss): the entry lives on, nothing was evicted.
                        RemovalCause::Replaced => return,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                })
                // Lets `forget` drop a deleted collection's entries at once.
                .support_invalidation_closures()
                .build()
        });
        ResultCache {
            entries,
            epochs: EpochTable::new(max_tracked_collections),
            counters,
        }
    }

    /// Whether the cache stores anything.
    pub fn is_enabled(&self) -> bool {
        self.entries.is_some()
    }

    /// The current epoch of a collection: read it BEFORE computing an answer
    /// and pass it to [`insert`](Self::insert).
    pub fn epoch(&self, collection: &str) -> u64 {
        self.epochs.current(collection)
    }

    /// Makes every earlier answer of the collection unreachable at once
    /// (call after each acknowledged write, and on collection
    /// delete/recreate). Returns the new epoch.
    ///
    /// The unreachable entries are not removed here, which keeps writes
    /// cheap; they are never hit again, so they leave through the TTL or
    /// are the first evicted under size pressure.
    pub fn invalidate(&self, collection: &str) -> u64 {
        self.epochs.invalidate(collection)
    }

    /// Stops tracking a deleted collection's epoch and removes its entries.
    ///
    /// A collection of the same name created later starts at an epoch newer
    /// than any the old one had, so it can never see the old answers. So do
    /// collections that were never written since start-up (they share one
    /// epoch): their answers are dropped too, a one-off miss.
    pub fn forget(&self, collection: &str) {
        self.epochs.forget(collection);
        if let Some(entries) = &self.entries {
            let name: Box<[u8]> = collection.as_bytes().into();
            // Cannot fail: the cache was built with invalidation closures.
            // Were it to, the entries would still be unreachable (the epoch
            // moved) and would leave through the TTL.
            let _ =
                entries.invalidate_entries_if(move |key, _| key_collection(key) == Some(&name[..]));
        }
    }

    /// How many collections hold an epoch of their own now (bounded by the
    /// epoch capacity).
    pub fn tracked_collections(&self) -> usize {
        self.epochs.tracked()
    }

    /// The answer stored for this request at the collection's current
    /// epoch, if any. Counts a hit or a miss (a disabled cache counts
    /// neither).
    pub fn get(&self, collection: &str, request_key: &[u8]) -> Option<Arc<V>> {
        let entries = self.entries.as_ref()?;
        let epoch = self.epochs.current(collection);
        let mut key = Vec::with_capacity(request_key.len() + collection.len() + KEY_SUFFIX_FIXED);
        key.extend_from_slice(request_key);
        append_key_suffix(&mut key, collection, epoch);
        match entries.get(&key[..]) {
            Some(answer) => {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                Some(answer.value)
            }
            None => {
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Stores an answer computed at `epoch` (read with
    /// [`epoch`](Self::epoch) before computing it). `weight_bytes` is the
    /// answer's approximate size in memory.
    ///
    /// If the collection's epoch has already moved on, the answer is
    /// dropped (and counted as a stale insert): it could never be hit.
    pub fn insert(
        &self,
        collection: &str,
        epoch: u64,
        request_key: Vec<u8>,
        value: Arc<V>,
        weight_bytes: u32,
    ) {
        if self.entries.is_none() {
            return;
        }
        if self.epochs.current(collection) != epoch {
            self.counters.stale_inserts.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // A write may bump the epoch right here, after the check: the entry
        // is then stored under the old epoch and no lookup will ever build
        // its key. The check above only saves memory; the key is the guard.
        self.store(collection, epoch, request_key, value, weight_bytes);
    }

    /// Stores without the epoch check.
    fn store(
        &self,
        collection: &str,
        epoch: u64,
        mut request_key: Vec<u8>,
        value: Arc<V>,
        weight_bytes: u32,
    ) {
        if let Some(entries) = &self.entries {
            append_key_suffix(&mut request_key, collection, epoch);
            entries.insert(
                request_key.into_boxed_slice(),
                StoredAnswer {
                    value,
                    weight_bytes,
                },
            );
        }
    }

    /// The counters now. Runs the cache's pending maintenance first (expiry,
    /// eviction, invalidation), so the entry count and eviction counts are
    /// up to date rather than lagging behind recent operations; meant for
    /// scrapes and tests, not for the request path.
    pub fn stats(&self) -> CacheStats {
        let (entries, weighted_size) = match &self.entries {
            Some(cache) => {
                cache.run_pending_tasks();
                (cache.entry_count(), cache.weighted_size())
            }
            None => (0, 0),
        };
        let counters = &self.counters;
        CacheStats {
            hits: counters.hits.load(Ordering::Relaxed),
            misses: counters.misses.load(Ordering::Relaxed),
            stale_inserts: counters.stale_inserts.load(Ordering::Relaxed),
            evictions: Evictions {
                size: counters.evicted_size.load(Ordering::Relaxed),
                ttl: counters.evicted_ttl.load(Ordering::Relaxed),
                explicit: counters.evicted_explicit.load(Ordering::Relaxed),
            },
            entries,
            weighted_size,
        }
    }
}

impl<V: Send + Sync + 'static> std::fmt::Debug for ResultCache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultCache")
            .field("enabled", &self.is_enabled())
            .field("tracked_collections", &self.tracked_collections())
            .finish_non_exhaustive()
    }
}

/// Completes a stored key: `request ‖ collection ‖ len(collection) as u64 LE
/// ‖ epoch as u64 LE`. The suffix is fixed-size at the end, so the key
/// decodes from the back into exactly one (request, collection, epoch), and
/// the caller's request buffer is extended in place rather than copied.
fn append_key_suffix(key: &mut Vec<u8>, collection: &str, epoch: u64) {
    key.extend_from_slice(collection.as_bytes());
    key.extend_from_slice(&(collection.len() as u64).to_le_bytes());
    key.extend_from_slice(&epoch.to_le_bytes());
}

/// The collection name inside a stored key, decoded from the back.
fn key_collection(key: &[u8]) -> Option<&[u8]> {
    let fixed_start = key.len().checked_sub(KEY_SUFFIX_FIXED)?;
    let len_bytes: [u8; 8] = key[fixed_start..fixed_start + 8].try_into().ok()?;
    let name_len = usize::try_from(u64::from_le_bytes(len_bytes)).ok()?;
    let name_start = fixed_start.checked_sub(name_len)?;
    Some(&key[name_start..fixed_start])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_suffix_decodes_back_to_the_collection() {
        for (request, collection) in [
            (&b""[..], ""),
            (b"abc", "c1"),
            (b"\0\0\0", "name with spaces"),
        ] {
            let mut key = request.to_vec();
            append_key_suffix(&mut key, collection, 42);
            assert_eq!(key_collection(&key), Some(collection.as_bytes()));
            assert_eq!(
                key.len(),
                request.len() + collection.len() + KEY_SUFFIX_FIXED
            );
        }
        assert_eq!(key_collection(b"short"), None);
    }

    #[test]
    fn the_epoch_in_the_key_alone_hides_an_answer_stored_after_a_write() {
        // `store` skips the early epoch check of `insert`, modelling a write
        // that lands between that check and the moka insert.
        let cache: ResultCache<&'static str> = ResultCache::new(&CacheConfig::default());
        let before = cache.epoch("c");
        let after = cache.invalidate("c");
        assert_ne!(before, after);
        cache.store("c", before, b"q".to_vec(), Arc::new("stale"), 1);
        assert_eq!(
            cache.get("c", b"q"),
            None,
            "an answer from before the write was served"
        );
        cache.store("c", after, b"q".to_vec(), Arc::new("fresh"), 1);
        assert_eq!(cache.get("c", b"q").as_deref(), Some(&"fresh"));
        // Both entries exist; only the lookup key decides.
        assert_eq!(cache.stats().entries, 2);
    }
}
