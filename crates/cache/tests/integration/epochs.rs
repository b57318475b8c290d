use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache::{CacheConfig, ResultCache};

#[test]
fn invalidate_hides_every_answer_of_that_collection_only() {
    let cache: ResultCache<u32> = ResultCache::new(&CacheConfig::default());
    for collection in ["a", "b"] {
        let epoch = cache.epoch(collection);
        for i in 0..5u32 {
            cache.insert(collection, epoch, vec![i as u8], Arc::new(i), 4);
        }
    }
    let new_epoch = cache.invalidate("a");
    assert_eq!(cache.epoch("a"), new_epoch);
    for i in 0..5u8 {
        assert_eq!(
            cache.get("a", &[i]),
            None,
            "a's answer {i} survived the write"
        );
        assert_eq!(cache.get("b", &[i]).as_deref(), Some(&u32::from(i)));
    }
}

#[test]
fn an_answer_computed_before_a_write_and_inserted_after_it_is_never_returned() {
    let cache: ResultCache<&'static str> = ResultCache::new(&CacheConfig::default());
    // Reader reads the epoch and starts computing...
    let epoch = cache.epoch("c");
    // ...a write is acknowledged meanwhile...
    cache.invalidate("c");
    // ...and the reader stores its (now stale) answer.
    cache.insert("c", epoch, b"q".to_vec(), Arc::new("stale"), 8);
    assert_eq!(cache.get("c", b"q"), None);
    assert_eq!(cache.stats().stale_inserts, 1);

    // The next reader computes at the new epoch and is served.
    let epoch = cache.epoch("c");
    cache.insert("c", epoch, b"q".to_vec(), Arc::new("fresh"), 8);
    assert_eq!(cache.get("c", b"q").as_deref(), Some(&"fresh"));
}

/// Readers compute "the data version" and cache it while a writer bumps it;
/// a reader must never be served a version older than the last write that
/// was acknowledged before its lookup began.
#[test]
fn concurrent_readers_never_see_an_answer_older_than_the_last_acknowledged_write() {
    let cache: Arc<ResultCache<u64>> = Arc::new(ResultCache::new(&CacheConfig::default()));
    let data_version = Arc::new(AtomicU64::new(0));
    let acknowledged = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    let readers: Vec<_> = (0..3)
        .map(|reader| {
            let (cache, data_version, acknowledged, stop) = (
                Arc::clone(&cache),
                Arc::clone(&data_version),
                Arc::clone(&acknowledged),
                Arc::clone(&stop),
            );
            std::thread::spawn(move || {
                let (mut hits, mut lookups) = (0u64, 0u64);
                while !stop.load(Ordering::SeqCst) {
                    let floor = acknowledged.load(Ordering::SeqCst);
                    let key = vec![(lookups % 4) as u8];
                    lookups += 1;
                    if let Some(answer) = cache.get("c", &key) {
                        hits += 1;
                        assert!(
                            *answer >= floor,
                            "reader {reader} served version {answer} after write {floor} was acknowledged"
                        );
                        continue;
                    }
                    let epoch = cache.epoch("c");
                    let version = data_version.load(Ordering::SeqCst);
                    // Widen the window between computing and storing.
                    std::thread::yield_now();
                    cache.insert("c", epoch, key, Arc::new(version), 8);
                }
                (hits, lookups)
            })
        })
        .collect();

    let writer = {
        let (cache, data_version, acknowledged) = (
            Arc::clone(&cache),
            Arc::clone(&data_version),
            Arc::clone(&acknowledged),
        );
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut writes = 0u64;
            while start.elapsed() < Duration::from_millis(300) {
                let version = data_version.fetch_add(1, Ordering::SeqCst) + 1;
                cache.invalidate("c");
                acknowledged.store(version, Ordering::SeqCst);
                writes += 1;
                std::thread::sleep(Duration::from_micros(50));
            }
            writes
        })
    };
    let writes = writer.join().expect("writer thread");
    stop.store(true, Ordering::SeqCst);
    let (hits, lookups) = readers
        .into_iter()
        .map(|reader| reader.join().expect("reader thread"))
        .fold((0, 0), |acc, (h, l)| (acc.0 + h, acc.1 + l));
    assert!(writes > 10, "only {writes} writes ran");
    // The test means something only if both paths ran.
    assert!(
        hits > 0 && hits < lookups,
        "hits {hits} of {lookups} lookups"
    );
}

#[test]
fn forget_removes_entries_and_a_recreated_collection_starts_clean() {
    let cache: ResultCache<u32> = ResultCache::new(&CacheConfig::default());
    // Answers stored while the collection was never written (at the shared floor)...
    let floor = cache.epoch("c");
    cache.insert("c", floor, b"q0".to_vec(), Arc::new(0), 4);
    // ...and after a write.
    let epoch = cache.invalidate("c");
    cache.insert("c", epoch, b"q1".to_vec(), Arc::new(1), 4);
    cache.insert(
        "other",
        cache.epoch("other"),
        b"q1".to_vec(),
        Arc::new(9),
        4,
    );
    assert_eq!(cache.tracked_collections(), 1);

    // An in-flight reader of the old collection read its epoch before delete.
    let in_flight = cache.epoch("c");
    cache.forget("c");
    assert_eq!(cache.tracked_collections(), 0);
    cache.insert("c", in_flight, b"q2".to_vec(), Arc::new(2), 4);

    // Same name, new collection: none of the old answers are visible.
    assert!(cache.epoch("c") > epoch);
    for key in [&b"q0"[..], b"q1", b"q2"] {
        assert_eq!(cache.get("c", key), None);
    }
    let stats = cache.stats();
    assert!(
        stats.evictions.explicit >= 2,
        "forget left the old entries in place: {stats:?}"
    );
}

#[test]
fn epoch_state_stays_bounded_across_many_collections() {
    let cache: ResultCache<u32> = ResultCache::with_epoch_capacity(&CacheConfig::default(), 100);
    let mut last_epoch = 0;
    for i in 0..10_000 {
        let name = format!("collection-{i}");
        let epoch = cache.invalidate(&name);
        cache.insert(&name, epoch, b"q".to_vec(), Arc::new(i), 4);
        assert_eq!(cache.get(&name, b"q").as_deref(), Some(&i));
        // Half the collections are deleted properly, half are left behind.
        if i % 2 == 0 {
            cache.forget(&name);
        }
        assert!(cache.tracked_collections() <= 100);
        assert!(
            epoch > last_epoch,
            "epoch went back from {last_epoch} to {epoch}"
        );
        last_epoch = epoch;
    }
    // The reset that bounds the map must not resurrect old answers: a
    // collection left behind long ago now reads a newer epoch.
    assert_eq!(cache.get("collection-1", b"q"), None);
}

#[test]
fn a_table_reset_does_not_revive_answers_of_reset_collections() {
    let cache: ResultCache<u32> = ResultCache::with_epoch_capacity(&CacheConfig::default(), 2);
    let epoch_a = cache.invalidate("a");
    cache.insert("a", epoch_a, b"q".to_vec(), Arc::new(1), 4);
    cache.invalidate("b");
    // A third collection forces a reset; "a" falls back to the new floor.
    cache.invalidate("c");
    assert_eq!(cache.get("a", b"q"), None);
    assert!(cache.epoch("a") > epoch_a);
}
