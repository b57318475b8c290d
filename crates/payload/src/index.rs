//! Payload field indexes: per-field maps from values to the points holding them, kept in sync
//! with writes, from which a filter computes a candidate set instead of scanning every payload.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;

use index_core::PointId;
use serde_json::{json, Map, Value};

use crate::datetime::parse_datetime_micros;
use crate::error::{json_type, PayloadError, Result};
use crate::geo::GeoPoint;
use crate::ids::parse_uuid_spelling;
use crate::key_path::{values_at, KeyPath};
use crate::text::tokenize;
use crate::Payload;

/// The type of a payload index, Qdrant's `PayloadSchemaType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldSchema {
    /// Exact strings: `match value/any`, `prefix`, `substring`.
    Keyword,
    /// Integers: `match value/any` on integers, `range`.
    Integer,
    /// Numbers: `range`.
    Float,
    /// Booleans: `match value`.
    Bool,
    /// `{lat, lon}` objects: `geo_radius`, `geo_bounding_box`, `geo_polygon`.
    Geo,
    /// RFC 3339 datetimes and dates: datetime `range`.
    Datetime,
    /// Full text: `match text/text_any/phrase`.
    Text,
    /// UUID strings: `match value/any` with UUIDs, in any spelling.
    Uuid,
}

const SCHEMA_NAMES: [(&str, FieldSchema); 8] = [
    ("keyword", FieldSchema::Keyword),
    ("integer", FieldSchema::Integer),
    ("float", FieldSchema::Float),
    ("bool", FieldSchema::Bool),
    ("geo", FieldSchema::Geo),
    ("datetime", FieldSchema::Datetime),
    ("text", FieldSchema::Text),
    ("uuid", FieldSchema::Uuid),
];

/// What a parameter of `PayloadSchemaParams` may hold.
#[derive(Clone, Copy)]
enum Param {
    Bool,
    Uint,
    OneOf(&'static [&'static str]),
    /// `stopwords`: a language name or `{languages?: [name], custom?: [string]}`.
    Stopwords,
    /// `stemmer`: `{type: "snowball", language}` or `{type: "none"}`.
    Stemmer,
}

const MEMORY: Param = Param::OneOf(&["cold", "cached", "pinned"]);
const COMMON_PARAMS: [(&str, Param); 3] = [
    ("on_disk", Param::Bool),
    ("memory", MEMORY),
    ("enable_hnsw", Param::Bool),
];
const LANGUAGES: &[&str] = &[
    "arabic",
    "azerbaijani",
    "basque",
    "bengali",
    "catalan",
    "chinese",
    "danish",
    "dutch",
    "english",
    "finnish",
    "french",
    "german",
    "greek",
    "hebrew",
    "hinglish",
    "hungarian",
    "indonesian",
    "italian",
    "japanese",
    "kazakh",
    "nepali",
    "norwegian",
    "portuguese",
    "romanian",
    "russian",
    "slovene",
    "spanish",
    "swedish",
    "tajik",
    "turkish",
];

impl FieldSchema {
    /// Reads Qdrant's `field_schema`: a type name (`"keyword"`), or an object with `type` and
    /// that type's parameters (`{"type": "text", "tokenizer": "word", "lowercase": true}`).
    ///
    /// Parameters are checked against the schema's types and unknown ones rejected; they change
    /// nothing here (see the crate doc: every index serves exact and full-text conditions with
    /// the default semantics).
    pub fn from_json(v: &Value) -> Result<FieldSchema> {
        let fail = |reason: String| PayloadError::InvalidFieldSchema { reason };
        match v {
            Value::String(name) => {
                FieldSchema::from_name(name).ok_or_else(|| fail(unknown_type(name)))
            }
            Value::Object(params) => {
                let name = params
                    .get("type")
                    .and_then(Value::as_str)
                    .ok_or_else(|| fail("an index schema object needs a string `type`".into()))?;
                let schema =
                    FieldSchema::from_name(name).ok_or_else(|| fail(unknown_type(name)))?;
                schema.check_params(params)?;
                Ok(schema)
            }
            other => Err(fail(format!(
                "expected a type name or an object with `type`, got {}",
                json_type(other)
            ))),
        }
    }

    /// Qdrant's name for the type (`"keyword"`, …).
    pub fn name(&self) -> &'static str {
        SCHEMA_NAMES
            .iter()
            .find(|(_, s)| s == self)
            .map_or("keyword", |(n, _)| n)
    }

    fn from_name(name: &str) -> Option<FieldSchema> {
        SCHEMA_NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| *s)
    }

    fn specific_params(&self) -> &'static [(&'static str, Param)] {
        match self {
            FieldSchema::Keyword => &[("is_tenant", Param::Bool), ("prefix", Param::Bool)],
            FieldSchema::Integer => &[
                ("lookup", Param::Bool),
                ("range", Param::Bool),
                ("is_principal", Param::Bool),
            ],
            FieldSchema::Float | FieldSchema::Datetime => &[("is_principal", Param::Bool)],
            FieldSchema::Uuid => &[("is_tenant", Param::Bool)],
            FieldSchema::Text => &[
                (
                    "tokenizer",
                    Param::OneOf(&["prefix", "whitespace", "word", "multilingual"]),
                ),
                ("min_token_len", Param::Uint),
                ("max_token_len", Param::Uint),
                ("lowercase", Param::Bool),
                ("ascii_folding", Param::Bool),
                ("phrase_matching", Param::Bool),
                ("stopwords", Param::Stopwords),
                ("stemmer", Param::Stemmer),
            ],
            FieldSchema::Bool | FieldSchema::Geo => &[],
        }
    }

    fn check_params(&self, params: &Map<String, Value>) -> Result<()> {
        for (key, value) in params {
            if key == "type" || value.is_null() {
                continue;
            }
            let Some((_, kind)) = COMMON_PARAMS
                .iter()
                .chain(self.specific_params())
                .find(|(name, _)| name == key)
            else {
                return Err(PayloadError::InvalidFieldSchema {
                    reason: format!("unknown parameter `{key}` for a {} index", self.name()),
                });
            };
            if !param_ok(*kind, value) {
                return Err(PayloadError::InvalidFieldSchema {
                    reason: format!(
                        "invalid value {value} for parameter `{key}` of a {} index",
                        self.name()
                    ),
                });
            }
        }
        Ok(())
    }
}

fn unknown_type(name: &str) -> String {
    let names: Vec<&str> = SCHEMA_NAMES.iter().map(|(n, _)| *n).collect();
    format!(
        "unknown index type `{name}`, expected one of: {}",
        names.join(", ")
    )
}

fn param_ok(kind: Param, v: &Value) -> bool {
    let is_language = |v: &Value| v.as_str().is_some_and(|s| LANGUAGES.contains(&s));
    match kind {
        Param::Bool => v.is_boolean(),
        Param::Uint => v.is_u64(),
        Param::OneOf(names) => v.as_str().is_some_and(|s| names.contains(&s)),
        Param::Stopwords => match v {
            Value::String(_) => is_language(v),
            Value::Object(set) => set.iter().all(|(k, v)| match (k.as_str(), v) {
                (_, Value::Null) => true,
                ("languages", Value::Array(items)) => items.iter().all(is_language),
                ("custom", Value::Array(items)) => items.iter().all(Value::is_string),
                _ => false,
            }),
            _ => false,
        },
        Param::Stemmer => match v.as_object() {
            Some(s) => match s.get("type").and_then(Value::as_str) {
                Some("snowball") => s.len() == 2 && s.get("language").is_some_and(Value::is_string),
                Some("none") => s.len() == 1,
                _ => false,
            },
            None => false,
        },
    }
}

/// An `f64` with a total order, for ordered maps of numbers. `-0.0` is stored as `0.0` so that
/// the two zeros are one key, as they are one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct NumberKey(i64);

impl NumberKey {
    pub(crate) fn new(x: f64) -> NumberKey {
        let x = if x == 0.0 { 0.0 } else { x };
        let bits = x.to_bits() as i64;
        // Flipping the magnitude bits of negatives makes the integer order the float order.
        NumberKey(bits ^ (((bits >> 63) as u64) >> 1) as i64)
    }
}

type Postings<K> = BTreeMap<K, HashSet<PointId>>;

/// The stored form of one field's index.
#[derive(Debug, Clone)]
enum IndexData {
    Keyword(Postings<String>),
    /// Every number at the path, integers and floats alike, as `f64`. An integer index keeps
    /// floats too: a float satisfies a range on an integer field, and a candidate set must not
    /// lose a point that matches.
    Numeric(Postings<NumberKey>),
    Bool {
        yes: HashSet<PointId>,
        no: HashSet<PointId>,
    },
    Geo(HashMap<PointId, Vec<GeoPoint>>),
    Datetime(Postings<i64>),
    Text(HashMap<String, HashSet<PointId>>),
    Uuid(HashMap<u128, HashSet<PointId>>),
}

/// One key of an index, as extracted from a payload value.
enum IndexKey {
    Keyword(String),
    Number(NumberKey),
    Bool(bool),
    Geo(GeoPoint),
    Datetime(i64),
    Token(String),
    Uuid(u128),
}

/// One indexed field.
#[derive(Debug, Clone)]
pub(crate) struct FieldIndex {
    name: String,
    schema: FieldSchema,
    /// Points holding at least one value of the index's own type: Qdrant's `points`.
    points: HashSet<PointId>,
    data: IndexData,
}

impl FieldIndex {
    fn new(name: &str, schema: FieldSchema) -> FieldIndex {
        let data = match schema {
            FieldSchema::Keyword => IndexData::Keyword(BTreeMap::new()),
            FieldSchema::Integer | FieldSchema::Float => IndexData::Numeric(BTreeMap::new()),
            FieldSchema::Bool => IndexData::Bool {
                yes: HashSet::new(),
                no: HashSet::new(),
            },
            FieldSchema::Geo => IndexData::Geo(HashMap::new()),
            FieldSchema::Datetime => IndexData::Datetime(BTreeMap::new()),
            FieldSchema::Text => IndexData::Text(HashMap::new()),
            FieldSchema::Uuid => IndexData::Uuid(HashMap::new()),
        };
        FieldIndex {
            name: name.to_string(),
            schema,
            points: HashSet::new(),
            data,
        }
    }

    /// The keys the values at the path give, and whether one of them is of the index's own type
    /// (an integer index also holds floats, which do not count as indexed points).
    fn keys(&self, values: &[&Value]) -> (Vec<IndexKey>, bool) {
        let mut keys = Vec::new();
        let mut own_type = false;
        for v in values {
            match self.schema {
                FieldSchema::Keyword => {
                    if let Some(s) = v.as_str() {
                        keys.push(IndexKey::Keyword(s.to_string()));
                        own_type = true;
                    }
                }
                FieldSchema::Integer | FieldSchema::Float => {
                    if let Value::Number(n) = v {
                        keys.push(IndexKey::Number(NumberKey::new(
                            n.as_f64().unwrap_or_default(),
                        )));
                        own_type |= self.schema == FieldSchema::Float || !n.is_f64();
                    }
                }
                FieldSchema::Bool => {
                    if let Some(b) = v.as_bool() {
                        keys.push(IndexKey::Bool(b));
                        own_type = true;
                    }
                }
                FieldSchema::Geo => {
                    if let Some(p) = GeoPoint::from_payload(v) {
                        keys.push(IndexKey::Geo(p));
                        own_type = true;
                    }
                }
                FieldSchema::Datetime => {
                    if let Some(t) = v.as_str().and_then(parse_datetime_micros) {
                        keys.push(IndexKey::Datetime(t));
                        own_type = true;
                    }
                }
                FieldSchema::Text => {
                    if let Some(s) = v.as_str() {
                        keys.extend(tokenize(s).into_iter().map(IndexKey::Token));
                        own_type = true;
                    }
                }
                FieldSchema::Uuid => {
                    if let Some(PointId::Uuid(u)) = v.as_str().and_then(parse_uuid_spelling) {
                        keys.push(IndexKey::Uuid(u));
                        own_type = true;
                    }
                }
            }
        }
        (keys, own_type)
    }

    fn insert(&mut self, id: PointId, payload: &Payload, path: &KeyPath) {
        let (keys, own_type) = self.keys(&values_at(payload, path));
        if own_type {
            self.points.insert(id);
        }
        for key in keys {
            match (&mut self.data, key) {
                (IndexData::Keyword(map), IndexKey::Keyword(k)) => {
                    map.entry(k).or_default().insert(id);
                }
                (IndexData::Numeric(map), IndexKey::Number(k)) => {
                    map.entry(k).or_default().insert(id);
                }
                (IndexData::Bool { yes, no }, IndexKey::Bool(b)) => {
                    if b { yes } else { no }.insert(id);
                }
                (IndexData::Geo(map), IndexKey::Geo(p)) => map.entry(id).or_default().push(p),
                (IndexData::Datetime(map), IndexKey::Datetime(t)) => {
                    map.entry(t).or_default().insert(id);
                }
                (IndexData::Text(map), IndexKey::Token(t)) => {
                    map.entry(t).or_default().insert(id);
                }
                (IndexData::Uuid(map), IndexKey::Uuid(u)) => {
                    map.entry(u).or_default().insert(id);
                }
                _ => {}
            }
        }
    }

    fn remove(&mut self, id: PointId, payload: &Payload, path: &KeyPath) {
        self.points.remove(&id);
        if let IndexData::Geo(map) = &mut self.data {
            map.remove(&id);
            return;
        }
        let (keys, _) = self.keys(&values_at(payload, path));
        fn drop_from<K: Ord>(map: &mut Postings<K>, key: K, id: PointId) {
            if let Some(set) = map.get_mut(&key) {
                set.remove(&id);
                if set.is_empty() {
                    map.remove(&key);
                }
            }
        }
        fn drop_from_hash<K: Eq + std::hash::Hash>(
            map: &mut HashMap<K, HashSet<PointId>>,
            key: K,
            id: PointId,
        ) {
            if let Some(set) = map.get_mut(&key) {
                set.remove(&id);
                if set.is_empty() {
                    map.remove(&key);
                }
            }
        }
        for key in keys {
            match (&mut self.data, key) {
                (IndexData::Keyword(map), IndexKey::Keyword(k)) => drop_from(map, k, id),
                (IndexData::Numeric(map), IndexKey::Number(k)) => drop_from(map, k, id),
                (IndexData::Bool { yes, no }, IndexKey::Bool(b)) => {
                    if b { yes } else { no }.remove(&id);
                }
                (IndexData::Datetime(map), IndexKey::Datetime(t)) => drop_from(map, t, id),
                (IndexData::Text(map), IndexKey::Token(t)) => drop_from_hash(map, t, id),
                (IndexData::Uuid(map), IndexKey::Uuid(u)) => drop_from_hash(map, u, id),
                _ => {}
            }
        }
    }

    /// Whether this is a keyword index (its postings list every string at its path).
    pub(crate) fn is_keyword(&self) -> bool {
        matches!(self.data, IndexData::Keyword(_))
    }

    /// Points whose value is exactly this string (keyword), or this UUID in any spelling (uuid),
    /// or that hold all of its tokens (text). `None` where this index cannot bound the answer.
    pub(crate) fn keyword(&self, s: &str) -> Option<HashSet<PointId>> {
        match &self.data {
            IndexData::Keyword(map) => Some(map.get(s).cloned().unwrap_or_default()),
            // A string that is not a UUID may still equal a payload string that is not one
            // either, and those are not indexed.
            IndexData::Uuid(map) => match parse_uuid_spelling(s)? {
                PointId::Uuid(u) => Some(map.get(&u).cloned().unwrap_or_default()),
                PointId::Num(_) => None,
            },
            IndexData::Text(_) => {
                let tokens = tokenize(s);
                // A value without tokens can equal a payload string without tokens.
                (!tokens.is_empty()).then(|| self.tokens_all(&tokens))
            }
            _ => None,
        }
    }

    /// Points holding a number equal to `n` as an `f64` (a superset of those holding `n`).
    pub(crate) fn integer(&self, n: i64) -> Option<HashSet<PointId>> {
        match &self.data {
            IndexData::Numeric(map) => Some(
                map.get(&NumberKey::new(n as f64))
                    .cloned()
                    .unwrap_or_default(),
            ),
            _ => None,
        }
    }

    pub(crate) fn boolean(&self, b: bool) -> Option<HashSet<PointId>> {
        match &self.data {
            IndexData::Bool { yes, no } => Some(if b { yes.clone() } else { no.clone() }),
            _ => None,
        }
    }

    /// Points with a number in the range, bounds taken inclusively (an integer rounded to `f64`
    /// can land on a strict bound it does not reach).
    pub(crate) fn number_range(
        &self,
        low: Option<f64>,
        high: Option<f64>,
    ) -> Option<HashSet<PointId>> {
        let IndexData::Numeric(map) = &self.data else {
            return None;
        };
        let low = low.map_or(Bound::Unbounded, |x| Bound::Included(NumberKey::new(x)));
        let high = high.map_or(Bound::Unbounded, |x| Bound::Included(NumberKey::new(x)));
        if matches!((low, high), (Bound::Included(l), Bound::Included(h)) if l > h) {
            return Some(HashSet::new());
        }
        Some(
            map.range((low, high))
                .flat_map(|(_, ids)| ids.iter().copied())
                .collect(),
        )
    }

    pub(crate) fn datetime_range(
        &self,
        low: Bound<i64>,
        high: Bound<i64>,
    ) -> Option<HashSet<PointId>> {
        let IndexData::Datetime(map) = &self.data else {
            return None;
        };
        let empty = match (low, high) {
            (Bound::Included(l), Bound::Included(h)) => l > h,
            (Bound::Included(l) | Bound::Excluded(l), Bound::Excluded(h) | Bound::Included(h)) => {
                l >= h
            }
            _ => false,
        };
        if empty {
            return Some(HashSet::new());
        }
        Some(
            map.range((low, high))
                .flat_map(|(_, ids)| ids.iter().copied())
                .collect(),
        )
    }

    /// Points with a string value passing `keep` (prefix and substring scans of a keyword index).
    pub(crate) fn scan_keywords(&self, keep: impl Fn(&str) -> bool) -> Option<HashSet<PointId>> {
        let IndexData::Keyword(map) = &self.data else {
            return None;
        };
        Some(
            map.iter()
                .filter(|(k, _)| keep(k))
                .flat_map(|(_, ids)| ids.iter().copied())
                .collect(),
        )
    }

    /// Points with a keyword value starting with `prefix`, by an ordered range scan.
    pub(crate) fn prefix(&self, prefix: &str) -> Option<HashSet<PointId>> {
        let IndexData::Keyword(map) = &self.data else {
            return None;
        };
        Some(
            map.range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
                .take_while(|(k, _)| k.starts_with(prefix))
                .flat_map(|(_, ids)| ids.iter().copied())
                .collect(),
        )
    }

    /// Points whose text holds every token (a text index).
    pub(crate) fn text_all(&self, tokens: &[String]) -> Option<HashSet<PointId>> {
        matches!(self.data, IndexData::Text(_)).then(|| self.tokens_all(tokens))
    }

    /// Points whose text holds at least one of the tokens (a text index).
    pub(crate) fn text_any(&self, tokens: &[String]) -> Option<HashSet<PointId>> {
        let IndexData::Text(map) = &self.data else {
            return None;
        };
        Some(
            tokens
                .iter()
                .filter_map(|t| map.get(t))
                .flatten()
                .copied()
                .collect(),
        )
    }

    fn tokens_all(&self, tokens: &[String]) -> HashSet<PointId> {
        let IndexData::Text(map) = &self.data else {
            return HashSet::new();
        };
        let mut sets: Vec<&HashSet<PointId>> = Vec::with_capacity(tokens.len());
        for t in tokens {
            match map.get(t) {
                Some(set) => sets.push(set),
                None => return HashSet::new(),
            }
        }
        sets.sort_by_key(|s| s.len());
        let Some((first, rest)) = sets.split_first() else {
            return HashSet::new();
        };
        first
            .iter()
            .filter(|id| rest.iter().all(|s| s.contains(id)))
            .copied()
            .collect()
    }

    /// Points with a geo point passing `inside` (a geo index), by a scan of the indexed points.
    pub(crate) fn geo(&self, inside: impl Fn(GeoPoint) -> bool) -> Option<HashSet<PointId>> {
        let IndexData::Geo(map) = &self.data else {
            return None;
        };
        Some(
            map.iter()
                .filter(|(_, points)| points.iter().any(|p| inside(*p)))
                .map(|(id, _)| *id)
                .collect(),
        )
    }
}

/// The payload indexes of a collection (or shard): one [`FieldSchema`]-typed index per field
/// path, kept in sync through [`PayloadIndexes::update`].
#[derive(Debug, Clone, Default)]
pub struct PayloadIndexes {
    fields: BTreeMap<KeyPath, FieldIndex>,
}

impl PayloadIndexes {
    /// No indexes.
    pub fn new() -> Self {
        PayloadIndexes::default()
    }

    /// Creates (or replaces) the index of `field`, filled from `points`.
    ///
    /// `field` is a key path (`"city"`, `"meta.tags"`, `"items[].sku"`); a condition is served
    /// by the index whose path is the same as its key's. An invalid path is an error.
    pub fn create<'a>(
        &mut self,
        field: &str,
        schema: FieldSchema,
        points: impl Iterator<Item = (PointId, &'a Payload)>,
    ) -> Result<()> {
        let path = KeyPath::parse(field)?;
        let mut index = FieldIndex::new(field, schema);
        for (id, payload) in points {
            index.insert(id, payload, &path);
        }
        self.fields.insert(path, index);
        Ok(())
    }

    /// Drops the index of `field`; `false` if there was none (or the path is invalid).
    pub fn drop_field(&mut self, field: &str) -> bool {
        KeyPath::parse(field).is_ok_and(|path| self.fields.remove(&path).is_some())
    }

    /// Keeps every index in sync with one point's write: `old` is the payload it had (`None`
    /// for a new point), `new` the one it has now (`None` once deleted).
    pub fn update(&mut self, id: PointId, old: Option<&Payload>, new: Option<&Payload>) {
        for (path, index) in &mut self.fields {
            if let Some(old) = old {
                index.remove(id, old, path);
            } else {
                // Without the old payload there are no keys to remove from; a point that is
                // new to the caller holds none, and the count must not keep a stale entry.
                index.points.remove(&id);
            }
            if let Some(new) = new {
                index.insert(id, new, path);
            }
        }
    }

    /// Qdrant's `payload_schema`: `{field: {"data_type": "keyword", "points": n}}`, where `n`
    /// counts the points holding a value of the index's type.
    pub fn schema(&self) -> Value {
        let mut out = Map::new();
        for index in self.fields.values() {
            out.insert(
                index.name.clone(),
                json!({ "data_type": index.schema.name(), "points": index.points.len() }),
            );
        }
        Value::Object(out)
    }

    /// The indexed fields, as they were named when created, with their types.
    pub fn fields(&self) -> impl Iterator<Item = (&str, FieldSchema)> {
        self.fields.values().map(|i| (i.name.as_str(), i.schema))
    }

    /// Number of indexed fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether no field is indexed.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub(crate) fn get(&self, path: &KeyPath) -> Option<&FieldIndex> {
        self.fields.get(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_keys_sort_as_numbers() {
        let xs = [-1e300, -5.5, -1.0, -0.0, 0.0, 1e-300, 1.0, 2.5, 1e300];
        for w in xs.windows(2) {
            assert!(
                NumberKey::new(w[0]) <= NumberKey::new(w[1]),
                "{} vs {}",
                w[0],
                w[1]
            );
        }
        assert_eq!(NumberKey::new(-0.0), NumberKey::new(0.0));
        assert!(NumberKey::new(-1.0) < NumberKey::new(-0.5));
    }
}
