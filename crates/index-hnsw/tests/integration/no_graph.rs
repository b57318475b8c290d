//! `m` 0: an index without a graph. Every search, filtered or not and whatever its `ef`, is
//! an exact scan: the points brute force finds, at their distances, for each storage, after
//! inserts past the build and deletes, and again after a save and a load.

use crate::common::{brute_force, clustered, queries, recall};
use index_core::{
    AllowedSet, PointFilter, ScoredOffset, SearchParams, VectorIndex, VectorIndexWrite,
};
use index_hnsw::{HnswConfig, HnswIndex, LoadOptions, StorageKind};
use quant::{kernels, Metric};

/// The exact distance between `query` and stored row `row` of `data`, as the index measures
/// full vectors (both prepared for the metric).
fn distance(data: &[f32], dim: usize, metric: Metric, query: &[f32], row: u32) -> f32 {
    let (mut q, mut v) = (
        query.to_vec(),
        data[row as usize * dim..(row as usize + 1) * dim].to_vec(),
    );
    metric.prepare(&mut q);
    metric.prepare(&mut v);
    metric.distance(kernels(), &q, &v)
}

#[test]
fn without_a_graph_every_search_is_an_exact_scan() {
    let (n, dim) = (6_000, 24);
    let built = 5_000;
    let metric = Metric::Cosine;
    let data = clustered(n, dim, 0.3, 11);
    let qs = queries(30, dim, 0.3);
    let live = |i: u32| i % 7 != 3;
    let tenth = |i: u32| (i.wrapping_mul(2654435761) >> 8).is_multiple_of(10);
    let set: AllowedSet = (0..n as u32).filter(|&i| tenth(i)).collect();
    let most = |i: u32| (i.wrapping_mul(2654435761) >> 8) % 10 < 7;
    for storage in [StorageKind::F32, StorageKind::F16, StorageKind::Sq8] {
        let config = HnswConfig {
            m: 0,
            storage,
            // Low, so that a graph index would walk for every filter below.
            full_scan_threshold: 10,
            ..HnswConfig::default()
        };
        let index = HnswIndex::build(dim, metric, config, &data[..built * dim]).unwrap();
        for i in built..n {
            index
                .insert(i as u32, &data[i * dim..(i + 1) * dim])
                .unwrap();
        }
        for i in (0..n as u32).filter(|&i| !live(i)) {
            assert!(index.delete(i).unwrap());
        }
        index.repair();
        assert!(
            index.base_layer().iter().all(Vec::is_empty),
            "{storage:?}: an index without a graph has links"
        );
        let path = std::env::temp_dir().join(format!(
            "vr-hnsw-{}-no-graph-{storage:?}.hnsw",
            std::process::id()
        ));
        index.save(&path).unwrap();
        let loaded = HnswIndex::load(&path, LoadOptions::default()).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(loaded.config().m, 0);
        for (which, index) in [("built", &index), ("loaded", &loaded)] {
            let mut total = 0.0;
            let mut searches = 0;
            for q in qs.chunks_exact(dim) {
                for (name, filter) in [
                    ("unfiltered", None),
                    ("bitset of 10%", Some(&set as &dyn PointFilter)),
                    ("predicate of 70%", Some(&most as &dyn PointFilter)),
                ] {
                    // An `ef` of 1 would find one point or two by a walk.
                    let params = SearchParams {
                        hnsw_ef: Some(1),
                        ..SearchParams::top(10)
                    };
                    let found = index.search(q, &params, filter).unwrap();
                    let exact = SearchParams {
                        exact: true,
                        ..SearchParams::top(10)
                    };
                    assert_eq!(
                        found,
                        index.search(q, &exact, filter).unwrap(),
                        "{storage:?}, {which}, {name}: not the exact scan's answer"
                    );
                    let truth = brute_force(&data, dim, metric, q, 10, live, filter);
                    assert_eq!(found.len(), 10, "{storage:?}, {which}, {name}");
                    assert!(
                        found
                            .iter()
                            .all(|s| live(s.offset) && filter.is_none_or(|f| f.allows(s.offset))),
                        "{storage:?}, {which}, {name}: a deleted or disallowed point"
                    );
                    if storage == StorageKind::F16 {
                        // Distances measured on half-precision vectors: near ties may swap.
                        total += recall(&found, &truth);
                        searches += 1;
                        continue;
                    }
                    let ids: Vec<u32> = found.iter().map(|s| s.offset).collect();
                    assert_eq!(ids, truth, "{storage:?}, {which}, {name}");
                    for s in &found {
                        let want = distance(&data, dim, metric, q, s.offset);
                        assert!(
                            (s.distance - want).abs() <= 1e-5,
                            "{storage:?}, {which}, {name}: point {} at {} instead of {want}",
                            s.offset,
                            s.distance
                        );
                    }
                }
            }
            if searches > 0 {
                let r = total / searches as f64;
                assert!(r >= 0.99, "{storage:?}, {which}: recall@10 {r:.4}");
            }
        }
    }
}

#[test]
fn no_graph_costs_no_link_memory_and_m_one_is_refused() {
    let (n, dim) = (3_000, 16);
    let data = clustered(n, dim, 0.3, 12);
    let graph = HnswIndex::build(dim, Metric::Euclidean, HnswConfig::default(), &data).unwrap();
    // `ef_construct` is unused without a graph, so any value stands (storage accepts it too).
    let flat = HnswIndex::build(
        dim,
        Metric::Euclidean,
        HnswConfig {
            m: 0,
            ef_construct: 1,
            ..HnswConfig::default()
        },
        &data,
    )
    .unwrap();
    let (g, f) = (graph.memory_usage(), flat.memory_usage());
    assert_eq!(f.vector_bytes, g.vector_bytes);
    // Without links a record holds its state word and the vector, and at most a line of padding.
    assert!(
        f.index_bytes <= n * 64 && f.index_bytes * 3 <= g.index_bytes,
        "links kept without a graph: {} bytes against {}",
        f.index_bytes,
        g.index_bytes
    );
    // The nearest point to a stored vector is itself, at distance 0.
    let hits: Vec<ScoredOffset> = flat
        .search(&data[70 * dim..71 * dim], &SearchParams::top(1), None)
        .unwrap();
    assert_eq!((hits[0].offset, hits[0].distance), (70, 0.0));
    let Err(err) = HnswIndex::new(
        dim,
        Metric::Euclidean,
        HnswConfig {
            m: 1,
            ..HnswConfig::default()
        },
    ) else {
        panic!("m 1 is refused");
    };
    assert!(
        err.to_string()
            .contains("not 0 (no graph) or between 2 and 256"),
        "{err}"
    );
}
