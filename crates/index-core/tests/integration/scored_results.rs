use index_core::{merge_top_k, ScoredOffset, TopK};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[test]
fn top_k_keeps_the_closest_sorted() {
    let mut rng = StdRng::seed_from_u64(1);
    let all: Vec<ScoredOffset> = (0..1000)
        .map(|i| ScoredOffset::new(i, rng.random_range(0.0..1.0)))
        .collect();
    let mut top = TopK::new(10);
    all.iter().for_each(|&s| {
        top.push(s);
    });
    let mut want = all.clone();
    want.sort();
    want.truncate(10);
    assert_eq!(top.into_sorted_vec(), want);
}

#[test]
fn ties_break_by_offset_and_threshold_tracks_the_worst() {
    let mut top = TopK::new(2);
    assert_eq!(top.threshold(), f32::INFINITY);
    top.push(ScoredOffset::new(7, 1.0));
    top.push(ScoredOffset::new(3, 1.0));
    assert_eq!(top.threshold(), 1.0);
    assert!(
        !top.push(ScoredOffset::new(9, 1.0)),
        "equal distance, larger offset loses"
    );
    assert!(
        top.push(ScoredOffset::new(1, 1.0)),
        "equal distance, smaller offset wins"
    );
    let kept: Vec<u32> = top.into_sorted_vec().iter().map(|s| s.offset).collect();
    assert_eq!(kept, vec![1, 3]);
}

#[test]
fn nan_distances_sort_last() {
    let mut top = TopK::new(2);
    top.push(ScoredOffset::new(0, f32::NAN));
    top.push(ScoredOffset::new(1, 5.0));
    top.push(ScoredOffset::new(2, 6.0));
    let kept: Vec<u32> = top.into_sorted_vec().iter().map(|s| s.offset).collect();
    assert_eq!(kept, vec![1, 2]);
}

#[test]
fn merge_equals_sorting_the_union_and_drops_duplicate_keys() {
    let mut rng = StdRng::seed_from_u64(2);
    for trial in 0..50 {
        let lists: Vec<Vec<ScoredOffset>> = (0..rng.random_range(0..6))
            .map(|_| {
                let mut l: Vec<ScoredOffset> = (0..rng.random_range(0..30))
                    .map(|_| {
                        ScoredOffset::new(rng.random_range(0..100), rng.random_range(0..50) as f32)
                    })
                    .collect();
                l.sort();
                l
            })
            .collect();
        let k = rng.random_range(1..40);
        let merged = merge_top_k(&lists, k, |s| s.distance, |s| s.offset);
        // Reference: the best result per offset, sorted, cut to k.
        let mut best = std::collections::HashMap::new();
        for s in lists.iter().flatten() {
            best.entry(s.offset)
                .and_modify(|b: &mut ScoredOffset| *b = (*b).min(*s))
                .or_insert(*s);
        }
        let mut want: Vec<ScoredOffset> = best.into_values().collect();
        want.sort();
        want.truncate(k);
        let d = |v: &[ScoredOffset]| v.iter().map(|s| (s.distance, s.offset)).collect::<Vec<_>>();
        assert_eq!(d(&merged).len(), d(&want).len(), "trial {trial}");
        // Same distances in the same order; offsets agree except among equal distances across lists.
        assert_eq!(
            merged.iter().map(|s| s.distance).collect::<Vec<_>>(),
            want.iter().map(|s| s.distance).collect::<Vec<_>>(),
            "trial {trial}"
        );
        let mut seen = std::collections::HashSet::new();
        assert!(
            merged.iter().all(|s| seen.insert(s.offset)),
            "duplicate offset in trial {trial}"
        );
    }
}
