use metrics::{CollectionStats, Metrics, MetricsConfig, Snapshot, OVERFLOW_LABEL};

use crate::exposition::Exposition;

fn limited(collections: usize, shards: usize, endpoints: usize) -> Metrics {
    Metrics::with_config(&MetricsConfig {
        max_collections: collections,
        max_shards_per_collection: shards,
        max_endpoints: endpoints,
    })
    .expect("valid limits")
}

#[test]
fn the_default_cap_holds_at_a_thousand_collections() {
    let metrics = Metrics::new();
    for i in 0..1_500 {
        metrics.observe_search(&format!("collection-{i}"), 0.001);
    }
    let exposition = Exposition::parse(&metrics.render(&Snapshot::default()));
    let labels = exposition.label_values("vector_router_search_duration_seconds", "collection");
    assert_eq!(
        labels.len(),
        1_001,
        "1,000 collections plus the overflow label"
    );
    assert!(labels.contains(OVERFLOW_LABEL));
    assert!(labels.contains("collection-999") && !labels.contains("collection-1000"));
    // Nothing is lost: the folded searches are counted under the overflow label.
    assert_eq!(
        exposition.value(
            "vector_router_search_duration_seconds_count",
            &[("collection", OVERFLOW_LABEL)]
        ),
        Some(500.0)
    );
}

#[test]
fn forgetting_frees_a_slot_for_a_new_collection() {
    let metrics = limited(2, 4, 4);
    metrics.observe_search("a", 0.001);
    metrics.observe_search("b", 0.001);
    metrics.observe_search("c", 0.001);
    metrics.forget_collection("a");
    metrics.observe_search("d", 0.001);
    let exposition = Exposition::parse(&metrics.render(&Snapshot::default()));
    let labels = exposition.label_values("vector_router_search_duration_seconds", "collection");
    let mut labels: Vec<_> = labels.into_iter().collect();
    labels.sort();
    assert_eq!(labels, ["b", "d", OVERFLOW_LABEL]);
}

#[test]
fn shards_and_endpoints_are_capped_too() {
    let metrics = limited(4, 2, 2);
    for shard in 0..10 {
        metrics.observe_shard_search("a", shard, 0.001);
    }
    for endpoint in ["/a", "/b", "/c/7", "/c/8"] {
        metrics.observe_request(endpoint, "GET", 200, 0.001);
    }
    metrics.observe_request("/a", "BREW", 999, 0.001);
    let exposition = Exposition::parse(&metrics.render(&Snapshot::default()));
    let shards = exposition.label_values("vector_router_shard_search_duration_seconds", "shard");
    assert_eq!(shards.len(), 3, "{shards:?}");
    assert_eq!(
        exposition.value(
            "vector_router_shard_search_duration_seconds_count",
            &[("collection", "a"), ("shard", OVERFLOW_LABEL)]
        ),
        Some(8.0)
    );
    let endpoints = exposition.label_values("vector_router_http_requests_total", "endpoint");
    assert_eq!(endpoints.len(), 3, "{endpoints:?}");
    assert_eq!(
        exposition.value(
            "vector_router_http_requests_total",
            &[
                ("endpoint", OVERFLOW_LABEL),
                ("method", "GET"),
                ("status", "200")
            ]
        ),
        Some(2.0)
    );
    assert_eq!(
        exposition.value(
            "vector_router_http_requests_total",
            &[
                ("endpoint", "/a"),
                ("method", OVERFLOW_LABEL),
                ("status", "999")
            ]
        ),
        None,
        "999 is not a status"
    );
    assert_eq!(
        exposition.value(
            "vector_router_http_requests_total",
            &[
                ("endpoint", "/a"),
                ("method", OVERFLOW_LABEL),
                ("status", OVERFLOW_LABEL)
            ]
        ),
        Some(1.0)
    );
}

#[test]
fn snapshot_collections_past_the_cap_are_summed_under_the_overflow_label() {
    let metrics = limited(2, 4, 4);
    let snapshot = Snapshot {
        collections: (0..5)
            .map(|i| CollectionStats {
                name: format!("c{i}"),
                points: 10 * (i + 1),
                wal_bytes: 1,
                ..Default::default()
            })
            .collect(),
        ..Snapshot::default()
    };
    let exposition = Exposition::parse(&metrics.render(&snapshot));
    assert_eq!(
        exposition.value("vector_router_collections", &[]),
        Some(5.0)
    );
    assert_eq!(
        exposition.value("vector_router_collection_points", &[("collection", "c0")]),
        Some(10.0)
    );
    assert_eq!(
        exposition.value(
            "vector_router_collection_points",
            &[("collection", OVERFLOW_LABEL)]
        ),
        Some(30.0 + 40.0 + 50.0)
    );
    assert_eq!(
        exposition.value("vector_router_wal_bytes", &[("collection", OVERFLOW_LABEL)]),
        Some(3.0)
    );
    // Observations then use the same label values.
    metrics.observe_search("c4", 0.001);
    let exposition = Exposition::parse(&metrics.render(&Snapshot::default()));
    assert_eq!(
        exposition.label_values("vector_router_search_duration_seconds", "collection"),
        [OVERFLOW_LABEL.to_owned()].into_iter().collect()
    );
}
