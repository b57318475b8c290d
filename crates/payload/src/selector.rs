//! `with_payload`: which parts of a payload a response carries.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::{json_type, PayloadError, Result};
use crate::key_path::{KeyPath, PathItem};
use crate::Payload;

/// Qdrant's `with_payload`: `true` | `false` | `[key]` | `{"include": [key]}` |
/// `{"exclude": [key]}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadSelector {
    /// The whole payload (`true`).
    All,
    /// No payload at all (`false`): the response field is `null`.
    Nothing,
    /// Only these paths (`[key]` or `{"include": [key]}`); an empty list gives `{}`.
    Include(Vec<KeyPath>),
    /// Everything but these paths.
    Exclude(Vec<KeyPath>),
}

impl PayloadSelector {
    /// Reads a `with_payload` value. `null` is an error: an absent selector means a different
    /// default per endpoint, which the caller knows and this crate does not.
    pub fn from_json(v: &Value) -> Result<PayloadSelector> {
        let fail = |reason: String| PayloadError::InvalidSelector { reason };
        let keys = |v: &Value, what: &str| -> Result<Vec<KeyPath>> {
            let Value::Array(items) = v else {
                return Err(fail(format!(
                    "`{what}` must be an array of keys, got {}",
                    json_type(v)
                )));
            };
            items
                .iter()
                .map(|item| match item {
                    Value::String(s) => KeyPath::parse(s).map_err(|e| fail(e.to_string())),
                    other => Err(fail(format!(
                        "a payload key must be a string, got {}",
                        json_type(other)
                    ))),
                })
                .collect()
        };
        match v {
            Value::Bool(true) => Ok(PayloadSelector::All),
            Value::Bool(false) => Ok(PayloadSelector::Nothing),
            Value::Array(_) => keys(v, "with_payload").map(PayloadSelector::Include),
            Value::Object(obj) if obj.len() == 1 && obj.contains_key("include") => {
                keys(&obj["include"], "include").map(PayloadSelector::Include)
            }
            Value::Object(obj) if obj.len() == 1 && obj.contains_key("exclude") => {
                keys(&obj["exclude"], "exclude").map(PayloadSelector::Exclude)
            }
            Value::Object(_) => Err(fail(
                "expected exactly one of `include` or `exclude`".into(),
            )),
            other => Err(fail(format!(
                "expected a boolean, an array of keys, {{include}} or {{exclude}}, got {}",
                json_type(other)
            ))),
        }
    }

    /// The part of `payload` to return; `None` for [`PayloadSelector::Nothing`].
    ///
    /// Selected paths keep their nesting (`a.b` of `{"a": {"b": 1, "c": 2}}` is
    /// `{"a": {"b": 1}}`). Inside arrays only `[]` selects: an included `a[].b` keeps `b` in each
    /// element, an included `a.b` where `a` is an array keeps `a` as `[]`, and an index such as
    /// `a[0]` selects nothing, as in Qdrant.
    pub fn apply(&self, payload: &Payload) -> Option<Payload> {
        match self {
            PayloadSelector::All => Some(payload.clone()),
            PayloadSelector::Nothing => None,
            PayloadSelector::Include(keys) => Some(include_map(payload, &selector_tree(keys))),
            PayloadSelector::Exclude(keys) => Some(exclude_map(payload, &selector_tree(keys))),
        }
    }
}

/// A prefix tree of the selected paths; a leaf selects everything below it.
enum Node {
    All,
    Children(Tree),
}

type Tree = BTreeMap<PathItem, Node>;

fn selector_tree(keys: &[KeyPath]) -> Tree {
    let mut root = Tree::new();
    'keys: for key in keys {
        let Some((last, parents)) = key.items().split_last() else {
            continue;
        };
        let mut node = &mut root;
        for part in parents {
            match node
                .entry(part.clone())
                .or_insert_with(|| Node::Children(Tree::new()))
            {
                // A shorter path already selects everything below.
                Node::All => continue 'keys,
                Node::Children(children) => node = children,
            }
        }
        node.insert(last.clone(), Node::All);
    }
    root
}

fn include_map(map: &Map<String, Value>, tree: &Tree) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in map {
        match tree.get(&PathItem::Key(k.clone())) {
            None => {}
            Some(Node::All) => {
                out.insert(k.clone(), v.clone());
            }
            Some(Node::Children(sub)) => {
                out.insert(k.clone(), include_value(v, sub));
            }
        }
    }
    out
}

fn include_value(v: &Value, tree: &Tree) -> Value {
    match v {
        Value::Object(map) => Value::Object(include_map(map, tree)),
        Value::Array(items) => match tree.get(&PathItem::Wildcard) {
            None => Value::Array(Vec::new()),
            Some(Node::All) => v.clone(),
            Some(Node::Children(sub)) => {
                Value::Array(items.iter().map(|item| include_value(item, sub)).collect())
            }
        },
        scalar => scalar.clone(),
    }
}

fn exclude_map(map: &Map<String, Value>, tree: &Tree) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in map {
        match tree.get(&PathItem::Key(k.clone())) {
            None => {
                out.insert(k.clone(), v.clone());
            }
            Some(Node::All) => {}
            Some(Node::Children(sub)) => {
                out.insert(k.clone(), exclude_value(v, sub));
            }
        }
    }
    out
}

fn exclude_value(v: &Value, tree: &Tree) -> Value {
    match v {
        Value::Object(map) => Value::Object(exclude_map(map, tree)),
        Value::Array(items) => match tree.get(&PathItem::Wildcard) {
            None => v.clone(),
            Some(Node::All) => Value::Array(Vec::new()),
            Some(Node::Children(sub)) => {
                Value::Array(items.iter().map(|item| exclude_value(item, sub)).collect())
            }
        },
        scalar => scalar.clone(),
    }
}
