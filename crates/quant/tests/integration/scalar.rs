//! Scalar 8-bit quantization: recall with oversampling and rescoring, decode accuracy, clamping.

use crate::common::{clustered, exact_top_k, prepared, recall, rerank_top_k};
use quant::{kernels, Metric, ScalarQuantizer, ScalarQuantizerConfig};

const N: usize = 20_000;
const DIM: usize = 64;
const QUERIES: usize = 100;
const K: usize = 10;
/// Candidates kept from the 8-bit ranking: 3x oversampling.
const CANDIDATES: usize = 3 * K;

/// Spread of the clusters: 0.3 around centers drawn in [-1, 1]^64.
const SIGMA: f32 = 0.3;

fn check_recall(metric: Metric, per_dimension: bool, integer: bool, seed: u64) {
    check_recall_with(
        metric,
        ScalarQuantizerConfig {
            per_dimension,
            ..Default::default()
        },
        integer,
        SIGMA,
        seed,
    )
}

fn check_recall_with(
    metric: Metric,
    config: ScalarQuantizerConfig,
    integer: bool,
    sigma: f32,
    seed: u64,
) {
    let per_dimension = config.per_dimension;
    let data = prepared(clustered(N, DIM, 50, sigma, seed), DIM, metric);
    let queries = prepared(clustered(QUERIES, DIM, 50, sigma, seed), DIM, metric);
    let sq = ScalarQuantizer::train(&data, DIM, &config).unwrap();
    let codes = sq.encode_all(&data).unwrap();
    let mut total = 0.0;
    for q in queries.chunks_exact(DIM) {
        let truth = exact_top_k(&data, DIM, q, metric, K);
        let found = if integer {
            let scorer = sq.query_int(q, metric).unwrap();
            rerank_top_k(&data, DIM, q, metric, K, CANDIDATES, |i| {
                scorer.distance(codes.code(i), codes.correction(i))
            })
        } else {
            let scorer = sq.query(q, metric).unwrap();
            rerank_top_k(&data, DIM, q, metric, K, CANDIDATES, |i| {
                scorer.distance(codes.code(i), codes.correction(i))
            })
        };
        total += recall(&found, &truth);
    }
    let r = total / QUERIES as f64;
    eprintln!("sq8 {metric:?} per_dimension={per_dimension} integer={integer}: recall@10 = {r:.4}");
    assert!(
        r >= 0.99,
        "recall@10 {r:.4} < 0.99 for {metric:?}, per_dimension={per_dimension}, integer={integer}, seed {seed}"
    );
}

#[test]
fn asymmetric_recall_with_3x_oversampling() {
    for (i, metric) in Metric::ALL.into_iter().enumerate() {
        check_recall(metric, true, false, 100 + i as u64);
        check_recall(metric, false, false, 200 + i as u64);
    }
}

#[test]
fn integer_recall_with_3x_oversampling() {
    for (i, metric) in [Metric::Euclidean, Metric::InnerProduct, Metric::Cosine]
        .into_iter()
        .enumerate()
    {
        check_recall(metric, true, true, 300 + i as u64);
        check_recall(metric, false, true, 400 + i as u64);
    }
    check_recall(Metric::Manhattan, false, true, 500);
}

/// Tight clusters (σ = 0.15) after cosine normalisation: the 0.99 per-dimension quantile clips
/// whole clusters at the ends of each dimension (recall about 0.965 here), so such data wants
/// the full range; this pins that `quantile: 1.0` keeps recall there.
#[test]
fn full_range_bounds_keep_recall_on_tight_clusters() {
    let config = ScalarQuantizerConfig {
        quantile: 1.0,
        ..Default::default()
    };
    check_recall_with(Metric::Cosine, config.clone(), false, 0.15, 102);
    check_recall_with(Metric::Cosine, config, true, 0.15, 302);
}

#[test]
fn integer_manhattan_needs_global_bounds() {
    let data = clustered(1000, 8, 4, 0.1, 1);
    let sq = ScalarQuantizer::train(&data, 8, &ScalarQuantizerConfig::default()).unwrap();
    let err = sq.query_int(&data[..8], Metric::Manhattan).unwrap_err();
    assert!(matches!(err, quant::Error::Unsupported { .. }), "{err}");
}

#[test]
fn asymmetric_distance_equals_distance_to_decoded_vector() {
    let kern = kernels();
    for metric in Metric::ALL {
        let data = prepared(clustered(2000, 37, 10, 0.2, 7), 37, metric);
        let sq = ScalarQuantizer::train(&data, 37, &ScalarQuantizerConfig::default()).unwrap();
        let codes = sq.encode_all(&data).unwrap();
        let q = &data[37 * 5..37 * 6];
        let scorer = sq.query(q, metric).unwrap();
        for i in 0..200 {
            let decoded = sq.decode(codes.code(i)).unwrap();
            let want = metric.distance(kern, q, &decoded);
            let got = scorer.distance(codes.code(i), codes.correction(i));
            assert!(
                (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                "{metric:?} vector {i}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn decode_error_is_at_most_half_a_step_inside_the_bounds() {
    let data = clustered(5000, 16, 8, 0.3, 3);
    let sq = ScalarQuantizer::train(
        &data,
        16,
        &ScalarQuantizerConfig {
            quantile: 1.0,
            ..Default::default()
        },
    )
    .unwrap();
    let (lo, scale) = (sq.bounds().lo(), sq.bounds().scale());
    for v in data.chunks_exact(16).take(500) {
        let (code, _) = sq.encode(v).unwrap();
        let decoded = sq.decode(&code).unwrap();
        for d in 0..16 {
            // quantile 1.0 keeps every training value inside the bounds.
            assert!(v[d] >= lo[d] && v[d] <= lo[d] + 255.0 * scale[d] * 1.0001);
            assert!(
                (decoded[d] - v[d]).abs() <= scale[d] * 0.5001,
                "dimension {d}: {} vs {}",
                decoded[d],
                v[d]
            );
        }
    }
}

#[test]
fn values_outside_the_bounds_clamp_without_overflow() {
    let sq = ScalarQuantizer::from_bounds(vec![-1.0; 4], vec![1.0; 4]).unwrap();
    let (code, _) = sq.encode(&[-1e30, 1e30, f32::MAX, -f32::MAX]).unwrap();
    assert_eq!(code, vec![0, 255, 255, 0]);
    let (code, _) = sq.encode(&[-1.0, 1.0, 0.001, 0.5]).unwrap();
    assert_eq!(code, vec![0, 255, 128, 191]);
}

#[test]
fn constant_dimension_decodes_exactly() {
    let mut data = clustered(500, 4, 3, 0.2, 9);
    data.chunks_exact_mut(4).for_each(|v| v[2] = 0.75);
    let sq = ScalarQuantizer::train(&data, 4, &ScalarQuantizerConfig::default()).unwrap();
    let (code, _) = sq.encode(&data[..4]).unwrap();
    assert_eq!(sq.decode(&code).unwrap()[2], 0.75);
}
