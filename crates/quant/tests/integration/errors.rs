//! Bad input gives a typed error, never a panic.

use quant::{
    BinaryQuantizer, BinaryQuantizerConfig, Error, ErrorKind, KMeans, KMeansConfig, Metric,
    ProductQuantizer, ProductQuantizerConfig, ScalarQuantizer, ScalarQuantizerConfig,
};

/// Runs every trainer on `data` and returns their errors.
fn train_all(data: &[f32], dim: usize) -> Vec<Error> {
    vec![
        KMeans::train(data, dim, &KMeansConfig::new(2)).unwrap_err(),
        ScalarQuantizer::train(data, dim, &ScalarQuantizerConfig::default()).unwrap_err(),
        ProductQuantizer::train(data, dim, &ProductQuantizerConfig::new(1)).unwrap_err(),
        BinaryQuantizer::train(data, dim, &BinaryQuantizerConfig::default()).unwrap_err(),
    ]
}

#[test]
fn non_finite_training_data() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut data = vec![0.5f32; 4 * 300];
        data[4 * 7 + 2] = bad;
        for err in train_all(&data, 4) {
            assert!(
                matches!(
                    err,
                    Error::NonFinite {
                        vector: 7,
                        component: 2,
                        ..
                    }
                ),
                "{err}"
            );
            assert_eq!(err.kind(), ErrorKind::InvalidInput);
        }
    }
}

#[test]
fn empty_training_set() {
    for err in train_all(&[], 4) {
        assert!(matches!(err, Error::EmptyTrainingSet), "{err}");
    }
}

#[test]
fn ragged_buffer_and_bad_dimension() {
    for err in train_all(&[1.0; 10], 4) {
        assert!(
            matches!(err, Error::RaggedBuffer { len: 10, dim: 4 }),
            "{err}"
        );
    }
    for err in train_all(&[1.0; 10], 0) {
        assert!(
            matches!(err, Error::InvalidDimension { dim: 0, .. }),
            "{err}"
        );
    }
}

#[test]
fn more_centroids_than_points() {
    let data = vec![1.0f32; 3 * 5];
    let err = KMeans::train(&data, 3, &KMeansConfig::new(6)).unwrap_err();
    assert!(matches!(err, Error::TooFewPoints { k: 6, n: 5 }), "{err}");
    let err = ProductQuantizer::train(&data, 3, &ProductQuantizerConfig::new(1)).unwrap_err();
    assert!(matches!(err, Error::TooFewPoints { k: 256, n: 5 }), "{err}");
    let err = KMeans::train(&data, 3, &KMeansConfig::new(0)).unwrap_err();
    assert!(
        matches!(err, Error::InvalidParameter { name: "k", .. }),
        "{err}"
    );
}

#[test]
fn dimension_mismatch_at_encode_and_query() {
    let data = vec![0.25f32; 8 * 300];
    let sq = ScalarQuantizer::train(&data, 8, &ScalarQuantizerConfig::default()).unwrap();
    assert!(matches!(
        sq.encode(&[0.0; 7]),
        Err(Error::DimensionMismatch {
            expected: 8,
            found: 7
        })
    ));
    assert!(matches!(
        sq.query(&[0.0; 9], Metric::Euclidean),
        Err(Error::DimensionMismatch {
            expected: 8,
            found: 9
        })
    ));
    assert!(matches!(
        sq.query_int(&[0.0; 9], Metric::Cosine),
        Err(Error::DimensionMismatch { .. })
    ));
    assert!(matches!(
        sq.encode_all(&[0.0; 12]),
        Err(Error::RaggedBuffer { len: 12, dim: 8 })
    ));
    assert!(matches!(
        sq.encode(&[f32::NAN; 8]),
        Err(Error::NonFinite { .. })
    ));
    let bq = BinaryQuantizer::train(&data, 8, &BinaryQuantizerConfig::default()).unwrap();
    assert!(matches!(
        bq.encode(&[0.0; 3]),
        Err(Error::DimensionMismatch {
            expected: 8,
            found: 3
        })
    ));
    assert!(matches!(
        bq.query(&[0.0; 3], Metric::Manhattan),
        Err(Error::DimensionMismatch { .. })
    ));
    let km = KMeans::train(&data, 8, &KMeansConfig::new(1)).unwrap();
    assert!(matches!(
        km.nearest(&[0.0; 2]),
        Err(Error::DimensionMismatch {
            expected: 8,
            found: 2
        })
    ));
}

#[test]
fn invalid_config_values() {
    let data = vec![0.25f32; 8 * 300];
    for quantile in [0.0, -1.0, 1.5, f32::NAN] {
        let config = ScalarQuantizerConfig {
            quantile,
            ..Default::default()
        };
        let err = ScalarQuantizer::train(&data, 8, &config).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidParameter {
                    name: "quantile",
                    ..
                }
            ),
            "{err}"
        );
    }
    let err = ScalarQuantizer::from_bounds(vec![1.0, 0.0], vec![0.0, 1.0]).unwrap_err();
    assert!(
        matches!(err, Error::InvalidParameter { name: "bounds", .. }),
        "{err}"
    );
}
