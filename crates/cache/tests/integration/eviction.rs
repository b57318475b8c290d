use std::sync::Arc;
use std::time::Duration;

use cache::{CacheConfig, ResultCache};

#[test]
fn entries_are_evicted_by_weight_and_counted() {
    let config = CacheConfig {
        enabled: true,
        ttl: Duration::from_secs(60),
        max_bytes: 10_000,
    };
    let cache: ResultCache<Vec<u8>> = ResultCache::new(&config);
    let epoch = cache.epoch("c");
    for i in 0..100u32 {
        cache.insert(
            "c",
            epoch,
            i.to_le_bytes().to_vec(),
            Arc::new(vec![0; 1000]),
            1000,
        );
    }
    let stats = cache.stats();
    assert!(
        stats.weighted_size <= 10_000,
        "weighted size {} over budget",
        stats.weighted_size
    );
    // Each entry weighs 1000 plus its key, so at most 9 fit.
    assert!(stats.entries <= 9, "{} entries held", stats.entries);
    assert_eq!(
        stats.evictions.size + stats.entries,
        100,
        "every entry not held was counted as a size eviction: {stats:?}"
    );
    assert_eq!(stats.evictions.ttl + stats.evictions.explicit, 0);
}

#[test]
fn an_answer_heavier_than_the_whole_budget_is_not_kept() {
    let config = CacheConfig {
        max_bytes: 100,
        ..CacheConfig::default()
    };
    let cache: ResultCache<u8> = ResultCache::new(&config);
    let epoch = cache.epoch("c");
    cache.insert("c", epoch, b"q".to_vec(), Arc::new(1), 1_000);
    let stats = cache.stats();
    assert_eq!(stats.entries, 0);
    assert_eq!(stats.evictions.size, 1);
    assert_eq!(cache.get("c", b"q"), None);
}
