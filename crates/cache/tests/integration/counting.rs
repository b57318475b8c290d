use std::sync::Arc;

use cache::{CacheConfig, ResultCache};

#[test]
fn hits_and_misses_are_counted_per_lookup() {
    let cache: ResultCache<String> = ResultCache::new(&CacheConfig::default());
    assert_eq!(cache.get("c", b"q1"), None);
    let epoch = cache.epoch("c");
    cache.insert("c", epoch, b"q1".to_vec(), Arc::new("one".into()), 3);
    for _ in 0..3 {
        assert_eq!(
            cache.get("c", b"q1").as_deref().map(String::as_str),
            Some("one")
        );
    }
    assert_eq!(cache.get("c", b"q2"), None);
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses), (3, 2));
    assert_eq!(stats.entries, 1);
    // The weight is the caller's 3 bytes plus the stored key.
    assert!(
        stats.weighted_size > 3,
        "weight {} ignores the key",
        stats.weighted_size
    );
}

#[test]
fn the_same_request_in_two_collections_is_two_entries() {
    let cache: ResultCache<u32> = ResultCache::new(&CacheConfig::default());
    let (ea, eb) = (cache.epoch("a"), cache.epoch("b"));
    // Both collections share an epoch number here; the name keeps them apart.
    assert_eq!(ea, eb);
    cache.insert("a", ea, b"q".to_vec(), Arc::new(1), 4);
    cache.insert("b", eb, b"q".to_vec(), Arc::new(2), 4);
    assert_eq!(cache.get("a", b"q").as_deref(), Some(&1));
    assert_eq!(cache.get("b", b"q").as_deref(), Some(&2));
}

#[test]
fn collection_and_request_bytes_cannot_shift_into_each_other() {
    // Naive concatenation would make ("ab", "c") and ("a", "bc") one key.
    let cache: ResultCache<u32> = ResultCache::new(&CacheConfig::default());
    let epoch = cache.epoch("c");
    cache.insert("c", epoch, b"ab".to_vec(), Arc::new(1), 4);
    assert_eq!(cache.get("bc", b"a"), None);
    assert_eq!(cache.get("c", b"a"), None);
    assert_eq!(cache.get("c", b"abc"), None);
    assert_eq!(cache.get("c", b"ab").as_deref(), Some(&1));
}

#[test]
fn a_second_insert_of_the_same_request_replaces_without_counting_an_eviction() {
    let cache: ResultCache<u32> = ResultCache::new(&CacheConfig::default());
    let epoch = cache.epoch("c");
    cache.insert("c", epoch, b"q".to_vec(), Arc::new(1), 4);
    cache.insert("c", epoch, b"q".to_vec(), Arc::new(2), 4);
    assert_eq!(cache.get("c", b"q").as_deref(), Some(&2));
    let stats = cache.stats();
    assert_eq!(stats.entries, 1);
    assert_eq!(stats.evictions.total(), 0);
}
