//! Bad input is a typed error, never a panic.

use crate::common::{clustered, config};
use index_core::{IndexError, IndexErrorKind, SearchParams, VectorIndex, VectorIndexWrite};
use index_ivf::{IvfConfig, IvfIndex, ListEncoding};
use quant::Metric;

#[test]
fn an_untrained_index_refuses_adds_and_searches() {
    let index = IvfIndex::new(8, Metric::Euclidean, IvfConfig::default()).unwrap();
    assert!(!index.is_trained());
    let v = [0.5f32; 8];
    for err in [
        index.insert(0, &v).unwrap_err(),
        index.add(0, &v).unwrap_err(),
        index.search(&v, &SearchParams::top(1), None).unwrap_err(),
    ] {
        assert!(matches!(err, IndexError::NotTrained), "{err}");
        assert_eq!(err.kind(), IndexErrorKind::InvalidInput);
    }
}

#[test]
fn wrong_dimensions_and_values_are_refused() {
    let data = clustered(500, 8, 0.3, 71);
    let index = IvfIndex::build(8, Metric::Euclidean, config(4, ListEncoding::Sq8), &data).unwrap();
    let short = [0.0f32; 7];
    assert!(matches!(
        index.search(&short, &SearchParams::top(1), None),
        Err(IndexError::DimensionMismatch {
            expected: 8,
            found: 7
        })
    ));
    assert!(matches!(
        index.insert(600, &short),
        Err(IndexError::DimensionMismatch { .. })
    ));
    let mut nan = [0.0f32; 8];
    nan[3] = f32::NAN;
    assert!(matches!(
        index.insert(600, &nan),
        Err(IndexError::NonFinite { component: 3 })
    ));
    assert!(matches!(
        index.search(&nan, &SearchParams::top(1), None),
        Err(IndexError::NonFinite { .. })
    ));
    assert!(matches!(
        index.add(0, &data[..15]),
        Err(IndexError::DimensionMismatch { .. })
    ));
    // An offset in use, and one absurdly far past the end.
    assert!(matches!(
        index.insert(5, &data[..8]),
        Err(IndexError::InvalidParameter { name: "offset", .. })
    ));
    assert!(matches!(
        index.insert(u32::MAX - 1, &data[..8]),
        Err(IndexError::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        index.search(&data[..8], &SearchParams::top(0), None),
        Err(IndexError::InvalidParameter { name: "limit", .. })
    ));
    assert_eq!(index.len(), 500, "failed writes add nothing");
}

#[test]
fn bad_configurations_and_training_sets_are_refused() {
    let data = clustered(100, 8, 0.3, 72);
    let mut index = IvfIndex::new(8, Metric::Euclidean, config(200, ListEncoding::Flat)).unwrap();
    let err = index.train(&data).unwrap_err();
    assert!(
        matches!(err, IndexError::InvalidParameter { name: "nlist", .. }),
        "nlist > n: {err}"
    );
    assert!(matches!(
        index.train(&data[..13]),
        Err(IndexError::InvalidParameter { name: "sample", .. })
    ));
    // 8-bit product codes need 256 training vectors.
    let mut pq = IvfIndex::new(8, Metric::Euclidean, config(4, ListEncoding::Pq { m: 4 })).unwrap();
    assert_eq!(
        pq.train(&data).unwrap_err().kind(),
        IndexErrorKind::InvalidInput
    );
    for bad in [
        IvfConfig {
            nlist: Some(0),
            ..IvfConfig::default()
        },
        IvfConfig {
            encoding: ListEncoding::PqFastScan { m: 9 },
            ..IvfConfig::default()
        },
        IvfConfig {
            nprobe: 0,
            ..IvfConfig::default()
        },
        IvfConfig {
            oversampling: 0.5,
            ..IvfConfig::default()
        },
    ] {
        assert!(matches!(
            IvfIndex::new(8, Metric::Euclidean, bad),
            Err(IndexError::InvalidParameter { .. })
        ));
    }
    assert!(IvfIndex::new(0, Metric::Euclidean, IvfConfig::default()).is_err());
    // Training twice once points are held is refused.
    let mut built =
        IvfIndex::build(8, Metric::Euclidean, config(4, ListEncoding::Flat), &data).unwrap();
    assert!(built.train(&data).is_err());
}

#[test]
fn configuration_reads_from_json_and_rejects_unknown_fields() {
    let config: IvfConfig =
        serde_json::from_str(r#"{"nlist": 1024, "encoding": {"kind": "pq_fast_scan", "m": 50}}"#)
            .unwrap();
    assert_eq!(config.nlist, Some(1024));
    assert_eq!(config.encoding, ListEncoding::PqFastScan { m: 50 });
    assert_eq!(config.nprobe, IvfConfig::default().nprobe);
    assert!(serde_json::from_str::<IvfConfig>(r#"{"nlsit": 3}"#).is_err());
}
