use payload::{
    values_at, values_at_unflattened, KeyPath, PathItem, PayloadError, PayloadErrorKind,
};
use serde_json::json;

use crate::payload;

fn items(s: &str) -> Vec<PathItem> {
    KeyPath::parse(s).unwrap().items().to_vec()
}

fn key(k: &str) -> PathItem {
    PathItem::Key(k.to_string())
}

#[test]
fn every_path_form_parses() {
    assert_eq!(items("a"), [key("a")]);
    assert_eq!(items("a.b"), [key("a"), key("b")]);
    assert_eq!(items("a[].b"), [key("a"), PathItem::Wildcard, key("b")]);
    assert_eq!(items("arr[0]"), [key("arr"), PathItem::Index(0)]);
    assert_eq!(
        items("arr[0][1]"),
        [key("arr"), PathItem::Index(0), PathItem::Index(1)]
    );
    assert_eq!(items("arr[]"), [key("arr"), PathItem::Wildcard]);
    assert_eq!(items("a.\"b.c\""), [key("a"), key("b.c")]);
    assert_eq!(
        items("\"a b\"[2].c-d_e"),
        [key("a b"), PathItem::Index(2), key("c-d_e")]
    );
    assert_eq!(items("ключ.été"), [key("ключ"), key("été")]);
    assert_eq!(items("a[007]"), [key("a"), PathItem::Index(7)]);
    assert_eq!(
        items(&format!("a[{}]", u64::MAX)),
        [key("a"), PathItem::Index(u64::MAX)]
    );
}

#[test]
fn malformed_paths_are_typed_errors() {
    for bad in [
        "",
        ".",
        "a.",
        ".a",
        "a..b",
        "a[",
        "a[x]",
        "a[-1]",
        "a[ 1]",
        "[0]",
        "[]",
        "a b",
        "a.[0]",
        "\"a",
        "a\"b\"",
        "\"a\"b",
        "a]",
        "a[18446744073709551616]",
        "a.b.",
    ] {
        let err = KeyPath::parse(bad).unwrap_err();
        assert_eq!(err.kind(), PayloadErrorKind::InvalidInput);
        match err {
            PayloadError::InvalidKeyPath { path, .. } => assert_eq!(path, bad),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

#[test]
fn values_flatten_one_trailing_array_level() {
    let p = payload(json!({
        "a": [1, [2, 3], {"b": 4}],
        "obj": {"x": 5, "l": [[6, 7], 8]},
        "arr": [{"x": 1}, {"x": [2, 3]}, {"y": 9}, 10, {"x": null}],
        "nested": [[{"x": 1}]],
        "a.b": "dotted"
    }));
    let at = |s: &str| {
        values_at(&p, &KeyPath::parse(s).unwrap())
            .into_iter()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(at("a"), [json!(1), json!([2, 3]), json!({"b": 4})]);
    assert_eq!(at("a[]"), [json!(1), json!(2), json!(3), json!({"b": 4})]);
    assert_eq!(at("a[1]"), [json!(2), json!(3)]);
    assert_eq!(at("a[1][0]"), [json!(2)]);
    assert_eq!(at("a[9]"), Vec::<serde_json::Value>::new());
    // A key step does not look inside arrays.
    assert!(at("a.b").is_empty());
    assert_eq!(at("a[].b"), [json!(4)]);
    assert_eq!(at("obj.x"), [json!(5)]);
    assert_eq!(at("obj.l"), [json!([6, 7]), json!(8)]);
    assert_eq!(at("obj.l[]"), [json!(6), json!(7), json!(8)]);
    assert_eq!(at("arr[].x"), [json!(1), json!(2), json!(3), json!(null)]);
    assert_eq!(at("arr[1].x"), [json!(2), json!(3)]);
    assert_eq!(at("nested[][].x"), [json!(1)]);
    assert_eq!(at("\"a.b\""), [json!("dotted")]);
    assert!(at("missing").is_empty());

    let raw = |s: &str| {
        values_at_unflattened(&p, &KeyPath::parse(s).unwrap())
            .into_iter()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(raw("a"), [json!([1, [2, 3], {"b": 4}])]);
    assert_eq!(raw("arr[].x"), [json!(1), json!([2, 3]), json!(null)]);
}

#[test]
fn nested_joins_build_the_element_path() {
    let outer = KeyPath::parse("a.b").unwrap();
    let inner = KeyPath::parse("c[0].\"d.e\"").unwrap();
    assert_eq!(
        outer.join_elements(&inner).to_string(),
        "a.b[].c[0].\"d.e\""
    );
}
