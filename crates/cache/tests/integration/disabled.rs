use std::sync::Arc;

use cache::{CacheConfig, ResultCache};

#[test]
fn a_disabled_cache_never_stores_or_counts() {
    let cache: ResultCache<u32> = ResultCache::new(&CacheConfig::disabled());
    assert!(!cache.is_enabled());
    let epoch = cache.epoch("c");
    for i in 0..10u32 {
        cache.insert("c", epoch, i.to_le_bytes().to_vec(), Arc::new(i), 4);
    }
    for i in 0..10u32 {
        assert_eq!(cache.get("c", &i.to_le_bytes()), None);
    }
    let stats = cache.stats();
    assert_eq!(stats, cache::CacheStats::default());
}

#[test]
fn a_disabled_cache_still_keeps_epochs() {
    // The router may read and bump epochs unconditionally.
    let cache: ResultCache<u32> = ResultCache::new(&CacheConfig::disabled());
    let before = cache.epoch("c");
    assert!(cache.invalidate("c") > before);
    assert_eq!(cache.epoch("c"), before + 1);
}
