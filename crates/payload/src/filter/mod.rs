//! Qdrant's payload filter: the parsed form, evaluation on one point, and candidate sets from
//! payload indexes.

mod candidates;
mod eval;
mod parse;

use std::collections::HashSet;

use index_core::PointId;

use crate::geo::{GeoPoint, Ring};
use crate::key_path::KeyPath;
use crate::Payload;

/// What a filter sees of one point.
pub trait PointView {
    /// The point's id (for `has_id` and `slice`).
    fn id(&self) -> PointId;
    /// The point's payload, if it has one (no payload reads as `{}`).
    fn payload(&self) -> Option<&Payload>;
    /// Whether the point has the named vector; `""` is the unnamed default vector.
    fn has_vector(&self, name: &str) -> bool;
}

/// A point held whole, for callers that have no storage of their own to view (tests, tools).
#[derive(Debug, Clone, PartialEq)]
pub struct PlainPoint {
    /// The id.
    pub id: PointId,
    /// The payload.
    pub payload: Option<Payload>,
    /// Names of the vectors the point has (`""` for the unnamed one).
    pub vectors: Vec<String>,
}

impl PointView for PlainPoint {
    fn id(&self) -> PointId {
        self.id
    }

    fn payload(&self) -> Option<&Payload> {
        self.payload.as_ref()
    }

    fn has_vector(&self, name: &str) -> bool {
        self.vectors.iter().any(|v| v == name)
    }
}

/// A parsed and validated Qdrant filter.
///
/// A point matches when every `must` condition holds, no `must_not` condition holds, at least
/// one `should` condition holds (an empty `should` is no constraint), and at least `min_count`
/// of the `min_should` conditions hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    pub(crate) must: Vec<Condition>,
    pub(crate) should: Vec<Condition>,
    pub(crate) must_not: Vec<Condition>,
    pub(crate) min_should: Option<MinShould>,
}

impl Filter {
    /// This filter's clauses followed by `other`'s, clause by clause, as Qdrant's server
    /// combines a query's filter with a sub-query's (`Filter::merge_opts`): `must` and
    /// `must_not` conditions add up (both filters' hold), but `should` conditions become
    /// alternatives of each other, and of two `min_should`s the conditions are pooled under
    /// the larger count. Merging a filter with only `must` or `must_not` clauses (ids to keep
    /// or leave out) is therefore a plain "and".
    pub fn merged(&self, other: &Filter) -> Filter {
        let cat = |a: &[Condition], b: &[Condition]| a.iter().chain(b).cloned().collect();
        let min_should = match (&self.min_should, &other.min_should) {
            (None, m) | (m, None) => m.clone(),
            (Some(a), Some(b)) => Some(MinShould {
                conditions: cat(&a.conditions, &b.conditions),
                min_count: a.min_count.max(b.min_count),
            }),
        };
        Filter {
            must: cat(&self.must, &other.must),
            should: cat(&self.should, &other.should),
            must_not: cat(&self.must_not, &other.must_not),
            min_should,
        }
    }

    /// Points whose id is one of `ids` (`{"must": [{"has_id": ids}]}`).
    pub fn has_id(ids: impl IntoIterator<Item = PointId>) -> Filter {
        Filter {
            must: vec![Condition::HasId(ids.into_iter().collect())],
            ..Filter::default()
        }
    }

    /// Points whose id is none of `ids` (`{"must_not": [{"has_id": ids}]}`).
    pub fn has_none_of(ids: impl IntoIterator<Item = PointId>) -> Filter {
        Filter {
            must_not: vec![Condition::HasId(ids.into_iter().collect())],
            ..Filter::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MinShould {
    pub(crate) conditions: Vec<Condition>,
    pub(crate) min_count: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Condition {
    Field(FieldCondition),
    IsEmpty(KeyPath),
    IsNull(KeyPath),
    HasId(HashSet<PointId>),
    HasVector(String),
    Slice {
        total: u32,
        index: u32,
    },
    /// `path` has its trailing `[]`, if any, removed.
    Nested {
        path: KeyPath,
        filter: Filter,
    },
    Filter(Filter),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldCondition {
    pub(crate) key: KeyPath,
    pub(crate) check: FieldCheck,
}

/// The one check a field condition makes. A condition object may set several; the first in
/// this order is the one evaluated, as in Qdrant's reference.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FieldCheck {
    ValuesCount(Bounds<u64>),
    IsEmpty(bool),
    IsNull(bool),
    Match(Match),
    Range(RangeCheck),
    GeoBoundingBox {
        top_left: GeoPoint,
        bottom_right: GeoPoint,
    },
    GeoRadius {
        center: GeoPoint,
        radius: f64,
    },
    GeoPolygon {
        exterior: Ring,
        interiors: Vec<Ring>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Match {
    Value(MatchValue),
    Any(AnyValues),
    Except(AnyValues),
    /// Query tokens, every one of which must be a token of the value.
    Text(Vec<String>),
    /// Query tokens, one of which must be a token of the value.
    TextAny(Vec<String>),
    /// Query tokens, which must appear consecutively in the value's tokens.
    Phrase(Vec<String>),
    Prefix(String),
    Substring(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum MatchValue {
    Keyword(String),
    Integer(i64),
    Bool(bool),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AnyValues {
    Keywords(HashSet<String>),
    Integers(HashSet<i64>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RangeCheck {
    Number(Bounds<f64>),
    /// Bounds in microseconds since the epoch.
    Datetime(Bounds<i64>),
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Bounds<T> {
    pub(crate) lt: Option<T>,
    pub(crate) gt: Option<T>,
    pub(crate) gte: Option<T>,
    pub(crate) lte: Option<T>,
}

impl<T: PartialOrd + Copy> Bounds<T> {
    pub(crate) fn contains(&self, v: T) -> bool {
        self.lt.is_none_or(|b| v < b)
            && self.lte.is_none_or(|b| v <= b)
            && self.gt.is_none_or(|b| v > b)
            && self.gte.is_none_or(|b| v >= b)
    }
}
