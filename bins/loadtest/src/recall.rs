//! Recall arithmetic: how much of the exact answer a search returned.
//!
//! recall@k of one query is `|returned[..k] ∩ truth[..k]| / k`, the definition of
//! ann-benchmarks and of `peers.py`, so figures line up with the peer tables. Two details
//! keep it honest where servers misbehave:
//!
//! - an id the server returns twice counts once (a duplicate cannot buy recall);
//! - when the exact answer has fewer than `k` ids (a collection smaller than `k`), the
//!   denominator is that smaller count, so a perfect answer still scores 1.
//!
//! The mean over queries is the run's figure; queries that failed are left out of it (and
//! counted as errors), and [`RecallStats::queries`] says how many were scored.

use std::collections::HashSet;

use serde::Serialize;

/// recall@k of one answer against the exact top ids (see the module doc).
///
/// Only the first `k` entries of `returned` and of `truth` take part. With `k == 0`, or
/// with an empty `truth`, there is nothing to find and the recall is 1.
pub fn recall_at_k(returned: &[u64], truth: &[u64], k: usize) -> f64 {
    let wanted = k.min(truth.len());
    if wanted == 0 {
        return 1.0;
    }
    let truth: HashSet<u64> = truth[..wanted].iter().copied().collect();
    let mut seen = HashSet::with_capacity(k);
    let found = returned
        .iter()
        .take(k)
        .filter(|id| truth.contains(id) && seen.insert(**id))
        .count();
    found as f64 / wanted as f64
}

/// Running mean, minimum and perfect-answer count of per-query recalls.
#[derive(Debug, Clone, Default)]
pub struct RecallAccumulator {
    k: usize,
    sum: f64,
    queries: usize,
    min: Option<f64>,
    perfect: usize,
}

impl RecallAccumulator {
    /// An empty accumulator for recall@`k`.
    pub fn new(k: usize) -> RecallAccumulator {
        RecallAccumulator {
            k,
            ..RecallAccumulator::default()
        }
    }

    /// Scores one answer and adds it; returns its recall.
    pub fn add(&mut self, returned: &[u64], truth: &[u64]) -> f64 {
        let recall = recall_at_k(returned, truth, self.k);
        self.sum += recall;
        self.queries += 1;
        self.min = Some(self.min.map_or(recall, |m| m.min(recall)));
        if recall >= 1.0 {
            self.perfect += 1;
        }
        recall
    }

    /// The statistics so far, or `None` when no query was scored.
    pub fn stats(&self) -> Option<RecallStats> {
        (self.queries > 0).then(|| RecallStats {
            k: self.k,
            queries: self.queries,
            mean: self.sum / self.queries as f64,
            min: self.min.unwrap_or(0.0),
            perfect_fraction: self.perfect as f64 / self.queries as f64,
        })
    }
}

/// Recall of one run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RecallStats {
    /// The `k` of recall@k (the query `limit`).
    pub k: usize,
    /// How many queries were scored.
    pub queries: usize,
    /// Mean recall@k over the scored queries: the figure to compare.
    pub mean: f64,
    /// The worst query's recall.
    pub min: f64,
    /// The share of queries whose answer held the whole exact top-k.
    pub perfect_fraction: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_overlap_of_the_first_k() {
        // truth top-4 = {1,2,3,4}; returned top-4 = {1,9,3,8}: 2 of 4.
        assert_eq!(recall_at_k(&[1, 9, 3, 8, 2], &[1, 2, 3, 4, 5], 4), 0.5);
    }

    #[test]
    fn duplicates_count_once() {
        assert_eq!(recall_at_k(&[7, 7, 7], &[7, 8, 9], 3), 1.0 / 3.0);
    }

    #[test]
    fn short_truth_shrinks_the_denominator() {
        assert_eq!(recall_at_k(&[4, 5], &[5, 4], 10), 1.0);
        assert_eq!(recall_at_k(&[4], &[5, 4], 10), 0.5);
        assert_eq!(recall_at_k(&[], &[], 10), 1.0);
    }
}
