//! What a search looks for: the nearest neighbours of one vector, or the points that score
//! best against several examples (Qdrant's `recommend` with the `best_score` and `sum_scores`
//! strategies, `discover` and `context`).
//!
//! An example query has no single vector to walk a graph towards, so a shard answers it in
//! two steps (`LocalShard::search`): it gathers candidates by walking towards each example
//! that the best points lie near (the positives, a discovery's target), then scores every
//! candidate exactly with the query's function. A shard small enough, or a search asked to be
//! exact, scores every point that passes the filter instead.
//!
//! The scoring functions are Qdrant's, as its Python client computes them in local mode (the
//! oracle of the end-to-end tests). Each compares a point with an example through the
//! metric's similarity (higher is closer): the dot product (of unit vectors under cosine),
//! the negated squared Euclidean distance, the negated Manhattan distance. Higher scores rank
//! first under every metric; a hit's distance is its negated score.

use crate::{Result, StorageError};
use index_core::prepared_vector;
use quant::{Kernels, Metric};

/// What a search ranks points by.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    /// Nearest neighbours of a vector, as the user sent it (the shard prepares it for the
    /// metric).
    Nearest(Vec<f32>),
    /// Points scored against several examples.
    Examples(ExampleQuery),
    /// The points best matching a sparse vector (dot product over shared indices; higher
    /// first), of the sparse vector the request names. Its weights are final: any IDF
    /// scaling was applied by the caller, from the whole collection's statistics.
    Sparse(crate::sparse::SparseVector),
    /// Points of the sparse vector the request names, scored against sparse examples (every
    /// point holding it is scored).
    SparseExamples(SparseExamples),
    /// The points best matching a query matrix by MaxSim, of the multivector the request
    /// names (as the user sent it: the shard checks and prepares it).
    Multi(crate::multi::MultiVector),
    /// Points of the multivector the request names, scored against example matrices by
    /// MaxSim (every point holding it is scored).
    MultiExamples(MultiExamples),
}

impl Query {
    /// The vector of a nearest-neighbour query.
    pub fn nearest(&self) -> Option<&[f32]> {
        match self {
            Query::Nearest(v) => Some(v),
            _ => None,
        }
    }
}

/// How `recommend` combines its examples' similarities (`average_vector` is a nearest query
/// to the examples' average, built by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecommendStrategy {
    /// The best similarity to a positive if it beats the best to a negative (squashed into
    /// (0.5, 1)), else minus the best to a negative.
    BestScore,
    /// The sum of the similarities to the positives minus that to the negatives.
    SumScores,
}

/// A pair of examples: a point should lie nearer the positive than the negative.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair<V> {
    /// The side to be near.
    pub positive: V,
    /// The side to be far from.
    pub negative: V,
}

/// A pair of dense examples.
pub type ContextPair = Pair<Vec<f32>>;

/// A query scored against several examples, dense or sparse (`V`).
#[derive(Debug, Clone, PartialEq)]
pub enum Examples<V> {
    /// "More like these, less like those".
    Recommend {
        /// Examples to be near (may be empty when there are negatives).
        positive: Vec<V>,
        /// Examples to be far from.
        negative: Vec<V>,
        /// How the similarities combine.
        strategy: RecommendStrategy,
    },
    /// Nearest to `target` within the zone the pairs allow: the score's integer part counts
    /// the pairs a point is on the positive side of, less those on the negative side; the
    /// fraction is the squashed similarity to the target.
    Discover {
        /// What to be near.
        target: V,
        /// The constraints.
        context: Vec<Pair<V>>,
    },
    /// The zone the pairs allow, without a target: each pair a point is on the wrong side of
    /// costs up to 1 (scores are at most 0).
    Context {
        /// The constraints (at least one).
        context: Vec<Pair<V>>,
    },
}

/// Dense examples.
pub type ExampleQuery = Examples<Vec<f32>>;

/// Multivector examples: a point scores against one by MaxSim (see `multi`).
pub type MultiExamples = Examples<crate::multi::MultiVector>;

/// Sparse examples: a point scores against one by the dot product over shared indices, 0
/// when it shares none (as Qdrant scores sparse examples).
pub type SparseExamples = Examples<crate::sparse::SparseVector>;

impl<V> Examples<V> {
    /// The query's score of a point, given its similarity to an example (higher closer):
    /// Qdrant's formulas, the same for every kind of vector.
    pub fn score_by(&self, sim: impl Fn(&V) -> f32) -> f32 {
        match self {
            Examples::Recommend {
                positive,
                negative,
                strategy: RecommendStrategy::BestScore,
            } => {
                let best = |es: &[V]| es.iter().map(&sim).fold(f32::NEG_INFINITY, f32::max);
                let (pos, neg) = (best(positive), best(negative));
                if pos > neg {
                    scaled_fast_sigmoid(pos)
                } else {
                    -scaled_fast_sigmoid(neg)
                }
            }
            Examples::Recommend {
                positive,
                negative,
                strategy: RecommendStrategy::SumScores,
            } => {
                let sum = |es: &[V]| es.iter().map(&sim).sum::<f32>();
                sum(positive) - sum(negative)
            }
            Examples::Discover { target, context } => {
                let rank: i32 = context
                    .iter()
                    .map(|p| {
                        let (pos, neg) = (sim(&p.positive), sim(&p.negative));
                        if pos > neg {
                            1
                        } else if pos == neg {
                            0
                        } else {
                            -1
                        }
                    })
                    .sum();
                rank as f32 + scaled_fast_sigmoid(sim(target))
            }
            Examples::Context { context } => context
                .iter()
                .map(|p| {
                    let diff = sim(&p.positive) - sim(&p.negative) - CONTEXT_MARGIN;
                    fast_sigmoid(diff.min(0.0))
                })
                .sum(),
        }
    }

    /// Every example, each once per mention.
    pub fn examples(&self) -> Vec<&V> {
        match self {
            Examples::Recommend {
                positive, negative, ..
            } => positive.iter().chain(negative).collect(),
            Examples::Discover { target, context } => std::iter::once(target)
                .chain(context.iter().flat_map(|p| [&p.positive, &p.negative]))
                .collect(),
            Examples::Context { context } => context
                .iter()
                .flat_map(|p| [&p.positive, &p.negative])
                .collect(),
        }
    }

    /// The same query with each example mapped.
    pub fn try_map<W, E>(&self, mut f: impl FnMut(&V) -> Result<W, E>) -> Result<Examples<W>, E> {
        fn pairs<V, W, E>(
            c: &[Pair<V>],
            f: &mut impl FnMut(&V) -> Result<W, E>,
        ) -> Result<Vec<Pair<W>>, E> {
            c.iter()
                .map(|p| {
                    Ok(Pair {
                        positive: f(&p.positive)?,
                        negative: f(&p.negative)?,
                    })
                })
                .collect()
        }
        Ok(match self {
            Examples::Recommend {
                positive,
                negative,
                strategy,
            } => {
                let positive = positive.iter().map(&mut f).collect::<Result<_, E>>()?;
                let negative = negative.iter().map(&mut f).collect::<Result<_, E>>()?;
                Examples::Recommend {
                    positive,
                    negative,
                    strategy: *strategy,
                }
            }
            Examples::Discover { target, context } => {
                let target = f(target)?;
                Examples::Discover {
                    target,
                    context: pairs(context, &mut f)?,
                }
            }
            Examples::Context { context } => Examples::Context {
                context: pairs(context, &mut f)?,
            },
        })
    }
}

/// `f32::EPSILON`, as Qdrant subtracts it in the context loss.
const CONTEXT_MARGIN: f32 = f32::EPSILON;

fn fast_sigmoid(x: f32) -> f32 {
    if !x.is_finite() {
        return x;
    }
    x / (1.0 + x.abs())
}

fn scaled_fast_sigmoid(x: f32) -> f32 {
    0.5 * (fast_sigmoid(x) + 1.0)
}

/// An [`ExampleQuery`] with every example checked and prepared for the metric.
#[derive(Debug, Clone)]
pub struct PreparedExamples {
    metric: Metric,
    query: ExampleQuery,
}

impl ExampleQuery {
    /// Checks every example against the vector's dimension (finite values, the right length)
    /// and prepares it for `metric` (unit length under cosine).
    pub fn prepare(&self, dim: usize, metric: Metric) -> Result<PreparedExamples> {
        let prep = |v: &Vec<f32>| prepared_vector(v, dim, metric).map_err(StorageError::from);
        let pairs = |c: &[ContextPair]| -> Result<Vec<ContextPair>> {
            c.iter()
                .map(|p| {
                    Ok(ContextPair {
                        positive: prep(&p.positive)?,
                        negative: prep(&p.negative)?,
                    })
                })
                .collect()
        };
        let query = match self {
            ExampleQuery::Recommend {
                positive,
                negative,
                strategy,
            } => {
                if positive.is_empty() && negative.is_empty() {
                    return Err(StorageError::InvalidInput(
                        "a recommendation needs at least one positive or negative example".into(),
                    ));
                }
                ExampleQuery::Recommend {
                    positive: positive.iter().map(prep).collect::<Result<_>>()?,
                    negative: negative.iter().map(prep).collect::<Result<_>>()?,
                    strategy: *strategy,
                }
            }
            ExampleQuery::Discover { target, context } => ExampleQuery::Discover {
                target: prep(target)?,
                context: pairs(context)?,
            },
            ExampleQuery::Context { context } => {
                if context.is_empty() {
                    return Err(StorageError::InvalidInput(
                        "a context query needs at least one pair".into(),
                    ));
                }
                ExampleQuery::Context {
                    context: pairs(context)?,
                }
            }
        };
        Ok(PreparedExamples { metric, query })
    }
}

impl PreparedExamples {
    /// The metric's similarity of an example and a stored vector: higher is closer.
    fn similarity(&self, k: &Kernels, example: &[f32], v: &[f32]) -> f32 {
        -self.metric.distance(k, example, v)
    }

    /// The query's score of a stored vector (prepared as stored): higher ranks first.
    pub fn score(&self, k: &Kernels, v: &[f32]) -> f32 {
        self.query.score_by(|e| self.similarity(k, e, v))
    }

    /// The vectors whose neighbourhoods hold the best-scoring points: candidates are
    /// gathered by walking towards each. Empty when no walk leads to them (under a distance
    /// metric, a recommendation from negatives alone ranks the points farthest from them
    /// first, and so does `sum_scores` under Manhattan, or under Euclid with no more
    /// positives than negatives): then every point that passes the filter is scored.
    pub(crate) fn anchors(&self) -> Vec<Vec<f32>> {
        // Under an inner product a similarity is linear in the point, so a sum of
        // similarities is the similarity to one vector, and "far from e" is "near −e".
        let linear = matches!(self.metric, Metric::InnerProduct | Metric::Cosine);
        let negated = |e: &Vec<f32>| e.iter().map(|x| -x).collect::<Vec<f32>>();
        match &self.query {
            ExampleQuery::Recommend {
                positive,
                negative,
                strategy: RecommendStrategy::SumScores,
            } if linear => {
                let sum = signed_sum(positive, negative);
                if sum.iter().all(|x| *x == 0.0) {
                    // Every point scores 0: any candidates do.
                    return positive.iter().chain(negative).take(1).cloned().collect();
                }
                vec![sum]
            }
            ExampleQuery::Recommend {
                positive,
                negative,
                strategy: RecommendStrategy::SumScores,
            } => {
                // Under Euclid, −Σ|p−x|² + Σ|n−x|² is largest at (Σp − Σn)/(P − N) when
                // there are more positives (a concave quadratic), and at the far ends of the
                // set otherwise; Manhattan's sum is piecewise linear. Only the first has a
                // point to walk to; the others score every point.
                let extra = positive.len() as f32 - negative.len() as f32;
                if self.metric != Metric::Euclidean || extra <= 0.0 {
                    return Vec::new();
                }
                let mut centre = signed_sum(positive, negative);
                centre.iter_mut().for_each(|s| *s /= extra);
                vec![centre]
            }
            ExampleQuery::Recommend {
                positive, negative, ..
            } => {
                if !positive.is_empty() {
                    positive.clone()
                } else if linear {
                    negative.iter().map(negated).collect()
                } else {
                    Vec::new()
                }
            }
            ExampleQuery::Discover { target, context } => std::iter::once(target.clone())
                .chain(context.iter().map(|p| p.positive.clone()))
                .collect(),
            ExampleQuery::Context { context } => {
                context.iter().map(|p| p.positive.clone()).collect()
            }
        }
    }
}

/// `Σ positive − Σ negative` (empty when there are no examples).
fn signed_sum(positive: &[Vec<f32>], negative: &[Vec<f32>]) -> Vec<f32> {
    let mut sum = vec![0f32; positive.iter().chain(negative).next().map_or(0, Vec::len)];
    for e in positive {
        sum.iter_mut().zip(e).for_each(|(s, x)| *s += x);
    }
    for e in negative {
        sum.iter_mut().zip(e).for_each(|(s, x)| *s -= x);
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k() -> &'static Kernels {
        quant::kernels()
    }

    #[test]
    fn best_score_takes_the_nearer_side_and_squashes_it() {
        let q = ExampleQuery::Recommend {
            positive: vec![vec![1.0, 0.0]],
            negative: vec![vec![0.0, 1.0]],
            strategy: RecommendStrategy::BestScore,
        }
        .prepare(2, Metric::InnerProduct)
        .unwrap();
        // Nearer the positive: sim 2 → 0.5 · (2/3 + 1).
        assert!((q.score(k(), &[2.0, 1.0]) - 0.5 * (2.0 / 3.0 + 1.0)).abs() < 1e-6);
        // Nearer the negative: sim 3 → −0.5 · (3/4 + 1).
        assert!((q.score(k(), &[1.0, 3.0]) + 0.5 * (0.75 + 1.0)).abs() < 1e-6);
    }

    #[test]
    fn sum_scores_under_euclid_uses_negated_squared_distances() {
        let q = ExampleQuery::Recommend {
            positive: vec![vec![0.0, 0.0], vec![1.0, 0.0]],
            negative: vec![vec![0.0, 2.0]],
            strategy: RecommendStrategy::SumScores,
        }
        .prepare(2, Metric::Euclidean)
        .unwrap();
        // −(1) − (0) − (−(1 + 4)) = 4.
        assert_eq!(q.score(k(), &[1.0, 0.0]) + 1.0 - 5.0, 0.0);
    }

    #[test]
    fn discovery_counts_pairs_then_adds_the_target_fraction() {
        let pair = |p: [f32; 2], n: [f32; 2]| ContextPair {
            positive: p.to_vec(),
            negative: n.to_vec(),
        };
        let q = ExampleQuery::Discover {
            target: vec![1.0, 0.0],
            context: vec![pair([1.0, 0.0], [-1.0, 0.0]), pair([0.0, 1.0], [0.0, -1.0])],
        }
        .prepare(2, Metric::Cosine)
        .unwrap();
        // (1, 1)/√2 is on the positive side of both pairs: rank 2, target sim 1/√2.
        let s = q.score(k(), &[0.70710677, 0.70710677]);
        assert!((s - (2.0 + scaled_fast_sigmoid(0.70710677))).abs() < 1e-6);
        // (1, −1)/√2: one pair each way.
        let s = q.score(k(), &[0.70710677, -0.70710677]);
        assert!((s - scaled_fast_sigmoid(0.70710677)).abs() < 1e-6);
    }

    #[test]
    fn context_is_zero_inside_and_negative_outside() {
        let q = ExampleQuery::Context {
            context: vec![ContextPair {
                positive: vec![1.0, 0.0],
                negative: vec![-1.0, 0.0],
            }],
        }
        .prepare(2, Metric::InnerProduct)
        .unwrap();
        assert_eq!(q.score(k(), &[1.0, 0.0]), 0.0);
        // sim difference −2 − ε → fast_sigmoid ≈ −2/3.
        assert!((q.score(k(), &[-1.0, 0.0]) + 2.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn bad_examples_are_typed_errors() {
        let wrong_dim = ExampleQuery::Recommend {
            positive: vec![vec![1.0]],
            negative: vec![],
            strategy: RecommendStrategy::BestScore,
        };
        assert!(wrong_dim.prepare(2, Metric::Cosine).is_err());
        let nan = ExampleQuery::Context {
            context: vec![ContextPair {
                positive: vec![f32::NAN, 0.0],
                negative: vec![0.0, 1.0],
            }],
        };
        assert!(nan.prepare(2, Metric::Cosine).is_err());
        let empty = ExampleQuery::Recommend {
            positive: vec![],
            negative: vec![],
            strategy: RecommendStrategy::SumScores,
        };
        assert!(empty.prepare(2, Metric::Cosine).is_err());
    }
}
