//! Add after training, delete and compact, filters.

use crate::common::{brute_force, clustered, config, encodings, recall};
use index_core::{AllowedSet, SearchParams, VectorIndex, VectorIndexWrite};
use index_ivf::IvfIndex;
use quant::Metric;

#[test]
fn points_added_after_training_are_found() {
    let dim = 16;
    let train = clustered(4_000, dim, 0.3, 31);
    let later = clustered(1_000, dim, 0.3, 32);
    for encoding in encodings(dim) {
        let mut index = IvfIndex::new(dim, Metric::Cosine, config(32, encoding)).unwrap();
        index.train(&train).unwrap();
        assert_eq!(index.len(), 0, "training adds nothing");
        index.add(0, &train).unwrap();
        for (i, v) in later.chunks_exact(dim).enumerate() {
            index.insert(4_000 + i as u32, v).unwrap();
        }
        assert_eq!(index.len(), 5_000);
        let params = SearchParams {
            ivf_nprobe: Some(32),
            ..SearchParams::top(1)
        };
        for (i, v) in later.chunks_exact(dim).enumerate().step_by(50) {
            let hit = index.search(v, &params, None).unwrap();
            assert_eq!(
                hit[0].offset,
                4_000 + i as u32,
                "{encoding:?}: self not first"
            );
        }
    }
}

#[test]
fn deleted_points_never_come_back_and_compaction_frees_them() {
    let dim = 16;
    let data = clustered(3_000, dim, 0.3, 41);
    // Euclidean keeps flat vectors row after row, cosine in transposed panels: compaction
    // must rebuild both.
    for (metric, encoding) in [Metric::Euclidean, Metric::Cosine]
        .into_iter()
        .flat_map(|m| encodings(dim).map(|e| (m, e)))
    {
        let index = IvfIndex::build(dim, metric, config(16, encoding), &data).unwrap();
        let params = SearchParams {
            ivf_nprobe: Some(16),
            ..SearchParams::top(20)
        };
        for o in (0..3_000).step_by(3) {
            assert!(index.delete(o).unwrap());
        }
        assert!(!index.delete(0).unwrap(), "a second delete reports nothing");
        assert_eq!(index.len(), 2_000);
        assert!(!index.contains(3) && index.contains(4));
        let check = |index: &IvfIndex| {
            for q in data.chunks_exact(dim).step_by(97) {
                let hits = index.search(q, &params, None).unwrap();
                assert_eq!(hits.len(), 20);
                assert!(hits.iter().all(|h| h.offset % 3 != 0), "{encoding:?}");
            }
        };
        check(&index);
        // A deleted offset stays taken until compaction removes its entry.
        assert!(index.insert(0, &data[..dim]).is_err());
        assert_eq!(index.compact(), 1_000);
        assert_eq!(index.list_sizes().iter().sum::<usize>(), 2_000);
        check(&index);
        index.insert(0, &data[..dim]).unwrap();
        let hit = index.search(&data[..dim], &params, None).unwrap();
        assert_eq!(hit[0].offset, 0, "{encoding:?}: reinserted point");
    }
}

#[test]
fn filters_restrict_results_by_predicate_and_by_bitset() {
    let (dim, n) = (16, 6_000);
    let data = clustered(n, dim, 0.3, 51);
    let queries = clustered(30, dim, 0.3, 52);
    let even = |o: u32| o.is_multiple_of(2);
    let mut few = AllowedSet::with_capacity(n);
    for o in (0..n as u32).step_by(200) {
        few.insert(o);
    }
    let even_data: Vec<f32> = data
        .chunks_exact(dim)
        .step_by(2)
        .flatten()
        .copied()
        .collect();
    let truth_even = brute_force(&even_data, &queries, dim, Metric::Euclidean, 10);
    for encoding in encodings(dim) {
        let index = IvfIndex::build(dim, Metric::Euclidean, config(32, encoding), &data).unwrap();
        let params = SearchParams {
            ivf_nprobe: Some(8),
            ..SearchParams::top(10)
        };
        let mut total = 0.0;
        for (q, t) in queries.chunks_exact(dim).zip(&truth_even) {
            let hits = index.search(q, &params, Some(&even)).unwrap();
            assert!(hits.iter().all(|h| even(h.offset)), "{encoding:?}");
            // Truth offsets index the even subset: map them back.
            let t: Vec<_> = t
                .iter()
                .map(|s| index_core::ScoredOffset::new(s.offset * 2, s.distance))
                .collect();
            total += recall(&hits, &t);
        }
        let r = total / truth_even.len() as f64;
        assert!(r >= 0.9, "{encoding:?}: filtered recall {r:.3}");
        // A bitset below the full-scan threshold: exact over the 30 allowed points, so
        // all ten results are allowed and are the ten closest of them.
        for q in queries.chunks_exact(dim).take(5) {
            let hits = index.search(q, &params, Some(&few)).unwrap();
            assert_eq!(hits.len(), 10, "{encoding:?}");
            assert!(hits.iter().all(|h| few.contains(h.offset)));
            let allowed: Vec<f32> = few
                .iter()
                .flat_map(|o| data[o as usize * dim..(o as usize + 1) * dim].to_vec())
                .collect();
            let exact = brute_force(&allowed, q, dim, Metric::Euclidean, 10);
            let want: Vec<u32> = exact[0].iter().map(|s| s.offset * 200).collect();
            let got: Vec<u32> = hits.iter().map(|h| h.offset).collect();
            assert_eq!(got, want, "{encoding:?}: small filter must be exact");
        }
    }
}

#[test]
fn concurrent_inserts_and_searches() {
    let dim = 16;
    let data = clustered(4_000, dim, 0.3, 61);
    let mut index =
        IvfIndex::new(dim, Metric::InnerProduct, config(16, encodings(dim)[3])).unwrap();
    index.train(&data).unwrap();
    let index = &index;
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let data = &data;
            s.spawn(move || {
                for i in (t..4_000).step_by(4) {
                    let v = &data[i as usize * dim..(i as usize + 1) * dim];
                    index.insert(i, v).unwrap();
                    if i % 64 == 0 {
                        index.search(v, &SearchParams::top(5), None).unwrap();
                    }
                }
            });
        }
    });
    assert_eq!(index.len(), 4_000);
    assert_eq!(index.list_sizes().iter().sum::<usize>(), 4_000);
}
