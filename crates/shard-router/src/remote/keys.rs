//! Shard keys: Qdrant's custom sharding (`sharding_method: custom`) over a cluster.
//!
//! A collection sharded by key has no shards of its own: each shard key created for it
//! (`PUT /collections/{c}/shards`) gets a group of nodes, and each node of the group holds
//! an ordinary collection for that key ([`node_collection_name`]), points placed among the
//! group by jump hashing of their ids, as an auto-sharded collection's are among all nodes.
//! A write names its key (or keys); a read names keys to reach only their groups, or none to
//! reach every group.
//!
//! The group is written into each of its node collections as their marker (which collection
//! and key, shard `index` of `of`, the group's node positions, the key's region if it has one),
//! so a coordinator rebuilds the key layout from the nodes alone.
//!
//! Two extensions place an upsert's points without a `shard_key` ([`FieldPlacement`]): by
//! the key a payload field's value names (here), or by the region that holds a geo-point
//! field ([`super::regions`]).

use std::collections::BTreeMap;

/// One shard key: a keyword or a number, as Qdrant's `ShardKey`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ShardKey {
    /// A string key.
    Keyword(String),
    /// An unsigned integer key.
    Number(u64),
}

/// The longest keyword key: node collection names are bounded.
pub const MAX_KEY_LEN: usize = 128;

impl ShardKey {
    /// Reads a key from JSON (a string or an unsigned integer).
    pub fn from_json(v: &serde_json::Value) -> Result<ShardKey, String> {
        match v {
            serde_json::Value::String(s) if s.is_empty() => {
                Err("a shard key must not be empty".into())
            }
            serde_json::Value::String(s) if s.len() > MAX_KEY_LEN => Err(format!(
                "a shard key is at most {MAX_KEY_LEN} bytes, not {}",
                s.len()
            )),
            serde_json::Value::String(s) if s.chars().any(char::is_control) => {
                Err("a shard key must not hold control characters".into())
            }
            serde_json::Value::String(s) => Ok(ShardKey::Keyword(s.clone())),
            serde_json::Value::Number(n) => n
                .as_u64()
                .map(ShardKey::Number)
                .ok_or_else(|| format!("a shard key number is an unsigned integer, not {n}")),
            other => Err(format!(
                "a shard key is a string or an unsigned integer, not {other}"
            )),
        }
    }

    /// The key as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            ShardKey::Keyword(s) => serde_json::Value::String(s.clone()),
            ShardKey::Number(n) => serde_json::Value::from(*n),
        }
    }

    /// The part of a node collection's name that names this key: a keyword of letters,
    /// digits, `-` and `_` as itself, a number after `#`, any other keyword in hexadecimal
    /// after `%` (so no key can make a name a node refuses, and no two keys share one).
    fn name_part(&self) -> String {
        match self {
            ShardKey::Number(n) => format!("#{n}"),
            ShardKey::Keyword(s)
                if s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
            {
                s.clone()
            }
            ShardKey::Keyword(s) => {
                let mut out = String::with_capacity(1 + s.len() * 2);
                out.push('%');
                for b in s.bytes() {
                    out.push_str(&format!("{b:02x}"));
                }
                out
            }
        }
    }
}

impl std::fmt::Display for ShardKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShardKey::Keyword(s) => f.write_str(s),
            ShardKey::Number(n) => write!(f, "{n}"),
        }
    }
}

/// The character that joins a collection's name and a key's in a node collection's name.
/// Cluster collection names may not hold it, so a node collection of a key is never taken
/// for a collection of its own.
pub const KEY_SEPARATOR: char = '@';

/// The name of the collection that holds key `key` of collection `name` on the key's nodes.
pub fn node_collection_name(name: &str, key: &ShardKey) -> String {
    format!("{name}{KEY_SEPARATOR}{}", key.name_part())
}

/// Which keys a request names (Qdrant's `ShardKeySelector`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySelection {
    /// These keys (one or more).
    Keys(Vec<ShardKey>),
    /// `target` when it exists, else `fallback`.
    Fallback {
        /// The key asked for.
        target: ShardKey,
        /// The key used when `target` does not exist.
        fallback: ShardKey,
    },
}

/// At most this many keys in one selection.
pub const MAX_SELECTED_KEYS: usize = 1024;

impl KeySelection {
    /// Reads a selection from JSON: a key, a list of keys, or `{"target", "fallback"}`.
    pub fn from_json(v: &serde_json::Value) -> Result<KeySelection, String> {
        match v {
            serde_json::Value::Array(keys) => {
                if keys.is_empty() {
                    return Err("shard_key: an empty list selects no shard".into());
                }
                if keys.len() > MAX_SELECTED_KEYS {
                    return Err(format!(
                        "shard_key: at most {MAX_SELECTED_KEYS} keys, not {}",
                        keys.len()
                    ));
                }
                let mut out = Vec::with_capacity(keys.len());
                for (i, k) in keys.iter().enumerate() {
                    let k = ShardKey::from_json(k).map_err(|e| format!("shard_key[{i}]: {e}"))?;
                    if !out.contains(&k) {
                        out.push(k);
                    }
                }
                Ok(KeySelection::Keys(out))
            }
            serde_json::Value::Object(m) => {
                if let Some(extra) = m.keys().find(|k| *k != "target" && *k != "fallback") {
                    return Err(format!("shard_key: unknown field `{extra}`"));
                }
                let field = |f: &str| {
                    let v = m
                        .get(f)
                        .ok_or_else(|| format!("shard_key: missing field `{f}`"))?;
                    ShardKey::from_json(v).map_err(|e| format!("shard_key.{f}: {e}"))
                };
                Ok(KeySelection::Fallback {
                    target: field("target")?,
                    fallback: field("fallback")?,
                })
            }
            other => ShardKey::from_json(other)
                .map(|k| KeySelection::Keys(vec![k]))
                .map_err(|e| format!("shard_key: {e}")),
        }
    }

    /// The selection as JSON, in the form it was read from.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            KeySelection::Keys(keys) if keys.len() == 1 => keys[0].to_json(),
            KeySelection::Keys(keys) => keys.iter().map(ShardKey::to_json).collect(),
            KeySelection::Fallback { target, fallback } => {
                serde_json::json!({ "target": target.to_json(), "fallback": fallback.to_json() })
            }
        }
    }
}

/// A collection's keys, each with its group: the positions of its nodes in the cluster's
/// list, in shard order.
pub type KeyLayout = BTreeMap<ShardKey, Vec<usize>>;

/// Why a selection names no shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// A key the collection does not have (Qdrant answers 400 "Shard key ... not found").
    NotFound(ShardKey),
    /// A write that creates points names no key: it cannot be placed.
    Unspecified,
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyError::NotFound(k) => write!(f, "Shard key {k} not found"),
            KeyError::Unspecified => f.write_str(
                "Shard key not specified: a collection with custom sharding places each point \
                 by the shard_key its upsert names",
            ),
        }
    }
}

/// The keys `selection` reaches in `layout`: every key for `None`, else those named (each
/// must exist; a fallback is taken when its target does not).
pub fn selected_keys(
    layout: &KeyLayout,
    selection: Option<&KeySelection>,
) -> Result<Vec<ShardKey>, KeyError> {
    match selection {
        None => Ok(layout.keys().cloned().collect()),
        Some(KeySelection::Keys(keys)) => {
            for k in keys {
                if !layout.contains_key(k) {
                    return Err(KeyError::NotFound(k.clone()));
                }
            }
            Ok(keys.clone())
        }
        Some(KeySelection::Fallback { target, fallback }) => {
            if layout.contains_key(target) {
                Ok(vec![target.clone()])
            } else if layout.contains_key(fallback) {
                Ok(vec![fallback.clone()])
            } else {
                Err(KeyError::NotFound(fallback.clone()))
            }
        }
    }
}

/// The group a new key is placed on: `shards` consecutive nodes of the pool (`placement`,
/// node positions each once and in range, or every node), from a start the key's hash
/// picks, so keys spread over the nodes without any state kept.
pub fn place_key(
    key: &ShardKey,
    shards: usize,
    placement: Option<&[u64]>,
    nodes: usize,
) -> Result<Vec<usize>, String> {
    let pool: Vec<usize> = match placement {
        None => (0..nodes).collect(),
        Some(p) => {
            if p.is_empty() {
                return Err("placement: an empty list places no shard".into());
            }
            let mut out = Vec::with_capacity(p.len());
            for &x in p {
                let x = usize::try_from(x).unwrap_or(usize::MAX);
                if x >= nodes {
                    return Err(format!(
                        "placement: node {x} is not in the cluster (nodes are numbered 0 to {} \
                         in the order they are listed)",
                        nodes - 1
                    ));
                }
                if out.contains(&x) {
                    return Err(format!("placement: node {x} is listed twice"));
                }
                out.push(x);
            }
            out
        }
    };
    if shards == 0 || shards > pool.len() {
        return Err(format!(
            "shards_number: {shards} shards on {} nodes: a key has 1 to {} shards, one a node",
            pool.len(),
            pool.len()
        ));
    }
    let start = (key_hash(key) % pool.len() as u64) as usize;
    Ok((0..shards)
        .map(|i| pool[(start + i) % pool.len()])
        .collect())
}

/// How a collection sharded by key places an upsert's points that name no key (extensions
/// of Qdrant's custom sharding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldPlacement {
    /// Under the key a payload field's value names (`shard_key_field`).
    Value(String),
    /// Under the key whose region holds a geo-point payload field (`shard_region_field`,
    /// [`super::regions`]).
    Region(String),
}

impl FieldPlacement {
    /// The placement a collection's configuration sets, if any.
    pub fn of(config: &storage::CollectionConfig) -> Option<FieldPlacement> {
        match (&config.shard_key_field, &config.shard_region_field) {
            (Some(f), _) => Some(FieldPlacement::Value(f.clone())),
            (None, Some(f)) => Some(FieldPlacement::Region(f.clone())),
            (None, None) => None,
        }
    }

    /// The payload field.
    pub fn field(&self) -> &str {
        match self {
            FieldPlacement::Value(f) | FieldPlacement::Region(f) => f,
        }
    }
}

/// The shard key a point's value of the placement field names: a string is a keyword
/// key, an unsigned integer a number key; anything else names none.
pub fn key_of_value(v: &serde_json::Value) -> Option<ShardKey> {
    match v {
        serde_json::Value::String(_) | serde_json::Value::Number(_) => ShardKey::from_json(v).ok(),
        _ => None,
    }
}

/// The keys a filter pins payload field `field` to: `Some` when every point the filter
/// passes holds one of them in the field (a `must` condition matching its value, or one of
/// several values; nested `must` filters count; several pins intersect), `None` when the
/// filter leaves the field free. Under payload-field placement a point holds its key's value
/// or none, so a pinned read needs only those keys' shards.
pub fn pinned_keys(
    filter: &payload::Filter,
    field: &payload::KeyPath,
) -> Option<std::collections::BTreeSet<ShardKey>> {
    use payload::{AnyValues, Condition, FieldCheck, Match, MatchValue};
    let mut pinned: Option<std::collections::BTreeSet<ShardKey>> = None;
    let mut pin = |keys: std::collections::BTreeSet<ShardKey>| {
        pinned = Some(match pinned.take() {
            None => keys,
            Some(have) => have.intersection(&keys).cloned().collect(),
        });
    };
    for c in &filter.must {
        match c {
            Condition::Field(fc) if &fc.key == field => {
                let keys = match &fc.check {
                    FieldCheck::Match(Match::Value(MatchValue::Keyword(s))) => {
                        std::iter::once(ShardKey::Keyword(s.clone())).collect()
                    }
                    FieldCheck::Match(Match::Value(MatchValue::Integer(n))) => u64::try_from(*n)
                        .ok()
                        .map(ShardKey::Number)
                        .into_iter()
                        .collect(),
                    // A boolean is never a key's value: no point passes.
                    FieldCheck::Match(Match::Value(MatchValue::Bool(_))) => Default::default(),
                    FieldCheck::Match(Match::Any(AnyValues::Keywords(set))) => {
                        set.iter().map(|s| ShardKey::Keyword(s.clone())).collect()
                    }
                    FieldCheck::Match(Match::Any(AnyValues::Integers(set))) => set
                        .iter()
                        .filter_map(|n| u64::try_from(*n).ok().map(ShardKey::Number))
                        .collect(),
                    _ => continue,
                };
                pin(keys);
            }
            Condition::Filter(inner) => {
                if let Some(keys) = pinned_keys(inner, field) {
                    pin(keys);
                }
            }
            _ => {}
        }
    }
    pinned
}

/// Cuts an upsert's points by the key their value of `field` names, in first-met order of
/// the keys; `named`, when the request names a key, is the key of every point, whose field
/// must then hold that key's value or nothing. An error names the first point that cannot
/// be placed.
pub fn points_by_field(
    points: Vec<storage::PointWrite>,
    field: &str,
    named: Option<&ShardKey>,
) -> Result<Vec<(ShardKey, Vec<storage::PointWrite>)>, String> {
    group_by_key(points, |i, p| {
        let own = match p.payload.get(field) {
            None => None,
            Some(v) => Some(key_of_value(v).ok_or_else(|| {
                format!(
                    "points[{i}]: payload field `{field}` places the point by its value, a \
                     string or an unsigned integer, not {v}"
                )
            })?),
        };
        match (own, named) {
            (Some(own), Some(named)) if &own != named => Err(format!(
                "points[{i}]: its `{field}` is {own} but the request names shard key {named}"
            )),
            (Some(k), _) => Ok(k),
            (None, Some(named)) => Ok(named.clone()),
            (None, None) => Err(format!(
                "points[{i}]: no payload field `{field}` and no shard_key: the point cannot be \
                 placed"
            )),
        }
    })
}

/// Cuts `points` by the key `key_of` gives each (with its position), in first-met order of
/// the keys; the first error stops the cut.
pub(crate) fn group_by_key(
    points: Vec<storage::PointWrite>,
    mut key_of: impl FnMut(usize, &storage::PointWrite) -> Result<ShardKey, String>,
) -> Result<Vec<(ShardKey, Vec<storage::PointWrite>)>, String> {
    let mut out: Vec<(ShardKey, Vec<storage::PointWrite>)> = Vec::new();
    for (i, p) in points.into_iter().enumerate() {
        let key = key_of(i, &p)?;
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, list)) => list.push(p),
            None => out.push((key, vec![p])),
        }
    }
    Ok(out)
}

/// A stable 64-bit hash of a key (FNV-1a; `std`'s hasher may change between releases, and
/// every coordinator must place a key alike).
fn key_hash(key: &ShardKey) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |b: u8| {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    match key {
        ShardKey::Keyword(s) => {
            feed(0);
            s.bytes().for_each(&mut feed);
        }
        ShardKey::Number(n) => {
            feed(1);
            n.to_le_bytes().into_iter().for_each(&mut feed);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selections_read_every_form_qdrant_sends() {
        let k = |s: &str| ShardKey::Keyword(s.into());
        assert_eq!(
            KeySelection::from_json(&json!("en")).unwrap(),
            KeySelection::Keys(vec![k("en")])
        );
        assert_eq!(
            KeySelection::from_json(&json!(["en", 7, "en"])).unwrap(),
            KeySelection::Keys(vec![k("en"), ShardKey::Number(7)])
        );
        assert_eq!(
            KeySelection::from_json(&json!({"target": "u1", "fallback": "default"})).unwrap(),
            KeySelection::Fallback {
                target: k("u1"),
                fallback: k("default")
            }
        );
        for bad in [
            json!([]),
            json!(-1),
            json!(1.5),
            json!(""),
            json!(null),
            json!({"target": "a"}),
            json!({"target": "a", "fallback": "b", "x": 1}),
            json!([true]),
        ] {
            assert!(KeySelection::from_json(&bad).is_err(), "{bad}");
        }
        for s in [
            json!("en"),
            json!(["en", 7]),
            json!({"target": "a", "fallback": 2}),
        ] {
            assert_eq!(KeySelection::from_json(&s).unwrap().to_json(), s);
        }
    }

    #[test]
    fn node_collection_names_are_distinct_and_safe() {
        let names: Vec<String> = [
            ShardKey::Keyword("en".into()),
            ShardKey::Keyword("#1".into()),
            ShardKey::Number(1),
            ShardKey::Keyword("1".into()),
            ShardKey::Keyword("a/b".into()),
            ShardKey::Keyword("%61".into()),
            ShardKey::Keyword("a".into()),
        ]
        .iter()
        .map(|k| node_collection_name("c", k))
        .collect();
        assert_eq!(names[0], "c@en");
        assert_eq!(names[2], "c@#1");
        assert_eq!(names[4], "c@%612f62");
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert!(names.iter().all(|n| !n.contains('/') && !n.contains('\\')));
    }

    #[test]
    fn selection_resolves_against_the_layout() {
        let k = |s: &str| ShardKey::Keyword(s.into());
        let layout: KeyLayout = [(k("a"), vec![0]), (k("b"), vec![1, 2])].into();
        assert_eq!(selected_keys(&layout, None).unwrap(), vec![k("a"), k("b")]);
        assert_eq!(
            selected_keys(&layout, Some(&KeySelection::Keys(vec![k("b")]))).unwrap(),
            vec![k("b")]
        );
        assert_eq!(
            selected_keys(&layout, Some(&KeySelection::Keys(vec![k("b"), k("z")]))),
            Err(KeyError::NotFound(k("z")))
        );
        let fb = |t: &str, f: &str| KeySelection::Fallback {
            target: k(t),
            fallback: k(f),
        };
        assert_eq!(
            selected_keys(&layout, Some(&fb("z", "a"))).unwrap(),
            vec![k("a")]
        );
        assert_eq!(
            selected_keys(&layout, Some(&fb("b", "a"))).unwrap(),
            vec![k("b")]
        );
        assert_eq!(
            selected_keys(&layout, Some(&fb("y", "z"))),
            Err(KeyError::NotFound(k("z")))
        );
    }

    #[test]
    fn filters_pin_the_field_only_through_must() {
        let field = payload::KeyPath::parse("lang").unwrap();
        let pins = |f: serde_json::Value| {
            let f = payload::Filter::from_json(&f).unwrap();
            pinned_keys(&f, &field).map(|s| s.into_iter().collect::<Vec<_>>())
        };
        let k = |s: &str| ShardKey::Keyword(s.into());
        assert_eq!(
            pins(json!({"must": [{"key": "lang", "match": {"value": "en"}}]})),
            Some(vec![k("en")])
        );
        assert_eq!(
            pins(
                json!({"must": [{"key": "lang", "match": {"any": ["en", "de"]}},
                                 {"key": "x", "match": {"value": 1}}]})
            ),
            Some(vec![k("de"), k("en")])
        );
        // Two pins intersect; nested must filters pin too.
        assert_eq!(
            pins(
                json!({"must": [{"key": "lang", "match": {"any": ["en", "de"]}},
                                 {"must": [{"key": "lang", "match": {"value": "de"}}]}]})
            ),
            Some(vec![k("de")])
        );
        assert_eq!(
            pins(json!({"must": [{"key": "lang", "match": {"any": [7, -1]}}]})),
            Some(vec![ShardKey::Number(7)])
        );
        assert_eq!(
            pins(json!({"must": [{"key": "lang", "match": {"value": true}}]})),
            Some(vec![])
        );
        // `should`, `must_not`, other checks and other fields leave it free.
        for free in [
            json!({"should": [{"key": "lang", "match": {"value": "en"}}]}),
            json!({"must_not": [{"key": "lang", "match": {"value": "en"}}]}),
            json!({"must": [{"key": "lang", "match": {"except": ["en"]}}]}),
            json!({"must": [{"key": "langs", "match": {"value": "en"}}]}),
            json!({"must": [{"should": [{"key": "lang", "match": {"value": "en"}}]}]}),
        ] {
            assert_eq!(pins(free.clone()), None, "{free}");
        }
    }

    #[test]
    fn upserts_are_cut_by_the_field() {
        let point = |id: u64, lang: serde_json::Value| storage::PointWrite {
            id: index_core::PointId::Num(id),
            vectors: Vec::new(),
            sparse: Vec::new(),
            multi: Vec::new(),
            payload: match lang {
                serde_json::Value::Null => payload::Payload::new(),
                v => [("lang".to_string(), v)].into_iter().collect(),
            },
        };
        let k = |s: &str| ShardKey::Keyword(s.into());
        let parts = points_by_field(
            vec![
                point(1, json!("en")),
                point(2, json!("de")),
                point(3, json!("en")),
            ],
            "lang",
            None,
        )
        .unwrap();
        let ids: Vec<(ShardKey, Vec<index_core::PointId>)> = parts
            .into_iter()
            .map(|(k, p)| (k, p.into_iter().map(|p| p.id).collect()))
            .collect();
        use index_core::PointId::Num;
        assert_eq!(
            ids,
            vec![(k("en"), vec![Num(1), Num(3)]), (k("de"), vec![Num(2)])]
        );
        // Without the field: the key the request names, else refused.
        let named = points_by_field(vec![point(4, json!(null))], "lang", Some(&k("en"))).unwrap();
        assert_eq!(named[0].0, k("en"));
        let e = points_by_field(vec![point(4, json!(null))], "lang", None).unwrap_err();
        assert!(e.contains("points[0]"), "{e}");
        // A value that names no key, or another key than the request's.
        for bad in [json!(true), json!(-2), json!(["en"]), json!({"a": 1})] {
            assert!(
                points_by_field(vec![point(5, bad.clone())], "lang", None).is_err(),
                "{bad}"
            );
        }
        let e = points_by_field(vec![point(6, json!("de"))], "lang", Some(&k("en"))).unwrap_err();
        assert!(e.contains("de") && e.contains("en"), "{e}");
    }

    #[test]
    fn keys_are_placed_on_distinct_nodes() {
        let k = ShardKey::Keyword("tenant".into());
        let g = place_key(&k, 2, None, 3).unwrap();
        assert_eq!(g.len(), 2);
        assert_ne!(g[0], g[1]);
        assert_eq!(g, place_key(&k, 2, None, 3).unwrap(), "deterministic");
        let mut p = place_key(&k, 2, Some(&[2, 0]), 3).unwrap();
        p.sort_unstable();
        assert_eq!(p, vec![0, 2]);
        assert_eq!(place_key(&k, 1, Some(&[1]), 3).unwrap(), vec![1]);
        assert!(place_key(&k, 4, None, 3).is_err());
        assert!(place_key(&k, 0, None, 3).is_err());
        assert!(place_key(&k, 2, Some(&[1, 1]), 3).is_err());
        assert!(place_key(&k, 1, Some(&[3]), 3).is_err());
        assert!(place_key(&k, 2, Some(&[1]), 3).is_err());
        assert!(place_key(&k, 1, Some(&[]), 3).is_err());
        // Many keys reach every node.
        let starts: std::collections::HashSet<usize> = (0..64)
            .map(|i| place_key(&ShardKey::Number(i), 1, None, 4).unwrap()[0])
            .collect();
        assert_eq!(starts.len(), 4);
    }
}
