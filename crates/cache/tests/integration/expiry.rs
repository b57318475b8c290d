use std::sync::Arc;
use std::time::Duration;

use cache::{CacheConfig, ResultCache};

#[test]
fn entries_expire_after_the_ttl_and_are_counted() {
    let config = CacheConfig {
        ttl: Duration::from_millis(200),
        ..CacheConfig::default()
    };
    let cache: ResultCache<u32> = ResultCache::new(&config);
    let epoch = cache.epoch("c");
    cache.insert("c", epoch, b"q".to_vec(), Arc::new(1), 4);
    assert_eq!(cache.get("c", b"q").as_deref(), Some(&1));

    std::thread::sleep(Duration::from_millis(350));
    assert_eq!(cache.get("c", b"q"), None, "served past its ttl");
    let stats = cache.stats();
    assert_eq!(stats.evictions.ttl, 1, "{stats:?}");
    assert_eq!(stats.entries, 0);
    assert_eq!((stats.hits, stats.misses), (1, 1));
}
