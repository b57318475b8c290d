//! Recall arithmetic against hand-computed cases.

use loadtest::recall::{recall_at_k, RecallAccumulator};

#[test]
fn recall_at_k_by_hand() {
    let truth = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21];
    // All ten of the top ten, in another order: 1.
    assert_eq!(
        recall_at_k(&[19, 18, 17, 16, 15, 14, 13, 12, 11, 10], &truth, 10),
        1.0
    );
    // Seven of the top ten plus three that are 11th, 12th and absent: 7/10.
    assert_eq!(
        recall_at_k(&[10, 11, 12, 13, 14, 15, 16, 20, 21, 99], &truth, 10),
        0.7
    );
    // Only the first k returned count: the 11th answer (a true neighbour) is ignored.
    assert_eq!(
        recall_at_k(&[99, 98, 97, 96, 95, 94, 93, 92, 91, 90, 10], &truth, 10),
        0.0
    );
    // A short answer scores what it has: 3 of 10.
    assert_eq!(recall_at_k(&[12, 10, 11], &truth, 10), 0.3);
    // recall@1 looks at the first id only.
    assert_eq!(recall_at_k(&[10, 11], &truth, 1), 1.0);
    assert_eq!(recall_at_k(&[11, 10], &truth, 1), 0.0);
}

#[test]
fn the_mean_is_over_scored_queries() {
    // Per-query recall@4: 1, 0.5, 0.25, 0 → mean 0.4375, min 0, one perfect in four.
    let truth = [1u64, 2, 3, 4];
    let mut acc = RecallAccumulator::new(4);
    assert_eq!(acc.add(&[4, 3, 2, 1], &truth), 1.0);
    assert_eq!(acc.add(&[1, 2, 8, 9], &truth), 0.5);
    assert_eq!(acc.add(&[9, 8, 7, 4], &truth), 0.25);
    assert_eq!(acc.add(&[], &truth), 0.0);
    let s = acc.stats().unwrap();
    assert_eq!((s.k, s.queries), (4, 4));
    assert_eq!(s.mean, 0.4375);
    assert_eq!(s.min, 0.0);
    assert_eq!(s.perfect_fraction, 0.25);
}

#[test]
fn nothing_scored_means_no_figure() {
    assert!(RecallAccumulator::new(10).stats().is_none());
}
