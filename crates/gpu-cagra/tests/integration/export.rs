//! The graph exported to `index-hnsw` as a single layer, and HNSW's base layer taken back.

use crate::common::*;
use gpu_cagra::{BuildAlgo, CagraIndex, CagraSearchParams};
use index_core::{ScoredOffset, SearchParams, VectorIndex};
use index_hnsw::{BaseLayer, HnswConfig, HnswIndex};
use quant::Metric;

#[test]
fn the_exported_graph_searched_by_index_hnsw_is_within_0_02_recall_of_cagra() {
    let (data, queries) = dataset();
    let index = CagraIndex::build(32, Metric::Cosine, config(BuildAlgo::NnDescent), &data).unwrap();
    let hnsw = HnswIndex::from_graph(
        32,
        Metric::Cosine,
        HnswConfig {
            m: 16,
            ..HnswConfig::default()
        },
        index.vectors(),
        BaseLayer {
            degree: index.graph_degree(),
            links: index.graph(),
            entry: index.center(),
            hierarchy: true,
        },
    )
    .unwrap();
    assert_eq!(hnsw.len(), 20_000);
    // A single layer (cuVS's export without hierarchy) is walked from the center alone.
    let single = HnswIndex::from_graph(
        32,
        Metric::Cosine,
        HnswConfig {
            m: 16,
            ..HnswConfig::default()
        },
        index.vectors(),
        BaseLayer {
            degree: 32,
            links: index.graph(),
            entry: index.center(),
            hierarchy: false,
        },
    )
    .unwrap();
    assert_eq!(single.base_layer(), hnsw.base_layer());
    // The links are the graph's own.
    let layer = hnsw.base_layer();
    for node in [0usize, 777, 19_999] {
        assert_eq!(layer[node], index.neighbours(node as u32));
    }
    let truth = exact(&data, &queries, 32, Metric::Cosine, 10, None);
    for size in [32, 64] {
        let own = search_all(
            &index,
            &queries,
            10,
            &CagraSearchParams {
                itopk_size: size,
                ..CagraSearchParams::default()
            },
            None,
        );
        let params = SearchParams {
            hnsw_ef: Some(size),
            ..SearchParams::top(10)
        };
        let exported: Vec<Vec<ScoredOffset>> = queries
            .chunks_exact(32)
            .map(|q| hnsw.search(q, &params, None).unwrap())
            .collect();
        let (r_own, r_hnsw) = (recall(&own, &truth, 10), recall(&exported, &truth, 10));
        assert!(
            r_hnsw >= r_own - 0.02,
            "size {size}: index-hnsw {r_hnsw:.4}, CAGRA {r_own:.4}"
        );
        assert!(r_own >= 0.9, "size {size}: CAGRA {r_own:.4}");
    }
}

#[test]
fn hnsw_base_layer_becomes_a_fixed_degree_cagra_graph() {
    let (data, queries) = dataset();
    let hnsw = HnswIndex::build(32, Metric::Euclidean, HnswConfig::default(), &data).unwrap();
    let index = CagraIndex::from_graph(
        32,
        Metric::Euclidean,
        config(BuildAlgo::Auto),
        &data,
        &hnsw.base_layer(),
    )
    .unwrap();
    assert_fixed_degree(&index);
    let truth = exact(&data, &queries, 32, Metric::Euclidean, 10, None);
    let found = search_all(&index, &queries, 10, &CagraSearchParams::default(), None);
    let r = recall(&found, &truth, 10);
    assert!(
        r >= 0.95,
        "recall@10 {r:.4} of the graph made from HNSW's base layer"
    );
}

#[test]
fn an_export_refuses_a_degree_past_the_base_layer_and_links_past_the_points() {
    let data = clustered(200, 8, 4, 0.3, 1);
    let links: Vec<u32> = (0..200u32)
        .flat_map(|i| [(i + 1) % 200, (i + 2) % 200])
        .collect();
    // A base layer of 2·m = 8 links at most.
    let import = |degree: usize, links: &[u32], entry: u32| {
        let config = HnswConfig {
            m: 4,
            ..HnswConfig::default()
        };
        let layer = BaseLayer {
            degree,
            links,
            entry,
            hierarchy: false,
        };
        HnswIndex::from_graph(8, Metric::Euclidean, config, &data, layer)
    };
    assert!(import(2, &links, 0).is_ok());
    let wide: Vec<u32> = (0..200u32)
        .flat_map(|i| (1..=9).map(move |d| (i + d) % 200))
        .collect();
    assert!(import(9, &wide, 0).is_err());
    let mut bad = links.clone();
    bad[5] = 200;
    assert!(import(2, &bad, 0).is_err());
    bad[5] = 2; // node 2 to itself
    assert!(import(2, &bad, 0).is_err());
    bad[5] = 3; // node 2 to 3, twice
    bad[4] = 3;
    assert!(import(2, &bad, 0).is_err());
    assert!(import(2, &links, 200).is_err());
}
