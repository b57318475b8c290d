use metrics::{ErrorKind, Metrics, MetricsConfig, MetricsError};

#[test]
fn defaults_cap_collections_at_a_thousand() {
    let config = MetricsConfig::default();
    assert_eq!(config.max_collections, 1_000);
    config.validate().expect("defaults are valid");
}

#[test]
fn a_zero_limit_is_refused_with_its_field() {
    for field in [
        "max_collections",
        "max_shards_per_collection",
        "max_endpoints",
    ] {
        let mut config = MetricsConfig::default();
        match field {
            "max_collections" => config.max_collections = 0,
            "max_shards_per_collection" => config.max_shards_per_collection = 0,
            _ => config.max_endpoints = 0,
        }
        let error = Metrics::with_config(&config).expect_err("zero limit accepted");
        assert!(
            matches!(error, MetricsError::ZeroLimit { field: f, value: 0 } if f == field),
            "{error}"
        );
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
    }
}

#[test]
fn config_reads_from_json_with_defaults_and_rejects_unknown_fields() {
    let config: MetricsConfig = serde_json::from_str(r#"{"max_collections": 10}"#).expect("parses");
    assert_eq!(config.max_collections, 10);
    assert_eq!(config.max_endpoints, MetricsConfig::default().max_endpoints);
    assert!(serde_json::from_str::<MetricsConfig>(r#"{"max_colections": 10}"#).is_err());
}

#[test]
fn registering_a_taken_name_is_an_internal_error() {
    let metrics = Metrics::new();
    let clash =
        prometheus::IntCounter::new("vector_router_http_requests_total", "clash").expect("valid");
    let error = MetricsError::from(
        metrics
            .registry()
            .register(Box::new(clash))
            .expect_err("duplicate accepted"),
    );
    assert_eq!(error.kind(), ErrorKind::Internal);
}
