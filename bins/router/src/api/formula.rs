//! Formula queries (`{"formula": expression, "defaults": {..}}`): the points of a query's
//! prefetches re-scored by an expression over their prefetch scores (`$score`, `$score[i]`),
//! payload values, conditions (1 when a point passes, else 0), datetimes, geo distances and
//! decay functions, as Qdrant scores them (`qdrant_client.hybrid.formula` in local mode, the
//! oracle of the end-to-end tests): arithmetic in `f64`, the result stored as `f32`, and any
//! non-finite step (a division by zero without `by_zero_default`, the root or logarithm of
//! what has none, an overflow) an error for the whole request rather than a silent score.
//!
//! An expression is read once from its JSON (parse, then evaluate per point); conditions are
//! answered by the shards for all candidates at once (one filtered scroll per condition), so
//! a formula sees a point's vectors (`has_vector`) and payload exactly as a filter does.

use crate::convert::bad;
use crate::error::ApiError;
use payload::{Filter, GeoPoint, KeyPath, Payload};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The most nodes one expression may have.
pub const MAX_NODES: usize = 1_024;
/// The deepest an expression may nest (evaluation recurses as deep).
pub const MAX_DEPTH: usize = 64;

/// A parsed formula query.
#[derive(Debug)]
pub struct Formula {
    expr: Expr,
    /// `defaults`, score keys written `$score[i]` (so `$score` and `$score[0]` share one).
    defaults: HashMap<String, Value>,
    /// The conditions the expression tests, in the order [`Expr::Condition`] numbers them.
    pub conditions: Vec<Arc<Filter>>,
    /// Whether any node reads the payload.
    pub reads_payload: bool,
}

#[derive(Debug)]
enum Decay {
    Lin,
    Exp,
    Gauss,
}

#[derive(Debug)]
enum Expr {
    Const(f64),
    Score(usize),
    /// A payload value: the path, and the key as written (its name in `defaults`).
    Payload(KeyPath, String),
    Condition(usize),
    Mult(Vec<Expr>),
    Sum(Vec<Expr>),
    Max(Vec<Expr>),
    Min(Vec<Expr>),
    Neg(Box<Expr>),
    Abs(Box<Expr>),
    Div(Box<Expr>, Box<Expr>, Option<f64>),
    Sqrt(Box<Expr>),
    Pow(Box<Expr>, Box<Expr>),
    Exp(Box<Expr>),
    Log10(Box<Expr>),
    Ln(Box<Expr>),
    Acosh(Box<Expr>),
    GeoDistance(GeoPoint, KeyPath, String),
    /// Seconds since the epoch.
    Datetime(f64),
    DatetimeKey(KeyPath, String),
    Decay {
        kind: Decay,
        x: Box<Expr>,
        target: Option<Box<Expr>>,
        midpoint: f64,
        scale: f64,
    },
}

/// What one point offers an expression.
pub struct PointInput<'a> {
    /// Its id.
    pub id: index_core::PointId,
    /// Its payload (empty when the formula reads none).
    pub payload: &'a Payload,
    /// Its score in each prefetch's answer, by prefetch.
    pub scores: &'a [HashMap<index_core::PointId, f32>],
    /// The ids passing each condition, by condition.
    pub passing: &'a [HashSet<index_core::PointId>],
}

fn invalid(msg: impl std::fmt::Display) -> ApiError {
    bad(format!("Bad request: formula: {msg}"))
}

impl Formula {
    /// Reads a `FormulaQuery` body.
    pub fn parse(formula: &Value, defaults: Option<&Value>) -> Result<Formula, ApiError> {
        let mut f = Formula {
            expr: Expr::Const(0.0),
            defaults: HashMap::new(),
            conditions: Vec::new(),
            reads_payload: false,
        };
        let mut nodes = 0;
        f.expr = f.read(formula, &mut nodes, 1)?;
        match defaults {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (k, v) in map {
                    let key = match score_index(k)? {
                        Some(i) => format!("$score[{i}]"),
                        None => k.clone(),
                    };
                    f.defaults.insert(key, v.clone());
                }
            }
            Some(_) => return Err(invalid("`defaults` must be an object")),
        }
        Ok(f)
    }

    fn read(&mut self, v: &Value, nodes: &mut usize, depth: usize) -> Result<Expr, ApiError> {
        *nodes += 1;
        if *nodes > MAX_NODES {
            return Err(invalid(format!(
                "at most {MAX_NODES} nodes in an expression"
            )));
        }
        if depth > MAX_DEPTH {
            return Err(invalid(format!(
                "an expression nests at most {MAX_DEPTH} levels deep"
            )));
        }
        let next = depth + 1;
        let obj = match v {
            Value::Number(n) => {
                return Ok(Expr::Const(
                    n.as_f64().ok_or_else(|| invalid("bad number"))?,
                ))
            }
            Value::String(s) => {
                return Ok(match score_index(s)? {
                    Some(i) => Expr::Score(i),
                    None => {
                        self.reads_payload = true;
                        Expr::Payload(path(s)?, s.clone())
                    }
                })
            }
            Value::Object(obj) => obj,
            _ => return Err(invalid(format!("`{v}` is not an expression"))),
        };
        let one =
            |key: &str| -> Option<&Value> { (obj.len() == 1).then(|| obj.get(key)).flatten() };
        let list = |this: &mut Formula,
                    v: &Value,
                    nodes: &mut usize|
         -> Result<Vec<Expr>, ApiError> {
            match v {
                Value::Array(items) => items.iter().map(|i| this.read(i, nodes, next)).collect(),
                _ => Err(invalid("an operator's operands must be a list")),
            }
        };
        if let Some(v) = one("mult") {
            return Ok(Expr::Mult(list(self, v, nodes)?));
        }
        if let Some(v) = one("sum") {
            return Ok(Expr::Sum(list(self, v, nodes)?));
        }
        for (key, is_max) in [("max", true), ("min", false)] {
            if let Some(v) = one(key) {
                let items = list(self, v, nodes)?;
                if items.is_empty() {
                    return Err(invalid(format!("`{key}` needs at least one operand")));
                }
                return Ok(if is_max {
                    Expr::Max(items)
                } else {
                    Expr::Min(items)
                });
            }
        }
        type Unary = fn(Box<Expr>) -> Expr;
        let unary: [(&str, Unary); 7] = [
            ("neg", Expr::Neg),
            ("abs", Expr::Abs),
            ("sqrt", Expr::Sqrt),
            ("exp", Expr::Exp),
            ("log10", Expr::Log10),
            ("ln", Expr::Ln),
            ("acosh", Expr::Acosh),
        ];
        for (key, make) in unary {
            if let Some(v) = one(key) {
                return Ok(make(Box::new(self.read(v, nodes, next)?)));
            }
        }
        if let Some(v) = one("div") {
            let left = v.get("left").ok_or_else(|| invalid("`div` needs `left`"))?;
            let right = v
                .get("right")
                .ok_or_else(|| invalid("`div` needs `right`"))?;
            let by_zero = match v.get("by_zero_default") {
                None | Some(Value::Null) => None,
                Some(d) => Some(
                    d.as_f64()
                        .ok_or_else(|| invalid("by_zero_default: a number"))?,
                ),
            };
            only_keys(v, &["left", "right", "by_zero_default"], "div")?;
            return Ok(Expr::Div(
                Box::new(self.read(left, nodes, next)?),
                Box::new(self.read(right, nodes, next)?),
                by_zero,
            ));
        }
        if let Some(v) = one("pow") {
            let base = v.get("base").ok_or_else(|| invalid("`pow` needs `base`"))?;
            let exponent = v
                .get("exponent")
                .ok_or_else(|| invalid("`pow` needs `exponent`"))?;
            only_keys(v, &["base", "exponent"], "pow")?;
            return Ok(Expr::Pow(
                Box::new(self.read(base, nodes, next)?),
                Box::new(self.read(exponent, nodes, next)?),
            ));
        }
        if let Some(v) = one("geo_distance") {
            only_keys(v, &["origin", "to"], "geo_distance")?;
            let origin = v
                .get("origin")
                .and_then(geo_point)
                .ok_or_else(|| invalid("geo_distance.origin must be {lat, lon}"))?;
            let to = v
                .get("to")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("geo_distance.to must be a payload key"))?;
            self.reads_payload = true;
            return Ok(Expr::GeoDistance(origin, path(to)?, to.to_string()));
        }
        if let Some(v) = one("datetime") {
            let s = v
                .as_str()
                .ok_or_else(|| invalid("datetime must be a string"))?;
            let micros = payload::parse_datetime_micros(s)
                .ok_or_else(|| invalid(format!("`{s}` is not a datetime")))?;
            return Ok(Expr::Datetime(micros as f64 / 1e6));
        }
        if let Some(v) = one("datetime_key") {
            let s = v
                .as_str()
                .ok_or_else(|| invalid("datetime_key must be a payload key"))?;
            self.reads_payload = true;
            return Ok(Expr::DatetimeKey(path(s)?, s.to_string()));
        }
        for (key, kind) in [
            ("lin_decay", Decay::Lin),
            ("exp_decay", Decay::Exp),
            ("gauss_decay", Decay::Gauss),
        ] {
            if let Some(v) = one(key) {
                only_keys(v, &["x", "target", "scale", "midpoint"], key)?;
                let x = v
                    .get("x")
                    .ok_or_else(|| invalid(format!("`{key}` needs `x`")))?;
                let target = match v.get("target") {
                    None | Some(Value::Null) => None,
                    Some(t) => Some(Box::new(self.read(t, nodes, next)?)),
                };
                let number = |name: &str, default: f64| -> Result<f64, ApiError> {
                    match v.get(name) {
                        None | Some(Value::Null) => Ok(default),
                        Some(n) => n
                            .as_f64()
                            .ok_or_else(|| invalid(format!("{key}.{name} must be a number"))),
                    }
                };
                let midpoint = number("midpoint", 0.5)?;
                let scale = number("scale", 1.0)?;
                let linear = matches!(kind, Decay::Lin);
                if linear && !(0.0..=1.0).contains(&midpoint) {
                    return Err(invalid(format!(
                        "linear decay midpoint should be in the range [0.0, 1.0], got {midpoint}"
                    )));
                }
                if !linear && (midpoint <= 0.0 || midpoint >= 1.0 || midpoint.is_nan()) {
                    return Err(invalid(format!(
                        "decay midpoint should be in the range (0.0, 1.0), got {midpoint}"
                    )));
                }
                if scale <= 0.0 || !scale.is_finite() {
                    return Err(invalid(format!(
                        "scale must be non-zero positive, got {scale}"
                    )));
                }
                return Ok(Expr::Decay {
                    kind,
                    x: Box::new(self.read(x, nodes, next)?),
                    target,
                    midpoint,
                    scale,
                });
            }
        }
        // Anything else is a filter condition.
        let filter = Filter::from_json(&serde_json::json!({ "must": [v] })).map_err(|e| {
            invalid(format!(
                "`{v}` is neither an expression nor a condition: {e}"
            ))
        })?;
        self.conditions.push(Arc::new(filter));
        Ok(Expr::Condition(self.conditions.len() - 1))
    }

    /// The point's score under the formula, as stored (`f32`).
    pub fn score(&self, p: &PointInput<'_>) -> Result<f32, ApiError> {
        let v = self.eval(&self.expr, p)?;
        let f = v as f32;
        if !f.is_finite() {
            return Err(non_finite(format!("{v} as f32 = {f}")));
        }
        Ok(f)
    }

    fn eval(&self, e: &Expr, p: &PointInput<'_>) -> Result<f64, ApiError> {
        Ok(match e {
            Expr::Const(c) => *c,
            Expr::Score(i) => {
                if let Some(s) = p.scores.get(*i).and_then(|m| m.get(&p.id)) {
                    return Ok(*s as f64);
                }
                match self.defaults.get(&format!("$score[{i}]")) {
                    Some(Value::Null) | None => 0.0,
                    Some(v) => v.as_f64().ok_or_else(|| {
                        invalid(format!("the default of $score[{i}] is not a number"))
                    })?,
                }
            }
            Expr::Payload(path, key) => {
                let v = self.value(p.payload, path, key)?;
                match v {
                    Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
                    _ => {
                        return Err(invalid(format!(
                            "expected number value for {key} in the payload and/or in the \
                             formula defaults. Error: Value is not a number"
                        )))
                    }
                }
            }
            Expr::Condition(i) => {
                if p.passing[*i].contains(&p.id) {
                    1.0
                } else {
                    0.0
                }
            }
            Expr::Mult(items) => {
                let mut product = 1.0;
                for item in items {
                    let f = self.eval(item, p)?;
                    if f == 0.0 {
                        return Ok(f);
                    }
                    product *= f;
                }
                product
            }
            Expr::Sum(items) => {
                let mut sum = 0.0;
                for item in items {
                    sum += self.eval(item, p)?;
                }
                sum
            }
            Expr::Max(items) => {
                let mut m = f64::NEG_INFINITY;
                for item in items {
                    m = m.max(self.eval(item, p)?);
                }
                m
            }
            Expr::Min(items) => {
                let mut m = f64::INFINITY;
                for item in items {
                    m = m.min(self.eval(item, p)?);
                }
                m
            }
            Expr::Neg(x) => -self.eval(x, p)?,
            Expr::Abs(x) => self.eval(x, p)?.abs(),
            Expr::Div(l, r, by_zero) => {
                let left = self.eval(l, p)?;
                if left == 0.0 {
                    return Ok(left);
                }
                let right = self.eval(r, p)?;
                if right == 0.0 {
                    return by_zero.ok_or_else(|| non_finite(format!("{left}/{right}")));
                }
                finite(left / right, || format!("{left}/{right}"))?
            }
            Expr::Sqrt(x) => {
                let v = self.eval(x, p)?;
                if v >= 0.0 {
                    v.sqrt()
                } else {
                    return Err(non_finite(format!("√{v}")));
                }
            }
            Expr::Pow(b, x) => {
                let base = self.eval(b, p)?;
                let exponent = self.eval(x, p)?;
                finite(base.powf(exponent), || format!("{base}^{exponent}"))?
            }
            Expr::Exp(x) => {
                let v = self.eval(x, p)?;
                finite(v.exp(), || format!("exp({v})"))?
            }
            Expr::Log10(x) => {
                let v = self.eval(x, p)?;
                if v > 0.0 {
                    finite(v.log10(), || format!("log10({v})"))?
                } else {
                    return Err(non_finite(format!("log10({v})")));
                }
            }
            Expr::Ln(x) => {
                let v = self.eval(x, p)?;
                if v > 0.0 {
                    finite(v.ln(), || format!("ln({v})"))?
                } else {
                    return Err(non_finite(format!("ln({v})")));
                }
            }
            Expr::Acosh(x) => {
                let v = self.eval(x, p)?;
                if v >= 1.0 {
                    finite(v.acosh(), || format!("acosh({v})"))?
                } else {
                    return Err(non_finite(format!("acosh({v})")));
                }
            }
            Expr::GeoDistance(origin, path, key) => {
                let v = self.value(p.payload, path, key)?;
                let to = geo_point(&v).ok_or_else(|| {
                    invalid(format!(
                        "expected geo point for {key} in the payload and/or in the formula \
                         defaults"
                    ))
                })?;
                payload::haversine_m(*origin, to)
            }
            Expr::Datetime(seconds) => *seconds,
            Expr::DatetimeKey(path, key) => {
                let v = self.value(p.payload, path, key)?;
                let micros = v
                    .as_str()
                    .and_then(payload::parse_datetime_micros)
                    .ok_or_else(|| {
                        invalid(format!(
                            "expected datetime for {key} in the payload and/or in the formula \
                         defaults"
                        ))
                    })?;
                micros as f64 / 1e6
            }
            Expr::Decay {
                kind,
                x,
                target,
                midpoint,
                scale,
            } => {
                let x = self.eval(x, p)?;
                let target = match target {
                    Some(t) => self.eval(t, p)?,
                    None => 0.0,
                };
                match kind {
                    Decay::Lin => {
                        let lambda = (1.0 - midpoint) / scale;
                        (-lambda * (x - target).abs() + 1.0).max(0.0)
                    }
                    Decay::Exp => (midpoint.ln() / scale * (x - target).abs()).exp(),
                    Decay::Gauss => {
                        let d = x - target;
                        (midpoint.ln() / (scale * scale) * d * d).exp()
                    }
                }
            }
        })
    }

    /// A payload value as Qdrant's formula reads it: the values at `path` (arrays unwrapped
    /// one level), or the default under `key` when there are none; a single value alone.
    fn value(&self, payload: &Payload, path: &KeyPath, key: &str) -> Result<Value, ApiError> {
        let found = payload::values_at(payload, path);
        let missing = || {
            invalid(format!(
                "no value found for {key} in the payload nor the formula defaults"
            ))
        };
        if found.is_empty() {
            return match self.defaults.get(key) {
                None | Some(Value::Null) => Err(missing()),
                Some(Value::Array(a)) if a.is_empty() => Err(missing()),
                Some(Value::Array(a)) if a.len() == 1 => Ok(a[0].clone()),
                Some(v) => Ok(v.clone()),
            };
        }
        Ok(if found.len() == 1 {
            found[0].clone()
        } else {
            Value::Array(found.into_iter().cloned().collect())
        })
    }
}

fn finite(v: f64, what: impl FnOnce() -> String) -> Result<f64, ApiError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(non_finite(what()))
    }
}

fn non_finite(what: String) -> ApiError {
    invalid(format!(
        "the expression {what} produced a non-finite number"
    ))
}

fn only_keys(v: &Value, keys: &[&str], what: &str) -> Result<(), ApiError> {
    match v.as_object() {
        Some(obj) => match obj.keys().find(|k| !keys.contains(&k.as_str())) {
            Some(k) => Err(invalid(format!("`{what}` has no field `{k}`"))),
            None => Ok(()),
        },
        None => Err(invalid(format!("`{what}` must be an object"))),
    }
}

fn path(key: &str) -> Result<KeyPath, ApiError> {
    KeyPath::parse(key).map_err(|e| invalid(format!("`{key}`: {e}")))
}

fn geo_point(v: &Value) -> Option<GeoPoint> {
    let lat = v.get("lat")?.as_f64()?;
    let lon = v.get("lon")?.as_f64()?;
    Some(GeoPoint { lat, lon })
}

/// `Some(i)` for `$score` (0) and `$score[i]`, `None` for a payload key; an ill-formed score
/// variable is an error.
fn score_index(var: &str) -> Result<Option<usize>, ApiError> {
    let Some(rest) = var.strip_prefix("$score") else {
        return Ok(None);
    };
    if rest.is_empty() {
        return Ok(Some(0));
    }
    let digits = rest
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| invalid(format!("invalid score pattern: {var}")))?;
    digits
        .parse()
        .map(Some)
        .map_err(|_| invalid(format!("invalid score pattern: {var}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use index_core::PointId;
    use serde_json::json;

    fn score(
        formula: Value,
        defaults: Value,
        payload: Value,
        scores: &[(u64, f32)],
    ) -> Result<f32, String> {
        let f = Formula::parse(&formula, Some(&defaults)).map_err(|e| e.message)?;
        let payload = payload.as_object().cloned().unwrap_or_default();
        let scores = vec![scores.iter().map(|(i, s)| (PointId::Num(*i), *s)).collect()];
        let passing: Vec<HashSet<PointId>> = f
            .conditions
            .iter()
            .map(|c| {
                let p = payload::PlainPoint {
                    id: PointId::Num(1),
                    payload: Some(payload.clone()),
                    vectors: Vec::new(),
                };
                if c.matches(&p) {
                    [PointId::Num(1)].into_iter().collect()
                } else {
                    HashSet::new()
                }
            })
            .collect();
        f.score(&PointInput {
            id: PointId::Num(1),
            payload: &payload,
            scores: &scores,
            passing: &passing,
        })
        .map_err(|e| e.message)
    }

    #[test]
    fn expressions_evaluate_as_qdrant_does() {
        let close = |a: f32, b: f64| (a as f64 - b).abs() < 1e-5 * b.abs().max(1.0);
        let p = json!({"price": 20.0, "tags": [3], "many": [1, 2], "loc": {"lat": 10.0, "lon": 20.0},
                       "ts": "2024-01-01T00:00:00Z", "city": "Oslo"});
        let s = |f: Value| score(f, json!({}), p.clone(), &[(1, 0.5)]);
        assert_eq!(
            s(json!({"sum": ["$score", {"mult": [2, "price"]}]})),
            Ok(40.5)
        );
        assert_eq!(
            s(json!("tags")),
            Ok(3.0),
            "a one-element list is its element"
        );
        assert!(s(json!("many")).unwrap_err().contains("not a number"));
        assert!(s(json!("absent")).unwrap_err().contains("no value found"));
        assert_eq!(
            score(json!("absent"), json!({"absent": 7}), p.clone(), &[]),
            Ok(7.0)
        );
        assert_eq!(
            score(json!("$score[1]"), json!({"$score[1]": 2}), p.clone(), &[]),
            Ok(2.0)
        );
        assert_eq!(
            score(json!("$score"), json!({"$score": 4}), p.clone(), &[]),
            Ok(4.0)
        );
        assert_eq!(
            s(json!({"key": "city", "match": {"value": "Oslo"}})),
            Ok(1.0)
        );
        assert_eq!(
            s(json!({"key": "city", "match": {"value": "Rome"}})),
            Ok(0.0)
        );
        assert!(s(json!({"div": {"left": 1, "right": 0}}))
            .unwrap_err()
            .contains("non-finite"));
        assert_eq!(
            s(json!({"div": {"left": 1, "right": 0, "by_zero_default": 5}})),
            Ok(5.0)
        );
        assert_eq!(s(json!({"div": {"left": 0, "right": 0}})), Ok(0.0));
        assert!(s(json!({"ln": 0})).is_err() && s(json!({"sqrt": -1})).is_err());
        assert!(s(json!({"exp": 1000})).is_err(), "overflow");
        assert!(s(json!({"pow": {"base": -8, "exponent": 0.5}})).is_err());
        assert!(close(
            s(json!({"lin_decay": {"x": 0.25, "scale": 1}})).unwrap(),
            0.875
        ));
        assert!(close(
            s(json!({"exp_decay": {"x": 2, "target": 1, "scale": 1}})).unwrap(),
            0.5
        ));
        assert!(close(
            s(json!({"gauss_decay": {"x": 2, "midpoint": 0.25}})).unwrap(),
            0.25f64.powi(4)
        ));
        assert!(close(
            s(json!({"datetime_key": "ts"})).unwrap(),
            1_704_067_200.0
        ));
        assert!(close(
            s(json!({"datetime": "2024-01-01"})).unwrap(),
            1_704_067_200.0
        ));
        let d = s(json!({"geo_distance": {"origin": {"lat": 10.0, "lon": 20.0}, "to": "loc"}}));
        assert_eq!(d, Ok(0.0));
        assert_eq!(s(json!({"max": [1, {"neg": 5}, 3]})), Ok(3.0));
        assert_eq!(
            s(json!({"mult": [0, {"ln": 0}]})),
            Ok(0.0),
            "a zero factor ends the product"
        );
        assert!(s(json!({"max": []})).unwrap_err().contains("at least one"));
        assert!(s(json!({"exp_decay": {"x": 1, "midpoint": 1.0}}))
            .unwrap_err()
            .contains("midpoint"));
        assert!(s(json!("$score[x]")).unwrap_err().contains("score pattern"));
        assert!(s(json!({"nonsense": 1})).unwrap_err().contains("neither"));
        let deep = (0..100).fold(json!(1), |e, _| json!({"neg": e}));
        assert!(Formula::parse(&deep, None).is_err());
    }
}
