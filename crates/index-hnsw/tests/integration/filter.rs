//! Filtered search equals filtered brute force at 1%, 10% and 50% selectivity.

use crate::common::{brute_force, clustered, queries, recall};
use index_core::{AllowedSet, PointFilter, SearchParams, VectorIndex};
use index_hnsw::{HnswConfig, HnswIndex};
use quant::Metric;

#[test]
fn filtered_recall_at_several_selectivities() {
    let (n, dim) = (20_000, 32);
    let data = clustered(n, dim, 0.3, 5);
    let qs = queries(100, dim, 0.3);
    // A small full-scan threshold so that 10% and 50% go through the graph walk.
    let config = HnswConfig {
        full_scan_threshold: 1_000,
        ..HnswConfig::default()
    };
    let index = HnswIndex::build(dim, Metric::Euclidean, config, &data).unwrap();
    for percent in [1u32, 10, 50] {
        // Allowed: a hash-scattered subset, so it is not correlated with the clusters.
        let pick = |i: u32| (i.wrapping_mul(2654435761) >> 8) % 100 < percent;
        let set: AllowedSet = (0..n as u32).filter(|&i| pick(i)).collect();
        for (name, filter) in [
            ("bitset", &set as &dyn PointFilter),
            ("predicate", &pick as &dyn PointFilter),
        ] {
            let mut total = 0.0;
            for q in qs.chunks_exact(dim) {
                let params = SearchParams {
                    hnsw_ef: Some(64),
                    ..SearchParams::top(10)
                };
                let found = index.search(q, &params, Some(filter)).unwrap();
                assert!(
                    found.iter().all(|s| pick(s.offset)),
                    "{percent}% {name}: a disallowed point was returned"
                );
                total += recall(
                    &found,
                    &brute_force(&data, dim, Metric::Euclidean, q, 10, |_| true, Some(filter)),
                );
            }
            let r = total / 100.0;
            eprintln!("filter {percent}% ({name}): recall@10 = {r:.4}");
            assert!(r >= 0.95, "{percent}% {name}: recall@10 {r:.4}");
        }
    }
}

#[test]
fn an_empty_filter_returns_nothing() {
    let data = clustered(2000, 8, 0.3, 6);
    let index = HnswIndex::build(8, Metric::Cosine, HnswConfig::default(), &data).unwrap();
    let none = AllowedSet::default();
    assert!(index
        .search(&data[..8], &SearchParams::top(5), Some(&none))
        .unwrap()
        .is_empty());
    let never = |_: u32| false;
    assert!(index
        .search(&data[..8], &SearchParams::top(5), Some(&never))
        .unwrap()
        .is_empty());
}
