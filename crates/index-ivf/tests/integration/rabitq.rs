//! RaBitQ lists: recall with bound-driven re-ranking (exact distances only where the error
//! bound reaches below the current k-th), the codes' own ranking, files, and refusals.

use crate::common::{brute_force, clustered, config, recall};
use index_core::{SearchParams, VectorIndex, VectorIndexWrite};
use index_ivf::{IvfIndex, ListEncoding, LoadOptions};
use quant::Metric;

fn mean_recall(
    index: &IvfIndex,
    queries: &[f32],
    dim: usize,
    truth: &[Vec<index_core::ScoredOffset>],
    params: &SearchParams,
) -> f64 {
    queries
        .chunks_exact(dim)
        .zip(truth)
        .map(|(q, t)| recall(&index.search(q, params, None).unwrap(), t))
        .sum::<f64>()
        / truth.len() as f64
}

/// The recall goal every encoding meets (0.95 recall@10 at 8 of 64 lists), for every metric
/// RaBitQ serves, at 1 and 4 bits; and with every list probed, bound-driven re-ranking finds
/// the exact neighbours (a bound that failed often would show here).
#[test]
fn bound_driven_reranking_reaches_the_recall_goal() {
    let (n, dim, nlist, seed) = (20_000, 32, 64, 11);
    let data = clustered(n, dim, 0.25, seed);
    let queries = clustered(100, dim, 0.25, seed + 1);
    for metric in [Metric::Euclidean, Metric::InnerProduct, Metric::Cosine] {
        let truth = brute_force(&data, &queries, dim, metric, 10);
        for bits in [1u8, 4] {
            let index = IvfIndex::build(
                dim,
                metric,
                config(nlist, ListEncoding::Rabitq { bits }),
                &data,
            )
            .unwrap();
            let probed = |nprobe| SearchParams {
                ivf_nprobe: Some(nprobe),
                ..SearchParams::top(10)
            };
            let r = mean_recall(&index, &queries, dim, &truth, &probed(8));
            assert!(
                r >= 0.95,
                "{metric:?}, {bits} bits: recall@10 {r:.3} at nprobe 8"
            );
            let all = mean_recall(&index, &queries, dim, &truth, &probed(nlist));
            assert!(
                all >= 0.995,
                "{metric:?}, {bits} bits: recall@10 {all:.3} over every list"
            );
        }
    }
}

/// Without re-ranking the codes rank on their own (4 bits well, 1 bit coarsely), a fixed
/// oversampling still works, and re-ranking never hurts.
#[test]
fn codes_alone_rank_and_a_fixed_oversampling_still_works() {
    let (n, dim, nlist, seed) = (10_000, 64, 32, 21);
    let data = clustered(n, dim, 0.25, seed);
    let queries = clustered(100, dim, 0.25, seed + 1);
    let metric = Metric::Euclidean;
    let truth = brute_force(&data, &queries, dim, metric, 10);
    let mut last_reranked = f64::MAX;
    for (bits, floor) in [(1u8, 0.3), (4, 0.85), (8, 0.95)] {
        let index = IvfIndex::build(
            dim,
            metric,
            config(nlist, ListEncoding::Rabitq { bits }),
            &data,
        )
        .unwrap();
        let params = |rescore: bool, oversampling: Option<f32>| SearchParams {
            ivf_nprobe: Some(nlist),
            rescore: Some(rescore),
            oversampling,
            ..SearchParams::top(10)
        };
        let raw = mean_recall(&index, &queries, dim, &truth, &params(false, None));
        assert_eq!(index.reranked(), 0, "nothing re-ranked without rescoring");
        let bound = mean_recall(&index, &queries, dim, &truth, &params(true, None));
        // A small share of the 10,000 entries probed, and fewer with more bits: the bound
        // shrinks as the code's angle to the vector does (8 bits re-rank about the ten
        // answers and the few that enter the top 10 as the lists are scanned).
        let reranked = index.reranked() as f64 / 100.0;
        assert!(
            reranked < last_reranked && reranked < 1_000.0,
            "{bits} bits: {reranked:.0} re-ranked a query (fewer bits: {last_reranked:.0})"
        );
        last_reranked = reranked;
        let fixed = mean_recall(&index, &queries, dim, &truth, &params(true, Some(10.0)));
        eprintln!(
            "{bits} bits: codes alone {raw:.3}, bound-driven {bound:.3} ({reranked:.0} re-ranked), oversampling 10 {fixed:.3}"
        );
        assert!(raw >= floor, "{bits} bits: codes alone {raw:.3} < {floor}");
        assert!(
            bound >= raw && bound >= 0.99,
            "{bits} bits: bound-driven {bound:.3}, raw {raw:.3}"
        );
        assert!(
            fixed >= raw,
            "{bits} bits: oversampling 10 gives {fixed:.3} < raw {raw:.3}"
        );
    }
}

#[test]
fn rabitq_lists_round_trip_through_a_file() {
    let dim = 48;
    let data = clustered(3_000, dim, 0.3, 31);
    let queries = clustered(20, dim, 0.3, 32);
    for bits in [1u8, 5] {
        let index = IvfIndex::build(
            dim,
            Metric::Cosine,
            config(16, ListEncoding::Rabitq { bits }),
            &data,
        )
        .unwrap();
        index.delete(3).unwrap();
        let path =
            std::env::temp_dir().join(format!("vr-ivf-rabitq-{}-{bits}.ivf", std::process::id()));
        index.save(&path).unwrap();
        for vectors_on_disk in [false, true] {
            let loaded = IvfIndex::load(&path, LoadOptions { vectors_on_disk }).unwrap();
            assert_eq!(loaded.config(), index.config());
            let params = SearchParams {
                ivf_nprobe: Some(4),
                ..SearchParams::top(10)
            };
            for q in queries.chunks_exact(dim) {
                assert_eq!(
                    index.search(q, &params, None).unwrap(),
                    loaded.search(q, &params, None).unwrap(),
                    "{bits} bits, on disk {vectors_on_disk}"
                );
            }
            loaded.insert(3_000, &data[dim..2 * dim]).unwrap();
            assert!(loaded.contains(3_000));
        }
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn manhattan_and_bad_bit_counts_are_refused() {
    assert!(IvfIndex::new(
        8,
        Metric::Manhattan,
        config(4, ListEncoding::Rabitq { bits: 1 })
    )
    .is_err());
    for bits in [0u8, 9] {
        let err = IvfIndex::new(
            8,
            Metric::Euclidean,
            config(4, ListEncoding::Rabitq { bits }),
        )
        .expect_err("refused");
        assert!(err.to_string().contains("bits"), "{err}");
    }
    // The JSON form of the encoding.
    let c: index_ivf::IvfConfig =
        serde_json::from_str(r#"{"encoding": {"kind": "rabitq", "bits": 2}}"#).unwrap();
    assert_eq!(c.encoding, ListEncoding::Rabitq { bits: 2 });
}
