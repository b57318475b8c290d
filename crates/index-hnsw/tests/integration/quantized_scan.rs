//! The planner's scan of a quantized storage: it reads the allowed points' codes and
//! re-ranks the best by their full vectors (recall as a walk's, scores exact), where reading
//! every full vector would cost more; a handful of points, a search that asks to be exact,
//! an index without a graph (`no_graph.rs`), and a search that asks for no re-rank still
//! read the full vectors.

use crate::common::{brute_force, clustered, queries, recall};
use index_core::{AllowedSet, PointFilter, ScoredOffset, SearchParams, VectorIndex};
use index_hnsw::{FilterPlan, HnswConfig, HnswIndex, StorageKind};
use quant::{kernels, Metric};

/// The exact distance between `query` and row `row` of `data`, both prepared for `metric`.
fn exact_distance(data: &[f32], dim: usize, metric: Metric, query: &[f32], row: u32) -> f32 {
    let (mut q, mut v) = (query.to_vec(), data[row as usize * dim..][..dim].to_vec());
    metric.prepare(&mut q);
    metric.prepare(&mut v);
    metric.distance(kernels(), &q, &v)
}

/// How many of `found` carry a distance other than the exact one.
fn estimated(found: &[ScoredOffset], data: &[f32], dim: usize, metric: Metric, q: &[f32]) -> usize {
    found
        .iter()
        .filter(|s| {
            let d = exact_distance(data, dim, metric, q, s.offset);
            (s.distance - d).abs() > 1e-4 * d.abs().max(1.0)
        })
        .count()
}

#[test]
fn a_quantized_scan_reads_codes_and_reranks_the_best() {
    let (n, dim) = (20_000, 128);
    let metric = Metric::Cosine;
    let data = clustered(n, dim, 0.3, 51);
    let qs = queries(40, dim, 0.3);
    let nq = qs.len() / dim;
    // 3% of the points (about 600): under `full_scan_threshold`, so the planner scans.
    let pick = |i: u32| (i.wrapping_mul(2654435761) >> 8) % 100 < 3;
    let set: AllowedSet = (0..n as u32).filter(|&i| pick(i)).collect();
    // 40 of them: fewer than the codes' break-even (about 170 points for 1-bit codes and 115
    // for `sq8` at this dimension, re-ranking 30).
    let few: AllowedSet = set.iter().take(40).collect();
    let default_bits = HnswConfig::default().rabitq_bits;
    for (storage, bits) in [(StorageKind::Sq8, default_bits), (StorageKind::Rabitq, 1)] {
        let config = HnswConfig {
            storage,
            rabitq_bits: bits,
            ..HnswConfig::default()
        };
        let index = HnswIndex::build(dim, metric, config, &data).unwrap();
        let params = SearchParams {
            hnsw_ef: Some(64),
            ..SearchParams::top(10)
        };
        assert_eq!(
            index.filter_plan(&params, Some(&set)),
            FilterPlan::Scan,
            "{storage:?}"
        );
        let raw = SearchParams {
            rescore: Some(false),
            ..params.clone()
        };
        let exact = SearchParams {
            exact: true,
            ..params.clone()
        };
        for (name, filter) in [
            ("bitset", &set as &dyn PointFilter),
            ("predicate", &pick as &dyn PointFilter),
        ] {
            let reranked_before = index.reranked();
            let mut total = 0.0;
            for q in qs.chunks_exact(dim) {
                let truth = brute_force(&data, dim, metric, q, 10, |_| true, Some(filter));
                let found = index.search(q, &params, Some(filter)).unwrap();
                assert_eq!(found.len(), 10, "{storage:?} {name}");
                assert!(found.iter().all(|s| pick(s.offset)), "{storage:?} {name}");
                assert!(found.windows(2).all(|w| w[0] <= w[1]), "{storage:?} {name}");
                // Re-ranked: every score is the exact one.
                assert_eq!(
                    estimated(&found, &data, dim, metric, q),
                    0,
                    "{storage:?} {name}: a score that is not the exact one"
                );
                total += recall(&found, &truth);
                // Asked to be exact, or not to re-rank, the scan reads every full vector.
                for (how, params) in [("exact", &exact), ("no re-rank", &raw)] {
                    let found = index.search(q, params, Some(filter)).unwrap();
                    let ids: Vec<u32> = found.iter().map(|s| s.offset).collect();
                    assert_eq!(ids, truth, "{storage:?} {name}: {how}");
                    assert_eq!(estimated(&found, &data, dim, metric, q), 0, "{how}");
                }
            }
            let r = total / nq as f64;
            eprintln!("{storage:?}, scan of 3% ({name}): recall@10 = {r:.4}");
            assert!(r >= 0.95, "{storage:?} {name}: recall@10 {r:.4}");
            if storage == StorageKind::Rabitq {
                // The bound-driven re-rank counts what it reads; a scan of full vectors
                // counts nothing. So the counter moved only if the codes were scanned.
                assert!(
                    index.reranked() > reranked_before,
                    "{name}: no candidate was re-ranked"
                );
            }
        }
        // A handful of points: read in full, they cost about what their codes and a re-rank
        // of 30 do, so the scan reads them in full. RaBitQ's re-rank counter stays still;
        // for `sq8` only the answer is checked (a re-rank of 30 of 40 would give it too).
        let reranked_before = index.reranked();
        for q in qs.chunks_exact(dim) {
            let found = index.search(q, &params, Some(&few)).unwrap();
            let ids: Vec<u32> = found.iter().map(|s| s.offset).collect();
            assert_eq!(
                ids,
                brute_force(&data, dim, metric, q, 10, |_| true, Some(&few)),
                "{storage:?}: 40 points"
            );
            assert_eq!(estimated(&found, &data, dim, metric, q), 0, "{storage:?}");
        }
        assert_eq!(index.reranked(), reranked_before, "{storage:?}: 40 points");
    }
}
