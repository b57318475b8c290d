//! `with_payload` selectors, `set_payload` and `delete_payload`.

use payload::{delete_keys, set_payload, KeyPath, PayloadSelector};
use serde_json::{json, Value};

use crate::payload;

fn select(selector: Value, on: Value) -> Value {
    let selector = PayloadSelector::from_json(&selector).unwrap();
    selector
        .apply(&payload(on))
        .map_or(Value::Null, Value::Object)
}

#[test]
fn selector_forms() {
    let p = json!({"a": {"b": 1, "c": 2}, "aa": {"b": 3}, "a.b": 4, "l": [{"b": 5, "c": 6}, 7]});
    assert_eq!(select(json!(true), p.clone()), p);
    assert_eq!(select(json!(false), p.clone()), Value::Null);
    assert_eq!(
        select(json!([]), p.clone()),
        json!({}),
        "an empty list selects no field"
    );
    assert_eq!(select(json!(["a.b"]), p.clone()), json!({"a": {"b": 1}}));
    assert_eq!(
        select(json!({"include": ["\"a.b\"", "l[].c"]}), p.clone()),
        json!({"a.b": 4, "l": [{"c": 6}, 7]})
    );
    assert_eq!(
        select(json!({"exclude": ["a", "l[].b"]}), p.clone()),
        json!({"aa": {"b": 3}, "a.b": 4, "l": [{"c": 6}, 7]})
    );
    assert_eq!(
        select(json!(["a", "a.b"]), p.clone()),
        json!({"a": {"b": 1, "c": 2}}),
        "a shorter path wins"
    );
    assert_eq!(
        select(json!(["a.b", "a"]), p.clone()),
        json!({"a": {"b": 1, "c": 2}})
    );
    // Inside arrays only `[]` selects; an index selects nothing, and a key path keeps `[]`.
    assert_eq!(select(json!(["l[0]"]), p.clone()), json!({"l": []}));
    assert_eq!(select(json!(["l.b"]), p.clone()), json!({"l": []}));
    assert_eq!(
        select(json!(["l[]"]), p.clone()),
        json!({"l": [{"b": 5, "c": 6}, 7]})
    );
    assert_eq!(
        select(json!({"exclude": ["l[]"]}), p.clone()),
        json!({"a": {"b": 1, "c": 2}, "aa": {"b": 3}, "a.b": 4, "l": []})
    );
    // A path through a scalar keeps the scalar.
    assert_eq!(select(json!(["a.b.c"]), p.clone()), json!({"a": {"b": 1}}));
    assert_eq!(select(json!(["missing", "a.missing"]), p), json!({"a": {}}));
}

fn set(on: Value, new: Value, key: Option<&str>) -> Value {
    let mut target = payload(on);
    let key = key.map(|k| KeyPath::parse(k).unwrap());
    set_payload(&mut target, &payload(new), key.as_ref()).unwrap();
    Value::Object(target)
}

#[test]
fn set_payload_merges_and_null_removes() {
    assert_eq!(
        set(json!({"a": 1, "b": 2}), json!({"b": 3, "c": 4}), None),
        json!({"a": 1, "b": 3, "c": 4})
    );
    assert_eq!(
        set(json!({"a": 1, "b": 2}), json!({"a": null}), None),
        json!({"b": 2})
    );
    assert_eq!(
        set(json!({"a": {"x": 1}}), json!({"a": {"y": 2}}), None),
        json!({"a": {"y": 2}}),
        "the merge is one level deep"
    );
}

#[test]
fn set_payload_into_a_nested_path() {
    let into = |on: Value, key: &str| set(on, json!({"k": 1}), Some(key));
    assert_eq!(
        into(json!({"a": {"x": 0}}), "a"),
        json!({"a": {"x": 0, "k": 1}})
    );
    assert_eq!(
        into(json!({}), "a.b"),
        json!({"a": {"b": {"k": 1}}}),
        "missing objects are created"
    );
    assert_eq!(
        into(json!({"a": 5}), "a.b"),
        json!({"a": {"b": {"k": 1}}}),
        "a scalar on the way is replaced"
    );
    assert_eq!(into(json!({"a": 5}), "a"), json!({"a": {"k": 1}}));
    assert_eq!(
        into(json!({"a": [{"x": 0}, 3, {"y": 1}]}), "a[]"),
        json!({"a": [{"x": 0, "k": 1}, {"k": 1}, {"y": 1, "k": 1}]})
    );
    assert_eq!(
        into(json!({"a": [{"x": 0}, {"y": 1}]}), "a[1]"),
        json!({"a": [{"x": 0}, {"y": 1, "k": 1}]})
    );
    assert_eq!(
        into(json!({"a": [{"x": 0}]}), "a[5]"),
        json!({"a": [{"x": 0}]}),
        "past the end: nothing"
    );
    assert_eq!(
        into(json!({"a": {"x": 0}}), "a[0]"),
        json!({"a": []}),
        "an index on a non-array empties it"
    );
    assert_eq!(into(json!({"a": {"x": 0}}), "a[].b"), json!({"a": []}));
    assert_eq!(
        into(json!({"a": [{"b": [{"c": 1}]}, {"b": 2}]}), "a[].b[0]"),
        json!({"a": [{"b": [{"c": 1, "k": 1}]}, {"b": []}]})
    );
    assert_eq!(
        set(
            json!({"a": {"x": 0, "k": 5}}),
            json!({"k": null}),
            Some("a")
        ),
        json!({"a": {"x": 0}}),
        "a null removes the key at the nested path too"
    );
    assert_eq!(
        into(json!({}), "\"a.b\".c"),
        json!({"a.b": {"c": {"k": 1}}})
    );
}

fn delete(on: Value, keys: &[&str]) -> Value {
    let mut target = payload(on);
    let keys: Vec<KeyPath> = keys.iter().map(|k| KeyPath::parse(k).unwrap()).collect();
    delete_keys(&mut target, &keys);
    Value::Object(target)
}

#[test]
fn delete_keys_follows_paths() {
    let p =
        json!({"a": 1, "b": {"c": 2, "d": 3}, "l": [{"x": 1, "y": 2}, {"x": 3}, 4], "n": [1, 2]});
    assert_eq!(
        delete(p.clone(), &["a"]),
        json!({"b": {"c": 2, "d": 3}, "l": [{"x": 1, "y": 2}, {"x": 3}, 4], "n": [1, 2]})
    );
    assert_eq!(
        delete(p.clone(), &["b.c", "missing", "b.missing.deep"]),
        json!({"a": 1, "b": {"d": 3}, "l": [{"x": 1, "y": 2}, {"x": 3}, 4], "n": [1, 2]})
    );
    assert_eq!(
        delete(p.clone(), &["l[].x"]),
        json!({"a": 1, "b": {"c": 2, "d": 3}, "l": [{"y": 2}, {}, 4], "n": [1, 2]})
    );
    assert_eq!(
        delete(p.clone(), &["l[0].y"]),
        json!({"a": 1, "b": {"c": 2, "d": 3}, "l": [{"x": 1}, {"x": 3}, 4], "n": [1, 2]})
    );
    assert_eq!(
        delete(p.clone(), &["n[]"]),
        json!({"a": 1, "b": {"c": 2, "d": 3}, "l": [{"x": 1, "y": 2}, {"x": 3}, 4], "n": []})
    );
    assert_eq!(
        delete(p.clone(), &["n[0]"]),
        p,
        "a trailing index deletes nothing"
    );
    assert_eq!(
        delete(p.clone(), &["a.b"]),
        p,
        "a path through a scalar deletes nothing"
    );
}
