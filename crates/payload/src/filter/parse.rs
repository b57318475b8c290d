//! JSON to [`Filter`]: the whole grammar, every unknown field rejected, every error naming
//! where in the filter it is.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::{
    AnyValues, Bounds, Condition, FieldCheck, FieldCondition, Filter, Match, MatchValue, MinShould,
    RangeCheck,
};
use crate::datetime::parse_datetime_micros;
use crate::error::{json_type, PayloadError, Result};
use crate::geo::{GeoPoint, Ring};
use crate::ids::point_id_from_json;
use crate::key_path::KeyPath;
use crate::text::tokenize;

const FILTER_FIELDS: &[&str] = &["must", "should", "must_not", "min_should"];
const FIELD_CONDITION_FIELDS: &[&str] = &[
    "key",
    "match",
    "range",
    "geo_bounding_box",
    "geo_radius",
    "geo_polygon",
    "values_count",
    "is_empty",
    "is_null",
];

impl Filter {
    /// Parses a Qdrant filter object: `{must?, should?, must_not?, min_should?}`, where each of
    /// the first three is one condition or a list of them, and a nested filter is a condition.
    ///
    /// Every field is checked: unknown fields, wrong types, bad key paths, bad ids, bad dates,
    /// out-of-range coordinates, open polygons and a `min_count` below 1 are
    /// [`PayloadError::InvalidFilter`] naming the place (`must[1].range.gt`).
    pub fn from_json(v: &Value) -> Result<Filter> {
        parse_filter(v, "")
    }
}

fn child(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_string()
    } else {
        format!("{at}.{name}")
    }
}

fn element(at: &str, i: usize) -> String {
    format!("{at}[{i}]")
}

fn object<'a>(v: &'a Value, at: &str, what: &str) -> Result<&'a Map<String, Value>> {
    v.as_object().ok_or_else(|| {
        PayloadError::filter(
            at,
            format!("{what} must be an object, got {}", json_type(v)),
        )
    })
}

/// Rejects any field outside `allowed`.
fn only_fields(obj: &Map<String, Value>, allowed: &[&str], at: &str) -> Result<()> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(unknown) => Err(PayloadError::filter(
            at,
            format!(
                "unknown field `{unknown}`, expected one of: {}",
                allowed.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// A field that may be absent or `null` (the client drops unset fields, other clients send
/// `null`).
fn optional<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

fn required<'a>(obj: &'a Map<String, Value>, name: &str, at: &str) -> Result<&'a Value> {
    optional(obj, name).ok_or_else(|| PayloadError::filter(at, format!("missing field `{name}`")))
}

fn string<'a>(v: &'a Value, at: &str) -> Result<&'a str> {
    v.as_str()
        .ok_or_else(|| PayloadError::filter(at, format!("expected a string, got {}", json_type(v))))
}

fn key_path(v: &Value, at: &str) -> Result<KeyPath> {
    let s = string(v, at)?;
    KeyPath::parse(s).map_err(|e| PayloadError::filter(at, e.to_string()))
}

fn parse_filter(v: &Value, at: &str) -> Result<Filter> {
    let obj = object(v, at, "a filter")?;
    only_fields(obj, FILTER_FIELDS, at)?;
    let clause = |name: &str| -> Result<Vec<Condition>> {
        let at = child(at, name);
        match optional(obj, name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, c)| parse_condition(c, &element(&at, i)))
                .collect(),
            Some(single) => Ok(vec![parse_condition(single, &at)?]),
        }
    };
    let min_should = match optional(obj, "min_should") {
        None => None,
        Some(v) => Some(parse_min_should(v, &child(at, "min_should"))?),
    };
    Ok(Filter {
        must: clause("must")?,
        should: clause("should")?,
        must_not: clause("must_not")?,
        min_should,
    })
}

fn parse_min_should(v: &Value, at: &str) -> Result<MinShould> {
    let obj = object(v, at, "min_should")?;
    only_fields(obj, &["conditions", "min_count"], at)?;
    let conditions_at = child(at, "conditions");
    let conditions = match required(obj, "conditions", at)? {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, c)| parse_condition(c, &element(&conditions_at, i)))
            .collect::<Result<Vec<_>>>()?,
        other => {
            return Err(PayloadError::filter(
                &conditions_at,
                format!("expected an array of conditions, got {}", json_type(other)),
            ))
        }
    };
    let count_at = child(at, "min_count");
    let min_count = required(obj, "min_count", at)?
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| n >= 1)
        .ok_or_else(|| {
            PayloadError::filter(&count_at, "min_count must be an integer of 1 or more")
        })?;
    Ok(MinShould {
        conditions,
        min_count,
    })
}

fn parse_condition(v: &Value, at: &str) -> Result<Condition> {
    let obj = object(v, at, "a condition")?;
    if obj.contains_key("key") {
        return parse_field_condition(obj, at).map(Condition::Field);
    }
    // The other condition kinds are objects with one field that names them.
    let single = |name: &str| -> Result<&Value> {
        only_fields(obj, &[name], at)?;
        required(obj, name, at)
    };
    if obj.contains_key("is_empty") {
        return parse_payload_field(single("is_empty")?, &child(at, "is_empty"))
            .map(Condition::IsEmpty);
    }
    if obj.contains_key("is_null") {
        return parse_payload_field(single("is_null")?, &child(at, "is_null"))
            .map(Condition::IsNull);
    }
    if obj.contains_key("has_id") {
        let at = child(at, "has_id");
        let Value::Array(ids) = single("has_id")? else {
            return Err(PayloadError::filter(
                &at,
                "has_id must be an array of point ids",
            ));
        };
        let ids = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                point_id_from_json(id)
                    .map_err(|e| PayloadError::filter(&element(&at, i), e.to_string()))
            })
            .collect::<Result<HashSet<_>>>()?;
        return Ok(Condition::HasId(ids));
    }
    if obj.contains_key("has_vector") {
        let name = string(single("has_vector")?, &child(at, "has_vector"))?;
        return Ok(Condition::HasVector(name.to_string()));
    }
    if obj.contains_key("nested") {
        let at = child(at, "nested");
        let nested = object(single("nested")?, &at, "nested")?;
        only_fields(nested, &["key", "filter"], &at)?;
        let path = key_path(required(nested, "key", &at)?, &child(&at, "key"))?;
        let filter = parse_filter(required(nested, "filter", &at)?, &child(&at, "filter"))?;
        return Ok(Condition::Nested {
            path: path.without_trailing_wildcard(),
            filter,
        });
    }
    if obj.contains_key("slice") {
        let at = child(at, "slice");
        let slice = object(single("slice")?, &at, "slice")?;
        only_fields(slice, &["total", "index"], &at)?;
        let number = |name: &str| -> Result<u32> {
            required(slice, name, &at)?
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    PayloadError::filter(&child(&at, name), "expected an unsigned 32-bit integer")
                })
        };
        let (total, index) = (number("total")?, number("index")?);
        if total == 0 {
            return Err(PayloadError::filter(
                &child(&at, "total"),
                "slice total must be 1 or more",
            ));
        }
        if index >= total {
            return Err(PayloadError::filter(
                &child(&at, "index"),
                format!("slice index must be in [0, {}], got {index}", total - 1),
            ));
        }
        return Ok(Condition::Slice { total, index });
    }
    // Anything else is a nested filter; it rejects fields that are not filter clauses.
    parse_filter(v, at).map(Condition::Filter)
}

fn parse_payload_field(v: &Value, at: &str) -> Result<KeyPath> {
    let obj = object(v, at, "the payload field")?;
    only_fields(obj, &["key"], at)?;
    key_path(required(obj, "key", at)?, &child(at, "key"))
}

fn parse_field_condition(obj: &Map<String, Value>, at: &str) -> Result<FieldCondition> {
    only_fields(obj, FIELD_CONDITION_FIELDS, at)?;
    let key = key_path(required(obj, "key", at)?, &child(at, "key"))?;
    // Every check given is validated; the first in Qdrant's reference order is the one used.
    let mut checks = Vec::new();
    if let Some(v) = optional(obj, "values_count") {
        checks.push(FieldCheck::ValuesCount(parse_count_bounds(
            v,
            &child(at, "values_count"),
        )?));
    }
    for name in ["is_empty", "is_null"] {
        if let Some(v) = optional(obj, name) {
            let flag = v
                .as_bool()
                .ok_or_else(|| PayloadError::filter(&child(at, name), "expected a boolean"))?;
            checks.push(if name == "is_empty" {
                FieldCheck::IsEmpty(flag)
            } else {
                FieldCheck::IsNull(flag)
            });
        }
    }
    if let Some(v) = optional(obj, "match") {
        checks.push(FieldCheck::Match(parse_match(v, &child(at, "match"))?));
    }
    if let Some(v) = optional(obj, "range") {
        checks.push(FieldCheck::Range(parse_range(v, &child(at, "range"))?));
    }
    checks.extend(geo_checks(obj, at)?);
    match checks.into_iter().next() {
        Some(check) => Ok(FieldCondition { key, check }),
        None => Err(PayloadError::filter(
            at,
            "at least one field condition must be specified (match, range, geo_bounding_box, \
             geo_radius, geo_polygon, values_count, is_empty or is_null)",
        )),
    }
}

fn parse_match(v: &Value, at: &str) -> Result<Match> {
    let obj = object(v, at, "match")?;
    let mut names = obj.keys();
    let (Some(name), None) = (names.next(), names.next()) else {
        return Err(PayloadError::filter(
            at,
            "match must have exactly one of: value, any, except, text, text_any, phrase, prefix, substring",
        ));
    };
    let at = child(at, name);
    let value = &obj[name];
    let text = || string(value, &at).map(str::to_string);
    Ok(match name.as_str() {
        "value" => Match::Value(match value {
            Value::String(s) => MatchValue::Keyword(s.clone()),
            Value::Bool(b) => MatchValue::Bool(*b),
            Value::Number(n) => MatchValue::Integer(n.as_i64().ok_or_else(|| {
                PayloadError::filter(&at, format!("match value {n} is not a 64-bit integer"))
            })?),
            other => {
                return Err(PayloadError::filter(
                    &at,
                    format!(
                        "match value must be a string, an integer or a boolean, got {}",
                        json_type(other)
                    ),
                ))
            }
        }),
        "any" => Match::Any(parse_any_values(value, &at)?),
        "except" => Match::Except(parse_any_values(value, &at)?),
        "text" => Match::Text(tokenize(&text()?)),
        "text_any" => Match::TextAny(tokenize(&text()?)),
        "phrase" => Match::Phrase(tokenize(&text()?)),
        "prefix" => Match::Prefix(text()?),
        "substring" => Match::Substring(text()?),
        other => {
            return Err(PayloadError::filter(
                &at,
                format!(
                    "unknown match `{other}`, expected one of: value, any, except, text, text_any, \
                     phrase, prefix, substring"
                ),
            ))
        }
    })
}

/// `any` and `except` lists: all strings or all 64-bit integers, as the first element says.
fn parse_any_values(v: &Value, at: &str) -> Result<AnyValues> {
    let Value::Array(items) = v else {
        return Err(PayloadError::filter(
            at,
            format!("expected an array, got {}", json_type(v)),
        ));
    };
    let wrong = |i: usize, item: &Value, want: &str| {
        PayloadError::filter(
            &element(at, i),
            format!(
                "the list must hold only strings or only 64-bit integers: expected {want}, got {}",
                json_type(item)
            ),
        )
    };
    if items.first().is_none_or(Value::is_string) {
        let mut keywords = HashSet::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            keywords.insert(
                item.as_str()
                    .ok_or_else(|| wrong(i, item, "a string"))?
                    .to_string(),
            );
        }
        return Ok(AnyValues::Keywords(keywords));
    }
    let mut integers = HashSet::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        integers.insert(item.as_i64().ok_or_else(|| wrong(i, item, "an integer"))?);
    }
    Ok(AnyValues::Integers(integers))
}

const BOUND_NAMES: [&str; 4] = ["lt", "gt", "gte", "lte"];

/// A range is over numbers when its bounds are numbers and over datetimes when they are
/// strings; no bounds at all is a number range that any number satisfies.
fn parse_range(v: &Value, at: &str) -> Result<RangeCheck> {
    let obj = object(v, at, "range")?;
    only_fields(obj, &BOUND_NAMES, at)?;
    let given: Vec<(&str, &Value)> = BOUND_NAMES
        .iter()
        .filter_map(|&name| optional(obj, name).map(|v| (name, v)))
        .collect();
    if given.iter().all(|(_, v)| v.is_number()) {
        let mut bounds = Bounds::default();
        for (name, v) in given {
            *bound_slot(&mut bounds, name) = v.as_f64();
        }
        return Ok(RangeCheck::Number(bounds));
    }
    if given.iter().all(|(_, v)| v.is_string()) {
        let mut bounds = Bounds::default();
        for (name, v) in given {
            let s = v.as_str().unwrap_or_default();
            let micros = parse_datetime_micros(s).ok_or_else(|| {
                PayloadError::filter(
                    &child(at, name),
                    format!("`{s}` is not an RFC 3339 datetime or a date"),
                )
            })?;
            *bound_slot(&mut bounds, name) = Some(micros);
        }
        return Ok(RangeCheck::Datetime(bounds));
    }
    Err(PayloadError::filter(
        at,
        "range bounds must be all numbers or all datetime strings",
    ))
}

fn bound_slot<'a, T>(bounds: &'a mut Bounds<T>, name: &str) -> &'a mut Option<T> {
    match name {
        "lt" => &mut bounds.lt,
        "gt" => &mut bounds.gt,
        "gte" => &mut bounds.gte,
        _ => &mut bounds.lte,
    }
}

fn parse_count_bounds(v: &Value, at: &str) -> Result<Bounds<u64>> {
    let obj = object(v, at, "values_count")?;
    only_fields(obj, &BOUND_NAMES, at)?;
    let mut bounds = Bounds::default();
    for name in BOUND_NAMES {
        if let Some(v) = optional(obj, name) {
            let n = v.as_u64().ok_or_else(|| {
                PayloadError::filter(
                    &child(at, name),
                    format!("expected an unsigned integer, got {}", json_type(v)),
                )
            })?;
            *bound_slot(&mut bounds, name) = Some(n);
        }
    }
    Ok(bounds)
}

/// The geo checks an object sets (`geo_bounding_box`, `geo_radius`, `geo_polygon`), each
/// validated, in Qdrant's reference order.
fn geo_checks(obj: &Map<String, Value>, at: &str) -> Result<Vec<FieldCheck>> {
    let mut checks = Vec::new();
    if let Some(v) = optional(obj, "geo_bounding_box") {
        let at = child(at, "geo_bounding_box");
        let bbox = object(v, &at, "geo_bounding_box")?;
        only_fields(bbox, &["top_left", "bottom_right"], &at)?;
        checks.push(FieldCheck::GeoBoundingBox {
            top_left: parse_geo_point(required(bbox, "top_left", &at)?, &child(&at, "top_left"))?,
            bottom_right: parse_geo_point(
                required(bbox, "bottom_right", &at)?,
                &child(&at, "bottom_right"),
            )?,
        });
    }
    if let Some(v) = optional(obj, "geo_radius") {
        let at = child(at, "geo_radius");
        let radius = object(v, &at, "geo_radius")?;
        only_fields(radius, &["center", "radius"], &at)?;
        checks.push(FieldCheck::GeoRadius {
            center: parse_geo_point(required(radius, "center", &at)?, &child(&at, "center"))?,
            radius: required(radius, "radius", &at)?.as_f64().ok_or_else(|| {
                PayloadError::filter(&child(&at, "radius"), "expected a number of meters")
            })?,
        });
    }
    if let Some(v) = optional(obj, "geo_polygon") {
        let at = child(at, "geo_polygon");
        let polygon = object(v, &at, "geo_polygon")?;
        only_fields(polygon, &["exterior", "interiors"], &at)?;
        let exterior = parse_ring(required(polygon, "exterior", &at)?, &child(&at, "exterior"))?;
        let interiors = match optional(polygon, "interiors") {
            None => Vec::new(),
            Some(Value::Array(rings)) => {
                let at = child(&at, "interiors");
                rings
                    .iter()
                    .enumerate()
                    .map(|(i, r)| parse_ring(r, &element(&at, i)))
                    .collect::<Result<Vec<_>>>()?
            }
            Some(other) => {
                return Err(PayloadError::filter(
                    &child(&at, "interiors"),
                    format!(
                        "expected an array of line strings, got {}",
                        json_type(other)
                    ),
                ))
            }
        };
        checks.push(FieldCheck::GeoPolygon {
            exterior,
            interiors,
        });
    }
    Ok(checks)
}

/// A geographic shape written as a geo condition without its key: an object with exactly
/// one of `geo_bounding_box`, `geo_radius` or `geo_polygon`, validated as a filter's (so a
/// shape a filter accepts is accepted here, and refused alike). The check is one of the
/// three `FieldCheck::Geo*` variants. Errors name the place under `at`.
pub fn geo_shape_from_json(v: &Value, at: &str) -> Result<FieldCheck> {
    let obj = object(v, at, "a geo shape")?;
    only_fields(obj, &["geo_bounding_box", "geo_radius", "geo_polygon"], at)?;
    let mut checks = geo_checks(obj, at)?;
    if checks.len() != 1 {
        return Err(PayloadError::filter(
            at,
            "exactly one of geo_bounding_box, geo_radius or geo_polygon must be given",
        ));
    }
    Ok(checks.remove(0))
}

fn parse_geo_point(v: &Value, at: &str) -> Result<GeoPoint> {
    let obj = object(v, at, "a geo point")?;
    only_fields(obj, &["lat", "lon"], at)?;
    let coordinate = |name: &str, limit: f64| -> Result<f64> {
        let x = required(obj, name, at)?
            .as_f64()
            .ok_or_else(|| PayloadError::filter(&child(at, name), "expected a number"))?;
        if !(-limit..=limit).contains(&x) {
            return Err(PayloadError::filter(
                &child(at, name),
                format!("{name} {x} is outside [-{limit}, {limit}]"),
            ));
        }
        Ok(x)
    };
    Ok(GeoPoint {
        lat: coordinate("lat", 90.0)?,
        lon: coordinate("lon", 180.0)?,
    })
}

/// A polygon ring: `{points: [...]}`, at least 4 points, the last equal to the first. The
/// closing point is dropped from what is kept.
fn parse_ring(v: &Value, at: &str) -> Result<Ring> {
    let obj = object(v, at, "a line string")?;
    only_fields(obj, &["points"], at)?;
    let points_at = child(at, "points");
    let Value::Array(items) = required(obj, "points", at)? else {
        return Err(PayloadError::filter(
            &points_at,
            "expected an array of geo points",
        ));
    };
    let mut ring = items
        .iter()
        .enumerate()
        .map(|(i, p)| parse_geo_point(p, &element(&points_at, i)).map(|p| (p.lat, p.lon)))
        .collect::<Result<Vec<_>>>()?;
    if ring.len() < 4 {
        return Err(PayloadError::filter(
            &points_at,
            format!("a polygon ring needs at least 4 points, got {}", ring.len()),
        ));
    }
    if ring.first() != ring.last() {
        return Err(PayloadError::filter(
            &points_at,
            "the first and the last points must be the same to close the ring",
        ));
    }
    ring.pop();
    Ok(ring)
}
