//! Product quantization: ADC equals the distance to the decoded vector, error falls with M.

use crate::common::{clustered, exact_top_k, prepared, recall, rerank_top_k};
use quant::{kernels, Metric, ProductQuantizer, ProductQuantizerConfig};

#[test]
fn table_distance_equals_distance_to_decoded_vector() {
    let kern = kernels();
    // 50 is not divisible by 8: the first two sub-spaces get 7 dimensions, the rest 6.
    let dim = 50;
    for metric in Metric::ALL {
        let data = prepared(clustered(3000, dim, 20, 0.2, 21), dim, metric);
        let pq = ProductQuantizer::train(&data, dim, &ProductQuantizerConfig::new(8)).unwrap();
        assert_eq!(pq.subspace(0), 0..7);
        assert_eq!(pq.subspace(7), 44..50);
        let codes = pq.encode_all(&data).unwrap();
        for q in data.chunks_exact(dim).step_by(500) {
            let table = pq.table(q, metric).unwrap();
            for i in (0..codes.len()).step_by(7) {
                let decoded = pq.decode(codes.code(i)).unwrap();
                let want = metric.distance(kern, q, &decoded);
                let got = table.distance(codes.code(i));
                assert!(
                    (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                    "{metric:?} vector {i}: {got} vs {want}"
                );
            }
        }
    }
}

fn mean_reconstruction_error(data: &[f32], dim: usize, m: usize) -> f64 {
    let kern = kernels();
    let pq = ProductQuantizer::train(data, dim, &ProductQuantizerConfig::new(m)).unwrap();
    let codes = pq.encode_all(data).unwrap();
    let n = data.len() / dim;
    (0..n)
        .map(|i| {
            let decoded = pq.decode(codes.code(i)).unwrap();
            kern.l2sq_f32(&data[i * dim..(i + 1) * dim], &decoded) as f64
        })
        .sum::<f64>()
        / n as f64
}

#[test]
fn reconstruction_error_falls_as_m_grows() {
    let dim = 32;
    let data = clustered(4000, dim, 40, 0.3, 22);
    let errors: Vec<(usize, f64)> = [1, 2, 4, 8, 16, 32]
        .iter()
        .map(|&m| (m, mean_reconstruction_error(&data, dim, m)))
        .collect();
    eprintln!("pq reconstruction error by M: {errors:?}");
    for pair in errors.windows(2) {
        assert!(
            pair[1].1 < pair[0].1,
            "error did not fall from M={} to M={}: {errors:?}",
            pair[0].0,
            pair[1].0
        );
    }
}

#[test]
fn adc_ranking_with_rescoring_finds_neighbours() {
    let (dim, n) = (32, 10_000);
    let metric = Metric::Euclidean;
    let data = clustered(n, dim, 50, 0.15, 23);
    let queries = clustered(50, dim, 50, 0.15, 24);
    let pq = ProductQuantizer::train(&data, dim, &ProductQuantizerConfig::new(16)).unwrap();
    let codes = pq.encode_all(&data).unwrap();
    let mut total = 0.0;
    for q in queries.chunks_exact(dim) {
        let table = pq.table(q, metric).unwrap();
        let found = rerank_top_k(&data, dim, q, metric, 10, 100, |i| {
            table.distance(codes.code(i))
        });
        total += recall(&found, &exact_top_k(&data, dim, q, metric, 10));
    }
    let r = total / 50.0;
    eprintln!("pq M=16 with 10x rescoring: recall@10 = {r:.4}");
    assert!(r >= 0.95, "recall@10 {r:.4}");
}

#[test]
fn training_refuses_bad_shapes() {
    let data = clustered(300, 8, 4, 0.1, 25);
    for m in [0, 9] {
        let err = ProductQuantizer::train(&data, 8, &ProductQuantizerConfig::new(m)).unwrap_err();
        assert!(
            matches!(err, quant::Error::InvalidParameter { name: "m", .. }),
            "m={m}: {err}"
        );
    }
    let err =
        ProductQuantizer::train(&data[..100 * 8], 8, &ProductQuantizerConfig::new(2)).unwrap_err();
    assert!(
        matches!(err, quant::Error::TooFewPoints { k: 256, n: 100 }),
        "{err}"
    );
    let pq = ProductQuantizer::train(&data, 8, &ProductQuantizerConfig::new(2)).unwrap();
    assert!(matches!(
        pq.table(&[0.0; 7], Metric::Euclidean),
        Err(quant::Error::DimensionMismatch {
            expected: 8,
            found: 7
        })
    ));
    assert!(matches!(
        pq.decode(&[0; 3]),
        Err(quant::Error::DimensionMismatch {
            expected: 2,
            found: 3
        })
    ));
}
