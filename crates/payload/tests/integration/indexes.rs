//! Payload indexes: schemas, bookkeeping, and candidate sets that never lose a match.

use std::collections::{BTreeMap, HashSet};

use index_core::PointId;
use payload::{values_at, FieldSchema, Filter, KeyPath, Payload, PayloadIndexes, PlainPoint};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::payload;

#[test]
fn schema_forms() {
    for (v, want) in [
        (json!("keyword"), FieldSchema::Keyword),
        (json!("integer"), FieldSchema::Integer),
        (json!("float"), FieldSchema::Float),
        (json!("bool"), FieldSchema::Bool),
        (json!("geo"), FieldSchema::Geo),
        (json!("datetime"), FieldSchema::Datetime),
        (json!("text"), FieldSchema::Text),
        (json!("uuid"), FieldSchema::Uuid),
        (
            json!({"type": "keyword", "is_tenant": true, "on_disk": false, "prefix": true}),
            FieldSchema::Keyword,
        ),
        (
            json!({"type": "integer", "lookup": true, "range": false, "memory": "cached"}),
            FieldSchema::Integer,
        ),
        (
            json!({"type": "text", "tokenizer": "word", "min_token_len": 2, "max_token_len": 20, "lowercase": true,
                   "phrase_matching": true, "stopwords": {"languages": ["english"], "custom": ["the"]},
                   "stemmer": {"type": "snowball", "language": "english"}}),
            FieldSchema::Text,
        ),
        (
            json!({"type": "text", "stopwords": "english", "ascii_folding": null}),
            FieldSchema::Text,
        ),
        (
            json!({"type": "geo", "enable_hnsw": false}),
            FieldSchema::Geo,
        ),
    ] {
        let schema = FieldSchema::from_json(&v).unwrap_or_else(|e| panic!("{v}: {e}"));
        assert_eq!(schema, want, "{v}");
        let name = v.as_str().or_else(|| v["type"].as_str()).unwrap();
        assert_eq!(schema.name(), name);
    }
}

#[test]
fn create_update_drop_and_schema() {
    let mut points: BTreeMap<PointId, Payload> = BTreeMap::new();
    points.insert(PointId::Num(1), payload(json!({"city": "Berlin", "n": 1})));
    points.insert(
        PointId::Num(2),
        payload(json!({"city": ["Paris", "Rome"], "n": 2.5})),
    );
    points.insert(PointId::Num(3), payload(json!({"city": 7, "n": [3, "x"]})));
    let mut indexes = PayloadIndexes::new();
    assert!(indexes.is_empty());
    indexes
        .create(
            "city",
            FieldSchema::Keyword,
            points.iter().map(|(id, p)| (*id, p)),
        )
        .unwrap();
    indexes
        .create(
            "n",
            FieldSchema::Integer,
            points.iter().map(|(id, p)| (*id, p)),
        )
        .unwrap();
    assert!(indexes
        .create(
            "a..b",
            FieldSchema::Keyword,
            points.iter().map(|(id, p)| (*id, p))
        )
        .is_err());
    assert_eq!(indexes.len(), 2);
    // Point 2 holds only a float, which an integer index does not count.
    assert_eq!(
        indexes.schema(),
        json!({"city": {"data_type": "keyword", "points": 2}, "n": {"data_type": "integer", "points": 2}})
    );
    let fields: Vec<(&str, FieldSchema)> = indexes.fields().collect();
    assert_eq!(
        fields,
        [("city", FieldSchema::Keyword), ("n", FieldSchema::Integer)]
    );

    let berlin =
        Filter::from_json(&json!({"must": {"key": "city", "match": {"value": "Berlin"}}})).unwrap();
    let ids = |f: &Filter, ix: &PayloadIndexes| {
        let mut v: Vec<PointId> = f.indexed_candidates(ix).unwrap().into_iter().collect();
        v.sort();
        v
    };
    assert_eq!(ids(&berlin, &indexes), [PointId::Num(1)]);

    // Point 3 moves to Berlin, point 1 is deleted.
    let old = points
        .insert(PointId::Num(3), payload(json!({"city": "Berlin"})))
        .unwrap();
    indexes.update(PointId::Num(3), Some(&old), points.get(&PointId::Num(3)));
    let old = points.remove(&PointId::Num(1)).unwrap();
    indexes.update(PointId::Num(1), Some(&old), None);
    assert_eq!(ids(&berlin, &indexes), [PointId::Num(3)]);
    assert_eq!(indexes.schema()["city"]["points"], json!(2));
    assert_eq!(indexes.schema()["n"]["points"], json!(0));
    // A new point.
    let fresh = payload(json!({"city": "Berlin", "n": 9}));
    indexes.update(PointId::Num(4), None, Some(&fresh));
    assert_eq!(ids(&berlin, &indexes), [PointId::Num(3), PointId::Num(4)]);
    // The float of point 2 is in range too: an integer index keeps floats for ranges.
    let range =
        Filter::from_json(&json!({"must": {"key": "n", "range": {"gt": 2, "lte": 9}}})).unwrap();
    assert_eq!(ids(&range, &indexes), [PointId::Num(2), PointId::Num(4)]);
    let above = Filter::from_json(&json!({"must": {"key": "n", "range": {"gt": 2.5}}})).unwrap();
    assert_eq!(
        ids(&above, &indexes),
        [PointId::Num(2), PointId::Num(4)],
        "strict bounds are widened"
    );

    // Re-creating with another type replaces the index; another spelling of a path is the same.
    indexes
        .create(
            "\"city\"",
            FieldSchema::Text,
            points.iter().map(|(id, p)| (*id, p)),
        )
        .unwrap();
    assert_eq!(indexes.len(), 2);
    assert!(indexes.drop_field("city"));
    assert!(!indexes.drop_field("city"));
    assert!(!indexes.drop_field("a..b"));
    assert_eq!(indexes.len(), 1);
    assert_eq!(
        berlin.indexed_candidates(&indexes),
        None,
        "no index, no narrowing"
    );
}

#[test]
fn what_narrows_and_what_does_not() {
    let p = payload(json!({"kw": "a", "n": 1, "t": "hello world", "flag": true}));
    let mut indexes = PayloadIndexes::new();
    for (field, schema) in [
        ("kw", FieldSchema::Keyword),
        ("n", FieldSchema::Float),
        ("t", FieldSchema::Text),
        ("flag", FieldSchema::Bool),
    ] {
        indexes
            .create(field, schema, [(PointId::Num(1), &p)].into_iter())
            .unwrap();
    }
    let narrows = |f: Value| {
        Filter::from_json(&f)
            .unwrap()
            .indexed_candidates(&indexes)
            .is_some()
    };
    assert!(narrows(
        json!({"must": [{"key": "kw", "match": {"any": ["a", "b"]}}]})
    ));
    assert!(narrows(
        json!({"must": [{"key": "kw", "match": {"prefix": "a"}}]})
    ));
    assert!(narrows(
        json!({"must": [{"key": "n", "range": {"gte": 0}}]})
    ));
    assert!(narrows(
        json!({"must": [{"key": "t", "match": {"text": "hello"}}]})
    ));
    assert!(narrows(
        json!({"must": [{"key": "flag", "match": {"value": false}}]})
    ));
    assert!(narrows(json!({"must": [{"has_id": [1, 2]}]})));
    assert!(narrows(
        json!({"should": [{"has_id": [1]}, {"key": "kw", "match": {"value": "z"}}]})
    ));
    assert!(narrows(
        json!({"min_should": {"conditions": [{"has_id": [1]}, {"key": "n", "match": {"value": 3}}], "min_count": 1}})
    ));
    // Not indexed, not servable by the index's type, or negative.
    assert!(!narrows(
        json!({"must": [{"key": "other", "match": {"value": "a"}}]})
    ));
    assert!(!narrows(
        json!({"must": [{"key": "kw", "match": {"value": 1}}]})
    ));
    assert!(!narrows(
        json!({"must": [{"key": "kw", "match": {"except": ["a"]}}]})
    ));
    assert!(!narrows(
        json!({"must": [{"key": "n", "range": {"gte": "2020-01-01"}}]})
    ));
    assert!(!narrows(
        json!({"must_not": [{"key": "kw", "match": {"value": "a"}}]})
    ));
    assert!(!narrows(
        json!({"should": [{"has_id": [1]}, {"key": "other", "match": {"value": "z"}}]})
    ));
    assert!(!narrows(json!({"must": [{"is_empty": {"key": "kw"}}]})));
}

// --- property test: candidates are a superset of the matches on random data ---------------

const WORDS: [&str; 6] = ["red", "green", "blue", "Red", "sky blue", "green-red"];
const DATES: [&str; 6] = [
    "2021-01-01",
    "2021-06-01T12:00:00Z",
    "2021-06-01T13:00:00+02:00",
    "2022-02-02 02:02",
    "not a date",
    "2020-12-31T23:59:59.5",
];
const UUIDS: [&str; 4] = [
    "550e8400-e29b-41d4-a716-446655440000",
    "550E8400E29B41D4A716446655440000",
    "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
    "not-a-uuid",
];

fn number(rng: &mut StdRng) -> Value {
    match rng.random_range(0..4) {
        0 | 1 => json!(rng.random_range(-3i64..10)),
        2 => json!((rng.random_range(-30..100) as f64) / 10.0),
        _ => [
            json!(9_007_199_254_740_993u64),
            json!(-0.0),
            json!(2.0),
            json!(u64::MAX),
        ]
        .choose(rng)
        .unwrap()
        .clone(),
    }
}

fn some(rng: &mut StdRng, make: impl Fn(&mut StdRng) -> Value) -> Value {
    match rng.random_range(0..10) {
        0 => Value::Null,
        1..=3 => Value::Array((0..rng.random_range(0..4)).map(|_| make(rng)).collect()),
        _ => make(rng),
    }
}

fn any_scalar(rng: &mut StdRng) -> Value {
    match rng.random_range(0..5) {
        0 => number(rng),
        1 => json!(*WORDS.choose(rng).unwrap()),
        2 => json!(rng.random_bool(0.5)),
        3 => json!({"lat": rng.random_range(-10.0..10.0), "lon": rng.random_range(-10.0..10.0)}),
        _ => Value::Null,
    }
}

fn random_payload(rng: &mut StdRng) -> Payload {
    let mut p = Payload::new();
    let mut put = |rng: &mut StdRng, key: &str, v: Value| {
        if rng.random_bool(0.8) {
            p.insert(
                key.to_string(),
                if rng.random_bool(0.1) {
                    any_scalar(rng)
                } else {
                    v
                },
            );
        }
    };
    let v = some(rng, |r| json!(*WORDS.choose(r).unwrap()));
    put(rng, "kw", v);
    let v = some(rng, number);
    put(rng, "num", v);
    let v = some(rng, |r| json!(r.random_bool(0.5)));
    put(rng, "flag", v);
    let v = some(
        rng,
        |r| json!({"lat": r.random_range(-10.0..10.0), "lon": r.random_range(-10.0..10.0)}),
    );
    put(rng, "geo", v);
    let v = some(rng, |r| json!(*DATES.choose(r).unwrap()));
    put(rng, "dt", v);
    let v = some(rng, |r| {
        let n = r.random_range(0..4);
        json!((0..n)
            .map(|_| *WORDS.choose(r).unwrap())
            .collect::<Vec<_>>()
            .join(" "))
    });
    put(rng, "txt", v);
    let v = some(rng, |r| json!(*UUIDS.choose(r).unwrap()));
    put(rng, "u", v);
    let items: Vec<Value> = (0..rng.random_range(0..4))
        .map(|_| {
            let inner: Vec<Value> = (0..rng.random_range(0..3)).map(|_| json!({"v": number(rng)})).collect();
            json!({"sku": some(rng, |r| json!(*WORDS.choose(r).unwrap())), "qty": number(rng), "inner": inner})
        })
        .collect();
    put(rng, "items", Value::Array(items));
    p
}

const INDEXED: [(&str, FieldSchema); 11] = [
    ("kw", FieldSchema::Keyword),
    ("num", FieldSchema::Integer),
    ("flag", FieldSchema::Bool),
    ("geo", FieldSchema::Geo),
    ("dt", FieldSchema::Datetime),
    ("txt", FieldSchema::Text),
    ("u", FieldSchema::Uuid),
    ("items[].sku", FieldSchema::Keyword),
    ("items[].qty", FieldSchema::Float),
    ("items[].inner[].v", FieldSchema::Integer),
    ("num[]", FieldSchema::Float),
];

fn random_condition(rng: &mut StdRng, depth: u32, inner: bool) -> Value {
    // Inside a nested filter over `items`, keys are relative to one item.
    let key = |k: &str, inner_k: &str| -> String {
        if inner {
            inner_k.to_string()
        } else {
            k.to_string()
        }
    };
    let bound = |rng: &mut StdRng| -> Value {
        let mut b = serde_json::Map::new();
        for name in ["lt", "gt", "gte", "lte"] {
            if rng.random_bool(0.4) {
                b.insert(name.into(), number(rng));
            }
        }
        Value::Object(b)
    };
    match rng.random_range(0..16) {
        0 => {
            let k = key("kw", "sku");
            json!({"key": k, "match": {"value": *WORDS.choose(rng).unwrap()}})
        }
        1 => {
            let k = key("kw", "sku");
            let any: Vec<&str> = WORDS.choose_multiple(rng, 2).copied().collect();
            json!({"key": k, "match": {"any": any}})
        }
        2 => {
            let k = key("kw", "sku");
            json!({"key": k, "match": {(*["prefix", "substring"].choose(rng).unwrap()): *["r", "re", "e", "", "blue"].choose(rng).unwrap()}})
        }
        3 => {
            let outer = *["num", "num[]"].choose(rng).unwrap();
            let inner_key = *["qty", "inner[].v"].choose(rng).unwrap();
            let k = key(outer, inner_key);
            json!({"key": k, "range": bound(rng)})
        }
        4 => {
            let k = key("num", "inner[].v");
            let values: Vec<i64> = (0..rng.random_range(1..3))
                .map(|_| rng.random_range(-3..10))
                .collect();
            if rng.random_bool(0.5) {
                json!({"key": k, "match": {"value": values[0]}})
            } else {
                json!({"key": k, "match": {"any": values}})
            }
        }
        5 => json!({"key": "flag", "match": {"value": rng.random_bool(0.5)}}),
        6 => {
            let c =
                json!({"lat": rng.random_range(-10.0..10.0), "lon": rng.random_range(-10.0..10.0)});
            json!({"key": "geo", "geo_radius": {"center": c, "radius": rng.random_range(0.0..1e6)}})
        }
        7 => {
            json!({"key": "geo", "geo_bounding_box": {"top_left": {"lat": 5.0, "lon": -5.0}, "bottom_right": {"lat": -5.0, "lon": rng.random_range(-5.0..5.0)}}})
        }
        8 => {
            let ring = json!({"points": [{"lat": -8, "lon": -8}, {"lat": -8, "lon": 6}, {"lat": 7, "lon": 2}, {"lat": -8, "lon": -8}]});
            json!({"key": "geo", "geo_polygon": {"exterior": ring}})
        }
        9 => {
            let mut b = serde_json::Map::new();
            for name in ["lt", "gt", "gte", "lte"] {
                if rng.random_bool(0.5) {
                    b.insert(name.into(), json!(*DATES[..4].choose(rng).unwrap()));
                }
            }
            if b.is_empty() {
                b.insert("gte".into(), json!("2021-01-01"));
            }
            json!({"key": "dt", "range": b})
        }
        10 => {
            let n = rng.random_range(0..3);
            let q: Vec<&str> = WORDS.choose_multiple(rng, n).copied().collect();
            json!({"key": "txt", "match": {(*["text", "text_any", "phrase"].choose(rng).unwrap()): q.join(" ")}})
        }
        11 => json!({"key": "u", "match": {"value": *UUIDS.choose(rng).unwrap()}}),
        12 if depth < 2 => {
            let ids: Vec<u64> = (0..rng.random_range(0..20))
                .map(|_| rng.random_range(0..300))
                .collect();
            json!({"has_id": ids})
        }
        13 if depth < 2 && !inner => {
            let f = random_filter(rng, depth + 1, true);
            json!({"nested": {"key": *["items", "items[]"].choose(rng).unwrap(), "filter": f}})
        }
        14 if depth < 2 => random_filter(rng, depth + 1, inner),
        _ => json!({"is_empty": {"key": key("kw", "sku")}}),
    }
}

fn random_filter(rng: &mut StdRng, depth: u32, inner: bool) -> Value {
    let mut f = serde_json::Map::new();
    for clause in ["must", "should", "must_not"] {
        if rng.random_bool(if clause == "must" { 0.8 } else { 0.3 }) {
            let n = rng.random_range(0..3);
            f.insert(
                clause.into(),
                Value::Array(
                    (0..n)
                        .map(|_| random_condition(rng, depth, inner))
                        .collect(),
                ),
            );
        }
    }
    if rng.random_bool(0.1) {
        let conditions: Vec<Value> = (0..rng.random_range(1..4))
            .map(|_| random_condition(rng, depth, inner))
            .collect();
        f.insert(
            "min_should".into(),
            json!({"conditions": conditions, "min_count": rng.random_range(1..3)}),
        );
    }
    Value::Object(f)
}

/// Checks every random filter's candidates against brute force; returns how many narrowed.
fn check_superset(
    rng: &mut StdRng,
    seed: u64,
    points: &BTreeMap<PointId, Payload>,
    indexes: &PayloadIndexes,
) -> usize {
    let mut narrowed = 0;
    for _ in 0..400 {
        let json = random_filter(rng, 0, false);
        let filter =
            Filter::from_json(&json).unwrap_or_else(|e| panic!("seed {seed}: {json}: {e}"));
        let Some(candidates) = filter.indexed_candidates(indexes) else {
            continue;
        };
        narrowed += usize::from(candidates.len() < points.len());
        for (id, p) in points {
            let point = PlainPoint {
                id: *id,
                payload: Some(p.clone()),
                vectors: vec![],
            };
            if filter.matches(&point) {
                assert!(
                    candidates.contains(id),
                    "seed {seed}: {id} matches {json} but is not a candidate; payload {}",
                    Value::Object(p.clone())
                );
            }
        }
    }
    narrowed
}

/// What `points` in the schema must say, computed from the payloads.
fn expected_counts(points: &BTreeMap<PointId, Payload>) -> Value {
    let mut out = serde_json::Map::new();
    for (field, schema) in INDEXED {
        let path = KeyPath::parse(field).unwrap();
        let own_type = |v: &Value| match schema {
            FieldSchema::Keyword | FieldSchema::Text => v.is_string(),
            FieldSchema::Integer => v.is_i64() || v.is_u64(),
            FieldSchema::Float => v.is_number(),
            FieldSchema::Bool => v.is_boolean(),
            FieldSchema::Geo => payload::GeoPoint::from_payload(v).is_some(),
            FieldSchema::Datetime => v
                .as_str()
                .is_some_and(|s| DATES.contains(&s) && s != "not a date"),
            FieldSchema::Uuid => v
                .as_str()
                .is_some_and(|s| s != "not-a-uuid" && UUIDS.contains(&s)),
        };
        let n = points
            .values()
            .filter(|p| values_at(p, &path).into_iter().any(own_type))
            .count();
        out.insert(
            field.to_string(),
            json!({"data_type": schema.name(), "points": n}),
        );
    }
    Value::Object(out)
}

/// 300 points with random payloads, and an index on every field of [`INDEXED`] over them.
fn indexed_points(rng: &mut StdRng) -> (BTreeMap<PointId, Payload>, PayloadIndexes) {
    let points: BTreeMap<PointId, Payload> = (0..300u64)
        .map(|i| (PointId::Num(i), random_payload(rng)))
        .collect();
    let indexes = index_all(&points);
    (points, indexes)
}

/// An index on every field of [`INDEXED`] over `points`.
fn index_all(points: &BTreeMap<PointId, Payload>) -> PayloadIndexes {
    let mut indexes = PayloadIndexes::new();
    for (field, schema) in INDEXED {
        indexes
            .create(field, schema, points.iter().map(|(id, p)| (*id, p)))
            .unwrap();
    }
    indexes
}

/// 200 writes to `points` and `indexes` alike: overwrite some payloads, delete some points,
/// add new ones.
fn random_writes(
    rng: &mut StdRng,
    points: &mut BTreeMap<PointId, Payload>,
    indexes: &mut PayloadIndexes,
) {
    for _ in 0..200 {
        let id = PointId::Num(rng.random_range(0..350));
        let old = points.remove(&id);
        let new = rng.random_bool(0.8).then(|| random_payload(rng));
        indexes.update(id, old.as_ref(), new.as_ref());
        if let Some(new) = new {
            points.insert(id, new);
        }
    }
}

#[test]
fn candidates_are_a_superset_of_matches() {
    for seed in [1u64, 2, 3] {
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut points, mut indexes) = indexed_points(&mut rng);
        assert_eq!(indexes.schema(), expected_counts(&points), "seed {seed}");
        let narrowed = check_superset(&mut rng, seed, &points, &indexes);
        assert!(
            narrowed > 100,
            "seed {seed}: only {narrowed} of 400 filters narrowed; the test would prove little"
        );

        random_writes(&mut rng, &mut points, &mut indexes);
        assert_eq!(
            indexes.schema(),
            expected_counts(&points),
            "seed {seed} after writes"
        );
        check_superset(&mut rng, seed, &points, &indexes);

        // An index rebuilt from the final payloads gives the same candidates as the updated one.
        let rebuilt = index_all(&points);
        for _ in 0..200 {
            let json = random_filter(&mut rng, 0, false);
            let filter = Filter::from_json(&json).unwrap();
            assert_eq!(
                filter.indexed_candidates(&indexes),
                filter.indexed_candidates(&rebuilt),
                "seed {seed}: {json}"
            );
        }
    }
}

#[test]
fn has_id_candidates_need_no_index() {
    let f = Filter::from_json(
        &json!({"must": [{"has_id": [1, 2]}, {"key": "x", "match": {"value": 1}}]}),
    )
    .unwrap();
    let got: HashSet<PointId> = f.indexed_candidates(&PayloadIndexes::new()).unwrap();
    assert_eq!(got, HashSet::from([PointId::Num(1), PointId::Num(2)]));
}

/// Where `indexed_candidates_exact` says so, the candidates are exactly the matching points
/// (storage then skips testing each one's payload); over random payloads with arrays, nulls,
/// values of other types and nested arrays of objects, before and after writes. Everything it
/// must not call exact is refused.
#[test]
fn exact_candidates_are_the_matches() {
    let keyword_filter = |rng: &mut StdRng| -> Value {
        let conditions: Vec<Value> = (0..rng.random_range(1..3))
            .map(|_| {
                let key = *["kw", "items[].sku"].choose(rng).unwrap();
                if rng.random_bool(0.5) {
                    json!({"key": key, "match": {"value": *WORDS.choose(rng).unwrap()}})
                } else {
                    let any: Vec<&str> = (0..rng.random_range(1..4))
                        .map(|_| *WORDS.choose(rng).unwrap())
                        .collect();
                    json!({"key": key, "match": {"any": any}})
                }
            })
            .collect();
        json!({ "must": conditions })
    };
    let check = |rng: &mut StdRng,
                 seed: u64,
                 points: &BTreeMap<PointId, Payload>,
                 indexes: &PayloadIndexes| {
        let mut nonempty = 0;
        for _ in 0..300 {
            let json = keyword_filter(rng);
            let filter = Filter::from_json(&json).unwrap();
            assert!(
                filter.indexed_candidates_exact(indexes),
                "seed {seed}: {json}"
            );
            let candidates = filter.indexed_candidates(indexes).unwrap();
            let matches: HashSet<PointId> = points
                .iter()
                .filter(|(id, p)| {
                    filter.matches(&PlainPoint {
                        id: **id,
                        payload: Some((*p).clone()),
                        vectors: vec![],
                    })
                })
                .map(|(id, _)| *id)
                .collect();
            assert_eq!(candidates, matches, "seed {seed}: {json}");
            nonempty += usize::from(!matches.is_empty() && matches.len() < points.len());
        }
        assert!(
            nonempty > 150,
            "seed {seed}: only {nonempty} of 300 filters split the points; the test would prove little"
        );
    };
    for seed in [1u64, 2, 3] {
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut points, mut indexes) = indexed_points(&mut rng);
        check(&mut rng, seed, &points, &indexes);
        random_writes(&mut rng, &mut points, &mut indexes);
        check(&mut rng, seed, &points, &indexes);

        for json in [
            json!({"must": []}),
            json!({"should": [{"key": "kw", "match": {"value": "red"}}]}),
            json!({"must": [{"key": "kw", "match": {"value": "red"}}],
                   "must_not": [{"key": "kw", "match": {"value": "blue"}}]}),
            json!({"must": [{"key": "kw", "match": {"value": "red"}}],
                   "should": [{"key": "kw", "match": {"value": "blue"}}]}),
            json!({"must": [{"key": "kw", "match": {"value": "red"}}],
                   "min_should": {"conditions": [{"key": "kw", "match": {"value": "blue"}}], "min_count": 1}}),
            // A keyword condition beside one the index does not answer exactly.
            json!({"must": [{"key": "kw", "match": {"value": "red"}}, {"key": "num", "range": {"gt": 1}}]}),
            json!({"must": [{"key": "kw", "match": {"value": "red"}}, {"has_id": [1, 2]}]}),
            json!({"must": [{"key": "kw", "match": {"value": "red"}}, {"key": "other", "match": {"value": "red"}}]}),
            // Other matches on a keyword index, and keyword matches on other index types.
            json!({"must": [{"key": "kw", "match": {"prefix": "re"}}]}),
            json!({"must": [{"key": "kw", "match": {"except": ["red"]}}]}),
            json!({"must": [{"key": "txt", "match": {"value": "red"}}]}),
            json!({"must": [{"key": "u", "match": {"value": UUIDS[0]}}]}),
            json!({"must": [{"key": "num", "match": {"value": 2}}]}),
            json!({"must": [{"key": "flag", "match": {"value": true}}]}),
            json!({"must": [{"nested": {"key": "items", "filter": {"must": [{"key": "sku", "match": {"value": "red"}}]}}}]}),
            json!({"must": [{"must": [{"key": "kw", "match": {"value": "red"}}]}]}),
        ] {
            let filter = Filter::from_json(&json).unwrap();
            assert!(
                !filter.indexed_candidates_exact(&indexes),
                "seed {seed}: {json} called exact"
            );
        }
    }
}
