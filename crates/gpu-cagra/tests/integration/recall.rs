//! Recall of the walk against brute force, on sets where the approximate path is taken.

use crate::common::*;
use gpu_cagra::{BuildAlgo, CagraConfig, CagraIndex, CagraSearchParams, CagraStorage};
use index_core::{SearchParams, VectorIndex};
use quant::Metric;

#[test]
fn recall_at_10_is_at_least_0_95_at_itopk_64_with_nn_descent() {
    let (data, queries) = dataset();
    let index = shared_index();
    let truth = exact(&data, &queries, 32, Metric::Euclidean, 10, None);
    let params = CagraSearchParams {
        itopk_size: 64,
        ..CagraSearchParams::default()
    };
    let found = search_all(index, &queries, 10, &params, None);
    let r = recall(&found, &truth, 10);
    assert!(r >= 0.95, "recall@10 {r:.4} at itopk 64");
    assert_exact_distances(index, &queries, &found);
    // A small buffer loses recall: the walk is approximate, not a scan in disguise.
    let narrow = CagraSearchParams {
        itopk_size: 10,
        ..CagraSearchParams::default()
    };
    let r10 = recall(&search_all(index, &queries, 10, &narrow, None), &truth, 10);
    assert!(r10 < r, "itopk 10 gives {r10:.4}, itopk 64 {r:.4}");
}

#[test]
fn a_wider_search_and_more_iterations_do_not_lose_recall() {
    let (data, queries) = dataset();
    let index = shared_index();
    let truth = exact(&data, &queries, 32, Metric::Euclidean, 10, None);
    let base = CagraSearchParams {
        itopk_size: 32,
        ..CagraSearchParams::default()
    };
    let r_base = recall(&search_all(index, &queries, 10, &base, None), &truth, 10);
    let wide = CagraSearchParams {
        search_width: 4,
        min_iterations: 20,
        ..base
    };
    let r_wide = recall(&search_all(index, &queries, 10, &wide, None), &truth, 10);
    assert!(
        r_wide >= r_base - 0.01,
        "width 4: {r_wide:.4}, width 1: {r_base:.4}"
    );
    // One iteration cannot get far from the random entry points.
    let capped = CagraSearchParams {
        max_iterations: 1,
        ..base
    };
    let r_capped = recall(&search_all(index, &queries, 10, &capped, None), &truth, 10);
    assert!(r_capped < r_base - 0.2, "one iteration: {r_capped:.4}");
}

#[test]
fn every_metric_finds_its_own_nearest_neighbours() {
    let data = clustered(6_000, 24, 40, 0.35, 3);
    let queries = clustered(100, 24, 40, 0.35, 4);
    for metric in Metric::ALL {
        let index = CagraIndex::build(24, metric, config(BuildAlgo::NnDescent), &data).unwrap();
        let truth = exact(&data, &queries, 24, metric, 10, None);
        let params = CagraSearchParams {
            itopk_size: 64,
            ..CagraSearchParams::default()
        };
        let found = search_all(&index, &queries, 10, &params, None);
        let r = recall(&found, &truth, 10);
        assert!(r >= 0.9, "{metric:?}: recall@10 {r:.4}");
        assert_exact_distances(&index, &queries, &found);
    }
}

#[test]
fn eight_bit_codes_with_rescoring_keep_recall_and_return_exact_distances() {
    let (data, queries) = dataset();
    let config = CagraConfig {
        storage: CagraStorage::Sq8,
        build_algo: BuildAlgo::NnDescent,
        ..CagraConfig::default()
    };
    let index = CagraIndex::build(32, Metric::Cosine, config, &data).unwrap();
    let truth = exact(&data, &queries, 32, Metric::Cosine, 10, None);
    let params = CagraSearchParams {
        itopk_size: 64,
        ..CagraSearchParams::default()
    };
    let found = search_all(&index, &queries, 10, &params, None);
    let r = recall(&found, &truth, 10);
    assert!(r >= 0.93, "SQ8 rescored: recall@10 {r:.4}");
    assert_exact_distances(&index, &queries, &found);
    // Without rescoring the distances are the codes' estimates.
    let q = &queries[..32];
    let raw = index
        .search_with(q, 10, &params, None, Some(false), None)
        .unwrap();
    let rescored = index.search_with(q, 10, &params, None, None, None).unwrap();
    assert_ne!(
        raw.iter().map(|s| s.distance).collect::<Vec<_>>(),
        rescored.iter().map(|s| s.distance).collect::<Vec<_>>()
    );
    let mem = index.memory_usage();
    assert_eq!(mem.index_bytes, 20_000 * 32 * 4);
}

#[test]
fn the_index_traits_answer_like_search_with_and_batches_like_single_queries() {
    let (data, queries) = dataset();
    let index = CagraIndex::build(32, Metric::Euclidean, config(BuildAlgo::Auto), &data).unwrap();
    let params = SearchParams {
        hnsw_ef: Some(64),
        ..SearchParams::top(10)
    };
    let qs: Vec<&[f32]> = queries.chunks_exact(32).collect();
    let batch = index.search_batch(&qs, &params, None).unwrap();
    let walk = CagraSearchParams {
        itopk_size: 64,
        ..CagraSearchParams::default()
    };
    for (q, b) in qs.iter().zip(&batch) {
        assert_eq!(&index.search(q, &params, None).unwrap(), b);
        assert_eq!(
            &index.search_with(q, 10, &walk, None, None, None).unwrap(),
            b
        );
    }
    // `exact` scans: it agrees with brute force value for value.
    let exact_params = SearchParams {
        exact: true,
        ..SearchParams::top(10)
    };
    let truth = exact(&data, &queries[..32], 32, Metric::Euclidean, 10, None);
    assert_eq!(index.search(qs[0], &exact_params, None).unwrap(), truth[0]);
    // `max_distance` drops what lies beyond it.
    let bound = batch[0][4].distance;
    let limited = SearchParams {
        max_distance: Some(bound),
        ..params
    };
    assert!(index
        .search(qs[0], &limited, None)
        .unwrap()
        .iter()
        .all(|h| h.distance <= bound));
}

#[test]
fn deleted_points_never_come_back_and_the_rest_stay_findable() {
    let (data, queries) = dataset();
    let index =
        CagraIndex::build(32, Metric::Euclidean, config(BuildAlgo::NnDescent), &data).unwrap();
    let params = CagraSearchParams {
        itopk_size: 64,
        ..CagraSearchParams::default()
    };
    let before = search_all(&index, &queries, 10, &params, None);
    // Delete every query's best answer, and a tenth of all points.
    for hits in &before {
        index.delete(hits[0].offset).unwrap();
    }
    for o in (0..20_000).step_by(10) {
        index.delete(o).unwrap();
    }
    assert!(
        !index.delete(0).unwrap(),
        "deleting twice reports the point gone"
    );
    let deleted = index.deleted();
    assert_eq!(index.len(), 20_000 - deleted.len());
    let after = search_all(&index, &queries, 10, &params, None);
    for hits in &after {
        assert!(hits.iter().all(|h| !deleted.contains(h.offset)), "{hits:?}");
        assert_eq!(hits.len(), 10);
    }
    let live = |o: u32| !deleted.contains(o);
    let truth = exact(&data, &queries, 32, Metric::Euclidean, 10, Some(&live));
    let r = recall(&after, &truth, 10);
    assert!(r >= 0.93, "recall@10 over the live points {r:.4}");
}
