//! RaBitQ: the estimator is unbiased and its bound holds, bound-driven re-ranking finds the
//! exact neighbours while re-ranking a few candidates, extended codes rank well without any,
//! every metric, the file format, and bad input.

use crate::common::{clustered, exact_top_k, gaussian, prepared};
use quant::{kernels, ErrorKind, Metric, RabitqCodes, RabitqConfig, RabitqQuantizer};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// `n` vectors of `dim` dimensions that vary along `latent` directions only (clusters in a
/// random `latent`-dimensional subspace, plus a little noise in every dimension): embeddings
/// have far fewer degrees of freedom than dimensions, and isotropic clusters in every
/// dimension (where every in-cluster distance is nearly the same) are no one's data.
fn low_rank(n: usize, dim: usize, latent: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let basis: Vec<f32> = (0..dim * latent)
        .map(|_| gaussian(&mut rng) / (latent as f32).sqrt())
        .collect();
    let centers = clustered(30, latent, 30, 1.0, seed ^ 0xC0FFEE);
    let points = {
        let mut p = Vec::with_capacity(n * latent);
        let mut r = StdRng::seed_from_u64(seed.wrapping_add(1));
        for i in 0..n {
            let c = &centers[(i % 30) * latent..(i % 30 + 1) * latent];
            p.extend(c.iter().map(|x| 2.0 * x + 0.6 * gaussian(&mut r)));
        }
        p
    };
    let mut out = Vec::with_capacity(n * dim);
    for z in points.chunks_exact(latent) {
        for d in 0..dim {
            let row = &basis[d * latent..(d + 1) * latent];
            let x: f32 = row.iter().zip(z).map(|(a, b)| a * b).sum();
            out.push(x + 0.05 * gaussian(&mut rng));
        }
    }
    out
}

fn config(bits: u8) -> RabitqConfig {
    RabitqConfig {
        bits,
        ..Default::default()
    }
}

/// Errors of estimates over all pairs of `queries` × the data, relative to `‖o − c‖·‖q − c‖`
/// (the scale the bound is in): (mean, share of pairs inside their bound).
fn error_stats(
    data: &[f32],
    queries: &[f32],
    dim: usize,
    bits: u8,
    metric: Metric,
    seed: u64,
) -> (f64, f64) {
    let rq = RabitqQuantizer::train(data, dim, &RabitqConfig { bits, seed }).unwrap();
    let codes = rq.encode_all(data).unwrap();
    let (mut sum, mut inside, mut pairs) = (0f64, 0usize, 0usize);
    for q in queries.chunks_exact(dim) {
        let bound = rq.query(q, metric).unwrap();
        let qc: f64 = q
            .iter()
            .zip(rq.centroid())
            .map(|(a, c)| ((a - c) as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        for (i, v) in data.chunks_exact(dim).enumerate() {
            let est = bound.estimate(&codes, i);
            let exact = metric.distance(kernels(), q, v);
            let oc = codes.factors(i)[0] as f64;
            let scale = (oc * qc).max(1e-9);
            sum += (est.distance - exact) as f64 / scale;
            inside += usize::from((est.distance - exact).abs() <= est.bound * 1.0001 + 1e-4);
            pairs += 1;
        }
    }
    (sum / pairs as f64, inside as f64 / pairs as f64)
}

#[test]
fn the_estimate_is_unbiased_and_its_bound_holds() {
    for (dim, bits) in [(128, 1), (128, 4), (100, 1), (100, 2), (96, 8)] {
        let data = clustered(2000, dim, 10, 0.4, 21);
        let queries = clustered(40, dim, 10, 0.4, 22);
        // Unbiased over the random rotation: the mean over four rotations of the mean error
        // over 80,000 pairs each. A biased estimator (one that forgot the `ip` correction,
        // say) is off by several percent.
        let runs: Vec<(f64, f64)> = (1..=4)
            .map(|seed| error_stats(&data, &queries, dim, bits, Metric::Euclidean, seed))
            .collect();
        let mean = runs.iter().map(|r| r.0).sum::<f64>() / 4.0;
        eprintln!(
            "dim {dim}, {bits} bits: mean relative error {mean:.5}, inside the bound {runs:?}"
        );
        assert!(
            mean.abs() < 0.01,
            "dim {dim}, {bits} bits: mean relative error {mean:.4}"
        );
        // The error is close to normal with the bound at ε₀ = 1.9 standard deviations: about
        // 94% of pairs inside (more for 1 bit, whose query quantisation term is a worst case).
        // Far fewer would be a wrong bound; all of them, a bound too loose to prune with.
        for &(_, inside) in &runs {
            assert!(
                (0.92..0.999).contains(&inside),
                "dim {dim}, {bits} bits: {inside:.4} of pairs inside the bound"
            );
        }
    }
}

#[test]
fn more_bits_estimate_closer() {
    let dim = 128;
    let data = clustered(1000, dim, 10, 0.4, 31);
    let q = &clustered(1, dim, 10, 0.4, 32)[..];
    let mut last = f64::MAX;
    for bits in [1u8, 2, 4, 8] {
        let rq = RabitqQuantizer::train(&data, dim, &config(bits)).unwrap();
        let codes = rq.encode_all(&data).unwrap();
        let bound = rq.query(q, Metric::Euclidean).unwrap();
        let rms = (data
            .chunks_exact(dim)
            .enumerate()
            .map(|(i, v)| {
                let e = bound.estimate(&codes, i).distance
                    - Metric::Euclidean.distance(kernels(), q, v);
                (e as f64).powi(2)
            })
            .sum::<f64>()
            / 1000.0)
            .sqrt();
        assert!(rms < last, "{bits} bits: rms error {rms} not below {last}");
        last = rms;
    }
}

/// Top-10 by 1-bit estimates, re-ranking exactly only the candidates whose lower bound is
/// below the current tenth exact distance (visited in order of their lower bound).
fn bound_driven_top10(
    data: &[f32],
    dim: usize,
    q: &[f32],
    codes: &RabitqCodes,
    rq: &RabitqQuantizer,
    metric: Metric,
) -> (Vec<usize>, usize) {
    let bound = rq.query(q, metric).unwrap();
    let mut by_lower: Vec<(f32, usize)> = (0..codes.len())
        .map(|i| (bound.estimate(codes, i).lower(), i))
        .collect();
    by_lower.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut top: Vec<(f32, usize)> = Vec::new();
    let mut reranked = 0;
    for (lower, i) in by_lower {
        if top.len() == 10 && lower > top[9].0 {
            break;
        }
        reranked += 1;
        top.push((
            metric.distance(kernels(), q, &data[i * dim..(i + 1) * dim]),
            i,
        ));
        top.sort_by(|a, b| a.0.total_cmp(&b.0));
        top.truncate(10);
    }
    (top.into_iter().map(|(_, i)| i).collect(), reranked)
}

#[test]
fn bound_driven_reranking_finds_the_neighbours_reranking_few() {
    for (dim, metric) in [
        (256, Metric::Euclidean),
        (256, Metric::Cosine),
        (1024, Metric::InnerProduct),
    ] {
        let n = if dim == 1024 { 3000 } else { 8000 };
        let both = prepared(low_rank(n + 30, dim, 16, 41), dim, metric);
        let (data, queries) = both.split_at(n * dim);
        let rq = RabitqQuantizer::train(data, dim, &config(1)).unwrap();
        let codes = rq.encode_all(data).unwrap();
        let (mut found, mut reranked) = (0usize, 0usize);
        for q in queries.chunks_exact(dim) {
            let truth = exact_top_k(data, dim, q, metric, 10);
            let (got, r) = bound_driven_top10(data, dim, q, &codes, &rq, metric);
            found += got.iter().filter(|i| truth.contains(i)).count();
            reranked += r;
        }
        let recall = found as f64 / (10 * 30) as f64;
        let per_query = reranked as f64 / 30.0;
        eprintln!("{metric:?} at {dim}: recall@10 {recall:.3}, {per_query:.0} of {n} re-ranked");
        assert!(recall >= 0.97, "{metric:?} at {dim}: recall@10 {recall:.3}");
        // The walk re-ranks a small share of the set, not everything.
        assert!(
            per_query < n as f64 * 0.06,
            "{metric:?} at {dim}: {per_query:.0} of {n} re-ranked a query"
        );
    }
}

#[test]
fn extended_codes_rank_well_without_reranking() {
    let dim = 256;
    let both = low_rank(6030, dim, 16, 51);
    let (data, queries) = both.split_at(6000 * dim);
    for (bits, want) in [(4u8, 0.85), (5, 0.9), (8, 0.97)] {
        let rq = RabitqQuantizer::train(data, dim, &config(bits)).unwrap();
        let codes = rq.encode_all(data).unwrap();
        let mut found = 0;
        for q in queries.chunks_exact(dim) {
            let truth = exact_top_k(data, dim, q, Metric::Euclidean, 10);
            let bound = rq.query(q, Metric::Euclidean).unwrap();
            let mut est: Vec<(f32, usize)> = (0..codes.len())
                .map(|i| (bound.estimate(&codes, i).distance, i))
                .collect();
            est.sort_by(|a, b| a.0.total_cmp(&b.0));
            found += est[..10].iter().filter(|(_, i)| truth.contains(i)).count();
        }
        let recall = found as f64 / 300.0;
        eprintln!("{bits} bits: recall@10 {recall:.3} without re-ranking");
        assert!(
            recall >= want,
            "{bits} bits: recall@10 {recall:.3} < {want}"
        );
    }
}

#[test]
fn inner_product_and_cosine_estimates_follow_the_metric() {
    let dim = 64;
    let mut rng = StdRng::seed_from_u64(61);
    let data: Vec<f32> = (0..dim * 500).map(|_| gaussian(&mut rng) + 0.3).collect();
    let q: Vec<f32> = (0..dim).map(|_| gaussian(&mut rng)).collect();
    for metric in [Metric::InnerProduct, Metric::Cosine] {
        let data = prepared(data.clone(), dim, metric);
        let rq = RabitqQuantizer::train(&data, dim, &config(8)).unwrap();
        let codes = rq.encode_all(&data).unwrap();
        let bound = rq.query(&q, metric).unwrap();
        let mut qp = q.clone();
        metric.prepare(&mut qp);
        let mut inside = 0;
        for (i, v) in data.chunks_exact(dim).enumerate() {
            let est = bound.estimate(&codes, i);
            let exact = metric.distance(kernels(), &qp, v);
            // Never far outside: within three times the bound (about 5.7 deviations).
            assert!(
                (est.distance - exact).abs() <= 3.0 * est.bound + 1e-4,
                "{metric:?}, vector {i}: {} vs {exact} ± {}",
                est.distance,
                est.bound
            );
            inside += usize::from((est.distance - exact).abs() <= est.bound + 1e-6);
        }
        assert!(
            inside >= 450,
            "{metric:?}: {inside} of 500 inside the bound"
        );
    }
}

#[test]
fn the_centroid_itself_and_constant_queries_are_exact() {
    let dim = 16;
    let data: Vec<f32> = (0..dim * 10).map(|i| (i % 7) as f32).collect();
    for bits in [1u8, 3] {
        let rq = RabitqQuantizer::train(&data, dim, &config(bits)).unwrap();
        let c = rq.centroid().to_vec();
        let codes = rq.encode_all(&c).unwrap();
        // The query at the centroid: distance 0, exactly, for a code at the centroid.
        let est = rq.query(&c, Metric::Euclidean).unwrap().estimate(&codes, 0);
        assert_eq!((est.distance, est.bound), (0.0, 0.0), "{bits} bits");
    }
}

#[test]
fn models_and_codes_round_trip_and_damage_is_refused() {
    let dim = 40;
    let data = clustered(300, dim, 5, 0.5, 71);
    for bits in [1u8, 6] {
        let rq = RabitqQuantizer::train(&data, dim, &config(bits)).unwrap();
        let codes = rq.encode_all(&data).unwrap();
        let mut a = Vec::new();
        rq.write_to(&mut a).unwrap();
        let mut b = Vec::new();
        codes.write_to(&mut b).unwrap();
        let rq2 = RabitqQuantizer::read_from(&mut a.as_slice()).unwrap();
        let codes2 = RabitqCodes::read_from(&mut b.as_slice()).unwrap();
        assert_eq!(rq, rq2);
        assert_eq!(codes, codes2);
        // The same estimates from the loaded pair.
        let q = &data[..dim];
        let (e1, e2) = (
            rq.query(q, Metric::Euclidean).unwrap().estimate(&codes, 7),
            rq2.query(q, Metric::Euclidean)
                .unwrap()
                .estimate(&codes2, 7),
        );
        assert_eq!(e1, e2);
        // One flipped byte anywhere is refused.
        for at in [10, a.len() / 2, a.len() - 1] {
            let mut bad = a.clone();
            bad[at] ^= 0x40;
            assert!(RabitqQuantizer::read_from(&mut bad.as_slice()).is_err());
        }
        // Codes are not a model.
        assert!(RabitqQuantizer::read_from(&mut b.as_slice()).is_err());
    }
}

#[test]
fn bad_input_gets_typed_errors() {
    let dim = 8;
    let data: Vec<f32> = (0..dim * 20).map(|i| i as f32).collect();
    let rq = RabitqQuantizer::train(&data, dim, &config(1)).unwrap();
    let kind = |r: Result<(), quant::Error>| r.unwrap_err().kind();
    assert_eq!(
        kind(rq.query(&[1.0; 7], Metric::Euclidean).map(|_| ())),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        kind(rq.query(&[f32::NAN; 8], Metric::Euclidean).map(|_| ())),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        kind(rq.encode_all(&data[..dim * 2 + 3]).map(|_| ())),
        ErrorKind::InvalidInput
    );
    let mut inf = data.clone();
    inf[17] = f32::INFINITY;
    assert!(rq.encode_all(&inf).is_err());
    assert!(RabitqQuantizer::train(&inf, dim, &config(1)).is_err());
    assert!(rq.query(&[0.5; 8], Metric::Manhattan).is_err());
    assert!(RabitqQuantizer::train(&[], dim, &config(1)).is_err());
    for bits in [0u8, 9] {
        assert!(RabitqQuantizer::train(&data, dim, &config(bits)).is_err());
    }
}
