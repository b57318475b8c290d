//! Bad input gives typed errors.

use index_core::{IndexError, SearchParams, VectorIndex, VectorIndexWrite};
use index_hnsw::{HnswConfig, HnswIndex, StorageKind};
use quant::Metric;

#[test]
fn bad_input() {
    let index = HnswIndex::new(4, Metric::Cosine, HnswConfig::default()).unwrap();
    assert!(
        index
            .search(&[0.0; 4], &SearchParams::top(3), None)
            .unwrap()
            .is_empty(),
        "an empty index finds nothing"
    );
    assert!(matches!(
        index.insert(0, &[1.0; 3]),
        Err(IndexError::DimensionMismatch {
            expected: 4,
            found: 3
        })
    ));
    assert!(matches!(
        index.insert(0, &[1.0, f32::NAN, 0.0, 0.0]),
        Err(IndexError::NonFinite { component: 1 })
    ));
    assert!(matches!(
        index.insert(u32::MAX, &[1.0; 4]),
        Err(IndexError::OffsetOutOfRange { .. })
    ));
    assert_eq!(index.len(), 0, "failed inserts change nothing");
    index.insert(0, &[1.0; 4]).unwrap();
    assert!(matches!(
        index.search(&[1.0; 5], &SearchParams::top(3), None),
        Err(IndexError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        index.search(&[1.0; 4], &SearchParams::top(0), None),
        Err(IndexError::InvalidParameter { .. })
    ));
    for config in [
        HnswConfig {
            m: 1,
            ..HnswConfig::default()
        },
        HnswConfig {
            ef_construct: 0,
            ..HnswConfig::default()
        },
        HnswConfig {
            oversampling: 0.5,
            ..HnswConfig::default()
        },
    ] {
        assert!(matches!(
            HnswIndex::new(4, Metric::Cosine, config),
            Err(IndexError::InvalidParameter { .. })
        ));
    }
    assert!(matches!(
        HnswIndex::new(0, Metric::Cosine, HnswConfig::default()),
        Err(IndexError::InvalidParameter { .. })
    ));
    let sq8 = HnswConfig {
        storage: StorageKind::Sq8,
        ..HnswConfig::default()
    };
    assert!(matches!(
        HnswIndex::new(4, Metric::Cosine, sq8.clone()),
        Err(IndexError::InvalidParameter {
            name: "storage",
            ..
        })
    ));
    assert!(matches!(
        HnswIndex::with_training(4, Metric::Cosine, sq8, &[]),
        Err(IndexError::Quant(_))
    ));
    assert!(matches!(
        HnswIndex::build(4, Metric::Cosine, HnswConfig::default(), &[1.0; 5]),
        Err(IndexError::InvalidParameter { .. })
    ));
}
