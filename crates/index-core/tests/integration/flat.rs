use index_core::{
    AllowedSet, FlatIndex, IndexError, IndexErrorKind, PointFilter, SearchParams, VectorIndex,
    VectorIndexWrite,
};
use quant::{kernels, Metric};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn random_index(n: usize, dim: usize, metric: Metric, seed: u64) -> (FlatIndex, Vec<Vec<f32>>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let index = FlatIndex::new(dim, metric);
    let vectors: Vec<Vec<f32>> = (0..n)
        .map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    for (i, v) in vectors.iter().enumerate() {
        index.insert(i as u32, v).unwrap();
    }
    (index, vectors)
}

/// Brute force written out independently: prepare, measure, sort by (distance, offset).
fn brute_force(
    vectors: &[Vec<f32>],
    query: &[f32],
    metric: Metric,
    k: usize,
    allow: impl Fn(u32) -> bool,
) -> Vec<u32> {
    let mut q = query.to_vec();
    metric.prepare(&mut q);
    let mut all: Vec<(f32, u32)> = vectors
        .iter()
        .enumerate()
        .filter(|(i, _)| allow(*i as u32))
        .map(|(i, v)| {
            let mut v = v.clone();
            metric.prepare(&mut v);
            (metric.distance(kernels(), &q, &v), i as u32)
        })
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    all.into_iter().take(k).map(|(_, i)| i).collect()
}

#[test]
fn exact_search_equals_brute_force_for_every_metric() {
    for metric in Metric::ALL {
        let (index, vectors) = random_index(500, 13, metric, 3);
        for q in vectors.iter().step_by(50) {
            let hits = index.search(q, &SearchParams::top(7), None).unwrap();
            let got: Vec<u32> = hits.iter().map(|h| h.offset).collect();
            assert_eq!(
                got,
                brute_force(&vectors, q, metric, 7, |_| true),
                "{metric:?}"
            );
            assert!(
                hits.windows(2).all(|w| w[0] <= w[1]),
                "sorted closest first"
            );
        }
    }
}

#[test]
fn filters_and_deletes_are_respected() {
    let (index, vectors) = random_index(1000, 8, Metric::Euclidean, 4);
    let set: AllowedSet = (0..1000).filter(|i| i % 10 == 3).collect();
    let predicate = |o: u32| o % 10 == 3;
    for filter in [&set as &dyn PointFilter, &predicate as &dyn PointFilter] {
        let hits = index
            .search(&vectors[0], &SearchParams::top(5), Some(filter))
            .unwrap();
        let got: Vec<u32> = hits.iter().map(|h| h.offset).collect();
        assert_eq!(
            got,
            brute_force(&vectors, &vectors[0], Metric::Euclidean, 5, predicate)
        );
    }
    let best = index
        .search(&vectors[42], &SearchParams::top(1), None)
        .unwrap()[0]
        .offset;
    assert_eq!(best, 42);
    assert!(index.delete(42).unwrap());
    assert!(!index.delete(42).unwrap());
    assert!(!index.contains(42));
    assert_eq!(index.len(), 999);
    let hits = index
        .search(&vectors[42], &SearchParams::top(1000), None)
        .unwrap();
    assert_eq!(hits.len(), 999);
    assert!(hits.iter().all(|h| h.offset != 42));
    // Reinserting brings it back.
    index.insert(42, &vectors[42]).unwrap();
    assert_eq!(
        index
            .search(&vectors[42], &SearchParams::top(1), None)
            .unwrap()[0]
            .offset,
        42
    );
}

#[test]
fn max_distance_cuts_results() {
    let (index, vectors) = random_index(300, 4, Metric::Euclidean, 5);
    let mut params = SearchParams::top(300);
    params.max_distance = Some(0.5);
    let hits = index.search(&vectors[0], &params, None).unwrap();
    assert!(!hits.is_empty());
    assert!(hits.iter().all(|h| h.distance <= 0.5));
}

#[test]
fn bad_input_gives_typed_errors() {
    let (index, _) = random_index(10, 4, Metric::Cosine, 6);
    let err = index
        .search(&[0.0; 3], &SearchParams::top(1), None)
        .unwrap_err();
    assert!(matches!(
        err,
        IndexError::DimensionMismatch {
            expected: 4,
            found: 3
        }
    ));
    let err = index
        .search(&[0.0, f32::NAN, 0.0, 0.0], &SearchParams::top(1), None)
        .unwrap_err();
    assert!(matches!(err, IndexError::NonFinite { component: 1 }));
    assert_eq!(err.kind(), IndexErrorKind::InvalidInput);
    for params in [
        SearchParams::top(0),
        SearchParams {
            oversampling: Some(0.5),
            ..SearchParams::top(1)
        },
        SearchParams {
            hnsw_ef: Some(0),
            ..SearchParams::top(1)
        },
        SearchParams {
            max_distance: Some(f32::NAN),
            ..SearchParams::top(1)
        },
    ] {
        let err = index.search(&[0.0; 4], &params, None).unwrap_err();
        assert!(
            matches!(err, IndexError::InvalidParameter { .. }),
            "{params:?}: {err}"
        );
    }
    assert!(matches!(
        index.insert(0, &[1.0; 5]),
        Err(IndexError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        index.insert(u32::MAX, &[1.0; 4]),
        Err(IndexError::OffsetOutOfRange { .. })
    ));
    assert_eq!(index.len(), 10, "failed inserts change nothing");
}

#[test]
fn concurrent_inserts_and_searches_lose_nothing() {
    let index = FlatIndex::new(4, Metric::Euclidean);
    // Slots are dense: reserve them first, then overwrite from many threads while others search.
    for i in 0..4000u32 {
        index.insert(i, &[i as f32, 0.0, 0.0, 0.0]).unwrap();
    }
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let index = &index;
            s.spawn(move || {
                for i in (t..4000).step_by(4) {
                    index.insert(i, &[i as f32, 1.0, 0.0, 0.0]).unwrap();
                }
            });
            s.spawn(move || {
                for i in 0..200 {
                    let hits = index
                        .search(&[i as f32, 1.0, 0.0, 0.0], &SearchParams::top(3), None)
                        .unwrap();
                    assert_eq!(hits.len(), 3);
                }
            });
        }
    });
    assert_eq!(index.len(), 4000);
    let hits = index
        .search(&[1234.0, 1.0, 0.0, 0.0], &SearchParams::top(1), None)
        .unwrap();
    assert_eq!((hits[0].offset, hits[0].distance), (1234, 0.0));
}
