//! Payload writes: `set_payload` (merge, optionally into a nested path) and `delete_payload`.

use serde_json::{Map, Value};

use crate::error::Result;
use crate::key_path::{KeyPath, PathItem};
use crate::Payload;

/// Qdrant's `set_payload`: merges `new` into `target`, key by key; a `null` in `new` removes
/// that key.
///
/// With `key`, the merge happens at that path instead, creating objects on the way: a missing
/// or non-object step becomes an object, `[n]` writes into element `n` if there is one, `[]`
/// into every element (each gets its own copy), and an index or `[]` step on something that is
/// not an array replaces it with `[]`, as Qdrant does. Element `n` past the end is left alone.
///
/// Every [`KeyPath`] can be written, so this never fails today; the `Result` is the contract
/// storage codes against.
pub fn set_payload(target: &mut Payload, new: &Payload, key: Option<&KeyPath>) -> Result<()> {
    match key.map(KeyPath::items) {
        None | Some([]) => merge_map(target, new),
        Some([PathItem::Key(first), rest @ ..]) => {
            let slot = target
                .entry(first.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            set_at(slot, rest, new);
        }
        // A parsed path starts with a key; a path that does not selects nothing to write.
        Some(_) => {}
    }
    Ok(())
}

/// Merge like Qdrant's `merge_map`: each key of `source` replaces the one in `dest`, and a
/// `null` removes it.
fn merge_map(dest: &mut Map<String, Value>, source: &Map<String, Value>) {
    for (k, v) in source {
        if v.is_null() {
            dest.remove(k);
        } else {
            dest.insert(k.clone(), v.clone());
        }
    }
}

/// Writes `new` at `rest` below `slot`, the value the previous step reached.
fn set_at(slot: &mut Value, rest: &[PathItem], new: &Payload) {
    let Some((step, after)) = rest.split_first() else {
        // The path ends here: merge into the object, or replace what is not an object.
        match slot {
            Value::Object(map) => merge_map(map, new),
            other => {
                let mut fresh = Map::new();
                merge_map(&mut fresh, new);
                *other = Value::Object(fresh);
            }
        }
        return;
    };
    match step {
        PathItem::Key(k) => {
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            if let Value::Object(map) = slot {
                let next = map
                    .entry(k.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                set_at(next, after, new);
            }
        }
        PathItem::Index(i) => match slot {
            Value::Array(items) => {
                if let Some(item) = usize::try_from(*i).ok().and_then(|i| items.get_mut(i)) {
                    set_at(item, after, new);
                }
            }
            other => *other = Value::Array(Vec::new()),
        },
        PathItem::Wildcard => match slot {
            Value::Array(items) => {
                for item in items {
                    set_at(item, after, new);
                }
            }
            other => *other = Value::Array(Vec::new()),
        },
    }
}

/// Qdrant's `delete_payload`: removes each path's values. A key at the end removes it from the
/// object holding it, a trailing `[]` empties the array, and a trailing index deletes nothing
/// (deleting by position is not idempotent). Paths that select nothing are ignored.
pub fn delete_keys(target: &mut Payload, keys: &[KeyPath]) {
    for key in keys {
        if let Some((PathItem::Key(first), rest)) = key.items().split_first() {
            if rest.is_empty() {
                target.remove(first);
            } else if let Some(v) = target.get_mut(first) {
                delete_at(v, rest);
            }
        }
    }
}

fn delete_at(v: &mut Value, rest: &[PathItem]) {
    let Some((step, after)) = rest.split_first() else {
        return;
    };
    if after.is_empty() {
        match (step, v) {
            (PathItem::Key(k), Value::Object(map)) => {
                map.remove(k);
            }
            (PathItem::Wildcard, Value::Array(items)) => items.clear(),
            _ => {}
        }
        return;
    }
    match (step, v) {
        (PathItem::Key(k), Value::Object(map)) => {
            if let Some(next) = map.get_mut(k) {
                delete_at(next, after);
            }
        }
        (PathItem::Index(i), Value::Array(items)) => {
            if let Some(next) = usize::try_from(*i).ok().and_then(|i| items.get_mut(i)) {
                delete_at(next, after);
            }
        }
        (PathItem::Wildcard, Value::Array(items)) => {
            for next in items {
                delete_at(next, after);
            }
        }
        _ => {}
    }
}
