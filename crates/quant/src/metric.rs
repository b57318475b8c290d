//! Distance metrics and the project's one convention for "closer".
//!
//! Inside the project a **distance** is always "smaller is closer", and results sort by
//! distance, then by id:
//!
//! | metric | distance inside | score Qdrant returns ([`Metric::score`]) |
//! |---|---|---|
//! | [`Metric::Euclidean`] | squared L2, `Σ (aᵢ − bᵢ)²` | `sqrt` of it (smaller is better) |
//! | [`Metric::InnerProduct`] | `−(a · b)` | `a · b` (larger is better) |
//! | [`Metric::Cosine`] | `−(a · b)` of unit vectors | `a · b` (larger is better) |
//! | [`Metric::Manhattan`] | `Σ |aᵢ − bᵢ|` | the same (smaller is better) |
//!
//! Cosine vectors are normalised once, when they are inserted ([`Metric::prepare`]), so the
//! search never divides by a norm. The squared L2 keeps the same order as L2 and saves a root.

use crate::kernels::Kernels;

/// How closeness of two vectors is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Euclidean (L2) distance; internally squared.
    Euclidean,
    /// Inner (dot) product; internally negated.
    InnerProduct,
    /// Cosine similarity; vectors are normalised at insert, then treated as inner product.
    Cosine,
    /// Manhattan (L1) distance.
    Manhattan,
}

impl Metric {
    /// Every metric.
    pub const ALL: [Metric; 4] = [
        Metric::Euclidean,
        Metric::InnerProduct,
        Metric::Cosine,
        Metric::Manhattan,
    ];

    /// Normalises `v` in place when the metric needs unit vectors (cosine); a no-op otherwise.
    ///
    /// A zero vector stays zero (as in Qdrant): it is equally far from everything.
    pub fn prepare(self, v: &mut [f32]) {
        if self == Metric::Cosine {
            normalize(v);
        }
    }

    /// The internal distance between two prepared vectors (smaller is closer).
    #[inline]
    pub fn distance(self, kernels: &Kernels, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::Euclidean => kernels.l2sq_f32(a, b),
            Metric::InnerProduct | Metric::Cosine => -kernels.dot_f32(a, b),
            Metric::Manhattan => kernels.l1_f32(a, b),
        }
    }

    /// The internal distance between a prepared `f32` query and an `f16` stored vector.
    #[inline]
    pub fn distance_f16(self, kernels: &Kernels, a: &[f32], b: &[half::f16]) -> f32 {
        match self {
            Metric::Euclidean => kernels.l2sq_f32_f16(a, b),
            Metric::InnerProduct | Metric::Cosine => -kernels.dot_f32_f16(a, b),
            Metric::Manhattan => kernels.l1_f32_f16(a, b),
        }
    }

    /// The internal distance between two `f16` stored vectors.
    #[inline]
    pub fn distance_f16_f16(self, kernels: &Kernels, a: &[half::f16], b: &[half::f16]) -> f32 {
        match self {
            Metric::Euclidean => kernels.l2sq_f16(a, b),
            Metric::InnerProduct | Metric::Cosine => -kernels.dot_f16(a, b),
            Metric::Manhattan => kernels.l1_f16(a, b),
        }
    }

    /// Converts an internal distance into the score Qdrant's API returns for this metric.
    #[inline]
    pub fn score(self, distance: f32) -> f32 {
        match self {
            Metric::Euclidean => distance.max(0.0).sqrt(),
            Metric::InnerProduct | Metric::Cosine => -distance,
            Metric::Manhattan => distance,
        }
    }

    /// Converts a Qdrant score (e.g. a `score_threshold`) into an internal distance bound.
    #[inline]
    pub fn distance_from_score(self, score: f32) -> f32 {
        match self {
            Metric::Euclidean => {
                if score <= 0.0 {
                    0.0
                } else {
                    score * score
                }
            }
            Metric::InnerProduct | Metric::Cosine => -score,
            Metric::Manhattan => score,
        }
    }

    /// The metric's number in the index files (HNSW, IVF, CAGRA, storage's segments): 1
    /// Euclidean, 2 inner product, 3 cosine, 4 Manhattan. Written to disk: never renumber.
    pub fn tag(self) -> u32 {
        match self {
            Metric::Euclidean => 1,
            Metric::InnerProduct => 2,
            Metric::Cosine => 3,
            Metric::Manhattan => 4,
        }
    }

    /// The metric of a file's tag ([`Metric::tag`]); `None` for a number no metric has.
    pub fn from_tag(tag: u32) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.tag() == tag)
    }

    /// Whether a larger Qdrant score means closer (dot and cosine) or farther (distances).
    pub fn higher_score_is_closer(self) -> bool {
        matches!(self, Metric::InnerProduct | Metric::Cosine)
    }
}

/// Scales `v` to unit L2 norm; leaves a zero vector as it is, and a vector whose norm is 1
/// to rounding. The last makes normalising idempotent: layers that each prepare a vector (a
/// shard, then its index) would otherwise move an already unit vector by an ulp or two, and a
/// point's stored vector would change when the optimizer moves it into a graph.
///
/// The norm is summed in `f64`, in order, and the scaling done in `f64`: the products of two
/// `f32`s are exact there, so the decision and the result are the same on every machine and
/// instruction set (a SIMD kernel's partial sums would round differently from the scalar
/// fallback's, and change stored vectors, at high dimension).
pub fn normalize(v: &mut [f32]) {
    let norm_sq: f64 = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    // A normalised vector's squared norm is 1 to within a few `f32` ulps; 1e-6 (as Qdrant)
    // leaves any real rescaling to be done.
    if (norm_sq - 1.0).abs() <= 1e-6 {
        return;
    }
    if norm_sq > 0.0 && norm_sq.is_finite() {
        let inv = 1.0 / norm_sq.sqrt();
        v.iter_mut().for_each(|x| *x = (f64::from(*x) * inv) as f32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    #[test]
    fn normalising_twice_changes_nothing() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut moved = 0;
        for dim in [3, 8, 50, 384, 1536] {
            for _ in 0..200 {
                let mut v: Vec<f32> = (0..dim).map(|_| rng.random_range(-2.0..2.0)).collect();
                normalize(&mut v);
                let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                assert!((norm - 1.0).abs() < 1e-5, "dim {dim}: norm {norm}");
                let mut again = v.clone();
                normalize(&mut again);
                assert_eq!(again, v, "dim {dim}");
                // A unit vector scaled by 1.01 is normalised again, not left alone.
                let mut scaled: Vec<f32> = v.iter().map(|x| x * 1.01).collect();
                normalize(&mut scaled);
                moved += usize::from(scaled != v.iter().map(|x| x * 1.01).collect::<Vec<_>>());
                let norm: f32 = scaled.iter().map(|x| x * x).sum::<f32>().sqrt();
                assert!((norm - 1.0).abs() < 1e-5);
            }
        }
        assert_eq!(moved, 1000);
        let mut zero = vec![0.0f32; 8];
        normalize(&mut zero);
        assert_eq!(zero, vec![0.0; 8]);
    }
}
