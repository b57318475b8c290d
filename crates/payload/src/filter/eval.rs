//! Evaluating a [`Filter`] on one point, with the semantics of Qdrant's reference
//! (`qdrant_client.local.payload_filters`).

use std::cmp::Ordering;
use std::collections::HashSet;

use serde_json::{Number, Value};

use super::{
    AnyValues, Bounds, Condition, FieldCheck, FieldCondition, Filter, Match, MatchValue, PointView,
    RangeCheck,
};
use crate::datetime::parse_datetime_micros;
use crate::geo::{haversine_m, in_polygon, GeoPoint};
use crate::key_path::{values_at, values_at_unflattened};
use crate::slice::point_slice;
use crate::text::tokenize;
use crate::Payload;

impl Filter {
    /// Whether `point` satisfies the filter. A point without payload is seen as `{}`.
    pub fn matches(&self, point: &dyn PointView) -> bool {
        let empty = Payload::new();
        self.matches_in(point.payload().unwrap_or(&empty), Some(point))
    }

    /// `point` is `None` inside a nested filter, where conditions see one array element: there
    /// `has_id`, `has_vector` and `slice` never hold.
    pub(crate) fn matches_in(&self, payload: &Payload, point: Option<&dyn PointView>) -> bool {
        self.must.iter().all(|c| c.holds(payload, point))
            && !self.must_not.iter().any(|c| c.holds(payload, point))
            // An empty `should` states no alternatives, which is no constraint.
            && (self.should.is_empty() || self.should.iter().any(|c| c.holds(payload, point)))
            && self.min_should.as_ref().is_none_or(|m| {
                m.conditions
                    .iter()
                    .filter(|c| c.holds(payload, point))
                    .take(m.min_count)
                    .count()
                    >= m.min_count
            })
    }
}

impl Condition {
    fn holds(&self, payload: &Payload, point: Option<&dyn PointView>) -> bool {
        match self {
            Condition::Field(field) => field.holds(payload),
            Condition::IsEmpty(path) => is_empty(&values_at_unflattened(payload, path)),
            Condition::IsNull(path) => is_null(&values_at_unflattened(payload, path)),
            Condition::HasId(ids) => point.is_some_and(|p| ids.contains(&p.id())),
            Condition::HasVector(name) => point.is_some_and(|p| p.has_vector(name)),
            Condition::Slice { total, index } => {
                point.is_some_and(|p| point_slice(p.id(), *total) == *index)
            }
            Condition::Nested { path, filter } => {
                // Each object element of each array at `path`, one at a time: every inner
                // condition must hold on the same element.
                values_at_unflattened(payload, path)
                    .into_iter()
                    .filter_map(Value::as_array)
                    .flatten()
                    .filter_map(Value::as_object)
                    .any(|element| filter.matches_in(element, None))
            }
            Condition::Filter(filter) => filter.matches_in(payload, point),
        }
    }
}

impl FieldCondition {
    fn holds(&self, payload: &Payload) -> bool {
        match &self.check {
            FieldCheck::ValuesCount(bounds) => {
                values_count_holds(bounds, &values_at_unflattened(payload, &self.key))
            }
            FieldCheck::IsEmpty(want) => {
                is_empty(&values_at_unflattened(payload, &self.key)) == *want
            }
            FieldCheck::IsNull(want) => {
                is_null(&values_at_unflattened(payload, &self.key)) == *want
            }
            check => values_at(payload, &self.key)
                .into_iter()
                .any(|v| value_holds(check, v)),
        }
    }
}

/// A check on one (flattened) value: the condition holds when any value passes.
fn value_holds(check: &FieldCheck, v: &Value) -> bool {
    match check {
        FieldCheck::Match(m) => match_holds(m, v),
        FieldCheck::Range(RangeCheck::Number(bounds)) => match v {
            Value::Number(n) => number_in(bounds, n),
            _ => false,
        },
        FieldCheck::Range(RangeCheck::Datetime(bounds)) => v
            .as_str()
            .and_then(parse_datetime_micros)
            .is_some_and(|t| bounds.contains(t)),
        FieldCheck::GeoBoundingBox {
            top_left,
            bottom_right,
        } => {
            GeoPoint::from_payload(v).is_some_and(|p| in_bounding_box(p, *top_left, *bottom_right))
        }
        FieldCheck::GeoRadius { center, radius } => {
            GeoPoint::from_payload(v).is_some_and(|p| haversine_m(p, *center) < *radius)
        }
        FieldCheck::GeoPolygon {
            exterior,
            interiors,
        } => GeoPoint::from_payload(v).is_some_and(|p| in_polygon(p, exterior, interiors)),
        // Handled on the unflattened values by the caller.
        FieldCheck::ValuesCount(_) | FieldCheck::IsEmpty(_) | FieldCheck::IsNull(_) => false,
    }
}

/// Strictly inside the box; a box whose left edge is east of its right edge crosses the
/// antimeridian.
pub(crate) fn in_bounding_box(p: GeoPoint, top_left: GeoPoint, bottom_right: GeoPoint) -> bool {
    let lon_inside = if top_left.lon > bottom_right.lon {
        p.lon > top_left.lon || p.lon < bottom_right.lon
    } else {
        top_left.lon < p.lon && p.lon < bottom_right.lon
    };
    lon_inside && top_left.lat > p.lat && p.lat > bottom_right.lat
}

fn match_holds(m: &Match, v: &Value) -> bool {
    match m {
        Match::Value(want) => value_equals(v, want),
        Match::Any(values) => any_contains(values, v),
        // A null is absence, not a value that differs from every listed one.
        Match::Except(values) => !v.is_null() && !any_contains(values, v),
        Match::Text(query) => v.as_str().is_some_and(|s| {
            let doc: HashSet<String> = tokenize(s).into_iter().collect();
            !query.is_empty() && query.iter().all(|t| doc.contains(t))
        }),
        Match::TextAny(query) => v.as_str().is_some_and(|s| {
            let doc: HashSet<String> = tokenize(s).into_iter().collect();
            query.iter().any(|t| doc.contains(t))
        }),
        Match::Phrase(query) => v.as_str().is_some_and(|s| {
            !query.is_empty()
                && tokenize(s)
                    .windows(query.len())
                    .any(|w| w == query.as_slice())
        }),
        Match::Prefix(prefix) => v.as_str().is_some_and(|s| s.starts_with(prefix.as_str())),
        Match::Substring(part) => v.as_str().is_some_and(|s| s.contains(part.as_str())),
    }
}

/// Exact match keeps payload types apart: `1` is not `true`, and a float (even `1.0`) matches
/// no integer.
fn value_equals(v: &Value, want: &MatchValue) -> bool {
    match (want, v) {
        (MatchValue::Keyword(s), Value::String(x)) => s == x,
        (MatchValue::Integer(n), Value::Number(x)) => !x.is_f64() && x.as_i64() == Some(*n),
        (MatchValue::Bool(b), Value::Bool(x)) => b == x,
        _ => false,
    }
}

fn any_contains(values: &AnyValues, v: &Value) -> bool {
    match (values, v) {
        (AnyValues::Keywords(set), Value::String(s)) => set.contains(s),
        (AnyValues::Integers(set), Value::Number(x)) => {
            !x.is_f64() && x.as_i64().is_some_and(|n| set.contains(&n))
        }
        _ => false,
    }
}

/// Numbers compare by value, integers exactly against float bounds (`2^53 + 1 > 2^53` holds).
fn number_in(bounds: &Bounds<f64>, n: &Number) -> bool {
    if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
        return bounds.contains(f);
    }
    let i = n
        .as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
        .unwrap_or_default();
    let cmp = |b: f64| compare_int_float(i, b);
    bounds.lt.is_none_or(|b| cmp(b) == Some(Ordering::Less))
        && bounds
            .lte
            .is_none_or(|b| matches!(cmp(b), Some(Ordering::Less | Ordering::Equal)))
        && bounds.gt.is_none_or(|b| cmp(b) == Some(Ordering::Greater))
        && bounds
            .gte
            .is_none_or(|b| matches!(cmp(b), Some(Ordering::Greater | Ordering::Equal)))
}

/// Exact ordering of an integer against a float; `None` only for NaN.
pub(crate) fn compare_int_float(i: i128, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    // Beyond ±2^100 no 64-bit integer compares equal, and the cast below would saturate.
    if f >= 1e30 {
        return Some(Ordering::Less);
    }
    if f <= -1e30 {
        return Some(Ordering::Greater);
    }
    let floor = f.floor();
    // `floor` is an integer-valued float within ±1e30, exactly representable as i128.
    match i.cmp(&(floor as i128)) {
        Ordering::Equal if f > floor => Some(Ordering::Less),
        other => Some(other),
    }
}

/// Empty: no value at all, or only nulls and empty arrays.
fn is_empty(values: &[&Value]) -> bool {
    values.iter().all(|v| match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        _ => false,
    })
}

/// Null: some value is null, or an array holding a null (one level deep).
fn is_null(values: &[&Value]) -> bool {
    values.iter().any(|v| match v {
        Value::Null => true,
        Value::Array(a) => a.iter().any(Value::is_null),
        _ => false,
    })
}

/// The count of one value is the length of an array, 0 for null and 1 otherwise; no value at
/// all counts as one value of count 0. One value's count must meet every bound.
fn values_count_holds(bounds: &Bounds<u64>, values: &[&Value]) -> bool {
    let count = |v: &&Value| match v {
        Value::Null => 0,
        Value::Array(a) => a.len() as u64,
        _ => 1,
    };
    if values.iter().all(|v| v.is_null()) {
        return bounds.contains(0);
    }
    values.iter().map(count).any(|c| bounds.contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_compare_exactly_with_floats() {
        let big = (1i128 << 53) + 1;
        assert_eq!(
            compare_int_float(big, 9_007_199_254_740_992.0),
            Some(Ordering::Greater)
        );
        assert_eq!(compare_int_float(3, 3.0), Some(Ordering::Equal));
        assert_eq!(compare_int_float(3, 3.5), Some(Ordering::Less));
        assert_eq!(compare_int_float(-3, -3.5), Some(Ordering::Greater));
        assert_eq!(
            compare_int_float(i128::from(u64::MAX), 1e300),
            Some(Ordering::Less)
        );
        assert_eq!(
            compare_int_float(i128::from(i64::MIN), -1e300),
            Some(Ordering::Greater)
        );
    }
}
