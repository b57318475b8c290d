//! Hand-computed cases for every condition kind.

use index_core::PointId;
use payload::{Filter, PlainPoint};
use serde_json::json;

use crate::{holds, payload, point};

fn field(key: &str, condition: serde_json::Value) -> serde_json::Value {
    let mut c = condition.as_object().unwrap().clone();
    c.insert("key".into(), json!(key));
    json!({ "must": [c] })
}

#[test]
fn match_value_keeps_types_apart_and_reads_arrays() {
    let m = |v: serde_json::Value| field("a", json!({"match": {"value": v}}));
    assert!(holds(m(json!("x")), json!({"a": "x"})));
    assert!(!holds(m(json!("x")), json!({"a": "X"})));
    assert!(holds(m(json!("x")), json!({"a": ["y", "x"]})));
    assert!(
        !holds(m(json!("x")), json!({"a": [["x"]]})),
        "only one level is flattened"
    );
    assert!(holds(m(json!(1)), json!({"a": 1})));
    assert!(
        !holds(m(json!(1)), json!({"a": 1.0})),
        "a float is not an integer"
    );
    assert!(
        !holds(m(json!(1)), json!({"a": true})),
        "a boolean is not an integer"
    );
    assert!(!holds(m(json!(true)), json!({"a": 1})));
    assert!(holds(m(json!(true)), json!({"a": [false, true]})));
    assert!(!holds(m(json!("1")), json!({"a": 1})));
    assert!(holds(
        m(json!(-9_223_372_036_854_775_808i64)),
        json!({"a": i64::MIN})
    ));
    assert!(!holds(m(json!(1)), json!({"b": 1})));
    assert!(!holds(m(json!(1)), json!({"a": null})));
}

#[test]
fn match_any_and_except() {
    let any = |v: serde_json::Value| field("a", json!({"match": {"any": v}}));
    let except = |v: serde_json::Value| field("a", json!({"match": {"except": v}}));
    assert!(holds(any(json!(["x", "y"])), json!({"a": "y"})));
    assert!(holds(any(json!(["x", "y"])), json!({"a": ["z", "x"]})));
    assert!(!holds(any(json!(["x", "y"])), json!({"a": "z"})));
    assert!(holds(any(json!([1, 2])), json!({"a": 2})));
    assert!(!holds(any(json!([1, 2])), json!({"a": 2.0})));
    assert!(!holds(any(json!([])), json!({"a": "x"})));

    assert!(holds(except(json!(["x"])), json!({"a": "y"})));
    assert!(!holds(except(json!(["x"])), json!({"a": "x"})));
    // Any one value outside the list is enough.
    assert!(holds(except(json!(["x"])), json!({"a": ["x", "y"]})));
    assert!(!holds(except(json!(["x", "y"])), json!({"a": ["x", "y"]})));
    // Values of another type are outside the list.
    assert!(holds(except(json!([1])), json!({"a": true})));
    assert!(holds(except(json!([1])), json!({"a": 1.0})));
    // A missing key, null, or an empty array has no value to be outside the list.
    assert!(!holds(except(json!(["x"])), json!({})));
    assert!(!holds(except(json!(["x"])), json!({"a": null})));
    assert!(!holds(except(json!(["x"])), json!({"a": []})));
    assert!(holds(except(json!([])), json!({"a": "anything"})));
}

#[test]
fn full_text_prefix_and_substring() {
    let m = |kind: &str, q: &str| field("t", json!({"match": {kind: q}}));
    let doc = json!({"t": "The quick, brown_fox jumps"});
    assert!(
        holds(m("text", "QUICK the"), doc.clone()),
        "all tokens, any order, any case"
    );
    assert!(!holds(m("text", "quick cat"), doc.clone()));
    assert!(!holds(m("text", "qui"), doc.clone()), "whole tokens only");
    assert!(holds(m("text", "fox"), doc.clone()), "`_` separates tokens");
    assert!(
        !holds(m("text", ""), doc.clone()),
        "an empty query matches nothing"
    );
    assert!(!holds(m("text", " ,; "), doc.clone()));
    assert!(holds(m("text_any", "cat fox"), doc.clone()));
    assert!(!holds(m("text_any", "cat dog"), doc.clone()));
    assert!(holds(m("phrase", "brown fox"), doc.clone()));
    assert!(!holds(m("phrase", "fox brown"), doc.clone()));
    assert!(!holds(m("phrase", ""), doc.clone()));
    assert!(holds(m("prefix", "The q"), doc.clone()));
    assert!(
        !holds(m("prefix", "the"), doc.clone()),
        "prefix is case-sensitive"
    );
    assert!(holds(m("prefix", ""), doc.clone()));
    assert!(
        !holds(m("prefix", ""), json!({"t": 5})),
        "non-strings never match a prefix"
    );
    assert!(holds(m("substring", "brown_f"), doc.clone()));
    assert!(!holds(m("substring", "Brown"), doc));
    assert!(holds(
        m("text", "été"),
        json!({"t": ["nothing", "Un ÉTÉ chaud"]})
    ));
}

#[test]
fn numeric_range() {
    let r = |b: serde_json::Value| field("n", json!({ "range": b }));
    assert!(holds(r(json!({"gt": 1, "lt": 3})), json!({"n": 2})));
    assert!(holds(r(json!({"gt": 1, "lt": 3})), json!({"n": 2.5})));
    assert!(!holds(r(json!({"gt": 1, "lt": 3})), json!({"n": 3})));
    assert!(holds(r(json!({"gte": 1, "lte": 3})), json!({"n": 3})));
    assert!(
        holds(r(json!({"gte": 1.5})), json!({"n": [0, 2]})),
        "any element"
    );
    assert!(!holds(r(json!({"gte": 1.5})), json!({"n": [0, 1]})));
    assert!(
        !holds(r(json!({"gte": 0})), json!({"n": true})),
        "booleans are not numbers"
    );
    assert!(
        !holds(r(json!({"gte": 0})), json!({"n": "5"})),
        "strings are not numbers"
    );
    assert!(!holds(r(json!({"gte": 0})), json!({"n": null})));
    assert!(
        holds(r(json!({})), json!({"n": -1})),
        "no bounds: any number"
    );
    assert!(!holds(r(json!({})), json!({"n": "x"})));
    // Integers compare exactly against float bounds.
    assert!(holds(
        r(json!({"gt": 9_007_199_254_740_992.0})),
        json!({"n": 9_007_199_254_740_993u64})
    ));
    assert!(holds(
        r(json!({"lt": 18_446_744_073_709_551_616.0})),
        json!({"n": u64::MAX})
    ));
    assert!(!holds(
        r(json!({"gte": 18_446_744_073_709_551_616.0})),
        json!({"n": u64::MAX})
    ));
    // Each value must meet every bound by itself.
    assert!(!holds(r(json!({"gt": 5, "lt": 7})), json!({"n": [4, 8]})));
}

#[test]
fn datetime_range() {
    let r = |b: serde_json::Value| field("d", json!({ "range": b }));
    let after = r(json!({"gt": "2021-03-04T05:00:00Z"}));
    assert!(holds(after.clone(), json!({"d": "2021-03-04T05:00:01Z"})));
    assert!(
        holds(after.clone(), json!({"d": "2021-03-04T06:30:00+01:00"})),
        "offsets are honoured"
    );
    assert!(!holds(
        after.clone(),
        json!({"d": "2021-03-04T05:30:00+01:00"})
    ));
    assert!(
        !holds(after.clone(), json!({"d": "2021-03-04"})),
        "a date is midnight UTC"
    );
    assert!(!holds(after.clone(), json!({"d": "not a date"})));
    assert!(
        !holds(after.clone(), json!({"d": 1_700_000_000})),
        "numbers are not datetimes"
    );
    assert!(holds(after, json!({"d": ["bad", "2030-01-01"]})));
    let day = r(json!({"gte": "2021-03-04", "lt": "2021-03-05"}));
    assert!(holds(
        day.clone(),
        json!({"d": "2021-03-04 23:59:59.999999"})
    ));
    assert!(!holds(day.clone(), json!({"d": "2021-03-05T00:00:00"})));
    assert!(holds(day, json!({"d": "2021-03-05T00:30:00+01:00"})));
}

#[test]
fn geo_conditions() {
    let berlin = json!({"lat": 52.52, "lon": 13.405});
    let potsdam = json!({"lat": 52.3906, "lon": 13.0645});
    let paris = json!({"lat": 48.8566, "lon": 2.3522});
    // Berlin to Potsdam is about 27 km.
    let radius = |m: f64| field("g", json!({"geo_radius": {"center": berlin, "radius": m}}));
    assert!(holds(radius(30_000.0), json!({ "g": potsdam })));
    assert!(!holds(radius(20_000.0), json!({ "g": potsdam })));
    assert!(holds(radius(30_000.0), json!({"g": [paris, potsdam]})));
    assert!(
        !holds(radius(30_000.0), json!({"g": {"lat": 52.39}})),
        "not a geo point"
    );
    assert!(!holds(
        radius(30_000.0),
        json!({"g": {"lat": "52.39", "lon": 13.06}})
    ));
    assert!(holds(
        radius(1.0),
        json!({"g": {"lat": 52.52, "lon": 13.405, "name": "extra keys are fine"}})
    ));

    let bbox = |tl: (f64, f64), br: (f64, f64)| {
        field(
            "g",
            json!({"geo_bounding_box": {
            "top_left": {"lat": tl.0, "lon": tl.1}, "bottom_right": {"lat": br.0, "lon": br.1}}}),
        )
    };
    assert!(holds(
        bbox((53.0, 13.0), (52.0, 14.0)),
        json!({ "g": berlin })
    ));
    assert!(!holds(
        bbox((53.0, 13.0), (52.0, 14.0)),
        json!({ "g": paris })
    ));
    assert!(
        !holds(bbox((52.52, 13.0), (52.0, 14.0)), json!({ "g": berlin })),
        "edges are outside"
    );
    // Across the antimeridian: from 170°E eastwards to 170°W.
    let pacific = bbox((10.0, 170.0), (-10.0, -170.0));
    assert!(holds(pacific.clone(), json!({"g": {"lat": 0, "lon": 179}})));
    assert!(holds(
        pacific.clone(),
        json!({"g": {"lat": 0, "lon": -175}})
    ));
    assert!(!holds(pacific, json!({"g": {"lat": 0, "lon": 0}})));

    let square = |lo: f64, hi: f64| {
        json!({"points": [
            {"lat": lo, "lon": lo}, {"lat": lo, "lon": hi}, {"lat": hi, "lon": hi},
            {"lat": hi, "lon": lo}, {"lat": lo, "lon": lo}]})
    };
    let polygon = field(
        "g",
        json!({"geo_polygon": {"exterior": square(0.0, 10.0), "interiors": [square(4.0, 6.0)]}}),
    );
    assert!(holds(polygon.clone(), json!({"g": {"lat": 2, "lon": 2}})));
    assert!(
        !holds(polygon.clone(), json!({"g": {"lat": 5, "lon": 5}})),
        "inside the hole"
    );
    assert!(
        !holds(polygon.clone(), json!({"g": {"lat": 4, "lon": 5}})),
        "on the hole's edge"
    );
    assert!(
        !holds(polygon.clone(), json!({"g": {"lat": 0, "lon": 5}})),
        "on the exterior's edge"
    );
    assert!(!holds(polygon, json!({"g": {"lat": 11, "lon": 5}})));
}

#[test]
fn values_count_counts_values_not_elements_of_flattened_paths() {
    let c = |b: serde_json::Value| field("a", json!({ "values_count": b }));
    assert!(holds(c(json!({"gte": 3})), json!({"a": [1, 2, 3]})));
    assert!(!holds(c(json!({"gt": 3})), json!({"a": [1, 2, 3]})));
    assert!(
        holds(c(json!({"lt": 2, "gt": 0})), json!({"a": "x"})),
        "a scalar counts 1"
    );
    assert!(
        holds(c(json!({"lt": 1})), json!({})),
        "a missing key counts 0"
    );
    assert!(holds(c(json!({"lte": 0})), json!({"a": null})));
    assert!(holds(c(json!({"lte": 0})), json!({"a": []})));
    // `arr[].x` selects one value per element; each is counted on its own.
    let per_element = field("arr[].x", json!({"values_count": {"gte": 2}}));
    assert!(holds(
        per_element.clone(),
        json!({"arr": [{"x": 1}, {"x": [1, 2]}]})
    ));
    assert!(!holds(per_element, json!({"arr": [{"x": 1}, {"x": 2}]})));
    // One value must meet both bounds.
    assert!(!holds(c(json!({"gt": 2, "lt": 2})), json!({"a": [1, 2]})));
}

#[test]
fn is_empty_and_is_null() {
    let empty = json!({"must": {"is_empty": {"key": "a"}}});
    let null = json!({"must": {"is_null": {"key": "a"}}});
    for (payload, e, n) in [
        (json!({}), true, false),
        (json!({"a": null}), true, true),
        (json!({"a": []}), true, false),
        (json!({"a": [null]}), false, true),
        (json!({"a": [1, null]}), false, true),
        (json!({"a": [[null]]}), false, false),
        (json!({"a": 0}), false, false),
        (json!({"a": ""}), false, false),
        (json!({"a": {}}), false, false),
    ] {
        assert_eq!(
            holds(empty.clone(), payload.clone()),
            e,
            "is_empty {payload}"
        );
        assert_eq!(holds(null.clone(), payload.clone()), n, "is_null {payload}");
    }
    // The field-condition spelling, with a wanted value.
    assert!(holds(
        field("a", json!({"is_empty": false})),
        json!({"a": 1})
    ));
    assert!(holds(
        field("a", json!({"is_null": false})),
        json!({"a": 1})
    ));
    assert!(!holds(
        field("a", json!({"is_null": true})),
        json!({"a": 1})
    ));
    // Over several values: empty only if all are.
    let nested_empty = json!({"must": {"is_empty": {"key": "arr[].x"}}});
    assert!(holds(
        nested_empty.clone(),
        json!({"arr": [{"x": []}, {"y": 1}]})
    ));
    assert!(!holds(nested_empty, json!({"arr": [{"x": []}, {"x": 1}]})));
}

#[test]
fn has_id_has_vector_and_slice() {
    let uuid = "550e8400-e29b-41d4-a716-446655440000";
    let p = PlainPoint {
        id: PointId::parse_uuid(uuid).unwrap(),
        payload: None,
        vectors: vec!["image".into()],
    };
    let f = |v: serde_json::Value| Filter::from_json(&v).unwrap();
    assert!(f(json!({"must": {"has_id": [1, "550E8400E29B41D4A716446655440000"]}})).matches(&p));
    assert!(!f(json!({"must": {"has_id": [1, 2]}})).matches(&p));
    assert!(!f(json!({"must": {"has_id": []}})).matches(&p));
    assert!(f(json!({"must": {"has_vector": "image"}})).matches(&p));
    assert!(!f(json!({"must": {"has_vector": ""}})).matches(&p));
    assert!(f(json!({"must": {"has_id": [7]}})).matches(&point(7, json!({}))));
    // Slices split the ids into disjoint parts that cover them all.
    for id in 0..50 {
        let owners = (0..3)
            .filter(|&i| {
                f(json!({"must": {"slice": {"total": 3, "index": i}}}))
                    .matches(&point(id, json!({})))
            })
            .count();
        assert_eq!(owners, 1, "id {id}");
    }
}

#[test]
fn clauses_and_min_should() {
    let a1 = json!({"key": "a", "match": {"value": 1}});
    let b1 = json!({"key": "b", "match": {"value": 1}});
    let c1 = json!({"key": "c", "match": {"value": 1}});
    let p = json!({"a": 1, "b": 2, "c": 1});
    assert!(
        holds(json!({}), p.clone()),
        "an empty filter matches everything"
    );
    assert!(
        holds(json!({"must": a1}), p.clone()),
        "a single condition, not a list"
    );
    assert!(!holds(json!({"must": [a1, b1]}), p.clone()));
    assert!(holds(json!({"should": [a1, b1]}), p.clone()));
    assert!(!holds(json!({"should": [b1]}), p.clone()));
    assert!(
        holds(json!({"should": []}), p.clone()),
        "an empty should is no constraint"
    );
    assert!(holds(json!({"must": []}), p.clone()));
    assert!(!holds(json!({"must_not": [b1, c1]}), p.clone()));
    assert!(holds(json!({"must_not": b1}), p.clone()));
    let min = |n: u64| json!({"min_should": {"conditions": [a1, b1, c1], "min_count": n}});
    assert!(holds(min(2), p.clone()));
    assert!(!holds(min(3), p.clone()));
    assert!(!holds(
        json!({"min_should": {"conditions": [], "min_count": 1}}),
        p.clone()
    ));
    // A filter is a condition.
    assert!(holds(
        json!({"must": [{"should": [b1, c1]}, {"must_not": b1}]}),
        p.clone()
    ));
    assert!(holds(json!({"must": [{}]}), p.clone()));
    assert!(!holds(json!({"must_not": [{}]}), p));
}

#[test]
fn nested_conditions_hold_on_one_element() {
    let payload = json!({"visits": [
        {"city": "Paris", "year": 2019},
        {"city": "Berlin", "year": 2021}
    ]});
    let nested = |key: &str, inner: serde_json::Value| json!({"must": {"nested": {"key": key, "filter": inner}}});
    let paris_2021 = json!({"must": [
        {"key": "city", "match": {"value": "Paris"}},
        {"key": "year", "range": {"gte": 2021}}
    ]});
    assert!(
        !holds(nested("visits", paris_2021.clone()), payload.clone()),
        "no single element has both"
    );
    // The same conditions on flattened paths hold, on different elements.
    let flat = json!({"must": [
        {"key": "visits[].city", "match": {"value": "Paris"}},
        {"key": "visits[].year", "range": {"gte": 2021}}
    ]});
    assert!(holds(flat, payload.clone()));
    let berlin_2021 = json!({"must": [
        {"key": "city", "match": {"value": "Berlin"}},
        {"key": "year", "range": {"gte": 2021}}
    ]});
    assert!(holds(
        nested("visits", berlin_2021.clone()),
        payload.clone()
    ));
    assert!(
        holds(nested("visits[]", berlin_2021.clone()), payload.clone()),
        "`visits[]` is `visits`"
    );
    // must_not applies per element: some element is not in Paris.
    let not_paris = json!({"must_not": {"key": "city", "match": {"value": "Paris"}}});
    assert!(holds(nested("visits", not_paris.clone()), payload.clone()));
    assert!(!holds(
        nested("visits", not_paris),
        json!({"visits": [{"city": "Paris"}]})
    ));
    // Only arrays of objects have elements; has_id never holds on an element.
    assert!(!holds(
        nested("visits", json!({})),
        json!({"visits": {"city": "Berlin"}})
    ));
    assert!(!holds(
        nested("visits", json!({})),
        json!({"visits": [1, "x"]})
    ));
    assert!(holds(
        nested("visits", json!({})),
        json!({"visits": [1, {}]})
    ));
    assert!(!holds(
        nested("visits", json!({"must": {"has_id": [1]}})),
        payload.clone()
    ));
    // Nested inside nested.
    let deep = json!({"a": [{"b": [{"c": 1}, {"c": 2}]}, {"b": [{"c": 3}]}]});
    let inner = json!({"must": [{"key": "c", "range": {"gt": 2}}]});
    assert!(holds(
        nested(
            "a",
            json!({"must": {"nested": {"key": "b", "filter": inner}}})
        ),
        deep
    ));
    // A condition object with several checks uses the first in the reference's order.
    let both = json!({"must": {"key": "a", "values_count": {"gt": 5}, "match": {"value": 1}}});
    assert!(!holds(both, json!({"a": 1})));
    assert_eq!(payload.get("missing"), None);
}

#[test]
fn a_point_without_payload_is_an_empty_payload() {
    let p = PlainPoint {
        id: PointId::Num(3),
        payload: None,
        vectors: vec![],
    };
    let f = |v: serde_json::Value| Filter::from_json(&v).unwrap();
    assert!(f(json!({"must": {"is_empty": {"key": "a"}}})).matches(&p));
    assert!(!f(json!({"must": {"key": "a", "match": {"except": ["x"]}}})).matches(&p));
    assert!(f(json!({"must_not": {"key": "a", "match": {"value": "x"}}})).matches(&p));
    let with_payload = PlainPoint {
        payload: Some(payload(json!({"a": "y"}))),
        ..p
    };
    assert!(f(json!({"must": {"key": "a", "match": {"except": ["x"]}}})).matches(&with_payload));
}

#[test]
fn built_filters_equal_their_json_forms() {
    let ids = [PointId::Num(1), PointId::Num(7)];
    let kw = Filter::from_json(&field("a", json!({"match": {"value": "x"}}))).unwrap();
    assert_eq!(
        Filter::has_id(ids),
        Filter::from_json(&json!({"must": [{"has_id": [1, 7]}]})).unwrap()
    );
    assert_eq!(
        Filter::has_none_of(ids),
        Filter::from_json(&json!({"must_not": [{"has_id": [7, 1]}]})).unwrap()
    );
    let both = kw.merged(&Filter::has_none_of(ids));
    let at = |id: u64, a: &str| point(id, json!({ "a": a }));
    assert!(both.matches(&at(2, "x")));
    assert!(!both.matches(&at(7, "x")), "an id left out stays out");
    assert!(!both.matches(&at(2, "y")), "the other filter still holds");
    // Qdrant's merge: `should`s become alternatives of each other, `min_should`s pool their
    // conditions under the larger count.
    let f = |v: serde_json::Value| Filter::from_json(&v).unwrap();
    let cond = |k: &str| json!({"key": k, "match": {"value": 1}});
    assert_eq!(
        f(json!({"should": [cond("a")], "must": [cond("m")]}))
            .merged(&f(json!({"should": [cond("b")], "must_not": [cond("n")]}))),
        f(json!({"should": [cond("a"), cond("b")], "must": [cond("m")], "must_not": [cond("n")]}))
    );
    assert_eq!(
        f(json!({"min_should": {"conditions": [cond("a"), cond("b")], "min_count": 1}})).merged(
            &f(json!({"min_should": {"conditions": [cond("c")], "min_count": 2}}))
        ),
        f(json!({"min_should": {"conditions": [cond("a"), cond("b"), cond("c")], "min_count": 2}}))
    );
}
