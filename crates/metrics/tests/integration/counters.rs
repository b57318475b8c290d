use metrics::{Metrics, Snapshot};

use crate::exposition::Exposition;

const QUERY: &str = "/collections/{name}/points/query";

fn scrape(metrics: &Metrics) -> Exposition {
    Exposition::parse(&metrics.render(&Snapshot::default()))
}

#[test]
fn request_counters_and_histograms_move_with_each_observation() {
    let metrics = Metrics::new();
    for i in 0..5 {
        metrics.observe_request(QUERY, "POST", 200, 0.001 * f64::from(i));
    }
    metrics.observe_request(QUERY, "POST", 500, 0.2);
    let exposition = scrape(&metrics);
    let requests = |status: &str| {
        exposition.value(
            "vector_router_http_requests_total",
            &[("endpoint", QUERY), ("method", "POST"), ("status", status)],
        )
    };
    assert_eq!(requests("200"), Some(5.0));
    assert_eq!(requests("500"), Some(1.0));
    let labels = [("endpoint", QUERY), ("method", "POST")];
    assert_eq!(
        exposition.value("vector_router_http_request_duration_seconds_count", &labels),
        Some(6.0)
    );
    let sum = exposition
        .value("vector_router_http_request_duration_seconds_sum", &labels)
        .expect("sum");
    assert!((sum - (0.010 + 0.2)).abs() < 1e-9, "sum {sum}");

    // And again: counters only go up.
    metrics.observe_request(QUERY, "post", 200, 0.001);
    let exposition = scrape(&metrics);
    assert_eq!(
        exposition.value(
            "vector_router_http_requests_total",
            &[("endpoint", QUERY), ("method", "POST"), ("status", "200")]
        ),
        Some(6.0),
        "a lower-case method is the same series"
    );
}

#[test]
fn shard_latencies_are_kept_per_collection_and_shard() {
    let metrics = Metrics::new();
    metrics.observe_shard_search("c1", 23, 0.01);
    metrics.observe_shard_search("c12", 3, 0.02);
    metrics.observe_shard_search("c12", 3, 0.02);
    let exposition = scrape(&metrics);
    let count = |collection: &str, shard: &str| {
        exposition.value(
            "vector_router_shard_search_duration_seconds_count",
            &[("collection", collection), ("shard", shard)],
        )
    };
    // Label values that concatenate alike ("c1"+"23", "c12"+"3") stay apart.
    assert_eq!(count("c1", "23"), Some(1.0));
    assert_eq!(count("c12", "3"), Some(2.0));
}

#[test]
fn unusable_durations_are_dropped_but_the_request_is_counted() {
    let metrics = Metrics::new();
    metrics.observe_request(QUERY, "POST", 200, f64::NAN);
    metrics.observe_request(QUERY, "POST", 200, -1.0);
    metrics.observe_search("books", f64::INFINITY);
    metrics.observe_search("books", -0.5);
    let exposition = scrape(&metrics);
    assert_eq!(
        exposition.value(
            "vector_router_http_requests_total",
            &[("endpoint", QUERY), ("method", "POST"), ("status", "200")]
        ),
        Some(2.0)
    );
    let labels = [("endpoint", QUERY), ("method", "POST")];
    assert_eq!(
        exposition.value("vector_router_http_request_duration_seconds_count", &labels),
        Some(1.0),
        "only the negative duration (as zero) is recorded"
    );
    assert_eq!(
        exposition.value("vector_router_http_request_duration_seconds_sum", &labels),
        Some(0.0)
    );
    assert_eq!(
        exposition.value(
            "vector_router_search_duration_seconds_count",
            &[("collection", "books")]
        ),
        Some(1.0)
    );
}

#[test]
fn observations_from_many_threads_all_count() {
    let metrics = std::sync::Arc::new(Metrics::new());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let metrics = std::sync::Arc::clone(&metrics);
            std::thread::spawn(move || {
                for i in 0..1_000u32 {
                    metrics.observe_search(&format!("c{}", i % 10), 0.001);
                    metrics.observe_shard_search("c0", t, 0.001);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("observer thread");
    }
    let exposition = scrape(&metrics);
    let total: f64 = (0..10)
        .map(|i| {
            exposition
                .value(
                    "vector_router_search_duration_seconds_count",
                    &[("collection", &format!("c{i}"))],
                )
                .unwrap_or(0.0)
        })
        .sum();
    assert_eq!(total, 4_000.0);
    assert_eq!(
        exposition
            .label_values("vector_router_shard_search_duration_seconds", "shard")
            .len(),
        4
    );
}
