use metrics::{CollectionStats, Metrics, Snapshot};

use crate::exposition::Exposition;

#[test]
fn forget_removes_every_series_of_the_collection_and_only_those() {
    let metrics = Metrics::new();
    for collection in ["gone", "gone-not", "kept"] {
        metrics.observe_search(collection, 0.001);
        metrics.observe_shard_search(collection, 0, 0.001);
        metrics.observe_shard_search(collection, 1, 0.001);
    }
    metrics.observe_request("/collections/{name}", "DELETE", 200, 0.01);
    metrics.forget_collection("gone");

    let text = metrics.render(&Snapshot::default());
    let exposition = Exposition::parse(&text);
    for family in [
        "vector_router_search_duration_seconds",
        "vector_router_shard_search_duration_seconds",
    ] {
        let collections = exposition.label_values(family, "collection");
        assert!(!collections.contains("gone"), "{family} still has gone");
        assert!(
            collections.contains("gone-not") && collections.contains("kept"),
            "{family}: {collections:?}"
        );
    }
    assert!(!text.contains("collection=\"gone\""));
    // Request counters are not per collection and stay.
    assert!(exposition
        .families
        .contains_key("vector_router_http_requests_total"));
}

#[test]
fn a_forgotten_collection_starts_from_zero_when_recreated() {
    let metrics = Metrics::new();
    metrics.observe_search("c", 0.001);
    metrics.observe_search("c", 0.001);
    metrics.forget_collection("c");
    metrics.observe_search("c", 0.001);
    let exposition = Exposition::parse(&metrics.render(&Snapshot::default()));
    assert_eq!(
        exposition.value(
            "vector_router_search_duration_seconds_count",
            &[("collection", "c")]
        ),
        Some(1.0)
    );
}

#[test]
fn snapshot_gauges_follow_the_snapshot_not_history() {
    let metrics = Metrics::new();
    let with = |names: &[&str]| Snapshot {
        collections: names
            .iter()
            .map(|name| CollectionStats {
                name: (*name).into(),
                points: 1,
                ..Default::default()
            })
            .collect(),
        ..Snapshot::default()
    };
    let before = Exposition::parse(&metrics.render(&with(&["a", "b"])));
    assert_eq!(
        before
            .label_values("vector_router_collection_points", "collection")
            .len(),
        2
    );
    metrics.forget_collection("b");
    let after = Exposition::parse(&metrics.render(&with(&["a"])));
    let labels = after.label_values("vector_router_collection_points", "collection");
    assert_eq!(labels.into_iter().collect::<Vec<_>>(), ["a"]);
}

#[test]
fn forgetting_an_unknown_collection_changes_nothing() {
    let metrics = Metrics::new();
    metrics.observe_search("a", 0.001);
    let before = metrics.render(&Snapshot::default());
    metrics.forget_collection("never-seen");
    assert_eq!(metrics.render(&Snapshot::default()), before);
}

/// An observation racing a delete must not leave a series behind that no
/// later `forget_collection` can reach.
#[test]
fn observations_racing_forget_leave_no_orphan_series() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let metrics = Arc::new(Metrics::new());
    let stop = Arc::new(AtomicBool::new(false));
    let observers: Vec<_> = (0..2)
        .map(|t| {
            let (metrics, stop) = (Arc::clone(&metrics), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    metrics.observe_search(&format!("c{}", i % 4), 0.001);
                    metrics.observe_shard_search(&format!("c{}", i % 4), t, 0.001);
                    i += 1;
                }
            })
        })
        .collect();
    let start = std::time::Instant::now();
    let mut round = 0u32;
    while start.elapsed() < std::time::Duration::from_millis(200) {
        metrics.forget_collection(&format!("c{}", round % 4));
        round += 1;
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Relaxed);
    for observer in observers {
        observer.join().expect("observer thread");
    }
    for i in 0..4 {
        metrics.forget_collection(&format!("c{i}"));
    }
    let text = metrics.render(&Snapshot::default());
    assert!(
        !text.contains("collection=\""),
        "orphan series left:\n{text}"
    );
}
