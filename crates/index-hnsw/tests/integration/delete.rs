//! Deleted points never come back, and recall after deleting 30% stays close to a fresh build.

use crate::common::{brute_force, clustered, queries, recall};
use index_core::{SearchParams, VectorIndex, VectorIndexWrite};
use index_hnsw::{HnswConfig, HnswIndex};
use quant::Metric;

#[test]
fn recall_after_deleting_30_percent_matches_a_fresh_build() {
    let (n, dim) = (20_000, 32);
    let data = clustered(n, dim, 0.3, 7);
    let qs = queries(200, dim, 0.3);
    let deleted = |i: u32| (i.wrapping_mul(2654435761) >> 7) % 10 < 3;
    let index = HnswIndex::build(dim, Metric::Cosine, HnswConfig::default(), &data).unwrap();
    for i in (0..n as u32).filter(|&i| deleted(i)) {
        assert!(index.delete(i).unwrap());
        assert!(
            !index.delete(i).unwrap(),
            "a second delete reports nothing deleted"
        );
    }
    let rebuilt = index.repair();
    assert!(rebuilt > 0);
    assert_eq!(index.len(), (0..n as u32).filter(|&i| !deleted(i)).count());

    // A fresh build on the remaining points, keeping their offsets via a filter-free mapping.
    let rest: Vec<u32> = (0..n as u32).filter(|&i| !deleted(i)).collect();
    let rest_data: Vec<f32> = rest
        .iter()
        .flat_map(|&i| {
            data[i as usize * dim..(i as usize + 1) * dim]
                .iter()
                .copied()
        })
        .collect();
    let fresh = HnswIndex::build(dim, Metric::Cosine, HnswConfig::default(), &rest_data).unwrap();

    let params = SearchParams {
        hnsw_ef: Some(64),
        ..SearchParams::top(10)
    };
    let (mut after_delete, mut after_fresh) = (0.0, 0.0);
    for q in qs.chunks_exact(dim) {
        let truth = brute_force(&data, dim, Metric::Cosine, q, 10, |i| !deleted(i), None);
        let found = index.search(q, &params, None).unwrap();
        assert!(
            found.iter().all(|s| !deleted(s.offset)),
            "a deleted point was returned"
        );
        after_delete += recall(&found, &truth);
        let mut fresh_found = fresh.search(q, &params, None).unwrap();
        fresh_found
            .iter_mut()
            .for_each(|s| s.offset = rest[s.offset as usize]);
        after_fresh += recall(&fresh_found, &truth);
    }
    let (a, f) = (after_delete / 200.0, after_fresh / 200.0);
    eprintln!("after deleting 30%: recall@10 {a:.4}; fresh build on the rest {f:.4}");
    assert!(
        a >= f - 0.02,
        "recall after delete {a:.4} is more than 0.02 below a fresh build's {f:.4}"
    );
}

#[test]
fn deleting_the_entry_point_keeps_search_working() {
    let data = clustered(3000, 8, 0.3, 8);
    let index = HnswIndex::build(8, Metric::Euclidean, HnswConfig::default(), &data).unwrap();
    // Delete most points, the entry among them, without repairing.
    for i in 0..2900u32 {
        index.delete(i).unwrap();
    }
    let found = index
        .search(&data[..8], &SearchParams::top(5), None)
        .unwrap();
    assert_eq!(found.len(), 5);
    assert!(found.iter().all(|s| s.offset >= 2900));
    index.repair();
    let found = index
        .search(
            &data[..8],
            &SearchParams {
                hnsw_ef: Some(100),
                ..SearchParams::top(100)
            },
            None,
        )
        .unwrap();
    assert_eq!(
        found.len(),
        100,
        "every remaining point is reachable after repair"
    );
}

#[test]
fn offsets_are_written_once() {
    let data = clustered(100, 4, 0.3, 9);
    let index = HnswIndex::build(4, Metric::Euclidean, HnswConfig::default(), &data).unwrap();
    assert!(
        index.insert(5, &data[..4]).is_err(),
        "a live offset is refused"
    );
    index.delete(6).unwrap();
    assert!(
        index.insert(6, &data[..4]).is_err(),
        "a deleted offset is refused"
    );
    index.insert(100, &data[..4]).unwrap();
    assert!(index.contains(100));
}
