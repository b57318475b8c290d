//! The graph every build makes: fixed degree, distinct links, no self-loops, and a k-NN
//! start close to the exact one.

use crate::common::*;
use gpu_cagra::{BuildAlgo, CagraConfig, CagraIndex};
use quant::Metric;

#[test]
fn every_node_has_exactly_graph_degree_distinct_links_with_either_initial_graph() {
    let (data, _) = dataset();
    let brute =
        CagraIndex::build(32, Metric::Euclidean, config(BuildAlgo::BruteForce), &data).unwrap();
    for index in [&brute, shared_index()] {
        assert_eq!(index.size(), 20_000);
        assert_eq!(index.graph_degree(), 32);
        assert_fixed_degree(index);
    }
}

#[test]
fn odd_degrees_and_an_intermediate_degree_equal_to_the_final_one_keep_the_rule() {
    let data = clustered(3_000, 16, 20, 0.3, 5);
    for (intermediate, degree) in [(17, 17), (40, 9), (33, 1)] {
        let config = CagraConfig {
            intermediate_graph_degree: intermediate,
            graph_degree: degree,
            build_algo: BuildAlgo::NnDescent,
            ..CagraConfig::default()
        };
        let index = CagraIndex::build(16, Metric::Cosine, config, &data).unwrap();
        assert_eq!(index.graph_degree(), degree);
        assert_fixed_degree(&index);
    }
}

#[test]
fn the_pruned_graph_keeps_most_exact_nearest_neighbours() {
    // Rank-based pruning drops detourable edges, not near ones: most of each node's 10
    // exact nearest neighbours stay direct links of the final graph (reverse edges and
    // detours account for the rest).
    let data = clustered(5_000, 24, 40, 0.35, 9);
    let index =
        CagraIndex::build(24, Metric::Euclidean, config(BuildAlgo::NnDescent), &data).unwrap();
    let truth = exact(&data, &data[..200 * 24], 24, Metric::Euclidean, 11, None);
    let mut kept = 0;
    for (node, t) in truth.iter().enumerate() {
        let links = &index.graph()[node * 32..(node + 1) * 32];
        kept += t
            .iter()
            .skip(1)
            .filter(|s| links.contains(&s.offset))
            .count();
    }
    let share = kept as f64 / (200.0 * 10.0);
    assert!(
        share >= 0.6,
        "{share:.3} of the 10 nearest neighbours are direct links"
    );
}
