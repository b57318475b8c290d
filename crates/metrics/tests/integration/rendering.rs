use metrics::{
    CacheCounters, CollectionStats, FilesystemStats, Metrics, NodeStatus, ProcessStats,
    ReplicaStatus, Snapshot, CONTENT_TYPE, LATENCY_BUCKETS_SECONDS,
};

use crate::exposition::Exposition;

fn busy_metrics() -> Metrics {
    let metrics = Metrics::new();
    metrics.observe_request("/collections/{name}/points/query", "POST", 200, 0.002);
    metrics.observe_request("/collections/{name}/points/query", "POST", 404, 0.000_1);
    metrics.observe_request("/collections", "GET", 200, 0.000_02);
    metrics.observe_search("books", 0.001_5);
    metrics.observe_shard_search("books", 0, 0.001);
    metrics.observe_shard_search("books", 1, 0.03);
    metrics
}

fn full_snapshot() -> Snapshot {
    Snapshot {
        collections: vec![
            CollectionStats {
                name: "books".into(),
                points: 1_000,
                segments: 3,
                optimizer_queue: 1,
                wal_bytes: 4096,
                indexed_vectors: 900,
                index_vector_bytes: 230_400,
            },
            CollectionStats {
                name: "films \"quoted\" \\ back\nslash".into(),
                points: 5,
                ..Default::default()
            },
        ],
        cache: Some(CacheCounters {
            hits: 10,
            misses: 4,
            evictions: 2,
            entries: 8,
            weighted_bytes: 12_345,
        }),
        process: Some(ProcessStats::current(std::time::Instant::now())),
        nodes: Vec::new(),
        reshardings: Vec::new(),
        filesystems: vec![FilesystemStats {
            volume: "storage".into(),
            available_bytes: 1 << 30,
            size_bytes: 1 << 34,
        }],
    }
}

#[test]
fn every_line_of_a_full_scrape_follows_the_exposition_format() {
    let text = busy_metrics().render(&full_snapshot());
    let exposition = Exposition::parse(&text);
    for name in exposition.families.keys() {
        assert!(
            name.starts_with("vector_router_"),
            "{name} lacks the prefix"
        );
    }
    let expected_kinds = [
        ("vector_router_http_requests_total", "counter"),
        ("vector_router_http_request_duration_seconds", "histogram"),
        ("vector_router_search_duration_seconds", "histogram"),
        ("vector_router_shard_search_duration_seconds", "histogram"),
        ("vector_router_collections", "gauge"),
        ("vector_router_collection_points", "gauge"),
        ("vector_router_collection_segments", "gauge"),
        ("vector_router_collection_optimizer_queue_length", "gauge"),
        ("vector_router_collection_indexed_vectors", "gauge"),
        ("vector_router_collection_index_vector_bytes", "gauge"),
        ("vector_router_wal_bytes", "gauge"),
        ("vector_router_cache_hits_total", "counter"),
        ("vector_router_cache_misses_total", "counter"),
        ("vector_router_cache_evictions_total", "counter"),
        ("vector_router_cache_entries", "gauge"),
        ("vector_router_cache_size_bytes", "gauge"),
        ("vector_router_process_uptime_seconds", "gauge"),
        ("vector_router_filesystem_available_bytes", "gauge"),
        ("vector_router_filesystem_size_bytes", "gauge"),
    ];
    for (name, kind) in expected_kinds {
        assert_eq!(exposition.kind(name), Some(kind), "family {name}");
        assert!(
            !exposition.families[name].help.is_empty(),
            "{name} has no help"
        );
    }
    assert!(text.ends_with('\n'));
    assert_eq!(CONTENT_TYPE, "text/plain; version=0.0.4");
}

#[test]
fn snapshot_figures_appear_as_given_and_label_values_are_escaped() {
    let exposition = Exposition::parse(&Metrics::new().render(&full_snapshot()));
    let books = [("collection", "books")];
    assert_eq!(
        exposition.value("vector_router_collections", &[]),
        Some(2.0)
    );
    assert_eq!(
        exposition.value("vector_router_collection_points", &books),
        Some(1000.0)
    );
    assert_eq!(
        exposition.value("vector_router_collection_segments", &books),
        Some(3.0)
    );
    let storage = [("volume", "storage")];
    assert_eq!(
        exposition.value("vector_router_filesystem_available_bytes", &storage),
        Some((1u64 << 30) as f64)
    );
    assert_eq!(
        exposition.value("vector_router_filesystem_size_bytes", &storage),
        Some((1u64 << 34) as f64)
    );
    assert_eq!(
        exposition.value("vector_router_collection_optimizer_queue_length", &books),
        Some(1.0)
    );
    assert_eq!(
        exposition.value("vector_router_wal_bytes", &books),
        Some(4096.0)
    );
    assert_eq!(
        exposition.value("vector_router_collection_indexed_vectors", &books),
        Some(900.0)
    );
    assert_eq!(
        exposition.value("vector_router_collection_index_vector_bytes", &books),
        Some(230_400.0)
    );
    // The odd name survives escaping and reads back intact.
    assert_eq!(
        exposition.value(
            "vector_router_collection_points",
            &[("collection", "films \"quoted\" \\ back\nslash")]
        ),
        Some(5.0)
    );
    assert_eq!(
        exposition.value("vector_router_cache_hits_total", &[]),
        Some(10.0)
    );
    assert_eq!(
        exposition.value("vector_router_cache_misses_total", &[]),
        Some(4.0)
    );
    assert_eq!(
        exposition.value("vector_router_cache_evictions_total", &[]),
        Some(2.0)
    );
    assert_eq!(
        exposition.value("vector_router_cache_entries", &[]),
        Some(8.0)
    );
    assert_eq!(
        exposition.value("vector_router_cache_size_bytes", &[]),
        Some(12_345.0)
    );
}

#[test]
fn histograms_use_the_latency_buckets_from_fifty_microseconds_to_ten_seconds() {
    let exposition = Exposition::parse(&busy_metrics().render(&Snapshot::default()));
    let mut bounds: Vec<f64> = exposition.families["vector_router_search_duration_seconds"]
        .samples
        .iter()
        .filter(|sample| sample.name.ends_with("_bucket"))
        .map(|sample| sample.labels["le"].parse::<f64>().unwrap_or(f64::INFINITY))
        .collect();
    assert_eq!(bounds.pop(), Some(f64::INFINITY));
    assert_eq!(bounds, LATENCY_BUCKETS_SECONDS);
    assert_eq!(bounds.first(), Some(&0.000_05));
    assert_eq!(bounds.last(), Some(&10.0));
    // 1.5 ms falls in the 2.5 ms bucket, not the 1 ms one.
    let books = |le: &str| {
        exposition.value(
            "vector_router_search_duration_seconds_bucket",
            &[("collection", "books"), ("le", le)],
        )
    };
    assert_eq!(books("0.001"), Some(0.0));
    assert_eq!(books("0.0025"), Some(1.0));
}

#[test]
fn an_empty_snapshot_leaves_out_what_it_does_not_know() {
    let exposition = Exposition::parse(&Metrics::new().render(&Snapshot::default()));
    // Only the collection count: no samples were recorded, no cache, no process.
    assert_eq!(
        exposition.families.keys().collect::<Vec<_>>(),
        ["vector_router_collections"]
    );
    assert_eq!(
        exposition.value("vector_router_collections", &[]),
        Some(0.0)
    );
}

#[test]
fn process_figures_that_are_unknown_are_left_out() {
    let snapshot = Snapshot {
        process: Some(ProcessStats {
            uptime_seconds: 12.5,
            resident_memory_bytes: Some(1 << 20),
            open_fds: None,
            threads: None,
        }),
        ..Snapshot::default()
    };
    let exposition = Exposition::parse(&Metrics::new().render(&snapshot));
    assert_eq!(
        exposition.value("vector_router_process_uptime_seconds", &[]),
        Some(12.5)
    );
    assert_eq!(
        exposition.value("vector_router_process_resident_memory_bytes", &[]),
        Some(1048576.0)
    );
    assert!(!exposition
        .families
        .contains_key("vector_router_process_open_fds"));
    assert!(!exposition
        .families
        .contains_key("vector_router_process_threads"));
}

#[test]
fn other_collectors_in_the_registry_are_rendered_too() {
    let metrics = Metrics::new();
    let extra = prometheus::IntGauge::new(
        "vector_router_test_extra",
        "A collector of another component.",
    )
    .expect("valid gauge");
    extra.set(7);
    metrics
        .registry()
        .register(Box::new(extra))
        .expect("registers");
    let exposition = Exposition::parse(&metrics.render(&Snapshot::default()));
    assert_eq!(exposition.value("vector_router_test_extra", &[]), Some(7.0));
}

#[test]
fn cluster_nodes_are_reported_up_or_down_and_absent_outside_cluster_mode() {
    let snapshot = Snapshot {
        nodes: vec![
            NodeStatus {
                url: "http://10.0.0.1:6334".into(),
                up: true,
                ..NodeStatus::default()
            },
            NodeStatus {
                url: "http://10.0.0.2:6334".into(),
                up: false,
                ..NodeStatus::default()
            },
            NodeStatus {
                url: "http://a:6334|http://b:6334".into(),
                up: true,
                replicas: vec![
                    ReplicaStatus {
                        url: "http://a:6334".into(),
                        up: true,
                        outstanding: 3,
                        calls: 120,
                        failures: 0,
                        hedges_lost: 0,
                        write_target: true,
                    },
                    ReplicaStatus {
                        url: "http://b:6334".into(),
                        up: false,
                        outstanding: 0,
                        calls: 40,
                        failures: 7,
                        hedges_lost: 9,
                        write_target: false,
                    },
                ],
                hedged_reads: 5,
            },
        ],
        ..Snapshot::default()
    };
    let exposition = Exposition::parse(&Metrics::new().render(&snapshot));
    assert_eq!(
        exposition.kind("vector_router_cluster_node_up"),
        Some("gauge")
    );
    assert_eq!(
        exposition.value(
            "vector_router_cluster_node_up",
            &[("node", "http://10.0.0.1:6334")]
        ),
        Some(1.0)
    );
    assert_eq!(
        exposition.value(
            "vector_router_cluster_node_up",
            &[("node", "http://10.0.0.2:6334")]
        ),
        Some(0.0)
    );
    // A replica set's replicas, labelled by node and replica; plain nodes have none.
    let set = [
        ("node", "http://a:6334|http://b:6334"),
        ("replica", "http://b:6334"),
    ];
    assert_eq!(
        exposition.value("vector_router_cluster_replica_up", &set),
        Some(0.0)
    );
    assert_eq!(
        exposition.value("vector_router_cluster_replica_failures_total", &set),
        Some(7.0)
    );
    assert_eq!(
        exposition.value("vector_router_cluster_replica_calls_total", &set),
        Some(40.0)
    );
    assert_eq!(
        exposition.value("vector_router_cluster_replica_hedges_lost_total", &set),
        Some(9.0)
    );
    assert_eq!(
        exposition.value("vector_router_cluster_replica_write_target", &set),
        Some(0.0)
    );
    assert_eq!(
        exposition.value(
            "vector_router_cluster_replica_write_target",
            &[
                ("node", "http://a:6334|http://b:6334"),
                ("replica", "http://a:6334")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        exposition.kind("vector_router_cluster_replica_calls_total"),
        Some("counter")
    );
    assert_eq!(
        exposition.value(
            "vector_router_cluster_replica_outstanding_calls",
            &[
                ("node", "http://a:6334|http://b:6334"),
                ("replica", "http://a:6334")
            ]
        ),
        Some(3.0)
    );
    assert_eq!(
        exposition.value(
            "vector_router_cluster_hedged_reads_total",
            &[("node", "http://a:6334|http://b:6334")]
        ),
        Some(5.0)
    );
    assert_eq!(
        exposition.value(
            "vector_router_cluster_replica_up",
            &[
                ("node", "http://10.0.0.1:6334"),
                ("replica", "http://10.0.0.1:6334")
            ]
        ),
        None
    );
    let plain = Exposition::parse(&Metrics::new().render(&Snapshot::default()));
    assert!(!plain.families.contains_key("vector_router_cluster_node_up"));
    assert!(!plain
        .families
        .contains_key("vector_router_cluster_replica_up"));
}
