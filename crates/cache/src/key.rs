//! Canonical request keys.
//!
//! # Byte layout
//!
//! A key is a sequence of parts. Each part is
//!
//! | bytes | content                                        |
//! |-------|------------------------------------------------|
//! | 1     | tag: `S` string, `U` u64, `F` f32s, `J` JSON   |
//! | 8     | payload length in bytes, little-endian `u64`    |
//! | n     | payload                                        |
//!
//! Because every part carries its tag and its length, a key decodes into
//! exactly one sequence of parts: `push_str("ab"); push_str("c")` and
//! `push_str("a"); push_str("bc")` give different bytes, as do a string
//! and a number with the same bytes.
//!
//! Payloads: a string is its UTF-8 bytes; a `u64` is its 8 little-endian
//! bytes; `f32`s are their bit patterns, little-endian (so `0.0` and `-0.0`
//! are different keys: a harmless miss, never a wrong hit); JSON is its
//! canonical text (see [`KeyBuilder::push_json`]).

use serde_json::Value;

const TAG_STR: u8 = b'S';
const TAG_U64: u8 = b'U';
const TAG_F32S: u8 = b'F';
const TAG_JSON: u8 = b'J';

/// Builds the bytes of a request key part by part (layout in the module
/// documentation above).
///
/// The router pushes everything an answer depends on (endpoint, vector,
/// filter, limit, parameters) and passes [`finish`](KeyBuilder::finish)'s
/// bytes to [`ResultCache`](crate::ResultCache).
///
/// ```
/// use cache::KeyBuilder;
/// use serde_json::json;
///
/// let mut a = KeyBuilder::new();
/// a.push_str("query").push_f32s(&[0.5, 1.0]).push_json(&json!({"limit": 3, "filter": null}));
/// let mut b = KeyBuilder::new();
/// b.push_str("query").push_f32s(&[0.5, 1.0]).push_json(&json!({"filter": null, "limit": 3}));
/// // Object key order does not matter...
/// assert_eq!(a.finish(), b.finish());
///
/// // ...but where one part ends and the next begins does.
/// let mut c = KeyBuilder::new();
/// c.push_str("ab").push_str("c");
/// let mut d = KeyBuilder::new();
/// d.push_str("a").push_str("bc");
/// assert_ne!(c.finish(), d.finish());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyBuilder {
    bytes: Vec<u8>,
}

impl KeyBuilder {
    /// An empty key.
    pub fn new() -> Self {
        KeyBuilder::default()
    }

    /// An empty key with room for `capacity` bytes, for callers that know
    /// the size (a query vector dominates it).
    pub fn with_capacity(capacity: usize) -> Self {
        KeyBuilder {
            bytes: Vec::with_capacity(capacity),
        }
    }

    /// Appends a string part.
    pub fn push_str(&mut self, value: &str) -> &mut Self {
        self.push_part(TAG_STR, value.as_bytes())
    }

    /// Appends an integer part.
    pub fn push_u64(&mut self, value: u64) -> &mut Self {
        self.push_part(TAG_U64, &value.to_le_bytes())
    }

    /// Appends a part holding the bit patterns of `values`, in order.
    pub fn push_f32s(&mut self, values: &[f32]) -> &mut Self {
        self.start_part(TAG_F32S, std::mem::size_of_val(values));
        for value in values {
            self.bytes.extend_from_slice(&value.to_bits().to_le_bytes());
        }
        self
    }

    /// Appends a part holding `value` as canonical JSON text: compact (no
    /// whitespace), object members sorted by key (byte order), strings
    /// escaped one fixed way, numbers as serde_json prints them.
    ///
    /// The sort is done here rather than relying on `serde_json::Map` being
    /// a `BTreeMap`: any crate in the build enabling serde_json's
    /// `preserve_order` feature would silently turn it into an insertion-
    /// ordered map, and two equal filters would stop sharing answers.
    ///
    /// Numbers are kept as written: `10` and `10.0` give different keys, a
    /// miss where a hit was possible but never a wrong answer.
    pub fn push_json(&mut self, value: &Value) -> &mut Self {
        let mut text = Vec::new();
        write_canonical_json(value, &mut text);
        self.push_part(TAG_JSON, &text)
    }

    /// The key bytes built so far, without consuming the builder.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The finished key.
    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }

    fn push_part(&mut self, tag: u8, payload: &[u8]) -> &mut Self {
        self.start_part(tag, payload.len());
        self.bytes.extend_from_slice(payload);
        self
    }

    fn start_part(&mut self, tag: u8, payload_len: usize) {
        self.bytes.reserve(1 + 8 + payload_len);
        self.bytes.push(tag);
        // usize fits in u64 on every platform Rust supports.
        self.bytes
            .extend_from_slice(&(payload_len as u64).to_le_bytes());
    }
}

/// Writes `value` as canonical JSON (see [`KeyBuilder::push_json`]).
///
/// Recursive: values parsed by serde_json are at most 128 levels deep, so
/// the stack stays small for anything that arrived over the network.
fn write_canonical_json(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => out.extend_from_slice(number.to_string().as_bytes()),
        Value::String(text) => write_json_string(text, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical_json(item, out);
            }
            out.push(b']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, member)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_string(key, out);
                out.push(b':');
                write_canonical_json(member, out);
            }
            out.push(b'}');
        }
    }
}

/// Writes a JSON string literal: `"` and `\` escaped with a backslash,
/// control characters as `\u00XX`, everything else as its UTF-8 bytes.
fn write_json_string(text: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &byte in text.as_bytes() {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x00..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0x0f)]);
            }
            _ => out.push(byte),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn canonical(value: &Value) -> String {
        let mut out = Vec::new();
        write_canonical_json(value, &mut out);
        String::from_utf8(out).expect("canonical JSON is UTF-8")
    }

    #[test]
    fn canonical_json_sorts_nested_keys_and_is_valid_json() {
        let value = json!({"b": [1, {"z": true, "a": null}], "a": "x\"\\\n\u{1}é", "c": 1.5});
        let text = canonical(&value);
        assert_eq!(
            text,
            r#"{"a":"x\"\\\u000a\u0001é","b":[1,{"a":null,"z":true}],"c":1.5}"#
        );
        // The canonical text parses back to the same value.
        let parsed: Value = serde_json::from_str(&text).expect("canonical text parses");
        assert_eq!(parsed, value);
    }

    #[test]
    fn part_layout_is_tag_length_payload() {
        let mut key = KeyBuilder::new();
        key.push_str("ab").push_u64(7).push_f32s(&[1.0]);
        let bytes = key.finish();
        let mut expected = vec![b'S'];
        expected.extend_from_slice(&2u64.to_le_bytes());
        expected.extend_from_slice(b"ab");
        expected.push(b'U');
        expected.extend_from_slice(&8u64.to_le_bytes());
        expected.extend_from_slice(&7u64.to_le_bytes());
        expected.push(b'F');
        expected.extend_from_slice(&4u64.to_le_bytes());
        expected.extend_from_slice(&1.0f32.to_bits().to_le_bytes());
        assert_eq!(bytes, expected);
    }
}
