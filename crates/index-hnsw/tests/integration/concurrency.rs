//! Inserting from many threads while others search: nothing lost, nothing panics.

use crate::common::clustered;
use index_core::{SearchParams, VectorIndex, VectorIndexWrite};
use index_hnsw::{HnswConfig, HnswIndex};
use quant::Metric;
use std::sync::atomic::{AtomicBool, Ordering};

#[test]
fn concurrent_inserts_and_searches() {
    let (n, dim) = (8_000, 16);
    let data = clustered(n, dim, 0.3, 12);
    let index = HnswIndex::new(dim, Metric::Euclidean, HnswConfig::default()).unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..4usize {
            let (index, data) = (&index, &data);
            s.spawn(move || {
                for i in (t..n).step_by(4) {
                    index
                        .insert(i as u32, &data[i * dim..(i + 1) * dim])
                        .unwrap();
                }
            });
        }
        for _ in 0..2 {
            let (index, data, done) = (&index, &data, &done);
            s.spawn(move || {
                let mut searches = 0;
                while !done.load(Ordering::Relaxed) || searches < 100 {
                    let q = &data[(searches * 37 % n) * dim..][..dim];
                    let found = index.search(q, &SearchParams::top(5), None).unwrap();
                    assert!(found.len() <= 5);
                    searches += 1;
                }
            });
        }
        s.spawn(|| {
            while index.len() < n {
                std::thread::yield_now();
            }
            done.store(true, Ordering::Relaxed);
        });
    });
    assert_eq!(index.len(), n);
    // Every point is findable as its own nearest neighbour.
    let params = SearchParams {
        hnsw_ef: Some(64),
        ..SearchParams::top(1)
    };
    let found = (0..n)
        .filter(|&i| {
            index
                .search(&data[i * dim..(i + 1) * dim], &params, None)
                .unwrap()[0]
                .distance
                == 0.0
        })
        .count();
    assert!(
        found as f64 >= 0.99 * n as f64,
        "only {found} of {n} points find themselves"
    );
}
