//! Filtered search by bitset and by predicate, at narrow and broad filters: the scan for few
//! passing points, the widened walk for more.

use crate::common::*;
use gpu_cagra::{BuildAlgo, CagraIndex, CagraSearchParams, Plan};
use index_core::{AllowedSet, PointFilter};
use quant::Metric;

#[test]
fn filtered_walks_and_scans_return_only_passing_points_at_high_recall() {
    let (data, queries) = dataset();
    let index = shared_index();
    let params = CagraSearchParams {
        itopk_size: 64,
        ..CagraSearchParams::default()
    };
    // Shares of 50% and 33% walk (past sqrt(itopk · degree · n) = 6,400 passing points);
    // 20% and 0.5% are scanned.
    for (every, plan) in [
        (2u32, Plan::Walk),
        (3, Plan::Walk),
        (5, Plan::Scan),
        (200, Plan::Scan),
    ] {
        // A pattern that cuts across the clusters, so that no cluster passes whole.
        let allowed: AllowedSet = (0..20_000u32)
            .filter(|o| (o * 7 + 3) % every == 0)
            .collect();
        assert_eq!(index.plan(allowed.len()), plan, "every {every}");
        let truth = exact(&data, &queries, 32, Metric::Euclidean, 10, Some(&allowed));
        let found = search_all(index, &queries, 10, &params, Some(&allowed));
        for hits in &found {
            assert_eq!(hits.len(), 10);
            assert!(
                hits.iter().all(|h| allowed.contains(h.offset)),
                "every {every}: {hits:?}"
            );
        }
        let r = recall(&found, &truth, 10);
        assert!(r >= 0.95, "1 in {every} passing: recall@10 {r:.4}");
        assert_exact_distances(index, &queries, &found);
        // The same filter as a predicate (no count of its own: it is sampled) agrees.
        let predicate = |o: u32| allowed.contains(o);
        assert_eq!(predicate.cardinality_estimate(), None);
        let by_predicate = search_all(index, &queries, 10, &params, Some(&predicate));
        let r2 = recall(&by_predicate, &truth, 10);
        assert!(r2 >= 0.95, "predicate, 1 in {every}: recall@10 {r2:.4}");
    }
}

#[test]
fn a_filter_nothing_passes_gives_nothing_and_one_point_gives_that_point() {
    let (data, queries) = dataset();
    let index = CagraIndex::build(32, Metric::Euclidean, config(BuildAlgo::Auto), &data).unwrap();
    let params = CagraSearchParams::default();
    let none = AllowedSet::default();
    assert!(index
        .search_with(&queries[..32], 10, &params, Some(&none), None, None)
        .unwrap()
        .is_empty());
    let one: AllowedSet = [12_345u32].into_iter().collect();
    let hits = index
        .search_with(&queries[..32], 10, &params, Some(&one), None, None)
        .unwrap();
    assert_eq!(
        hits.iter().map(|h| h.offset).collect::<Vec<_>>(),
        vec![12_345]
    );
}
