//! Filtered search equals filtered brute force at 1% to 50% selectivity, down the planner's
//! path and down the filter-first walk; the planner's choices.

use crate::common::{brute_force, clustered, queries, recall};
use index_core::{AllowedSet, PointFilter, SearchParams, VectorIndex};
use index_hnsw::{FilterPlan, HnswConfig, HnswIndex};
use quant::{kernels, Metric};

#[test]
fn filtered_recall_at_several_selectivities() {
    let (n, dim) = (100_000, 32);
    let data = clustered(n, dim, 1.0, 5);
    let qs = queries(100, dim, 1.0);
    let config = HnswConfig {
        full_scan_threshold: 1_000,
        ..HnswConfig::default()
    };
    let index = HnswIndex::build(dim, Metric::Euclidean, config, &data).unwrap();
    // Each share down the planner's path, and at 2%, 10% and 25% down the filter-first walk
    // as well (at 2% with its `ef` raised 2.8 times), where the planner scans 2% and 10% of
    // the points: the walk is told to run. At `ef` 64
    // it measures about 1,700 of the 10,000 points passing at 10% (64 expansions of some
    // 26), so recall is the approximate path's.
    let cases = [
        (1u32, None),
        (2, Some(FilterPlan::FilterFirst)),
        (10, None),
        (10, Some(FilterPlan::FilterFirst)),
        (25, Some(FilterPlan::FilterFirst)),
        (50, None),
    ];
    for (percent, plan) in cases {
        // Allowed: a hash-scattered subset, so it is not correlated with the clusters.
        let pick = |i: u32| (i.wrapping_mul(2654435761) >> 8) % 100 < percent;
        let set: AllowedSet = (0..n as u32).filter(|&i| pick(i)).collect();
        for (name, filter) in [
            ("bitset", &set as &dyn PointFilter),
            ("predicate", &pick as &dyn PointFilter),
        ] {
            let params = SearchParams {
                hnsw_ef: Some(64),
                ..SearchParams::top(10)
            };
            let path = plan.unwrap_or_else(|| index.filter_plan(&params, Some(filter)));
            let mut total = 0.0;
            for q in qs.chunks_exact(dim) {
                let found = index
                    .search_with_plan(q, &params, Some(filter), plan)
                    .unwrap();
                assert!(
                    found.iter().all(|s| pick(s.offset)),
                    "{percent}% {name} ({path:?}): a disallowed point was returned"
                );
                total += recall(
                    &found,
                    &brute_force(&data, dim, Metric::Euclidean, q, 10, |_| true, Some(filter)),
                );
            }
            let r = total / 100.0;
            eprintln!("filter {percent}% ({name}, {path:?}): recall@10 = {r:.4}");
            assert!(r >= 0.95, "{percent}% {name} ({path:?}): recall@10 {r:.4}");
        }
    }
}

/// The planner's choices where the cost model's two sides differ well apart (the model is in
/// `index/search.rs`): the floor, the scan of a narrow bitset, the walk at a small `ef`, the
/// plain walk from a fifth of the points on, and a predicate (which a scan must test on
/// every point) kept on the walk where a bitset of the same share is scanned.
#[test]
fn the_planner_scans_where_scanning_costs_less_than_the_walk() {
    let (n, dim) = (20_000, 32);
    let data = clustered(n, dim, 0.3, 7);
    let build = |full_scan_threshold| {
        let config = HnswConfig {
            full_scan_threshold,
            ..HnswConfig::default()
        };
        HnswIndex::build(dim, Metric::Euclidean, config, &data).unwrap()
    };
    let index = build(0);
    let share = |percent: u32| {
        let pick = move |i: u32| (i.wrapping_mul(2654435761) >> 8) % 100 < percent;
        let set: AllowedSet = (0..n as u32).filter(|&i| pick(i)).collect();
        (pick, set)
    };
    let ef = |ef| SearchParams {
        hnsw_ef: Some(ef),
        ..SearchParams::top(10)
    };
    let (_, set10) = share(10);
    let (pick15, set15) = share(15);
    let (_, set19) = share(19);
    let (_, set25) = share(25);
    let (_, set60) = share(60);
    // 2,000 points scanned in order cost less than a walk of `ef` 64 through them (about 64
    // expansions, each measuring some 26 allowed nodes at random and looking through 15).
    assert_eq!(index.filter_plan(&ef(64), Some(&set10)), FilterPlan::Scan);
    // The walk's cost grows with `ef`, the scan's does not: a wide `ef` scans 15%.
    assert_eq!(
        index.filter_plan(&ef(4_000), Some(&set15)),
        FilterPlan::Scan
    );
    // At the smallest `ef` the walk is the cheaper path at 15% and 19%.
    for set in [&set15, &set19] {
        assert_eq!(
            index.filter_plan(&ef(10), Some(set)),
            FilterPlan::FilterFirst
        );
    }
    // A predicate that passes 15% cannot list its points: scanning it tests all 20,000, so
    // it walks where the bitset of the same points is scanned.
    assert_eq!(index.filter_plan(&ef(64), Some(&set15)), FilterPlan::Scan);
    assert_eq!(
        index.filter_plan(&ef(64), Some(&pick15)),
        FilterPlan::FilterFirst
    );
    // From a fifth of the points on: the plain walk, whatever `ef`.
    for set in [&set25, &set60] {
        for e in [10, 64, 4_000] {
            assert_eq!(
                index.filter_plan(&ef(e), Some(set)),
                FilterPlan::PassThrough
            );
        }
    }
    // Below `full_scan_threshold` the scan, even where the model would walk; above it the
    // model's choice.
    let floored = build(3_500);
    assert_eq!(floored.filter_plan(&ef(10), Some(&set15)), FilterPlan::Scan);
    assert_eq!(
        floored.filter_plan(&ef(10), Some(&set19)),
        FilterPlan::FilterFirst
    );
    // A share too sparse to walk (0.5%: about 2 allowed nodes an expansion) is scanned at
    // any `ef`, where the cost model alone would walk at the smallest.
    let (_, set_sparse) = share(1);
    let sparse: AllowedSet = set_sparse.iter().filter(|&i| i % 2 == 0).collect();
    for e in [10, 64] {
        assert_eq!(
            index.filter_plan(&ef(e), Some(&sparse)),
            FilterPlan::Scan,
            "{} points",
            sparse.len()
        );
    }
    // The planned scan, and a forced walk with `exact` set, are exact: the same points and
    // distances as a brute-force scan.
    let qs = queries(20, dim, 0.3);
    let exact = SearchParams {
        exact: true,
        ..ef(64)
    };
    for q in qs.chunks_exact(dim) {
        let want = brute_force(&data, dim, Metric::Euclidean, q, 10, |_| true, Some(&set10));
        for found in [
            index.search(q, &ef(64), Some(&set10)).unwrap(),
            index
                .search_with_plan(q, &exact, Some(&set10), Some(FilterPlan::FilterFirst))
                .unwrap(),
        ] {
            assert_eq!(found.iter().map(|s| s.offset).collect::<Vec<_>>(), want);
            for s in &found {
                let v = &data[s.offset as usize * dim..][..dim];
                let d = Metric::Euclidean.distance(kernels(), q, v);
                assert!(
                    (s.distance - d).abs() <= 1e-4 * d.max(1.0),
                    "{s:?}: exact {d}"
                );
            }
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
