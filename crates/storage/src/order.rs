//! Ordering points by a payload value (Qdrant's `order_by` in scroll).
//!
//! A point is ordered by each number its key holds (arrays expanded) and each string that
//! reads as a datetime (as microseconds since the epoch, as Qdrant orders datetimes); a point
//! with several values appears once per distinct value; booleans and other strings do not
//! order. Ties are broken by point id, so pages are stable.

use payload::KeyPath;
use serde_json::Value;
use std::cmp::Ordering;

/// A value points are ordered by: an integer, or a float.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OrderValue {
    /// An integer (also a datetime, in microseconds).
    Int(i64),
    /// A float.
    Float(f64),
}

impl OrderValue {
    /// The order value of a payload value, if it has one.
    pub fn of(v: &Value) -> Option<OrderValue> {
        match v {
            Value::Number(n) => match n.as_i64() {
                Some(i) => Some(OrderValue::Int(i)),
                None => n.as_f64().map(OrderValue::Float),
            },
            Value::String(s) => payload::parse_datetime_micros(s).map(OrderValue::Int),
            _ => None,
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            OrderValue::Int(i) => i as f64,
            OrderValue::Float(f) => f,
        }
    }

    /// Numeric order (integers and floats compared by value).
    pub fn compare(self, other: OrderValue) -> Ordering {
        match (self, other) {
            (OrderValue::Int(a), OrderValue::Int(b)) => a.cmp(&b),
            _ => self.as_f64().total_cmp(&other.as_f64()),
        }
    }
}

/// How a scroll is ordered.
#[derive(Debug, Clone)]
pub struct OrderBy {
    /// The payload key.
    pub key: KeyPath,
    /// Largest first.
    pub descending: bool,
    /// The first value of the page (inclusive): values before it in the order are skipped.
    pub start_from: Option<OrderValue>,
}

impl OrderBy {
    /// Whether `v` is at or after `start_from` in this order.
    pub fn admits(&self, v: OrderValue) -> bool {
        self.start_from.is_none_or(|s| {
            let c = v.compare(s);
            if self.descending {
                c != Ordering::Greater
            } else {
                c != Ordering::Less
            }
        })
    }

    /// `a` against `b` in this order.
    pub fn compare(&self, a: OrderValue, b: OrderValue) -> Ordering {
        if self.descending {
            b.compare(a)
        } else {
            a.compare(b)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_and_datetimes_order_and_start_from_is_inclusive() {
        assert_eq!(OrderValue::of(&json!(3)), Some(OrderValue::Int(3)));
        assert_eq!(OrderValue::of(&json!(2.5)), Some(OrderValue::Float(2.5)));
        assert_eq!(
            OrderValue::of(&json!("1970-01-01T00:00:01Z")),
            Some(OrderValue::Int(1_000_000))
        );
        assert_eq!(OrderValue::of(&json!("soon")), None);
        assert_eq!(OrderValue::of(&json!(true)), None);
        assert_eq!(
            OrderValue::Int(2).compare(OrderValue::Float(2.5)),
            Ordering::Less
        );
        let desc = OrderBy {
            key: KeyPath::parse("k").unwrap(),
            descending: true,
            start_from: Some(OrderValue::Int(5)),
        };
        assert!(desc.admits(OrderValue::Int(5)) && desc.admits(OrderValue::Float(4.5)));
        assert!(!desc.admits(OrderValue::Int(6)));
        assert_eq!(
            desc.compare(OrderValue::Int(1), OrderValue::Int(2)),
            Ordering::Greater
        );
    }
}
