//! Qdrant's payload filter: the parsed form, evaluation on one point, and candidate sets from
//! payload indexes.

mod candidates;
mod eval;
mod parse;

pub use parse::geo_shape_from_json;

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
    /// Conditions that must all hold.
    pub must: Vec<Condition>,
    /// Conditions of which one must hold (none: no constraint).
    pub should: Vec<Condition>,
    /// Conditions none of which may hold.
    pub must_not: Vec<Condition>,
    /// At least `min_count` of these conditions must hold.
    pub min_should: Option<MinShould>,
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

/// `min_should`: a count of conditions that must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct MinShould {
    /// The conditions.
    pub conditions: Vec<Condition>,
    /// How many must hold.
    pub min_count: usize,
}

/// One condition of a filter clause. The parsed form is public so that a remote shard can
/// write it in another protocol (Qdrant's gRPC messages); it is built only by the parser.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// A check of a payload field's values.
    Field(FieldCondition),
    /// The key is absent, null or an empty array.
    IsEmpty(KeyPath),
    /// The key is null.
    IsNull(KeyPath),
    /// The point's id is one of these.
    HasId(HashSet<PointId>),
    /// The point has this named vector (`""`: the unnamed one).
    HasVector(String),
    /// The point's id hashes into slice `index` of `total`.
    Slice {
        /// How many slices.
        total: u32,
        /// Which one.
        index: u32,
    },
    /// Some element of the array at `path` passes `filter` on its own.
    /// `path` has its trailing `[]`, if any, removed.
    Nested {
        /// The array.
        path: KeyPath,
        /// What one element must pass.
        filter: Filter,
    },
    /// A filter nested as a condition.
    Filter(Filter),
}

/// A field condition: a key and the check its values must pass.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldCondition {
    /// The payload key.
    pub key: KeyPath,
    /// What its values must pass.
    pub check: FieldCheck,
}

/// The one check a field condition makes. A condition object may set several; the first in
/// this order is the one evaluated, as in Qdrant's reference.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldCheck {
    /// How many values the key has.
    ValuesCount(Bounds<u64>),
    /// The key is (or, false, is not) empty.
    IsEmpty(bool),
    /// The key is (or, false, is not) null.
    IsNull(bool),
    /// A value matches.
    Match(Match),
    /// A value lies in a range.
    Range(RangeCheck),
    /// A geo point lies in a box.
    GeoBoundingBox {
        /// North-west corner.
        top_left: GeoPoint,
        /// South-east corner.
        bottom_right: GeoPoint,
    },
    /// A geo point lies within `radius` metres of `center`.
    GeoRadius {
        /// The centre.
        center: GeoPoint,
        /// Metres.
        radius: f64,
    },
    /// A geo point lies in a polygon.
    GeoPolygon {
        /// The outer ring.
        exterior: Ring,
        /// Holes.
        interiors: Vec<Ring>,
    },
}

/// How a value is matched.
#[derive(Debug, Clone, PartialEq)]
pub enum Match {
    /// Equal to this.
    Value(MatchValue),
    /// Equal to one of these.
    Any(AnyValues),
    /// Equal to none of these.
    Except(AnyValues),
    /// Query tokens, every one of which must be a token of the value.
    Text(Vec<String>),
    /// Query tokens, one of which must be a token of the value.
    TextAny(Vec<String>),
    /// Query tokens, which must appear consecutively in the value's tokens.
    Phrase(Vec<String>),
    /// A keyword starting with this.
    Prefix(String),
    /// A string containing this.
    Substring(String),
}

/// A value matched exactly.
#[derive(Debug, Clone, PartialEq)]
pub enum MatchValue {
    /// A keyword.
    Keyword(String),
    /// An integer.
    Integer(i64),
    /// A boolean.
    Bool(bool),
}

/// A set of values (`any`, `except`).
#[derive(Debug, Clone, PartialEq)]
pub enum AnyValues {
    /// Keywords.
    Keywords(HashSet<String>),
    /// Integers.
    Integers(HashSet<i64>),
}

/// A range of numbers or of datetimes.
#[derive(Debug, Clone, PartialEq)]
pub enum RangeCheck {
    /// Numbers.
    Number(Bounds<f64>),
    /// Bounds in microseconds since the epoch.
    Datetime(Bounds<i64>),
}

/// Range bounds, any of which may be absent.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Bounds<T> {
    /// Below.
    pub lt: Option<T>,
    /// Above.
    pub gt: Option<T>,
    /// At or above.
    pub gte: Option<T>,
    /// At or below.
    pub lte: Option<T>,
}

impl<T: PartialOrd + Copy> Bounds<T> {
    pub(crate) fn contains(&self, v: T) -> bool {
        self.lt.is_none_or(|b| v < b)
            && self.lte.is_none_or(|b| v <= b)
            && self.gt.is_none_or(|b| v > b)
            && self.gte.is_none_or(|b| v >= b)
    }
}
