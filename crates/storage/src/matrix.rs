//! The search matrix (`/points/search/matrix/pairs` and `/offsets`): a random sample of the
//! points matching a filter, and for each of them its nearest neighbours among the others.
//!
//! Sampling is uniform without replacement over every shard: each shard draws a uniform
//! sample from its own matching points ([`crate::LocalShard::sample`]) and says how many it
//! had; [`merge_samples`] then draws from the shards in proportion to what each has left,
//! which is uniform over their union. The neighbours are exact: every pair of the sample is
//! scored, so a sample of `n` costs `n²` distances.

use index_core::PointId;
use quant::Metric;
use rayon::prelude::*;
use std::time::Instant;

/// The largest sample one matrix may draw.
pub const MAX_MATRIX_SAMPLE: usize = 10_000;

/// The largest number of neighbours kept per sampled point.
pub const MAX_MATRIX_LIMIT: usize = 1_000;

/// The next number of a SplitMix64 sequence (a fast generator with a 64-bit state; good
/// enough to draw samples, not for anything secret).
pub fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A number in `0..n` (`n > 0`), nearly uniform (the bias is below 2⁻³² for any `n` a
/// sample sees).
pub fn random_below(state: &mut u64, n: usize) -> usize {
    ((next_random(state) as u128 * n as u128) >> 64) as usize
}

/// One shard's sample: a uniform sample of its matching points with their vectors, and how
/// many matching points it has in all.
#[derive(Debug, Clone, Default)]
pub struct ShardSample {
    /// How many of the shard's points matched.
    pub matched: usize,
    /// The drawn points, in the order drawn.
    pub points: Vec<(PointId, Vec<f32>)>,
}

/// Up to `n` points drawn uniformly without replacement from the union of the shards'
/// matching points, given a uniform sample of up to `n` from each.
pub fn merge_samples(samples: Vec<ShardSample>, n: usize, seed: u64) -> Vec<(PointId, Vec<f32>)> {
    let mut state = seed;
    let mut left: Vec<usize> = samples.iter().map(|s| s.matched).collect();
    let mut drawn: Vec<std::vec::IntoIter<(PointId, Vec<f32>)>> =
        samples.into_iter().map(|s| s.points.into_iter()).collect();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let total: usize = left.iter().sum();
        if total == 0 {
            break;
        }
        // The next point is in shard k with probability left[k] / total; the shard's own
        // sample, uniform, gives which one.
        let mut r = random_below(&mut state, total);
        let k = left
            .iter()
            .position(|&l| {
                if r < l {
                    true
                } else {
                    r -= l;
                    false
                }
            })
            .expect("r < total");
        left[k] -= 1;
        match drawn[k].next() {
            Some(p) => out.push(p),
            // A shard's sample holds min(n, matched) points, and no shard is drawn from more
            // than n times; only a point deleted in between can be missing.
            None => left[k] = 0,
        }
    }
    out
}

/// The sampled points in id order, and for each its `limit` nearest among the others: the
/// column (position in `ids`) and the score, best first (ties by id).
#[derive(Debug, Clone, PartialEq)]
pub struct DistanceMatrix {
    /// The sampled points, in id order.
    pub ids: Vec<PointId>,
    /// Row `i`: the neighbours of `ids[i]`.
    pub rows: Vec<Vec<(usize, f32)>>,
}

/// Scores every pair of `points` (vectors as stored: prepared for `metric`) and keeps each
/// point's `limit` nearest others. Fewer than two points make an empty matrix, as in Qdrant.
/// `None` when `deadline` passes before it is done.
pub fn nearest_among(
    metric: Metric,
    mut points: Vec<(PointId, Vec<f32>)>,
    limit: usize,
    deadline: Instant,
) -> Option<DistanceMatrix> {
    if points.len() < 2 {
        return Some(DistanceMatrix {
            ids: Vec::new(),
            rows: Vec::new(),
        });
    }
    points.sort_by_key(|p| p.0);
    let kernels = quant::kernels();
    let rows = (0..points.len())
        .into_par_iter()
        .map(|i| {
            if Instant::now() > deadline {
                return None;
            }
            let a = &points[i].1;
            let mut row: Vec<(f32, usize)> = points
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(j, (_, b))| (metric.distance(kernels, a, b), j))
                .collect();
            let keep = limit.min(row.len());
            // Points are in id order, so (distance, position) orders ties by id.
            let by_distance =
                |x: &(f32, usize), y: &(f32, usize)| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1));
            if keep < row.len() {
                row.select_nth_unstable_by(keep, by_distance);
                row.truncate(keep);
            }
            row.sort_by(by_distance);
            Some(row.into_iter().map(|(d, j)| (j, metric.score(d))).collect())
        })
        .collect::<Option<Vec<_>>>()?;
    Some(DistanceMatrix {
        ids: points.into_iter().map(|p| p.0).collect(),
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(n: u64) -> Vec<(PointId, Vec<f32>)> {
        (0..n)
            .map(|i| (PointId::Num(i), vec![i as f32, (i * i % 7) as f32]))
            .collect()
    }

    #[test]
    fn each_row_holds_the_nearest_others_best_first() {
        let far = Instant::now() + std::time::Duration::from_secs(60);
        let mut pts = points(30);
        pts.reverse();
        let m = nearest_among(Metric::Euclidean, pts.clone(), 4, far).unwrap();
        assert_eq!(m.ids, (0..30).map(PointId::Num).collect::<Vec<_>>());
        let k = quant::kernels();
        for (i, row) in m.rows.iter().enumerate() {
            let a = &pts.iter().find(|p| p.0 == m.ids[i]).unwrap().1;
            let mut all: Vec<(f32, usize)> = (0..30)
                .filter(|&j| j != i)
                .map(|j| {
                    let b = &pts.iter().find(|p| p.0 == m.ids[j]).unwrap().1;
                    (Metric::Euclidean.distance(k, a, b).sqrt(), j)
                })
                .collect();
            all.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
            let want: Vec<(usize, f32)> = all[..4].iter().map(|&(d, j)| (j, d)).collect();
            assert_eq!(row, &want, "row {i}");
        }
        // A dot product ranks the largest first; equal scores by id. Vectors (i, i² mod 7):
        // (0,0) (1,1) (2,4) (3,2) (4,2); from (1,1): 6, 5, 6 for 2, 3, 4.
        let m = nearest_among(Metric::InnerProduct, points(5), 3, far).unwrap();
        assert_eq!(m.rows[1], vec![(2, 6.0), (4, 6.0), (3, 5.0)]);
        // One point is no matrix; a passed deadline is an error.
        assert!(nearest_among(Metric::Cosine, points(1), 3, far)
            .unwrap()
            .ids
            .is_empty());
        let past = Instant::now() - std::time::Duration::from_millis(1);
        assert!(nearest_among(Metric::Cosine, points(10), 3, past).is_none());
    }

    #[test]
    fn merged_samples_are_uniform_over_the_union() {
        // Shard 0 has 900 matching points, shard 1 has 100: a point of shard 1 should be in
        // a sample of 10 as often as one of shard 0 (1% each), so about a tenth of the
        // points drawn come from shard 1.
        let mut from_small = 0usize;
        let rounds = 4_000u64;
        for seed in 0..rounds {
            let shard = |base: u64, matched: usize| ShardSample {
                matched,
                points: (0..10).map(|i| (PointId::Num(base + i), vec![])).collect(),
            };
            let out = merge_samples(vec![shard(0, 900), shard(10_000, 100)], 10, seed * 7919);
            assert_eq!(out.len(), 10);
            let distinct: std::collections::HashSet<_> = out.iter().map(|p| p.0).collect();
            assert_eq!(distinct.len(), 10);
            from_small += out.iter().filter(|p| p.0 >= PointId::Num(10_000)).count();
        }
        let share = from_small as f64 / (rounds * 10) as f64;
        assert!(
            (share - 0.1).abs() < 0.01,
            "share from the small shard {share}"
        );
        // Fewer matching points than asked: all of them.
        let out = merge_samples(
            vec![ShardSample {
                matched: 3,
                points: (0..3).map(|i| (PointId::Num(i), vec![])).collect(),
            }],
            10,
            1,
        );
        assert_eq!(out.len(), 3);
    }
}
