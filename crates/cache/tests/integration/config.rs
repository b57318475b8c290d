use std::time::Duration;

use cache::{CacheConfig, CacheError, ErrorKind, ResultCache, MAX_TTL};

#[test]
fn defaults_are_enabled_sixty_seconds_sixty_four_mebibytes() {
    let config = CacheConfig::default();
    assert!(config.enabled);
    assert_eq!(config.ttl, Duration::from_secs(60));
    assert_eq!(config.max_bytes, 64 << 20);
    config.validate().unwrap();
}

#[test]
fn toml_reads_seconds_as_integers_or_fractions_and_rejects_unknown_fields() {
    let config: CacheConfig = toml::from_str("ttl = 5\nmax_bytes = 1024").unwrap();
    assert_eq!(config.ttl, Duration::from_secs(5));
    assert_eq!(config.max_bytes, 1024);
    let config: CacheConfig = toml::from_str("ttl = 0.25").unwrap();
    assert_eq!(config.ttl, Duration::from_millis(250));

    assert!(
        toml::from_str::<CacheConfig>("tll = 5").is_err(),
        "a misspelt field was accepted"
    );
    assert!(
        toml::from_str::<CacheConfig>("ttl = -1").is_err(),
        "a negative ttl was accepted"
    );
    assert!(
        toml::from_str::<CacheConfig>("ttl = nan").is_err(),
        "a NaN ttl was accepted"
    );
}

#[test]
fn json_round_trips() {
    let config = CacheConfig {
        enabled: false,
        ttl: Duration::from_millis(1500),
        max_bytes: 77,
    };
    let text = serde_json::to_string(&config).unwrap();
    assert_eq!(text, r#"{"enabled":false,"ttl":1.5,"max_bytes":77}"#);
    assert_eq!(serde_json::from_str::<CacheConfig>(&text).unwrap(), config);
}

#[test]
fn validate_rejects_what_could_never_serve_and_overlong_ttls() {
    let zero_ttl = CacheConfig {
        ttl: Duration::ZERO,
        ..CacheConfig::default()
    };
    assert_eq!(zero_ttl.validate(), Err(CacheError::ZeroTtl));
    let zero_bytes = CacheConfig {
        max_bytes: 0,
        ..CacheConfig::default()
    };
    assert_eq!(zero_bytes.validate(), Err(CacheError::ZeroCapacity));
    let long = CacheConfig {
        ttl: MAX_TTL + Duration::from_secs(1),
        ..CacheConfig::default()
    };
    let error = long.validate().unwrap_err();
    assert!(matches!(error, CacheError::TtlTooLong { ttl, max } if ttl > max && max == MAX_TTL));
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert!(ResultCache::<u8>::try_new(&long).is_err());

    // A disabled cache may leave its sizes at zero.
    let disabled_zeroes = CacheConfig {
        enabled: false,
        ttl: Duration::ZERO,
        max_bytes: 0,
    };
    disabled_zeroes.validate().unwrap();
}

#[test]
fn new_never_panics_on_unvalidated_configs() {
    // A TTL moka itself would reject with a panic.
    let huge = CacheConfig {
        ttl: Duration::from_secs(u64::MAX / 2),
        ..CacheConfig::default()
    };
    let cache: ResultCache<u8> = ResultCache::new(&huge);
    assert!(cache.is_enabled());
    let zero = CacheConfig {
        ttl: Duration::ZERO,
        ..CacheConfig::default()
    };
    assert!(!ResultCache::<u8>::new(&zero).is_enabled());
}
