//! Payload key paths (`a.b`, `a[].b`, `arr[0][1]`, `a."b.c"`) and the values they select.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::error::{PayloadError, Result};
use crate::Payload;

/// One step of a [`KeyPath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathItem {
    /// An object key: `a`, or `"a.b"` quoted.
    Key(String),
    /// One element of an array: `[3]`.
    Index(u64),
    /// Every element of an array: `[]`.
    Wildcard,
}

/// A parsed payload key path, as Qdrant reads the `key` of a condition, a selector entry or the
/// `key` of `set_payload`.
///
/// Grammar (the one `qdrant_client.local.json_path_parser` implements): a path is one or more
/// keys separated by `.`; a key is a run of alphanumeric characters, `_` and `-`, or any text
/// between double quotes (`"a.b"`, no escapes); each key may be followed by brackets, `[]`
/// (every element) or `[n]` (element `n`, ASCII digits). A path starts with a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyPath {
    items: Vec<PathItem>,
}

impl KeyPath {
    /// Parses a key path; malformed paths are [`PayloadError::InvalidKeyPath`] naming the fault.
    pub fn parse(s: &str) -> Result<KeyPath> {
        let fail = |reason: &str| PayloadError::InvalidKeyPath {
            path: s.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(fail("the path is empty"));
        }
        let mut items = Vec::new();
        let mut rest = s;
        loop {
            // A key, quoted or bare.
            if let Some(quoted) = rest.strip_prefix('"') {
                let end = quoted
                    .find('"')
                    .ok_or_else(|| fail("a quoted key has no closing quote"))?;
                items.push(PathItem::Key(quoted[..end].to_string()));
                rest = &quoted[end + 1..];
            } else {
                let len: usize = rest
                    .chars()
                    .take_while(|&c| is_bare_key_char(c))
                    .map(char::len_utf8)
                    .sum();
                if len == 0 {
                    return Err(fail(&format!("expected a key at `{rest}`")));
                }
                items.push(PathItem::Key(rest[..len].to_string()));
                rest = &rest[len..];
            }
            // Any number of brackets after it.
            while let Some(inner) = rest.strip_prefix('[') {
                let end = inner
                    .find(']')
                    .ok_or_else(|| fail("a `[` has no closing `]`"))?;
                let index = &inner[..end];
                if index.is_empty() {
                    items.push(PathItem::Wildcard);
                } else if index.bytes().all(|b| b.is_ascii_digit()) {
                    let n = index
                        .parse::<u64>()
                        .map_err(|_| fail(&format!("array index {index} is too large")))?;
                    items.push(PathItem::Index(n));
                } else {
                    return Err(fail(&format!(
                        "`[{index}]` is neither `[]` nor an array index"
                    )));
                }
                rest = &inner[end + 1..];
            }
            if rest.is_empty() {
                return Ok(KeyPath { items });
            }
            match rest.strip_prefix('.') {
                Some(after) if !after.is_empty() => rest = after,
                Some(_) => return Err(fail("the path ends with `.`")),
                None => return Err(fail(&format!("unexpected `{rest}` after a key"))),
            }
        }
    }

    /// The steps of the path; the first is always a [`PathItem::Key`].
    pub fn items(&self) -> &[PathItem] {
        &self.items
    }

    /// The path that selects, inside every object element of the arrays this path selects, what
    /// `inner` selects: `a` joined with `b.c` is `a[].b.c`. A nested condition on `a` with an
    /// inner condition on `b.c` reads exactly the values `a[].b.c` reads.
    pub fn join_elements(&self, inner: &KeyPath) -> KeyPath {
        let mut items = self.items.clone();
        items.push(PathItem::Wildcard);
        items.extend(inner.items.iter().cloned());
        KeyPath { items }
    }

    /// The path without one trailing `[]`, which is how a nested condition's key is read:
    /// `data` and `data[]` name the same array.
    pub(crate) fn without_trailing_wildcard(mut self) -> KeyPath {
        if self.items.len() > 1 && self.items.last() == Some(&PathItem::Wildcard) {
            self.items.pop();
        }
        self
    }
}

/// Characters a key may hold without quotes.
fn is_bare_key_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-'
}

impl FromStr for KeyPath {
    type Err = PayloadError;

    fn from_str(s: &str) -> Result<KeyPath> {
        KeyPath::parse(s)
    }
}

impl fmt::Display for KeyPath {
    /// The canonical spelling: bare keys where they can be, quoted otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, item) in self.items.iter().enumerate() {
            match item {
                PathItem::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    if !k.is_empty() && k.chars().all(is_bare_key_char) {
                        f.write_str(k)?;
                    } else {
                        write!(f, "\"{k}\"")?;
                    }
                }
                PathItem::Index(n) => write!(f, "[{n}]")?,
                PathItem::Wildcard => f.write_str("[]")?,
            }
        }
        Ok(())
    }
}

/// The values `path` selects in `payload`, with Qdrant's flattening: when the path ends on an
/// array, its elements are the values (one level only, so `[[1, 2]]` yields `[1, 2]`).
///
/// A key step reads only objects and an index or `[]` step only arrays; anything else selects
/// nothing (so `a.b` does not look inside an array `a`: that is `a[].b`). A missing key selects
/// nothing; an explicit `null` is a value.
pub fn values_at<'a>(payload: &'a Payload, path: &KeyPath) -> Vec<&'a Value> {
    let mut out = Vec::new();
    collect_from_map(payload, &path.items, true, &mut out);
    out
}

/// The values `path` selects, arrays kept whole: what `values_count`, `is_empty`, `is_null` and
/// `nested` look at.
pub fn values_at_unflattened<'a>(payload: &'a Payload, path: &KeyPath) -> Vec<&'a Value> {
    let mut out = Vec::new();
    collect_from_map(payload, &path.items, false, &mut out);
    out
}

fn collect_from_map<'a>(
    map: &'a Payload,
    items: &[PathItem],
    flat: bool,
    out: &mut Vec<&'a Value>,
) {
    // A path always starts with a key, and a payload is an object.
    if let Some((PathItem::Key(k), rest)) = items.split_first() {
        if let Some(v) = map.get(k) {
            collect(v, rest, flat, out);
        }
    }
}

fn collect<'a>(value: &'a Value, items: &[PathItem], flat: bool, out: &mut Vec<&'a Value>) {
    let Some((first, rest)) = items.split_first() else {
        match value {
            Value::Array(elements) if flat => out.extend(elements.iter()),
            _ => out.push(value),
        }
        return;
    };
    match (first, value) {
        (PathItem::Key(_), Value::Object(map)) => collect_from_map(map, items, flat, out),
        (PathItem::Index(i), Value::Array(elements)) => {
            if let Some(v) = usize::try_from(*i).ok().and_then(|i| elements.get(i)) {
                collect(v, rest, flat, out);
            }
        }
        (PathItem::Wildcard, Value::Array(elements)) => {
            for v in elements {
                collect(v, rest, flat, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_round_trips() {
        for s in [
            "a",
            "a.b",
            "a[].b",
            "arr[0][1]",
            "arr[]",
            "a.\"b.c\"",
            "\"\".x",
            "é-_1",
        ] {
            let p = KeyPath::parse(s).unwrap();
            assert_eq!(KeyPath::parse(&p.to_string()).unwrap(), p, "{s}");
        }
        assert_eq!(KeyPath::parse("\"a\"").unwrap().to_string(), "a");
    }
}
