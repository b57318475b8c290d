//! Candidate sets from payload indexes: a superset of the points a filter matches, computed
//! without reading a payload, so storage can scan a few candidates exactly instead of walking
//! the vector graph with a selective filter.

use std::collections::HashSet;
use std::ops::Bound;

use index_core::PointId;

use super::eval::in_bounding_box;
use super::{AnyValues, Condition, FieldCheck, Filter, Match, MatchValue, RangeCheck};
use crate::geo::{haversine_m, in_polygon};
use crate::index::PayloadIndexes;
use crate::key_path::KeyPath;

type Ids = HashSet<PointId>;

impl Filter {
    /// A superset of the points this filter matches, computed from `indexes` and `has_id`
    /// alone, or `None` when no condition narrows it (then every point is a candidate).
    ///
    /// `must` conditions narrow by intersection; `should` and `min_should` narrow only when
    /// every one of their conditions does (by union); `must_not` never narrows. A condition on a
    /// field narrows when the field has an index of a type that serves it: keyword (`match
    /// value/any` on strings, `prefix`, `substring`), integer and float (`match value/any` on
    /// integers, `range`), bool, datetime (datetime `range`), geo (the three geo conditions),
    /// text (`text`, `text_any`, `phrase`) and uuid. Inside `nested {key: k, filter}` a condition
    /// on `p` is served by an index on `k[].p`. Callers must still check [`Filter::matches`] on
    /// every candidate.
    pub fn indexed_candidates(&self, indexes: &PayloadIndexes) -> Option<HashSet<PointId>> {
        filter_candidates(self, indexes, &Scope::Point)
    }

    /// Whether [`Filter::indexed_candidates`] gives exactly the points this filter matches,
    /// so that a caller may skip [`Filter::matches`] on them: the filter is only `must`
    /// conditions, each a `match` of a string or of any of some strings on a field with a
    /// keyword index. A keyword index holds every string among the values at its path (the
    /// values [`Filter::matches`] compares), so its posting list for a string is the set of
    /// points whose values include it. Anything else (`should`, `must_not`, an unindexed or
    /// differently indexed condition, a text, UUID or numeric index, a nested scope) is a
    /// superset at best, and answers `false`.
    pub fn indexed_candidates_exact(&self, indexes: &PayloadIndexes) -> bool {
        !self.must.is_empty()
            && self.should.is_empty()
            && self.must_not.is_empty()
            && self.min_should.is_none()
            && self.must.iter().all(|c| match c {
                Condition::Field(field) => {
                    matches!(
                        field.check,
                        FieldCheck::Match(
                            Match::Value(MatchValue::Keyword(_))
                                | Match::Any(AnyValues::Keywords(_))
                        )
                    ) && indexes.get(&field.key).is_some_and(|i| i.is_keyword())
                }
                _ => false,
            })
    }
}

/// Where conditions are evaluated: on the point itself, or on the elements of arrays at a path
/// (inside a nested condition), where a key `p` reads what `prefix[].p` reads on the point.
enum Scope {
    Point,
    Elements(KeyPath),
}

impl Scope {
    fn path(&self, key: &KeyPath) -> KeyPath {
        match self {
            Scope::Point => key.clone(),
            Scope::Elements(prefix) => prefix.join_elements(key),
        }
    }
}

fn intersect(acc: Option<Ids>, next: Ids) -> Option<Ids> {
    Some(match acc {
        None => next,
        Some(acc) => {
            let (small, large) = if acc.len() <= next.len() {
                (acc, next)
            } else {
                (next, acc)
            };
            small.into_iter().filter(|id| large.contains(id)).collect()
        }
    })
}

/// The union of every condition's candidates, or `None` if any condition cannot narrow.
fn union_of_all(conditions: &[Condition], indexes: &PayloadIndexes, scope: &Scope) -> Option<Ids> {
    let mut out = Ids::new();
    for c in conditions {
        out.extend(condition_candidates(c, indexes, scope)?);
    }
    Some(out)
}

fn filter_candidates(filter: &Filter, indexes: &PayloadIndexes, scope: &Scope) -> Option<Ids> {
    let mut acc = None;
    for c in &filter.must {
        if let Some(ids) = condition_candidates(c, indexes, scope) {
            acc = intersect(acc, ids);
        }
    }
    if !filter.should.is_empty() {
        if let Some(ids) = union_of_all(&filter.should, indexes, scope) {
            acc = intersect(acc, ids);
        }
    }
    // A matching point satisfies at least `min_count >= 1` of these, so at least one.
    if let Some(min_should) = &filter.min_should {
        if let Some(ids) = union_of_all(&min_should.conditions, indexes, scope) {
            acc = intersect(acc, ids);
        }
    }
    acc
}

fn condition_candidates(c: &Condition, indexes: &PayloadIndexes, scope: &Scope) -> Option<Ids> {
    match c {
        Condition::HasId(ids) => match scope {
            Scope::Point => Some(ids.clone()),
            // An array element has no id: `has_id` never holds there.
            Scope::Elements(_) => None,
        },
        Condition::Filter(f) => filter_candidates(f, indexes, scope),
        Condition::Nested { path, filter } => {
            let inner = Scope::Elements(scope.path(path));
            filter_candidates(filter, indexes, &inner)
        }
        Condition::Field(field) => field_candidates(&field.check, &scope.path(&field.key), indexes),
        Condition::IsEmpty(_)
        | Condition::IsNull(_)
        | Condition::HasVector(_)
        | Condition::Slice { .. } => None,
    }
}

fn field_candidates(check: &FieldCheck, path: &KeyPath, indexes: &PayloadIndexes) -> Option<Ids> {
    let index = indexes.get(path)?;
    match check {
        FieldCheck::Match(m) => match m {
            Match::Value(MatchValue::Keyword(s)) => index.keyword(s),
            Match::Value(MatchValue::Integer(n)) => index.integer(*n),
            Match::Value(MatchValue::Bool(b)) => index.boolean(*b),
            Match::Any(AnyValues::Keywords(values)) => {
                let mut out = Ids::new();
                for s in values {
                    out.extend(index.keyword(s)?);
                }
                Some(out)
            }
            Match::Any(AnyValues::Integers(values)) => {
                let mut out = Ids::new();
                for n in values {
                    out.extend(index.integer(*n)?);
                }
                Some(out)
            }
            // Any value outside the list matches, including values of other types that the
            // index does not hold.
            Match::Except(_) => None,
            // An empty query matches nothing, and holding all of no tokens selects nothing.
            Match::Text(tokens) | Match::Phrase(tokens) => index.text_all(tokens),
            Match::TextAny(tokens) => index.text_any(tokens),
            Match::Prefix(p) => index.prefix(p),
            Match::Substring(part) => index.scan_keywords(|k| k.contains(part.as_str())),
        },
        FieldCheck::Range(RangeCheck::Number(b)) => {
            let low = max_option(b.gt, b.gte);
            let high = min_option(b.lt, b.lte);
            index.number_range(low, high)
        }
        FieldCheck::Range(RangeCheck::Datetime(b)) => {
            let low = match (b.gt, b.gte) {
                (Some(gt), Some(gte)) if gt >= gte => Bound::Excluded(gt),
                (_, Some(gte)) => Bound::Included(gte),
                (Some(gt), None) => Bound::Excluded(gt),
                (None, None) => Bound::Unbounded,
            };
            let high = match (b.lt, b.lte) {
                (Some(lt), Some(lte)) if lt <= lte => Bound::Excluded(lt),
                (_, Some(lte)) => Bound::Included(lte),
                (Some(lt), None) => Bound::Excluded(lt),
                (None, None) => Bound::Unbounded,
            };
            index.datetime_range(low, high)
        }
        FieldCheck::GeoBoundingBox {
            top_left,
            bottom_right,
        } => index.geo(|p| in_bounding_box(p, *top_left, *bottom_right)),
        FieldCheck::GeoRadius { center, radius } => {
            index.geo(|p| haversine_m(p, *center) < *radius)
        }
        FieldCheck::GeoPolygon {
            exterior,
            interiors,
        } => index.geo(|p| in_polygon(p, exterior, interiors)),
        FieldCheck::ValuesCount(_) | FieldCheck::IsEmpty(_) | FieldCheck::IsNull(_) => None,
    }
}

fn max_option(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn min_option(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
